//! The serializable picture of one process's metrics at one instant.
//!
//! A [`Snapshot`] is what a worker sends to the supervisor over the control
//! socket (as bincode 2 in serde mode) and what [`merge`](mod@crate::merge) and
//! [`render`](mod@crate::render) work on. It is plain data: no handles, no locks.
//!
//! Conventions every producer keeps (and [`Registry::snapshot`](crate::Registry::snapshot)
//! guarantees):
//! - families are sorted by name, series by labels, labels by name — so two
//!   snapshots of the same state are equal and scrapes are stable;
//! - a counter family's `name` is its sample name, with the `_total` suffix
//!   (`polarity_total`); OpenMetrics rendering strips it for the metadata;
//! - histogram buckets are cumulative, sorted by bound, without the `+Inf`
//!   bucket (that one is `count`);
//! - a family with no series is left out, as BentoML's multiprocess collector does.
//!
//! The enums are externally tagged and maps are avoided (labels are a
//! `Vec<(String, String)>`) so that non-self-describing formats like bincode
//! round-trip them.
//!
//! [`GaugeMode`] lives here, not in the registry, because it is part of the
//! data: a gauge family carries its mode in every snapshot so that the
//! supervisor, which never sees the worker's registry, knows how to merge it.
//! Keeping it beside [`Kind`] also keeps this module a leaf that the registry,
//! merge and render all build on without importing each other.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::sketch::Sketch;

/// All metric families of one process (or of a merge of many).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The families, sorted by name.
    pub families: Vec<Family>,
}

/// One metric family: a name, its help text, its type and its labelled series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    /// Metric name as exposed in the text format (counters end in `_total`).
    pub name: String,
    /// The documentation string (unescaped).
    pub help: String,
    /// The metric type, and for gauges how processes are aggregated.
    pub kind: Kind,
    /// The series, sorted by labels.
    pub series: Vec<Series>,
}

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Monotonic counter, summed across processes.
    Counter,
    /// Gauge, aggregated across live processes by the given mode.
    Gauge(GaugeMode),
    /// Cumulative histogram, summed bucket by bucket.
    Histogram,
    /// Count, sum and quantile sketch, all summed/merged exactly.
    Summary,
}

impl Kind {
    /// The `# TYPE` word for this kind.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge(_) => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }

    /// Whether a series value has the shape this kind expects.
    pub fn accepts(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (Kind::Counter, Value::Counter(_))
                | (Kind::Gauge(_), Value::Gauge(_))
                | (Kind::Histogram, Value::Histogram(_))
                | (Kind::Summary, Value::Summary(_))
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Gauge(mode) => write!(f, "gauge ({mode})"),
            other => f.write_str(other.type_name()),
        }
    }
}

/// How a gauge is aggregated across processes (BentoML's `multiprocess_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GaugeMode {
    /// Sum over live processes (e.g. requests in progress).
    #[default]
    LiveSum,
    /// One series per live process, told apart by a `worker` label.
    All,
    /// Maximum over live processes.
    Max,
    /// Minimum over live processes.
    Min,
}

impl GaugeMode {
    /// The lowercase name used in configuration (`livesum`, `all`, `max`, `min`).
    pub fn as_str(self) -> &'static str {
        match self {
            GaugeMode::LiveSum => "livesum",
            GaugeMode::All => "all",
            GaugeMode::Max => "max",
            GaugeMode::Min => "min",
        }
    }
}

impl fmt::Display for GaugeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GaugeMode {
    type Err = String;

    /// Parses `livesum`, `all`, `max`, `min`; Python's `liveall`/`livemax`/`livemin` are aliases since only live processes count here.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "livesum" => Ok(GaugeMode::LiveSum),
            "all" | "liveall" => Ok(GaugeMode::All),
            "max" | "livemax" => Ok(GaugeMode::Max),
            "min" | "livemin" => Ok(GaugeMode::Min),
            other => Err(format!(
                "unknown gauge mode `{other}` (expected livesum, all, max or min)"
            )),
        }
    }
}

/// One labelled time series of a family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Label name/value pairs, sorted by name.
    pub labels: Vec<(String, String)>,
    /// The current value.
    pub value: Value,
}

impl Series {
    /// Returns the value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The value of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// A counter's total.
    Counter(f64),
    /// A gauge's current value.
    Gauge(f64),
    /// A histogram's cumulative buckets, count and sum.
    Histogram(HistogramValue),
    /// A summary's count, sum and quantile sketch.
    Summary(SummaryValue),
}

/// Histogram state: cumulative bucket counts plus count and sum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramValue {
    /// `(upper bound, cumulative count)` sorted by bound, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Total number of observations (the `+Inf` bucket).
    pub count: u64,
    /// Sum of all observations.
    pub sum: f64,
}

/// Summary state: count, sum and a mergeable sketch for quantiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryValue {
    /// Number of observations.
    pub count: u64,
    /// Sum of all observations.
    pub sum: f64,
    /// Quantile sketch of all observations.
    pub sketch: Sketch,
}

impl Snapshot {
    /// Returns the family called `name` (counters: with `_total`), if present.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }
}

impl Family {
    /// Returns the series whose labels equal `labels` (given in any order).
    pub fn series_with(&self, labels: &[(&str, &str)]) -> Option<&Series> {
        self.series.iter().find(|s| {
            s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(n, v)| s.label(n).is_some_and(|have| have == *v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauge_mode_parses() {
        for m in [
            GaugeMode::LiveSum,
            GaugeMode::All,
            GaugeMode::Max,
            GaugeMode::Min,
        ] {
            assert_eq!(m.as_str().parse::<GaugeMode>(), Ok(m));
        }
        assert_eq!("livemax".parse::<GaugeMode>(), Ok(GaugeMode::Max));
        assert!("mostrecent".parse::<GaugeMode>().is_err());
    }

    #[test]
    fn lookups() {
        let series = Series {
            labels: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            value: Value::Gauge(1.0),
        };
        assert_eq!(series.label("b"), Some("2"));
        assert_eq!(series.label("c"), None);
        let family = Family {
            name: "g".into(),
            help: String::new(),
            kind: Kind::Gauge(GaugeMode::LiveSum),
            series: vec![series],
        };
        assert!(family.series_with(&[("b", "2"), ("a", "1")]).is_some());
        assert!(family.series_with(&[("a", "1")]).is_none());
        assert!(Kind::Counter.accepts(&Value::Counter(1.0)));
        assert!(!Kind::Counter.accepts(&Value::Gauge(1.0)));
    }
}
