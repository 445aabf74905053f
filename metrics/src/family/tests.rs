use crate::buckets::DEFAULT_DURATION_BUCKETS;
use crate::error::{LabelProblem, MetricsError};
use crate::registry::{Counter, Gauge, Histogram, Registry, Summary, global};
use crate::snapshot::{GaugeMode, Kind, Value};
use crate::testutil::value;

// Every static here uses its own `tiffin_test_family_*` name: the global
// registry is shared by every test of the binary.

#[test]
fn two_lazy_statics_of_one_definition_share_one_family() {
    static FIRST: Counter = Counter::lazy("tiffin_test_family_shared", "Shared", &["k"]);
    static SECOND: Counter = Counter::lazy("tiffin_test_family_shared_total", "Shared", &["k"]);
    FIRST.labels(&["x"]).inc();
    SECOND.with(&[("k", "x")]).inc_by(2.0);
    assert_eq!(FIRST.labels(&["x"]).get(), 3.0);
    assert_eq!(
        value(
            &global().snapshot(),
            "tiffin_test_family_shared_total",
            &[("k", "x")]
        ),
        &Value::Counter(3.0)
    );
    // An eager definition of the same metric joins it too.
    let eager = Counter::new("tiffin_test_family_shared", "Shared", &["k"]).unwrap();
    assert_eq!(eager.with(&[("k", "x")]).get(), 3.0);
}

#[test]
fn a_conflicting_lazy_static_records_nothing_and_try_with_returns_the_conflict() {
    static COUNTER: Counter = Counter::lazy("tiffin_test_family_clash", "Counter", &["k"]);
    static GAUGE: Gauge = Gauge::lazy("tiffin_test_family_clash_total", "Gauge", &["k"]);
    COUNTER.labels(&["x"]).inc();

    // Recording into the misdefined static neither panics nor records.
    GAUGE.with(&[("k", "x")]).set(5.0);
    GAUGE.labels(&["x"]).inc();
    assert_eq!(GAUGE.labels(&["x"]).get(), 0.0);
    let conflict = GAUGE.try_with(&[("k", "x")]).unwrap_err();
    assert!(
        matches!(&conflict, MetricsError::Conflict { name, .. } if name == "tiffin_test_family_clash_total"),
        "{conflict:?}"
    );
    // The same error every time, from every `try_` method.
    assert_eq!(GAUGE.try_labels(&["x"]).unwrap_err(), conflict);
    assert_eq!(GAUGE.try_with(&[("k", "y")]).unwrap_err(), conflict);

    let snap = global().snapshot();
    let family = snap.family("tiffin_test_family_clash_total").unwrap();
    assert_eq!(family.kind, Kind::Counter);
    assert_eq!(family.series.len(), 1);
    assert_eq!(family.series[0].value, Value::Counter(1.0));
}

#[test]
fn a_lazy_static_with_a_bad_definition_fails_at_first_use_without_panicking() {
    static BAD_NAME: Summary = Summary::lazy("tiffin-test-bad", "Bad", &[]);
    static BAD_BUCKETS: Histogram =
        Histogram::lazy("tiffin_test_family_bad_buckets", "Bad", &[], &[2.0, 1.0]);
    BAD_NAME.labels(&[]).observe(1.0);
    BAD_BUCKETS.with(&[]).observe(1.0);
    assert!(matches!(
        BAD_NAME.try_labels(&[]),
        Err(MetricsError::InvalidName { .. })
    ));
    assert!(matches!(
        BAD_BUCKETS.try_with(&[]),
        Err(MetricsError::InvalidBuckets { .. })
    ));
    let snap = global().snapshot();
    assert!(snap.family("tiffin-test-bad").is_none());
    assert!(snap.family("tiffin_test_family_bad_buckets").is_none());
}

#[test]
fn every_kind_has_a_lazy_constructor_with_the_eager_ones_meaning() {
    static BY_DEFAULT: Histogram = Histogram::lazy("tiffin_test_family_hist", "H", &[], &[]);
    static EXPLICIT: Histogram = Histogram::lazy(
        "tiffin_test_family_hist",
        "H",
        &[],
        &DEFAULT_DURATION_BUCKETS,
    );
    static PEAK: Gauge =
        Gauge::lazy_with_mode("tiffin_test_family_peak", "P", &["w"], GaugeMode::Max);
    static SIZES: Summary = Summary::lazy("tiffin_test_family_sizes", "S", &["k"]);

    // Empty buckets mean the default ones, as for `Histogram::new`: one family.
    BY_DEFAULT.labels(&[]).observe(0.2);
    EXPLICIT.labels(&[]).observe(0.2);
    PEAK.with(&[("w", "1")]).set(7.0);
    SIZES.with(&[("k", "a")]).observe(3.0);

    let snap = global().snapshot();
    let Value::Histogram(h) = value(&snap, "tiffin_test_family_hist", &[]) else {
        panic!("not a histogram")
    };
    assert_eq!(h.count, 2);
    assert_eq!(h.buckets.len(), DEFAULT_DURATION_BUCKETS.len());
    assert_eq!(
        snap.family("tiffin_test_family_peak").unwrap().kind,
        Kind::Gauge(GaugeMode::Max)
    );
    assert_eq!(
        value(&snap, "tiffin_test_family_peak", &[("w", "1")]),
        &Value::Gauge(7.0)
    );
    let Value::Summary(s) = value(&snap, "tiffin_test_family_sizes", &[("k", "a")]) else {
        panic!("not a summary")
    };
    assert_eq!((s.count, s.sum), (1, 3.0));
    // A mode that differs from the static's is a conflict, as for eager gauges.
    assert!(Gauge::new("tiffin_test_family_peak", "P", &["w"]).is_err());
}

#[test]
fn a_lazy_static_is_defined_once_when_threads_race_to_first_use() {
    static RACED: Counter = Counter::lazy("tiffin_test_family_raced", "Raced", &["t"]);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..1000 {
                    RACED.with(&[("t", "x")]).inc();
                }
            });
        }
    });
    assert_eq!(RACED.labels(&["x"]).get(), 4000.0);
}

#[test]
fn named_labels_pick_the_same_series_in_any_order() {
    let reg = Registry::new();
    let c = reg.counter("c", "C", &["a", "b", "c"]).unwrap();
    c.labels(&["1", "2", "3"]).inc();
    c.with(&[("a", "1"), ("b", "2"), ("c", "3")]).inc();
    c.with(&[("c", "3"), ("a", "1"), ("b", "2")]).inc();
    c.try_with(&[("b", "2"), ("c", "3"), ("a", "1")])
        .unwrap()
        .inc();
    assert_eq!(c.labels(&["1", "2", "3"]).get(), 4.0);

    let g = reg.gauge("g", "G", &["x", "y"]).unwrap();
    g.with(&[("y", "b"), ("x", "a")]).set(2.0);
    assert_eq!(g.labels(&["a", "b"]).get(), 2.0);
    let h = reg.histogram("h", "H", &["x", "y"], &[1.0]).unwrap();
    h.with(&[("y", "b"), ("x", "a")]).observe(0.5);
    h.labels(&["a", "b"]).observe(0.5);
    let s = reg.summary("s", "S", &["x", "y"]).unwrap();
    s.with(&[("y", "b"), ("x", "a")]).observe(1.0);
    s.labels(&["a", "b"]).observe(2.0);

    let snap = reg.snapshot();
    let both = [("x", "a"), ("y", "b")];
    let Value::Histogram(hv) = value(&snap, "h", &both) else {
        panic!("not a histogram")
    };
    assert_eq!(hv.count, 2);
    let Value::Summary(sv) = value(&snap, "s", &both) else {
        panic!("not a summary")
    };
    assert_eq!((sv.count, sv.sum), (2, 3.0));
    for name in ["c_total", "g", "h", "s"] {
        assert_eq!(snap.family(name).unwrap().series.len(), 1, "{name}");
    }
    // No labels at all is a valid name list for an unlabelled metric.
    let plain = reg.counter("plain", "P", &[]).unwrap();
    plain.with(&[]).inc();
    assert_eq!(plain.labels(&[]).get(), 1.0);
}

/// One `(label name, value)` argument of `with`.
type Pair<'a> = (&'a str, &'a str);

#[test]
fn bad_label_names_are_errors_naming_the_label_and_record_nothing() {
    let reg = Registry::new();
    let c = reg.counter("polarity", "P", &["polarity", "cls"]).unwrap();
    let cases: [(&[Pair], &str, LabelProblem); 4] = [
        (
            &[("polarity", "True"), ("colour", "red")],
            "colour",
            LabelProblem::Unknown,
        ),
        (&[("polarity", "True")], "cls", LabelProblem::Missing),
        (
            &[("cls", "a"), ("cls", "b")],
            "cls",
            LabelProblem::Duplicate,
        ),
        (
            &[("polarity", "True"), ("cls", "a"), ("polarity", "False")],
            "polarity",
            LabelProblem::Duplicate,
        ),
    ];
    for (labels, label, problem) in cases {
        let err = c.try_with(labels).unwrap_err();
        assert_eq!(
            err,
            MetricsError::LabelName {
                name: "polarity_total".to_owned(),
                label: label.to_owned(),
                problem,
            },
            "{labels:?}"
        );
        assert!(err.to_string().contains(&format!("`{label}`")), "{err}");
        // The infallible twin warns and hands out a detached child.
        let detached = c.with(labels);
        detached.inc();
        assert_eq!(detached.get(), 0.0);
    }
    let g = reg.gauge("g", "G", &["a"]).unwrap();
    g.with(&[("b", "1")]).set(1.0);
    let h = reg.histogram("h", "H", &["a"], &[]).unwrap();
    h.with(&[]).observe(1.0);
    let s = reg.summary("s", "S", &["a"]).unwrap();
    s.with(&[("a", "1"), ("a", "1")]).observe(1.0);
    assert!(reg.snapshot().families.is_empty());
}

#[test]
fn many_labels_are_ordered_beyond_the_inline_buffer() {
    let names = ["l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9"];
    let reg = Registry::new();
    let c = reg.counter("wide", "W", &names).unwrap();
    let values = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    let mut pairs: Vec<(&str, &str)> = names.into_iter().zip(values).collect();
    pairs.reverse();
    c.with(&pairs).inc();
    assert_eq!(c.labels(&values).get(), 1.0);
    pairs.pop();
    assert!(matches!(
        c.try_with(&pairs),
        Err(MetricsError::LabelName { label, problem: LabelProblem::Missing, .. }) if label == "l0"
    ));
}

#[test]
fn debug_names_the_kind_and_the_metric() {
    static LAZY: Summary = Summary::lazy("tiffin_test_family_debug", "D", &[]);
    assert_eq!(
        format!("{LAZY:?}"),
        "Summary { name: \"tiffin_test_family_debug\" }"
    );
    let reg = Registry::new();
    let c = reg.counter("hits", "H", &[]).unwrap();
    assert_eq!(format!("{c:?}"), "Counter { name: \"hits_total\" }");
}
