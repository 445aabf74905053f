//! The load an API server reports to the supervisor: its runner calls in
//! flight, which the autoscaler sizes runners by.
//!
//! Every API server counts, per runner, the calls it has sent and not had
//! answered plus those waiting for a worker, in the gauge family
//! [`RUNNER_CALLS_IN_FLIGHT`] labelled [`RUNNER_LABEL`]
//! (`api-server/src/pool.rs`). Being a gauge, it is in `/metrics` too, and
//! it reaches the supervisor inside the process's metrics snapshot, so the
//! name is part of the contract between the processes. [`RunnerLoad`] is
//! the one place that contract is read back: the supervisor turns each API
//! server's snapshot into a `RunnerLoad` when it arrives and the autoscaler
//! reads typed counts, never a metric by name.

use std::collections::BTreeMap;

use tiffin_metrics::{Snapshot, Value};

/// The gauge family in which every API server counts its runner calls in
/// flight (sent and not answered, or waiting for a worker), labelled
/// [`RUNNER_LABEL`].
pub const RUNNER_CALLS_IN_FLIGHT: &str = "tiffin_api_server_runner_calls_in_flight";

/// The one label of [`RUNNER_CALLS_IN_FLIGHT`]: the runner's name.
pub const RUNNER_LABEL: &str = "runner_name";

/// One API server's runner calls in flight, per runner, as of one snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunnerLoad {
    calls_in_flight: BTreeMap<String, f64>,
}

impl RunnerLoad {
    /// The load an API server's `snapshot` reports. A series with other
    /// labels than [`RUNNER_LABEL`] alone, or a value that is not a finite
    /// positive gauge, counts as no load.
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        let calls_in_flight = snapshot
            .family(RUNNER_CALLS_IN_FLIGHT)
            .into_iter()
            .flat_map(|family| &family.series)
            .filter(|series| series.labels.len() == 1)
            .filter_map(|series| {
                let runner = series.label(RUNNER_LABEL)?;
                match series.value {
                    Value::Gauge(v) if v.is_finite() && v > 0.0 => Some((runner.to_string(), v)),
                    _ => None,
                }
            })
            .collect();
        Self { calls_in_flight }
    }

    /// Calls to `runner` in flight (0 for a runner this API server has no
    /// calls to).
    pub fn calls_in_flight(&self, runner: &str) -> f64 {
        self.calls_in_flight.get(runner).copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use tiffin_metrics::{Family, GaugeMode, Kind, Series};

    use super::*;

    fn series(labels: &[(&str, &str)], value: Value) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    fn snapshot(name: &str, series: Vec<Series>) -> Snapshot {
        Snapshot {
            families: vec![Family {
                name: name.into(),
                help: "calls".into(),
                kind: Kind::Gauge(GaugeMode::LiveSum),
                series,
            }],
        }
    }

    #[test]
    fn each_runner_gets_the_value_of_its_own_series() {
        let load = RunnerLoad::from_snapshot(&snapshot(
            RUNNER_CALLS_IN_FLIGHT,
            vec![
                series(&[(RUNNER_LABEL, "a")], Value::Gauge(3.0)),
                series(&[(RUNNER_LABEL, "b")], Value::Gauge(0.5)),
            ],
        ));
        assert_eq!(load.calls_in_flight("a"), 3.0);
        assert_eq!(load.calls_in_flight("b"), 0.5);
        assert_eq!(load.calls_in_flight("c"), 0.0);
    }

    #[test]
    fn anything_but_a_finite_positive_gauge_labelled_by_runner_alone_is_no_load() {
        let load = RunnerLoad::from_snapshot(&snapshot(
            RUNNER_CALLS_IN_FLIGHT,
            vec![
                series(&[(RUNNER_LABEL, "negative")], Value::Gauge(-1.0)),
                series(&[(RUNNER_LABEL, "nan")], Value::Gauge(f64::NAN)),
                series(&[(RUNNER_LABEL, "counter")], Value::Counter(4.0)),
                series(&[(RUNNER_LABEL, "extra"), ("x", "y")], Value::Gauge(2.0)),
                series(&[("other", "a")], Value::Gauge(2.0)),
            ],
        ));
        assert_eq!(load, RunnerLoad::default());
        let elsewhere = snapshot(
            "some_other_gauge",
            vec![series(&[(RUNNER_LABEL, "a")], Value::Gauge(2.0))],
        );
        assert_eq!(RunnerLoad::from_snapshot(&elsewhere), RunnerLoad::default());
    }
}
