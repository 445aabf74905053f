use super::*;
use crate::registry::Registry;
use crate::sketch::Sketch;
use crate::snapshot::{GaugeMode, HistogramValue, Series, SummaryValue};

fn f(v: f64) -> String {
    let mut s = String::new();
    fmt_f64(&mut s, v);
    s
}

#[test]
fn numbers_match_python_float_to_go_string() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1.0, "1.0"),
        (20.0, "20.0"),
        (-3.0, "-3.0"),
        (0.005, "0.005"),
        (0.075, "0.075"),
        (10.0, "10.0"),
        (0.2860105020008632, "0.2860105020008632"),
        (0.0029943749996164115, "0.0029943749996164115"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (1e-300, "1e-300"),
        (1234.5, "1234.5"),
        (100.25, "100.25"),
        (999999.0, "999999.0"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (1234567.5, "1.2345675e+06"),
        (-1234567.0, "-1234567.0"),
        (1e10, "1e+010"),
        (123456789012.0, "1.23456789012e+011"),
        (1e15, "1e+015"),
        (1e16, "1e+16"),
        (1.5e16, "1.5e+16"),
        (-1e16, "-1e+16"),
        (1e22, "1e+22"),
        (12345678.9, "1.23456789e+07"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
        (f64::MAX, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        // Exact ties between two shortest candidates: Python rounds half to even.
        (1_223_383_794_756_801.0 + 0.25, "1.2233837947568012e+015"),
        (-91_575_886_100_510.0 - 0.125, "-91575886100510.12"),
    ];
    for &(v, want) in cases {
        assert_eq!(f(v), want, "{v:e}");
    }
    for (n, want) in [(13, "13.0"), (999_999, "999999.0"), (2_000_000, "2e+06")] {
        let mut s = String::new();
        fmt_count(&mut s, n);
        assert_eq!(s, want);
    }
}

#[test]
fn text_matches_hand_written_expectation() {
    let reg = Registry::new();
    let polarity = reg
        .counter(
            "polarity_total",
            "Count total number of analysis by polarity scores",
            &["polarity"],
        )
        .unwrap();
    for _ in 0..20 {
        polarity.labels(&["True"]).inc();
    }
    let h = reg
        .histogram(
            "inference_duration",
            "Duration of inference",
            &["nltk_version", "sentiment_cls"],
            &[0.005, 0.01, 10.0, f64::INFINITY],
        )
        .unwrap();
    for v in [0.001, 0.002, 0.5] {
        h.labels(&["vader-3.3.2", "SentimentIntensityAnalyzer"])
            .observe(v);
    }
    reg.gauge("in_progress", "Line one\nback\\slash", &["endpoint"])
        .unwrap()
        .labels(&["/a\"b\\c\nd"])
        .set(2.0);
    reg.gauge("plain", "No labels", &[]).unwrap();

    let expected = r#"# HELP in_progress Line one\nback\\slash
# TYPE in_progress gauge
in_progress{endpoint="/a\"b\\c\nd"} 2.0
# HELP inference_duration Duration of inference
# TYPE inference_duration histogram
inference_duration_sum{nltk_version="vader-3.3.2",sentiment_cls="SentimentIntensityAnalyzer"} 0.503
inference_duration_bucket{le="0.005",nltk_version="vader-3.3.2",sentiment_cls="SentimentIntensityAnalyzer"} 2.0
inference_duration_bucket{le="0.01",nltk_version="vader-3.3.2",sentiment_cls="SentimentIntensityAnalyzer"} 2.0
inference_duration_bucket{le="10.0",nltk_version="vader-3.3.2",sentiment_cls="SentimentIntensityAnalyzer"} 3.0
inference_duration_bucket{le="+Inf",nltk_version="vader-3.3.2",sentiment_cls="SentimentIntensityAnalyzer"} 3.0
inference_duration_count{nltk_version="vader-3.3.2",sentiment_cls="SentimentIntensityAnalyzer"} 3.0
# HELP plain No labels
# TYPE plain gauge
plain 0.0
# HELP polarity_total Count total number of analysis by polarity scores
# TYPE polarity_total counter
polarity_total{polarity="True"} 20.0
"#;
    assert_eq!(render_text(&reg.snapshot()), expected);
}

fn summary_snapshot() -> Snapshot {
    let mut sketch = Sketch::new();
    sketch.add(1.0);
    Snapshot {
        families: vec![
            Family {
                name: "c_total".into(),
                help: "Say \"hi\"".into(),
                kind: Kind::Counter,
                series: vec![Series {
                    labels: vec![],
                    value: Value::Counter(1.5),
                }],
            },
            Family {
                name: "h".into(),
                help: "H".into(),
                kind: Kind::Histogram,
                series: vec![Series {
                    labels: vec![("a".into(), "1".into()), ("z".into(), "2".into())],
                    value: Value::Histogram(HistogramValue {
                        buckets: vec![(1.0, 1)],
                        count: 2,
                        sum: 3.5,
                    }),
                }],
            },
            Family {
                name: "s".into(),
                help: "S".into(),
                kind: Kind::Summary,
                series: vec![Series {
                    labels: vec![("a".into(), "x".into())],
                    value: Value::Summary(SummaryValue {
                        count: 1,
                        sum: 1.0,
                        sketch,
                    }),
                }],
            },
            Family {
                name: "w".into(),
                help: String::new(),
                kind: Kind::Gauge(GaugeMode::All),
                series: vec![Series {
                    labels: vec![("worker".into(), "runner:r:1".into())],
                    value: Value::Gauge(0.5),
                }],
            },
        ],
    }
}

#[test]
fn summaries_and_openmetrics() {
    let snap = summary_snapshot();
    // The sketch answers 1.0 within 1%: its bucket's representative value.
    let mut one = Sketch::new();
    one.add(1.0);
    let mut q = String::new();
    fmt_f64(&mut q, one.quantile(0.5));
    assert!((one.quantile(0.5) - 1.0).abs() <= 0.01);
    let expected_text = format!(
        r#"# HELP c_total Say "hi"
# TYPE c_total counter
c_total 1.5
# HELP h H
# TYPE h histogram
h_sum{{a="1",z="2"}} 3.5
h_bucket{{a="1",le="1.0",z="2"}} 1.0
h_bucket{{a="1",le="+Inf",z="2"}} 2.0
h_count{{a="1",z="2"}} 2.0
# HELP s S
# TYPE s summary
s{{a="x",quantile="0.5"}} {q}
s{{a="x",quantile="0.9"}} {q}
s{{a="x",quantile="0.99"}} {q}
s_sum{{a="x"}} 1.0
s_count{{a="x"}} 1.0
# HELP w 
# TYPE w gauge
w{{worker="runner:r:1"}} 0.5
"#
    );
    assert_eq!(render_text(&snap), expected_text);

    let expected_om = format!(
        r#"# HELP c Say \"hi\"
# TYPE c counter
c_total 1.5
# HELP h H
# TYPE h histogram
h_bucket{{a="1",le="1.0",z="2"}} 1.0
h_bucket{{a="1",le="+Inf",z="2"}} 2.0
h_count{{a="1",z="2"}} 2.0
h_sum{{a="1",z="2"}} 3.5
# HELP s S
# TYPE s summary
s{{a="x",quantile="0.5"}} {q}
s{{a="x",quantile="0.9"}} {q}
s{{a="x",quantile="0.99"}} {q}
s_count{{a="x"}} 1.0
s_sum{{a="x"}} 1.0
# HELP w 
# TYPE w gauge
w{{worker="runner:r:1"}} 0.5
# EOF
"#
    );
    assert_eq!(render_openmetrics(&snap), expected_om);

    let negotiated = |accept: Option<&str>| {
        let format = Format::from_accept(accept);
        (render(&snap, format), format.content_type())
    };
    let (body, ct) = negotiated(Some(
        "application/openmetrics-text; version=1.0.0,text/plain;q=0.5",
    ));
    assert_eq!(
        (body.as_str(), ct),
        (expected_om.as_str(), OPENMETRICS_CONTENT_TYPE)
    );
    let (body, ct) = negotiated(Some("text/plain"));
    assert_eq!(
        (body.as_str(), ct),
        (expected_text.as_str(), TEXT_CONTENT_TYPE)
    );
    assert_eq!(negotiated(None).1, TEXT_CONTENT_TYPE);
}

#[test]
fn empty_summary_quantiles_are_nan() {
    let snap = Snapshot {
        families: vec![Family {
            name: "s".into(),
            help: "S".into(),
            kind: Kind::Summary,
            series: vec![Series {
                labels: vec![],
                value: Value::Summary(SummaryValue {
                    count: 0,
                    sum: 0.0,
                    sketch: Sketch::new(),
                }),
            }],
        }],
    };
    assert!(render_text(&snap).contains("s{quantile=\"0.99\"} NaN\n"));
}

#[test]
fn many_processes_merge_into_one_rendered_series_each() {
    // 8 processes × 2,000 series (1,000 counter and 1,000 histogram series each).
    let snaps: Vec<Snapshot> = (0..8)
        .map(|p| {
            let reg = Registry::new();
            let c = reg.counter("req", "R", &["endpoint", "code"]).unwrap();
            let h = reg.histogram("lat", "L", &["endpoint"], &[]).unwrap();
            for i in 0..1000 {
                let ep = format!("/e{i}");
                c.labels(&[&ep, "200"]).inc_by(f64::from(p + 1));
                h.labels(&[&ep]).observe(0.01 * f64::from(i % 50));
            }
            reg.snapshot()
        })
        .collect();
    let live: Vec<_> = snaps
        .iter()
        .enumerate()
        .map(|(i, s)| (crate::merge::WorkerId::runner("r", i + 1), s))
        .collect();
    let merged = crate::merge::merge(&Snapshot::default(), &live);
    let text = render_text(&merged);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("req_total{")).count(),
        1000
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("lat_count{")).count(),
        1000
    );
    // Each series is the sum over the processes: 1 + 2 + … + 8 requests, 8 observations.
    for i in [0, 499, 999] {
        let total = format!("req_total{{code=\"200\",endpoint=\"/e{i}\"}} 36.0\n");
        assert!(text.contains(&total), "missing {total:?}");
        let count = format!("lat_count{{endpoint=\"/e{i}\"}} 8.0\n");
        assert!(text.contains(&count), "missing {count:?}");
    }
}
