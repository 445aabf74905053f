use super::*;
use crate::testutil::value;

#[test]
fn every_kind_lands_in_the_snapshot() {
    let reg = Registry::new();
    let polarity = reg
        .counter("polarity_total", "Count by polarity", &["polarity"])
        .unwrap();
    for _ in 0..20 {
        polarity.labels(&["True"]).inc();
    }
    polarity.labels(&["False"]).inc_by(2.5);
    let requests = reg.counter("requests", "Requests", &[]).unwrap();
    requests.labels(&[]).inc();
    let g = reg.gauge("temp", "Temperature", &["room"]).unwrap();
    g.labels(&["a"]).set(3.0);
    g.labels(&["a"]).inc();
    g.labels(&["a"]).sub(0.5);
    g.labels(&["b"]).dec();
    let h = reg
        .histogram("lat", "Latency", &["ep"], &[0.1, 1.0, f64::INFINITY])
        .unwrap();
    for v in [0.05, 0.5, 0.5, 5.0] {
        h.labels(&["/x"]).observe(v);
    }
    let s = reg.summary("size", "Size", &["k"]).unwrap();
    for v in 1..=100 {
        s.labels(&["v"]).observe(f64::from(v));
    }

    let snap = reg.snapshot();
    let names: Vec<_> = snap.families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["lat", "polarity_total", "requests_total", "size", "temp"]
    );
    assert_eq!(
        value(&snap, "polarity_total", &[("polarity", "True")]),
        &Value::Counter(20.0)
    );
    assert_eq!(
        value(&snap, "polarity_total", &[("polarity", "False")]),
        &Value::Counter(2.5)
    );
    assert_eq!(value(&snap, "requests_total", &[]), &Value::Counter(1.0));
    assert_eq!(value(&snap, "temp", &[("room", "a")]), &Value::Gauge(3.5));
    assert_eq!(value(&snap, "temp", &[("room", "b")]), &Value::Gauge(-1.0));
    assert_eq!(
        value(&snap, "lat", &[("ep", "/x")]),
        &Value::Histogram(HistogramValue {
            buckets: vec![(0.1, 1), (1.0, 3)],
            count: 4,
            sum: 0.05 + 0.5 + 0.5 + 5.0,
        })
    );
    let Value::Summary(sv) = value(&snap, "size", &[("k", "v")]) else {
        panic!("not a summary")
    };
    assert_eq!((sv.count, sv.sum), (100, 5050.0));
    assert!((sv.sketch.quantile(0.5) - 50.0).abs() <= 0.5);
    assert_eq!(
        snap.family("temp").unwrap().kind,
        Kind::Gauge(GaugeMode::LiveSum)
    );
    assert_eq!(snap.family("lat").unwrap().help, "Latency");
}

#[test]
fn unlabelled_metrics_exist_at_zero_labelled_ones_do_not() {
    let reg = Registry::new();
    reg.counter("a", "A", &[]).unwrap();
    reg.histogram("b", "B", &[], &[]).unwrap();
    reg.summary("c", "C", &[]).unwrap();
    reg.gauge("d", "D", &["x"]).unwrap();
    let snap = reg.snapshot();
    let names: Vec<_> = snap.families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a_total", "b", "c"]);
    let Value::Histogram(h) = value(&snap, "b", &[]) else {
        panic!()
    };
    assert_eq!(h.buckets.len(), DEFAULT_DURATION_BUCKETS.len());
}

#[test]
fn redefinition_is_idempotent() {
    let reg = Registry::new();
    let a = reg.counter("hits", "Hits", &["k"]).unwrap();
    let b = reg.counter("hits_total", "Hits", &["k"]).unwrap();
    a.labels(&["x"]).inc();
    b.labels(&["x"]).inc();
    assert_eq!(a.labels(&["x"]).get(), 2.0);
    let h1 = reg.histogram("h", "H", &[], &[1.0, 2.0]).unwrap();
    let h2 = reg
        .histogram("h", "H", &[], &[1.0, 2.0, f64::INFINITY])
        .unwrap();
    h1.labels(&[]).observe(1.0);
    h2.labels(&[]).observe(1.0);
    let Value::Histogram(v) = value(&reg.snapshot(), "h", &[]).clone() else {
        panic!()
    };
    assert_eq!(v.count, 2);
    let g1 = reg.gauge_with_mode("g", "G", &[], GaugeMode::Max).unwrap();
    let g2 = reg.gauge_with_mode("g", "G", &[], GaugeMode::Max).unwrap();
    g1.labels(&[]).set(4.0);
    assert_eq!(g2.labels(&[]).get(), 4.0);
    let s1 = reg.summary("s", "S", &["a"]).unwrap();
    let s2 = reg.summary("s", "S", &["a"]).unwrap();
    s1.labels(&["1"]).observe(1.0);
    s2.labels(&["1"]).observe(2.0);
    let Value::Summary(v) = value(&reg.snapshot(), "s", &[("a", "1")]).clone() else {
        panic!()
    };
    assert_eq!(v.count, 2);
}

#[test]
fn conflicts_are_errors_naming_the_metric() {
    let reg = Registry::new();
    reg.counter("jobs", "Jobs", &["k"]).unwrap();
    reg.histogram("lat", "Lat", &[], &[1.0]).unwrap();
    reg.gauge_with_mode("g", "G", &[], GaugeMode::Max).unwrap();
    let cases = [
        reg.gauge("jobs_total", "x", &["k"]).map(drop),
        reg.counter("jobs", "x", &["other"]).map(drop),
        reg.counter("jobs", "x", &["k", "j"]).map(drop),
        reg.histogram("lat", "x", &[], &[2.0]).map(drop),
        reg.histogram("lat", "x", &[], &[]).map(drop),
        reg.summary("lat", "x", &[]).map(drop),
        reg.gauge("g", "x", &[]).map(drop),
        // Sample-name clashes between different families.
        reg.gauge("lat_count", "x", &[]).map(drop),
        reg.gauge("jobs", "x", &[]).map(drop),
        reg.histogram("g", "x", &[], &[]).map(drop),
    ];
    for (i, r) in cases.into_iter().enumerate() {
        match r {
            Err(MetricsError::Conflict { name, detail }) => {
                assert!(!name.is_empty() && !detail.is_empty(), "case {i}");
            }
            other => panic!("case {i}: expected conflict, got {other:?}"),
        }
    }
    let err = reg.gauge("jobs_total", "x", &[]).unwrap_err();
    assert!(err.to_string().contains("jobs_total"), "{err}");
}

#[test]
fn invalid_names_and_buckets_are_rejected() {
    let reg = Registry::new();
    for bad in ["", "1abc", "a-b", "a b", "é"] {
        assert!(
            matches!(
                reg.counter(bad, "x", &[]),
                Err(MetricsError::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    for labels in [&["a-b"][..], &["__x"], &["1a"], &["a", "a"], &[""]] {
        assert!(
            matches!(
                reg.gauge("ok", "x", labels),
                Err(MetricsError::InvalidName { .. })
            ),
            "{labels:?}"
        );
    }
    assert!(matches!(
        reg.histogram("h", "x", &["le"], &[]),
        Err(MetricsError::InvalidName { .. })
    ));
    assert!(matches!(
        reg.summary("s", "x", &["quantile"]),
        Err(MetricsError::InvalidName { .. })
    ));
    assert!(matches!(
        reg.gauge_with_mode("w", "x", &["worker"], GaugeMode::All),
        Err(MetricsError::InvalidName { .. })
    ));
    for buckets in [
        &[2.0, 1.0][..],
        &[1.0, 1.0],
        &[f64::NAN],
        &[f64::INFINITY, 1.0],
    ] {
        assert!(
            matches!(
                reg.histogram("h", "x", &[], buckets),
                Err(MetricsError::InvalidBuckets { .. })
            ),
            "{buckets:?}"
        );
    }
    // Only +Inf: a histogram with just the implicit bucket.
    reg.histogram("only_inf", "x", &[], &[f64::INFINITY])
        .unwrap()
        .labels(&[])
        .observe(3.0);
    let Value::Histogram(h) = value(&reg.snapshot(), "only_inf", &[]).clone() else {
        panic!()
    };
    assert_eq!((h.buckets.len(), h.count), (0, 1));
    // Nothing half-registered after failures.
    assert_eq!(reg.snapshot().families.len(), 1);
}

#[test]
fn wrong_label_arity_records_nothing_and_does_not_panic() {
    let reg = Registry::new();
    let c = reg.counter("c", "C", &["a", "b"]).unwrap();
    c.labels(&["x"]).inc();
    c.labels(&["x", "y", "z"]).inc_by(2.0);
    assert!(matches!(
        c.try_labels(&[]),
        Err(MetricsError::LabelCount {
            expected: 2,
            got: 0,
            ..
        })
    ));
    let g = reg.gauge("g", "G", &["a"]).unwrap();
    g.labels(&[]).set(1.0);
    let h = reg.histogram("h", "H", &["a"], &[]).unwrap();
    h.labels(&["1", "2"]).observe(1.0);
    let s = reg.summary("s", "S", &["a"]).unwrap();
    s.labels(&[]).observe(1.0);
    assert!(reg.snapshot().families.is_empty());
    // Negative and NaN increments are ignored.
    let ok = reg.counter("ok", "Ok", &[]).unwrap();
    ok.labels(&[]).inc_by(-1.0);
    ok.labels(&[]).inc_by(f64::NAN);
    assert_eq!(ok.labels(&[]).get(), 0.0);
}

#[test]
fn handles_are_send_sync_and_work_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Counter>();
    assert_send_sync::<Gauge>();
    assert_send_sync::<Histogram>();
    assert_send_sync::<Summary>();
    assert_send_sync::<CounterChild>();
    assert_send_sync::<SummaryChild>();
    let reg = Registry::new();
    let c = reg.counter("c", "C", &["t"]).unwrap();
    let s = reg.summary("s", "S", &[]).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for i in 0..1000 {
                    c.labels(&["x"]).inc();
                    s.labels(&[]).observe(f64::from(i));
                }
            });
        }
    });
    assert_eq!(c.labels(&["x"]).get(), 4000.0);
    let Value::Summary(v) = value(&reg.snapshot(), "s", &[]).clone() else {
        panic!()
    };
    assert_eq!(v.count, 4000);
    assert_eq!(v.sketch.count(), 4000);
}

#[test]
fn global_constructors_use_the_global_registry() {
    let c = Counter::new("tiffin_test_global_counter", "Test", &[]).unwrap();
    c.labels(&[]).inc();
    let again = Counter::new("tiffin_test_global_counter_total", "Test", &[]).unwrap();
    assert_eq!(again.labels(&[]).get(), 1.0);
    assert!(
        global()
            .snapshot()
            .family("tiffin_test_global_counter_total")
            .is_some()
    );
    assert!(Gauge::with_mode("tiffin_test_global_gauge", "T", &[], GaugeMode::Min).is_ok());
    assert!(Histogram::new("tiffin_test_global_hist", "T", &[], &[]).is_ok());
    assert!(Summary::new("tiffin_test_global_summary", "T", &[]).is_ok());
    assert!(Gauge::new("tiffin_test_global_gauge", "T", &[]).is_err());
}

#[test]
fn bincode_round_trip_with_every_kind() {
    let reg = Registry::new();
    reg.counter("requests", "Requests.", &["code"])
        .unwrap()
        .labels(&["200"])
        .inc_by(3.0);
    for mode in [
        GaugeMode::LiveSum,
        GaugeMode::All,
        GaugeMode::Max,
        GaugeMode::Min,
    ] {
        let name = format!("g_{mode}");
        reg.gauge_with_mode(&name, "A gauge.", &[], mode)
            .unwrap()
            .labels(&[])
            .set(-1.5);
    }
    reg.histogram("latency", "Latency.", &["ep"], &[0.1, 1.0])
        .unwrap()
        .labels(&["/a"])
        .observe(0.5);
    let s = reg.summary("size", "Size.", &[]).unwrap();
    for v in [0.0, -2.0, 3.0, 1e9] {
        s.labels(&[]).observe(v);
    }
    let snap = reg.snapshot();
    assert_eq!(snap.families.len(), 7);

    let config = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&snap, config).unwrap();
    let (back, used): (Snapshot, usize) =
        bincode::serde::decode_from_slice(&bytes, config).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(back, snap);

    // JSON too, for debugging endpoints.
    let json = serde_json::to_string(&snap).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);
}
