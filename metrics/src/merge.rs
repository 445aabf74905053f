//! The supervisor's aggregation: many process snapshots in, one snapshot out.
//!
//! Rules (the design is described in `docs/architecture.md`):
//! - **Counters, histograms, summaries** are summed over the *retired*
//!   snapshot (the folded last snapshots of processes that died or were scaled
//!   away, see [`retire`]) plus every live process. Keeping the dead processes'
//!   last values is what makes every counter monotonic across restarts and
//!   scale-downs, so `rate()` never sees a reset.
//! - **Histograms** add cumulative counts bound by bound. If two processes have
//!   different bucket layouts for one series (a config change between
//!   restarts), the result uses the union of the bounds; a process that lacks
//!   a bound contributes its cumulative count at its next *lower* bound (0 below
//!   its first). That never over-counts, keeps the buckets cumulative and
//!   monotone, and is exact wherever the layouts agree.
//! - **Summaries** add count and sum and merge their sketches exactly, so the
//!   merged quantiles are as accurate (1%) as a single process's.
//! - **Gauges** describe the present, so only live processes count, by the
//!   family's [`GaugeMode`]: `LiveSum` sums, `Max`/`Min` pick the extreme, `All`
//!   keeps one series per process with an extra `worker` label
//!   ([`WorkerId`]'s `Display`, e.g. `runner:nltk_sentiment:1`).
//! - A family whose kind differs between processes (e.g. a version skew during
//!   a rolling restart) keeps the first kind seen (retired first, then live in
//!   order); the others are skipped and reported as [`MergeConflict`]s instead
//!   of failing the scrape.
//! - The output is sorted (families by name, series by labels), so the same
//!   inputs always render the same bytes, whatever order processes answered in.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::snapshot::{Family, GaugeMode, HistogramValue, Kind, Series, Snapshot, Value};

/// Identifies a live process; its `Display` is the `worker` label value of `All` gauges.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkerId {
    /// The process role, e.g. `api_server` or `runner`.
    pub role: String,
    /// The runner name, for runner workers.
    pub runner: Option<String>,
    /// The index of the process within its role (and runner).
    pub index: usize,
}

impl WorkerId {
    /// Identifies API server number `index`.
    pub fn api_server(index: usize) -> Self {
        WorkerId {
            role: "api_server".to_owned(),
            runner: None,
            index,
        }
    }

    /// Identifies worker number `index` of runner `runner`.
    pub fn runner(runner: &str, index: usize) -> Self {
        WorkerId {
            role: "runner".to_owned(),
            runner: Some(runner.to_owned()),
            index,
        }
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.runner {
            Some(runner) => write!(f, "{}:{}:{}", self.role, runner, self.index),
            None => write!(f, "{}:{}", self.role, self.index),
        }
    }
}

/// A family (or series) skipped because it disagrees with what was merged before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeConflict {
    /// The family name.
    pub family: String,
    /// `retired` or the worker id of the snapshot that was skipped.
    pub source: String,
    /// What disagreed.
    pub detail: String,
}

impl fmt::Display for MergeConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "metric `{}` from {} skipped: {}",
            self.family, self.source, self.detail
        )
    }
}

/// A merged snapshot plus what had to be skipped to build it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    /// The aggregate, sorted.
    pub snapshot: Snapshot,
    /// Families or series left out because their kind disagreed.
    pub conflicts: Vec<MergeConflict>,
}

/// Merges the retired accumulator with the live processes' snapshots; conflicts are logged and skipped.
pub fn merge(retired: &Snapshot, live: &[(WorkerId, &Snapshot)]) -> Snapshot {
    let merged = merge_report(retired, live);
    log_conflicts(&merged.conflicts);
    merged.snapshot
}

/// Like [`merge`], but returns the conflicts instead of logging them (e.g. to count them).
pub fn merge_report(retired: &Snapshot, live: &[(WorkerId, &Snapshot)]) -> Merged {
    let mut acc = Accumulator::default();
    acc.add(retired, None);
    for (id, snapshot) in live {
        acc.add(snapshot, Some(id));
    }
    acc.finish()
}

/// Folds the last snapshot of a process that is gone into `retired`, dropping its gauges; returns (and logs) conflicts.
pub fn retire(retired: &mut Snapshot, last: &Snapshot) -> Vec<MergeConflict> {
    let mut acc = Accumulator::default();
    acc.add(retired, None);
    acc.add(last, None);
    let merged = acc.finish();
    log_conflicts(&merged.conflicts);
    *retired = merged.snapshot;
    merged.conflicts
}

fn log_conflicts(conflicts: &[MergeConflict]) {
    for c in conflicts {
        tracing::warn!(family = %c.family, source = %c.source, "{c}");
    }
}

type Labels = [(String, String)];

#[derive(Default)]
struct Accumulator<'a> {
    families: BTreeMap<&'a str, FamilyAcc<'a>>,
    conflicts: Vec<MergeConflict>,
}

struct FamilyAcc<'a> {
    help: &'a str,
    kind: Kind,
    /// Borrowed labels where possible, so merging does not clone every label set.
    series: BTreeMap<Cow<'a, Labels>, Value>,
}

impl<'a> Accumulator<'a> {
    /// Adds one snapshot; `worker` is `None` for retired data (whose gauges are ignored).
    fn add(&mut self, snapshot: &'a Snapshot, worker: Option<&WorkerId>) {
        let source = || worker.map_or_else(|| "retired".to_owned(), ToString::to_string);
        for family in &snapshot.families {
            if worker.is_none() && matches!(family.kind, Kind::Gauge(_)) {
                // A dead process's gauge says nothing about the present.
                continue;
            }
            let acc = self
                .families
                .entry(family.name.as_str())
                .or_insert_with(|| FamilyAcc {
                    help: &family.help,
                    kind: family.kind,
                    series: BTreeMap::new(),
                });
            if acc.kind != family.kind {
                self.conflicts.push(MergeConflict {
                    family: family.name.clone(),
                    source: source(),
                    detail: format!("it is a {} here but a {} elsewhere", family.kind, acc.kind),
                });
                continue;
            }
            let worker_label = match (family.kind, worker) {
                (Kind::Gauge(GaugeMode::All), Some(id)) => Some(id.to_string()),
                _ => None,
            };
            for series in &family.series {
                if !family.kind.accepts(&series.value) {
                    self.conflicts.push(MergeConflict {
                        family: family.name.clone(),
                        source: source(),
                        detail: format!("a series value does not fit a {}", family.kind),
                    });
                    continue;
                }
                match acc
                    .series
                    .entry(series_key(&series.labels, worker_label.as_deref()))
                {
                    Entry::Vacant(slot) => {
                        slot.insert(series.value.clone());
                    }
                    Entry::Occupied(slot) => combine(slot.into_mut(), &series.value, family.kind),
                }
            }
        }
    }

    fn finish(self) -> Merged {
        let families = self
            .families
            .into_iter()
            .filter(|(_, f)| !f.series.is_empty())
            .map(|(name, f)| Family {
                name: name.to_owned(),
                help: f.help.to_owned(),
                kind: f.kind,
                series: f
                    .series
                    .into_iter()
                    .map(|(labels, value)| Series {
                        labels: labels.into_owned(),
                        value,
                    })
                    .collect(),
            })
            .collect();
        Merged {
            snapshot: Snapshot { families },
            conflicts: self.conflicts,
        }
    }
}

/// The series' identity: its labels sorted by name, plus `worker` for `All` gauges.
fn series_key<'a>(labels: &'a Labels, worker: Option<&str>) -> Cow<'a, Labels> {
    match worker {
        None if labels.is_sorted() => Cow::Borrowed(labels),
        None => {
            let mut owned = labels.to_vec();
            owned.sort();
            Cow::Owned(owned)
        }
        Some(worker) => {
            // The registry forbids a user `worker` label on `All` gauges; replace one from elsewhere.
            let mut owned: Vec<_> = labels
                .iter()
                .filter(|(n, _)| n != "worker")
                .cloned()
                .collect();
            owned.push(("worker".to_owned(), worker.to_owned()));
            owned.sort();
            Cow::Owned(owned)
        }
    }
}

/// Adds `more` into `acc` according to the family's kind (shapes already checked).
fn combine(acc: &mut Value, more: &Value, kind: Kind) {
    match (acc, more) {
        (Value::Counter(a), Value::Counter(b)) => *a += b,
        (Value::Gauge(a), Value::Gauge(b)) => match kind {
            Kind::Gauge(GaugeMode::Max) => *a = a.max(*b),
            Kind::Gauge(GaugeMode::Min) => *a = a.min(*b),
            // LiveSum, and All where one worker somehow reported a series twice.
            _ => *a += b,
        },
        (Value::Histogram(a), Value::Histogram(b)) => merge_histogram(a, b),
        (Value::Summary(a), Value::Summary(b)) => {
            a.count = a.count.saturating_add(b.count);
            a.sum += b.sum;
            a.sketch.merge(&b.sketch);
        }
        _ => {}
    }
}

fn merge_histogram(acc: &mut HistogramValue, more: &HistogramValue) {
    acc.count = acc.count.saturating_add(more.count);
    acc.sum += more.sum;
    let same_layout = acc.buckets.len() == more.buckets.len()
        && acc
            .buckets
            .iter()
            .zip(&more.buckets)
            .all(|(a, b)| a.0 == b.0);
    if same_layout {
        for (a, b) in acc.buckets.iter_mut().zip(&more.buckets) {
            a.1 = a.1.saturating_add(b.1);
        }
        return;
    }
    let mut mine = std::mem::take(&mut acc.buckets);
    let mut theirs = more.buckets.clone();
    mine.sort_by(|a, b| a.0.total_cmp(&b.0));
    theirs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut bounds: Vec<f64> = mine.iter().chain(&theirs).map(|b| b.0).collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup_by(|a, b| a.total_cmp(b).is_eq());
    acc.buckets = bounds
        .into_iter()
        .map(|bound| {
            let count = count_at(&mine, bound).saturating_add(count_at(&theirs, bound));
            (bound, count)
        })
        .collect();
}

/// Cumulative count of a sorted histogram at `bound`: the count at its greatest bound ≤ `bound`, 0 below its first.
fn count_at(buckets: &[(f64, u64)], bound: f64) -> u64 {
    let i = buckets.partition_point(|(b, _)| b.total_cmp(&bound).is_le());
    i.checked_sub(1).map_or(0, |i| buckets[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use crate::sketch::{RELATIVE_ACCURACY, lcg};
    use crate::testutil::value as get;

    /// One process's registry with the same definitions as the others.
    fn process(i: u64, data: &mut Vec<f64>) -> Snapshot {
        let reg = Registry::new();
        let c = reg.counter("polarity_total", "P", &["polarity"]).unwrap();
        c.labels(&["True"]).inc_by(10.0 * (i + 1) as f64);
        c.labels(&[if i == 2 { "False" } else { "True" }]).inc();
        let h = reg
            .histogram("lat", "L", &[], &[0.01, 0.1, 1.0])
            .unwrap()
            .labels(&[]);
        let s = reg.summary("sz", "S", &[]).unwrap().labels(&[]);
        let mut seed = 17 + i * 1000;
        for _ in 0..(2000 + 500 * i) {
            // Different shapes per process: the union is not like any one of them.
            let v = (lcg(&mut seed) * (4.0 + i as f64) - 6.0).exp();
            h.observe(v);
            s.observe(v);
            data.push(v);
        }
        reg.snapshot()
    }

    #[test]
    fn three_processes_sum_counters_histograms_and_summaries() {
        let mut data = Vec::new();
        let snaps: Vec<Snapshot> = (0..3).map(|i| process(i, &mut data)).collect();
        let live: Vec<(WorkerId, &Snapshot)> = snaps
            .iter()
            .enumerate()
            .map(|(i, s)| (WorkerId::runner("r", i + 1), s))
            .collect();
        let merged = merge_report(&Snapshot::default(), &live);
        assert!(merged.conflicts.is_empty());
        let m = merged.snapshot;

        assert_eq!(
            get(&m, "polarity_total", &[("polarity", "True")]),
            &Value::Counter(10.0 + 20.0 + 30.0 + 2.0)
        );
        assert_eq!(
            get(&m, "polarity_total", &[("polarity", "False")]),
            &Value::Counter(1.0)
        );

        let Value::Histogram(h) = get(&m, "lat", &[]) else {
            panic!()
        };
        assert_eq!(h.count, data.len() as u64);
        for (i, &(bound, count)) in h.buckets.iter().enumerate() {
            let want = data.iter().filter(|&&v| v <= bound).count() as u64;
            assert_eq!(count, want, "bucket {bound}");
            if i > 0 {
                assert!(count >= h.buckets[i - 1].1);
            }
        }
        assert!(h.buckets.last().unwrap().1 <= h.count);

        let Value::Summary(s) = get(&m, "sz", &[]) else {
            panic!()
        };
        assert_eq!(s.count, data.len() as u64);
        // Sums of per-process partial sums: equal up to float reassociation.
        let want_sum: f64 = data.iter().sum();
        assert!(((s.sum - want_sum) / want_sum).abs() < 1e-12);
        data.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.99] {
            let want = data[(q * (data.len() - 1) as f64).floor() as usize];
            let got = s.sketch.quantile(q);
            assert!(
                ((got - want) / want).abs() <= RELATIVE_ACCURACY + 1e-12,
                "q={q}: got {got}, want {want}"
            );
        }

        // Order of answers does not matter.
        let reversed: Vec<_> = live.iter().rev().cloned().collect();
        assert_eq!(merge(&Snapshot::default(), &reversed), m);
    }

    fn gauge_process(mode: GaugeMode, v: f64) -> Snapshot {
        let reg = Registry::new();
        reg.gauge_with_mode("g", "G", &["k"], mode)
            .unwrap()
            .labels(&["a"])
            .set(v);
        reg.snapshot()
    }

    #[test]
    fn gauge_modes() {
        let values = [3.0, -1.0, 7.0];
        let ids = [
            WorkerId::api_server(0),
            WorkerId::runner("nltk_sentiment", 1),
            WorkerId::runner("nltk_sentiment", 2),
        ];
        let run = |mode| {
            let snaps: Vec<_> = values.iter().map(|&v| gauge_process(mode, v)).collect();
            let live: Vec<_> = ids.iter().cloned().zip(snaps.iter()).collect();
            merge(&Snapshot::default(), &live)
        };
        assert_eq!(
            get(&run(GaugeMode::LiveSum), "g", &[("k", "a")]),
            &Value::Gauge(9.0)
        );
        assert_eq!(
            get(&run(GaugeMode::Max), "g", &[("k", "a")]),
            &Value::Gauge(7.0)
        );
        assert_eq!(
            get(&run(GaugeMode::Min), "g", &[("k", "a")]),
            &Value::Gauge(-1.0)
        );
        let all = run(GaugeMode::All);
        let family = all.family("g").unwrap();
        assert_eq!(family.series.len(), 3);
        assert_eq!(
            get(
                &all,
                "g",
                &[("k", "a"), ("worker", "runner:nltk_sentiment:1")]
            ),
            &Value::Gauge(-1.0)
        );
        assert_eq!(
            get(&all, "g", &[("k", "a"), ("worker", "api_server:0")]),
            &Value::Gauge(3.0)
        );
        // Labels stay sorted by name with the added `worker` label.
        assert!(family.series.iter().all(|s| s.labels.is_sorted()));
        assert_eq!(ids[1].to_string(), "runner:nltk_sentiment:1");
    }

    #[test]
    fn retire_keeps_counters_and_drops_gauges() {
        let mk = |n: f64| {
            let reg = Registry::new();
            reg.counter("req", "R", &[]).unwrap().labels(&[]).inc_by(n);
            reg.gauge("busy", "B", &[]).unwrap().labels(&[]).set(n);
            reg.histogram("h", "H", &[], &[1.0])
                .unwrap()
                .labels(&[])
                .observe(n);
            reg.snapshot()
        };
        let (a, b) = (mk(5.0), mk(2.0));
        let before = merge(
            &Snapshot::default(),
            &[(WorkerId::api_server(0), &a), (WorkerId::api_server(1), &b)],
        );
        assert_eq!(get(&before, "req_total", &[]), &Value::Counter(7.0));
        assert_eq!(get(&before, "busy", &[]), &Value::Gauge(7.0));

        // Worker 0 dies and is replaced by a fresh process.
        let mut retired = Snapshot::default();
        assert!(retire(&mut retired, &a).is_empty());
        assert!(retired.family("busy").is_none());
        let fresh = mk(1.0);
        let after = merge(
            &retired,
            &[
                (WorkerId::api_server(0), &fresh),
                (WorkerId::api_server(1), &b),
            ],
        );
        assert_eq!(get(&after, "req_total", &[]), &Value::Counter(8.0));
        assert_eq!(get(&after, "busy", &[]), &Value::Gauge(3.0));
        let Value::Histogram(h) = get(&after, "h", &[]) else {
            panic!()
        };
        assert_eq!(
            (h.count, h.sum, h.buckets.clone()),
            (3, 8.0, vec![(1.0, 1)])
        );

        // Scale to zero: everything retired, counters still there, gauges gone.
        retire(&mut retired, &fresh);
        retire(&mut retired, &b);
        let gone = merge(&retired, &[]);
        assert_eq!(get(&gone, "req_total", &[]), &Value::Counter(8.0));
        assert!(gone.family("busy").is_none());
    }

    #[test]
    fn different_bucket_layouts_are_unioned() {
        let hist = |buckets: Vec<(f64, u64)>, count| {
            let series = Series {
                labels: vec![],
                value: Value::Histogram(HistogramValue {
                    buckets,
                    count,
                    sum: 1.0,
                }),
            };
            Snapshot {
                families: vec![Family {
                    name: "h".into(),
                    help: "H".into(),
                    kind: Kind::Histogram,
                    series: vec![series],
                }],
            }
        };
        let a = hist(vec![(0.1, 1), (1.0, 4)], 5);
        let b = hist(vec![(0.5, 2), (1.0, 3), (2.0, 6)], 7);
        let m = merge(
            &Snapshot::default(),
            &[(WorkerId::api_server(0), &a), (WorkerId::api_server(1), &b)],
        );
        let Value::Histogram(h) = get(&m, "h", &[]) else {
            panic!()
        };
        // 0.1: 1 + 0 | 0.5: 1 (a at 0.1) + 2 | 1.0: 4 + 3 | 2.0: 4 (a at 1.0) + 6
        assert_eq!(h.buckets, vec![(0.1, 1), (0.5, 3), (1.0, 7), (2.0, 10)]);
        assert_eq!((h.count, h.sum), (12, 2.0));
    }

    #[test]
    fn kind_conflicts_are_skipped_and_reported() {
        let r1 = Registry::new();
        r1.counter("x", "X", &[]).unwrap().labels(&[]).inc();
        let r2 = Registry::new();
        r2.gauge("x_total", "X", &[]).unwrap().labels(&[]).set(5.0);
        r2.counter("y", "Y", &[]).unwrap().labels(&[]).inc();
        let (s1, s2) = (r1.snapshot(), r2.snapshot());
        let merged = merge_report(
            &Snapshot::default(),
            &[
                (WorkerId::api_server(0), &s1),
                (WorkerId::api_server(1), &s2),
            ],
        );
        assert_eq!(merged.conflicts.len(), 1);
        assert_eq!(merged.conflicts[0].family, "x_total");
        assert_eq!(merged.conflicts[0].source, "api_server:1");
        let m = merged.snapshot;
        assert_eq!(get(&m, "x_total", &[]), &Value::Counter(1.0));
        assert_eq!(get(&m, "y_total", &[]), &Value::Counter(1.0));

        // A value of the wrong shape inside a family is skipped too.
        let mut bad = s1.clone();
        bad.families[0].series[0].value = Value::Gauge(1.0);
        let merged = merge_report(&s1, &[(WorkerId::api_server(2), &bad)]);
        assert_eq!(merged.conflicts.len(), 1);
        assert_eq!(get(&merged.snapshot, "x_total", &[]), &Value::Counter(1.0));
    }
}
