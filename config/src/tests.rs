//! Behaviour tests of the configuration as a user meets it: YAML text,
//! `TIFFIN_CONFIG_OPTIONS`, command-line overrides and the error messages.
//!
//! Error texts are asserted word for word where a user would read them,
//! because the message (the dotted key and the value found) is the interface
//! of a configuration error: a change to it is a change users see.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::*;

/// A YAML file under the temp dir with a name unique to this process and call; removed on drop.
struct TempYaml(PathBuf);

impl TempYaml {
    fn new(text: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "tiffin-config-test-{}-{n}.yaml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        TempYaml(path)
    }
}

impl Drop for TempYaml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn err(yaml: &str) -> String {
    Config::from_yaml_str(yaml).unwrap_err().to_string()
}

fn opts_err(options: &str) -> String {
    Config::load(None, Some(options)).unwrap_err().to_string()
}

#[test]
fn defaults() {
    let c = Config::default();
    assert_eq!(c.api_server.workers, crate::default_api_workers());
    assert_eq!(c.api_server.graceful_timeout, 30.0);
    assert_eq!(c.api_server.http.host, "0.0.0.0");
    assert_eq!(c.api_server.http.port, 3000);
    assert_eq!(c.api_server.http.max_request_size, 20 * 1024 * 1024);
    assert_eq!(c.api_server.grpc.port, 3000);
    assert!(!c.api_server.grpc.reflection.enabled);
    assert_eq!(c.api_server.grpc.metrics.host, "0.0.0.0");
    assert_eq!(c.api_server.grpc.metrics.port, 3001);
    assert!(c.api_server.metrics.enabled);
    assert_eq!(c.api_server.metrics.namespace, "bentoml_api_server");
    assert_eq!(c.runners.shared.workers, 1);
    assert_eq!(
        c.runners.shared.batching,
        BatchingConfig {
            enabled: true,
            max_batch_size: 100,
            max_latency_ms: 10_000
        }
    );
    assert!(c.runners.metrics.enabled);
    assert_eq!(c.runners.metrics.namespace, "bentoml_runner");
    assert!(c.runners.per_runner.is_empty());
    c.validate().unwrap();
    assert_eq!(
        c.api_server.metrics.duration_buckets(),
        DEFAULT_DURATION_BUCKETS
    );
    assert_eq!(
        c.runners.metrics.duration_buckets(),
        DEFAULT_DURATION_BUCKETS
    );
    // Empty input of every kind gives the defaults.
    assert_eq!(Config::load(None, None).unwrap(), c);
    assert_eq!(Config::load(None, Some("  ")).unwrap(), c);
    assert_eq!(Config::from_yaml_str("").unwrap(), c);
    assert_eq!(Config::from_yaml_str("# only a comment\n").unwrap(), c);
    assert_eq!(Config::from_yaml_str("api_server:\nrunners:\n").unwrap(), c);
    let empty = TempYaml::new("");
    assert_eq!(Config::load(Some(&empty.0), None).unwrap(), c);
}

#[test]
fn yaml_file() {
    let file = TempYaml::new(
        r#"
api_server:
  workers: 2
  graceful_timeout: 5
  http:
    port: 8080
    max_request_size: 1024
  grpc:
    reflection: { enabled: true }
    metrics: { port: 9001 }
  metrics:
    namespace: my_api
    duration:
      min: 0.1
      max: 5.0
      factor: 2.0
runners:
  workers: 3
  batching:
    max_batch_size: 16
  metrics:
    enabled: false
    duration:
      buckets: [0.5, 1, .inf]
  nltk_sentiment:
    workers: 4
    batching:
      enabled: false
"#,
    );
    let c = Config::load(Some(&file.0), None).unwrap();
    assert_eq!(c.api_server.workers, 2);
    assert_eq!(c.api_server.graceful_timeout, 5.0);
    assert_eq!(c.api_server.http.port, 8080);
    assert_eq!(c.api_server.http.host, "0.0.0.0");
    assert_eq!(c.api_server.http.max_request_size, 1024);
    assert!(c.api_server.grpc.reflection.enabled);
    assert_eq!(c.api_server.grpc.metrics.port, 9001);
    assert_eq!(c.api_server.metrics.namespace, "my_api");
    assert_eq!(
        c.api_server.metrics.duration_buckets(),
        [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0]
    );
    assert_eq!(c.runners.shared.workers, 3);
    assert_eq!(c.runners.shared.batching.max_batch_size, 16);
    assert!(!c.runners.metrics.enabled);
    assert_eq!(c.runners.metrics.namespace, "bentoml_runner");
    assert_eq!(c.runners.metrics.duration_buckets(), [0.5, 1.0]);
    assert_eq!(c.runners.workers_for("nltk_sentiment"), 4);
    assert!(!c.runners.batching_for("nltk_sentiment").enabled);
    assert_eq!(c.runners.batching_for("nltk_sentiment").max_batch_size, 16);

    // The printed (serialized) form loads back to the same configuration.
    let printed = serde_yaml_ng::to_string(&c).unwrap();
    assert!(printed.contains("nltk_sentiment:"), "{printed}");
    assert_eq!(Config::from_yaml_str(&printed).unwrap(), c);
}

#[test]
fn file_errors_name_the_file() {
    let missing = std::env::temp_dir().join("tiffin-config-test-does-not-exist.yaml");
    let e = Config::load(Some(&missing), None).unwrap_err().to_string();
    assert!(
        e.contains("not found") && e.contains("does-not-exist.yaml"),
        "{e}"
    );

    let bad = TempYaml::new("api_server:\n  http: [1, 2\n");
    let e = Config::load(Some(&bad.0), None).unwrap_err().to_string();
    assert!(e.starts_with("invalid YAML in configuration file '"), "{e}");
    assert!(e.contains(&bad.0.display().to_string()), "{e}");
    assert!(e.contains("line"), "{e}");

    let scalar = TempYaml::new("42\n");
    let e = Config::load(Some(&scalar.0), None).unwrap_err().to_string();
    assert!(e.contains("top level must be a mapping"), "{e}");
}

#[test]
fn unknown_keys_name_the_full_dotted_key() {
    // The lists of expected keys grow with the configuration: check the
    // shape and a few members, not the whole list.
    let top = err("apiserver: {}");
    assert!(
        top.starts_with("unknown configuration key 'apiserver' (expected "),
        "{top}"
    );
    for key in ["api_server", "runners", "supervisor"] {
        assert!(top.contains(key), "{top} does not list {key}");
    }
    let http = err("api_server: { http: { prot: 3001 } }");
    assert!(
        http.starts_with(
            "unknown configuration key 'api_server.http.prot' (expected one of host, port, \
             max_request_size, "
        ),
        "{http}"
    );
    assert!(http.contains("keepalive_timeout"), "{http}");
    assert!(
        err("api_server: { grpc: { reflection: { enable: true } } }")
            .starts_with("unknown configuration key 'api_server.grpc.reflection.enable'")
    );
    assert!(
        err("api_server: { metrics: { duration: { mn: 1 } } }")
            .starts_with("unknown configuration key 'api_server.metrics.duration.mn'")
    );
    assert!(
        err("runners: { metrics: { namespaces: x } }")
            .starts_with("unknown configuration key 'runners.metrics.namespaces'")
    );
    assert!(
        err("runners: { batching: { max_size: 3 } }")
            .starts_with("unknown configuration key 'runners.batching.max_size'")
    );
    assert!(
        err("runners: { nltk: { wrkers: 3 } }")
            .starts_with("unknown configuration key 'runners.nltk.wrkers'")
    );
    assert!(
        err("runners: { nltk: { batching: { latency: 3 } } }")
            .starts_with("unknown configuration key 'runners.nltk.batching.latency'")
    );
    assert!(
        opts_err("api_server.http.prot=3001")
            .starts_with("unknown configuration key 'api_server.http.prot'")
    );
}

#[test]
fn bad_values_name_the_key_and_value() {
    assert_eq!(
        opts_err("api_server.http.port=abc"),
        r#"invalid value for 'api_server.http.port': expected an integer 0-65535, got "abc""#
    );
    assert_eq!(
        err("api_server: { http: { port: 70000 } }"),
        "invalid value for 'api_server.http.port': expected an integer 0-65535, got 70000"
    );
    assert_eq!(
        err("api_server: { workers: -1 }"),
        "invalid value for 'api_server.workers': expected a whole number >= 0, got -1"
    );
    assert_eq!(
        err("api_server: { workers: 0 }"),
        "invalid value for 'api_server.workers': must be at least 1, got 0"
    );
    assert_eq!(
        err("runners: { batching: { enabled: maybe } }"),
        r#"invalid value for 'runners.batching.enabled': expected true or false, got "maybe""#
    );
    assert_eq!(
        err("api_server: { http: 3 }"),
        "invalid value for 'api_server.http': expected a mapping, got 3"
    );
    assert_eq!(
        err("runners: { nltk: { workers: 0 } }"),
        "invalid value for 'runners.nltk.workers': must be at least 1, got 0"
    );
    assert_eq!(
        err("api_server: { metrics: { duration: { buckets: [1, x] } } }"),
        r#"invalid value for 'api_server.metrics.duration.buckets[1]': expected a number, got "x""#
    );
    let e = err("api_server: { metrics: { namespace: 1bad } }");
    assert!(
        e.starts_with("invalid value for 'api_server.metrics.namespace'") && e.contains("\"1bad\""),
        "{e}"
    );
    let e = err("runners: { metrics: { namespace: 'a-b' } }");
    assert!(
        e.starts_with("invalid value for 'runners.metrics.namespace'"),
        "{e}"
    );
    let e = err("api_server: { graceful_timeout: -1 }");
    assert!(
        e.starts_with("invalid value for 'api_server.graceful_timeout'"),
        "{e}"
    );
    for (yaml, key) in [
        (
            "api_server: { http: { max_request_size: 0 } }",
            "api_server.http.max_request_size",
        ),
        ("runners: { workers: 0 }", "runners.workers"),
        (
            "runners: { batching: { max_batch_size: 0 } }",
            "runners.batching.max_batch_size",
        ),
        (
            "runners: { batching: { max_latency_ms: 0 } }",
            "runners.batching.max_latency_ms",
        ),
        (
            "runners: { r: { batching: { max_batch_size: 0 } } }",
            "runners.r.batching.max_batch_size",
        ),
        (
            "runners: { r: { batching: { max_latency_ms: 0 } } }",
            "runners.r.batching.max_latency_ms",
        ),
    ] {
        assert_eq!(
            err(yaml),
            format!("invalid value for '{key}': must be at least 1, got 0")
        );
    }
    // Port 0 means "pick a free port" and is allowed.
    assert_eq!(
        Config::from_yaml_str("api_server: { http: { port: 0 } }")
            .unwrap()
            .api_server
            .http
            .port,
        0
    );
}

#[test]
fn env_options_override_the_file() {
    let file = TempYaml::new("api_server: { http: { port: 8080, host: 127.0.0.1 } }\n");
    let c = Config::load(
        Some(&file.0),
        Some(
            "api_server.http.port=3001  runners.batching.enabled=false\n\
             api_server.metrics.duration.buckets=[0.1,0.5,1] runners.nltk.workers=2 \
             api_server.metrics.namespace=\"my ns\"",
        ),
    );
    // The quoted namespace has a space, which the namespace rule rejects.
    assert!(
        c.unwrap_err()
            .to_string()
            .starts_with("invalid value for 'api_server.metrics.namespace'")
    );

    let c = Config::load(
        Some(&file.0),
        Some(
            "api_server.http.port=3001  runners.batching.enabled=false\n\
             api_server.metrics.duration.buckets='[0.1, 0.5, 1]' runners.nltk.workers=2",
        ),
    )
    .unwrap();
    assert_eq!(c.api_server.http.port, 3001);
    assert_eq!(c.api_server.http.host, "127.0.0.1");
    assert!(!c.runners.shared.batching.enabled);
    assert_eq!(c.api_server.metrics.duration_buckets(), [0.1, 0.5, 1.0]);
    assert_eq!(c.runners.workers_for("nltk"), 2);
}

#[test]
fn malformed_options() {
    assert_eq!(
        opts_err("api_server.workers=2 foo"),
        "invalid override 'foo' in TIFFIN_CONFIG_OPTIONS: expected key=value"
    );
    assert_eq!(
        opts_err("=3"),
        "invalid override '=3' in TIFFIN_CONFIG_OPTIONS: expected key=value"
    );
    assert!(
        opts_err("api_server..port=3")
            .starts_with("invalid override 'api_server..port=3' in TIFFIN_CONFIG_OPTIONS")
    );
    assert!(opts_err("a.b='x").contains("unterminated quote"));
    assert!(opts_err("api_server.workers=[1").contains("not valid YAML"));
    assert_eq!(
        parse_options(" a=1\tb='x y'  c= ").unwrap(),
        [
            ("a".into(), "1".into()),
            ("b".into(), "x y".into()),
            ("c".into(), String::new())
        ]
    );
}

#[test]
fn cli_overrides_beat_env_options() {
    let file = TempYaml::new("api_server: { workers: 4 }\n");
    let cli = [("api_server.http.port".to_owned(), "4000".to_owned())];
    let c = Config::from_sources(
        Some(&file.0),
        Some("api_server.http.port=3001 api_server.workers=2"),
        &cli,
    )
    .unwrap();
    assert_eq!(c.api_server.http.port, 4000);
    assert_eq!(c.api_server.workers, 2);

    let mut c = Config::load(None, Some("api_server.http.port=3001")).unwrap();
    c.set("api_server.http.port", "3002").unwrap();
    c.apply_override("runners.nltk.batching.max_batch_size", "8")
        .unwrap();
    assert_eq!(c.api_server.http.port, 3002);
    assert_eq!(c.runners.batching_for("nltk").max_batch_size, 8);

    // A rejected override leaves the config untouched and names the key.
    let before = c.clone();
    let e = c
        .apply_override("api_server.http.port", "abc")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        r#"invalid value for 'api_server.http.port': expected an integer 0-65535, got "abc""#
    );
    let e = c
        .apply_override("api_server.http.prot", "1")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("unknown configuration key 'api_server.http.prot'"),
        "{e}"
    );
    let e = c
        .apply_override("runners.workers", "0")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid value for 'runners.workers': must be at least 1, got 0"
    );
    assert_eq!(c, before);

    let cli = [("runners.workers".to_owned(), "x".to_owned())];
    let e = Config::from_sources(None, None, &cli)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        r#"invalid value for 'runners.workers': expected a whole number >= 0, got "x""#
    );
}

#[test]
fn per_runner_overrides() {
    let c = Config::from_yaml_str(
        "runners:\n  workers: 2\n  batching: { enabled: true, max_batch_size: 50, max_latency_ms: 500 }\n  \
         a: { workers: 5, batching: { max_batch_size: 200 } }\n  b: { batching: { enabled: false, max_latency_ms: 20 } }\n  c:\n",
    )
    .unwrap();
    assert_eq!(c.runners.workers_for("a"), 5);
    assert_eq!(c.runners.workers_for("b"), 2);
    assert_eq!(c.runners.workers_for("c"), 2);
    assert_eq!(c.runners.workers_for("unconfigured"), 2);
    assert_eq!(
        c.runners.batching_for("a"),
        BatchingConfig {
            enabled: true,
            max_batch_size: 200,
            max_latency_ms: 500
        }
    );
    assert_eq!(
        c.runners.batching_for("b"),
        BatchingConfig {
            enabled: false,
            max_batch_size: 50,
            max_latency_ms: 20
        }
    );
    assert_eq!(c.runners.batching_for("c"), c.runners.shared.batching);
    assert_eq!(
        c.runners.adaptive_batch_size_buckets(&["a", "b"]),
        batch_size_buckets(200)
    );
    assert_eq!(
        c.runners.adaptive_batch_size_buckets(&["b"]),
        batch_size_buckets(50)
    );
    assert_eq!(
        c.runners.adaptive_batch_size_buckets(&[]),
        batch_size_buckets(50)
    );
}

#[test]
fn check_runners() {
    let c = Config::from_yaml_str("runners: { nltk_sentiment: { workers: 2 }, iris: {} }").unwrap();
    c.check_runners(&["iris", "nltk_sentiment", "extra"])
        .unwrap();
    Config::default().check_runners(&[]).unwrap();
    assert_eq!(
        c.check_runners(&["nltk_sentiment", "echo"])
            .unwrap_err()
            .to_string(),
        "unknown configuration key 'runners.iris': 'iris' is not a runner of this service (its runners: nltk_sentiment, echo)"
    );
    assert_eq!(
        c.check_runners(&[]).unwrap_err().to_string(),
        "unknown configuration key 'runners.iris': 'iris' is not a runner of this service (it has no runners)"
    );
}

fn duration(
    min: Option<f64>,
    max: Option<f64>,
    factor: Option<f64>,
    buckets: Option<Vec<f64>>,
) -> DurationConfig {
    DurationConfig {
        min,
        max,
        factor,
        buckets,
    }
}

#[test]
fn duration_buckets_rules() {
    let p = "api_server.metrics";
    assert_eq!(
        DurationConfig::default().buckets(p).unwrap(),
        DEFAULT_DURATION_BUCKETS
    );
    // A worked {min, max, factor} example: doubling from 0.1 up to 5.
    assert_eq!(
        duration(Some(0.1), Some(5.0), Some(2.0), None)
            .buckets(p)
            .unwrap(),
        vec![0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0]
    );
    // max reached exactly is not repeated.
    assert_eq!(
        duration(Some(1.0), Some(8.0), Some(2.0), None)
            .buckets(p)
            .unwrap(),
        vec![1.0, 2.0, 4.0, 8.0]
    );
    assert_eq!(
        duration(None, None, None, Some(vec![0.5, 1.0, 2.0]))
            .buckets(p)
            .unwrap(),
        vec![0.5, 1.0, 2.0]
    );
    assert_eq!(
        duration(None, None, None, Some(vec![0.5, f64::INFINITY]))
            .buckets(p)
            .unwrap(),
        vec![0.5]
    );

    let bad = |d: DurationConfig| d.buckets(p).unwrap_err().to_string();
    let key = |k: &str| format!("invalid value for 'api_server.metrics.duration.{k}'");
    let cases = [
        (duration(Some(0.0), Some(5.0), Some(2.0), None), "min"),
        (duration(Some(-1.0), Some(5.0), Some(2.0), None), "min"),
        (duration(Some(f64::NAN), Some(5.0), Some(2.0), None), "min"),
        (duration(Some(1.0), Some(1.0), Some(2.0), None), "max"),
        (duration(Some(1.0), Some(0.5), Some(2.0), None), "max"),
        (
            duration(Some(1.0), Some(f64::INFINITY), Some(2.0), None),
            "max",
        ),
        (duration(Some(0.1), Some(5.0), Some(1.0), None), "factor"),
        (duration(Some(0.1), Some(5.0), Some(0.5), None), "factor"),
        (
            duration(Some(1e-9), Some(1e9), Some(1.000_001), None),
            "factor",
        ),
        (duration(None, Some(5.0), Some(2.0), None), "min"),
        (duration(Some(0.1), None, Some(2.0), None), "max"),
        (duration(Some(0.1), Some(5.0), None, None), "factor"),
        (duration(Some(0.1), None, None, None), "max"),
        (
            duration(Some(0.1), Some(5.0), Some(2.0), Some(vec![1.0])),
            "buckets",
        ),
        (duration(None, None, Some(2.0), Some(vec![1.0])), "buckets"),
        (duration(None, None, None, Some(vec![])), "buckets"),
        (
            duration(None, None, None, Some(vec![f64::INFINITY])),
            "buckets",
        ),
        (duration(None, None, None, Some(vec![1.0, 0.5])), "buckets"),
        (duration(None, None, None, Some(vec![1.0, 1.0])), "buckets"),
        (
            duration(None, None, None, Some(vec![f64::INFINITY, 1.0])),
            "buckets",
        ),
        (
            duration(None, None, None, Some(vec![1.0, f64::NAN])),
            "buckets",
        ),
        (
            duration(None, None, None, Some(vec![f64::NEG_INFINITY, 1.0])),
            "buckets",
        ),
    ];
    for (d, field) in cases {
        let e = bad(d.clone());
        assert!(e.starts_with(&key(field)), "{d:?}: {e}");
    }
    assert!(
        bad(duration(None, None, None, Some(vec![1.0, 0.5])))
            .ends_with("strictly increasing, got [1, 0.5]")
    );

    // The same rules apply through YAML, and name the runners' prefix there.
    let e = err("runners: { metrics: { duration: { min: 0.1, max: 5 } } }");
    assert!(
        e.starts_with("invalid value for 'runners.metrics.duration.factor'"),
        "{e}"
    );
    let e = err("api_server: { metrics: { duration: { buckets: [2, 1] } } }");
    assert!(
        e.starts_with("invalid value for 'api_server.metrics.duration.buckets'"),
        "{e}"
    );
}

#[test]
fn batch_buckets() {
    assert_eq!(
        batch_size_buckets(100),
        vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0]
    );
    assert_eq!(batch_size_buckets(8), vec![1.0, 2.0, 4.0, 8.0]);
    assert_eq!(batch_size_buckets(1), vec![1.0]);
    assert_eq!(batch_size_buckets(3), vec![1.0, 2.0, 3.0]);
    let huge = batch_size_buckets(usize::MAX);
    assert_eq!(huge.len(), usize::BITS as usize + 1);
}

#[test]
fn http_timeouts_connections_and_traffic_keys() {
    let c = Config::default();
    let http = &c.api_server.http;
    assert_eq!(http.header_read_timeout, 10.0);
    assert_eq!(http.body_read_timeout, 60.0);
    assert_eq!(http.keepalive_timeout, 5.0);
    assert_eq!(http.max_connections, 10_000);
    assert_eq!(http.header_read_timeout.duration(), Duration::from_secs(10));
    assert_eq!(http.body_read_timeout.duration(), Duration::from_secs(60));
    assert_eq!(http.keepalive_timeout.duration(), Duration::from_secs(5));
    assert_eq!(c.api_server.traffic.timeout, 60.0);
    assert_eq!(c.api_server.traffic.max_concurrency, None);
    assert_eq!(
        c.api_server.traffic.timeout.duration(),
        Duration::from_secs(60)
    );
    assert_eq!(
        c.api_server.graceful_timeout.duration(),
        Duration::from_secs(30)
    );

    // Every key reaches the children: the effective YAML names each one,
    // including an unset max_concurrency, and loads back to the same values.
    let printed = serde_yaml_ng::to_string(&c).unwrap();
    for key in [
        "header_read_timeout: 10.0",
        "body_read_timeout: 60.0",
        "keepalive_timeout: 5.0",
        "max_connections: 10000",
        "traffic:",
        "timeout: 60.0",
        "max_concurrency: null",
    ] {
        assert!(printed.contains(key), "{key} missing from:\n{printed}");
    }
    assert_eq!(Config::from_yaml_str(&printed).unwrap(), c);

    let c = Config::load(
        None,
        Some(
            "api_server.http.header_read_timeout=0.5 api_server.http.body_read_timeout=2 \
             api_server.http.keepalive_timeout=1.25 api_server.http.max_connections=3 \
             api_server.traffic.timeout=0.25 api_server.traffic.max_concurrency=7",
        ),
    )
    .unwrap();
    let http = &c.api_server.http;
    assert_eq!(
        http.header_read_timeout.duration(),
        Duration::from_millis(500)
    );
    assert_eq!(http.body_read_timeout.duration(), Duration::from_secs(2));
    assert_eq!(
        http.keepalive_timeout.duration(),
        Duration::from_millis(1250)
    );
    assert_eq!(http.max_connections, 3);
    assert_eq!(
        c.api_server.traffic.timeout.duration(),
        Duration::from_millis(250)
    );
    assert_eq!(c.api_server.traffic.max_concurrency, Some(7));
    let printed = serde_yaml_ng::to_string(&c).unwrap();
    assert!(printed.contains("max_concurrency: 7"), "{printed}");
    assert_eq!(Config::from_yaml_str(&printed).unwrap(), c);
    // `null` is how the effective configuration writes "unlimited".
    let c = Config::load(None, Some("api_server.traffic.max_concurrency=null")).unwrap();
    assert_eq!(c.api_server.traffic.max_concurrency, None);
}

#[test]
fn seconds_saturate_instead_of_panicking() {
    assert_eq!(seconds(1.5), Duration::from_millis(1500));
    assert_eq!(seconds(0.0), Duration::ZERO);
    assert_eq!(seconds(-1.0), Duration::ZERO);
    assert_eq!(seconds(f64::NAN), Duration::ZERO);
    assert_eq!(seconds(f64::INFINITY), Duration::MAX);
    assert_eq!(seconds(1e300), Duration::MAX);
}

/// Sets dotted `key` to `value` (YAML) on top of the defaults.
fn with(key: &str, value: &str) -> Result<Config, String> {
    Config::load(None, Some(&format!("{key}={value}"))).map_err(|e| e.to_string())
}

#[test]
fn every_numeric_key_is_checked_against_its_range() {
    // (key, lowest accepted, highest accepted, below the range, above it)
    let counts: [(&str, &str, &str, &str, &str); 13] = [
        ("api_server.workers", "1", "256", "0", "257"),
        ("api_server.max_failed_starts", "0", "1000", "", "1001"),
        (
            "api_server.http.max_request_size",
            "1",
            "67108864",
            "0",
            "67108865",
        ),
        (
            "api_server.http.max_connections",
            "1",
            "1000000",
            "0",
            "1000001",
        ),
        (
            "api_server.traffic.max_concurrency",
            "1",
            "1000000",
            "0",
            "1000001",
        ),
        ("runners.workers", "1", "256", "0", "100000"),
        ("runners.max_failed_starts", "0", "1000", "", "1001"),
        ("runners.r.workers", "1", "256", "0", "257"),
        ("runners.r.max_failed_starts", "0", "1000", "", "4294967295"),
        (
            "runners.batching.max_batch_size",
            "1",
            "100000",
            "0",
            "18446744073709551615",
        ),
        (
            "runners.r.batching.max_batch_size",
            "1",
            "100000",
            "0",
            "100001",
        ),
        (
            "runners.batching.max_latency_ms",
            "1",
            "3600000",
            "0",
            "3600001",
        ),
        (
            "runners.r.batching.max_latency_ms",
            "1",
            "3600000",
            "0",
            "3600001",
        ),
    ];
    for (key, lowest, highest, below, above) in counts {
        with(key, lowest).unwrap_or_else(|e| panic!("{key}={lowest}: {e}"));
        with(key, highest).unwrap_or_else(|e| panic!("{key}={highest}: {e}"));
        if !below.is_empty() {
            assert_eq!(
                with(key, below).unwrap_err(),
                format!("invalid value for '{key}': must be at least {lowest}, got {below}")
            );
        }
        let e = with(key, above).unwrap_err();
        let expected = format!("invalid value for '{key}': must be at most {highest}");
        assert!(
            e.starts_with(&expected) && e.ends_with(&format!("got {above}")),
            "{key}={above}: {e}"
        );
    }
    // The request-size bound says where it comes from.
    assert_eq!(
        with("api_server.http.max_request_size", "67108865").unwrap_err(),
        "invalid value for 'api_server.http.max_request_size': must be at most 67108864 \
         (64 MiB, the largest frame a worker socket carries), got 67108865"
    );

    // Seconds: (key, lower bound as shown, highest accepted); the lowest
    // accepted value is 0 for ">= 0" and anything above it for "> 0".
    let seconds: [(&str, &str, &str); 6] = [
        ("api_server.graceful_timeout", ">= 0", "86400"),
        ("api_server.http.header_read_timeout", "> 0", "3600"),
        ("api_server.http.body_read_timeout", "> 0", "3600"),
        ("api_server.http.keepalive_timeout", "> 0", "3600"),
        ("api_server.traffic.timeout", "> 0", "86400"),
        ("api_server.traffic.stream_idle_timeout", "> 0", "86400"),
    ];
    for (key, lower, highest) in seconds {
        with(key, highest).unwrap_or_else(|e| panic!("{key}={highest}: {e}"));
        with(key, "0.001").unwrap_or_else(|e| panic!("{key}=0.001: {e}"));
        assert_eq!(with(key, "0").is_ok(), lower == ">= 0", "{key}=0");
        let above = format!("{highest}.5");
        for bad in ["-1", above.as_str(), ".inf", ".nan"] {
            let e = with(key, bad).unwrap_err();
            let expected = format!(
                "invalid value for '{key}': must be a number of seconds {lower} and <= {highest}, got "
            );
            assert!(e.starts_with(&expected), "{key}={bad}: {e}");
        }
    }
    assert_eq!(
        with("api_server.http.keepalive_timeout", "0").unwrap_err(),
        "invalid value for 'api_server.http.keepalive_timeout': must be a number of seconds > 0 \
         and <= 3600, got 0"
    );

    // Ports are bounded by their type; 0 picks a free port.
    for key in [
        "api_server.http.port",
        "api_server.grpc.port",
        "api_server.grpc.metrics.port",
    ] {
        with(key, "0").unwrap();
        with(key, "65535").unwrap();
        assert_eq!(
            with(key, "65536").unwrap_err(),
            format!("invalid value for '{key}': expected an integer 0-65535, got 65536")
        );
    }
    // A count beyond u64 cannot even be read as YAML; the error still names
    // the key and the value, from either kind of source.
    let e = with("runners.workers", "18446744073709551616").unwrap_err();
    assert!(
        e.starts_with(
            "invalid override 'runners.workers=18446744073709551616' in TIFFIN_CONFIG_OPTIONS"
        ),
        "{e}"
    );
    let e = err("runners: { workers: 18446744073709551616 }");
    assert!(
        e.contains("runners.workers") && e.contains("18446744073709551616"),
        "{e}"
    );
}

#[test]
fn bucket_lists_are_bounded_too() {
    let list = |n: usize| {
        let bounds: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        format!("[{}]", bounds.join(","))
    };
    let key = "api_server.metrics.duration.buckets";
    assert_eq!(
        with(key, &list(MAX_GENERATED_BUCKETS))
            .unwrap()
            .api_server
            .metrics
            .duration_buckets()
            .len(),
        MAX_GENERATED_BUCKETS
    );
    assert_eq!(
        with(key, &list(MAX_GENERATED_BUCKETS + 1)).unwrap_err(),
        format!("invalid value for '{key}': must list at most 1000 bounds, got 1001")
    );
}

#[test]
fn workers_and_failed_starts_per_runner() {
    let c = Config::from_yaml_str(
        "runners: { max_failed_starts: 3, a: { max_failed_starts: 0 }, b: { workers: 2 } }",
    )
    .unwrap();
    assert_eq!(c.runners.max_failed_starts_for("a"), 0);
    assert_eq!(c.runners.max_failed_starts_for("b"), 3);
    assert_eq!(c.runners.max_failed_starts_for("other"), 3);
    assert_eq!(Config::default().runners.max_failed_starts_for("x"), 5);
    assert_eq!(Config::default().api_server.max_failed_starts, 5);
    let printed = serde_yaml_ng::to_string(&c).unwrap();
    assert_eq!(Config::from_yaml_str(&printed).unwrap(), c);
}

#[test]
fn a_bad_value_is_reported_even_when_a_later_source_overrides_it() {
    let file = TempYaml::new("api_server: { workers: 0, http: { port: 8080 } }\n");
    let shown = file.0.display().to_string();
    let cli = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];

    // File, overridden by a command-line flag.
    let e = Config::from_sources(Some(&file.0), None, &cli("api_server.workers", "2"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "invalid value for 'api_server.workers': must be at least 1, got 0 \
             (in configuration file '{shown}', overridden by command-line option 'api_server.workers=2')"
        )
    );
    // File, overridden by TIFFIN_CONFIG_OPTIONS.
    let e = Config::load(Some(&file.0), Some("api_server.workers=3"))
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with(&format!(
            "(in configuration file '{shown}', overridden by TIFFIN_CONFIG_OPTIONS 'api_server.workers=3')"
        )),
        "{e}"
    );
    // TIFFIN_CONFIG_OPTIONS, overridden by a flag; a type error as well as a range error.
    let e = Config::from_sources(
        None,
        Some("api_server.http.port=abc"),
        &cli("api_server.http.port", "3001"),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "invalid value for 'api_server.http.port': expected an integer 0-65535, got \"abc\" \
         (in TIFFIN_CONFIG_OPTIONS 'api_server.http.port=abc', overridden by command-line option \
         'api_server.http.port=3001')"
    );
    // Within one source: the later entry wins, the earlier must still be valid.
    let e = opts_err("runners.workers=100000 runners.workers=2");
    assert!(
        e.starts_with("invalid value for 'runners.workers': must be at most 256, got 100000 (in TIFFIN_CONFIG_OPTIONS 'runners.workers=100000'"),
        "{e}"
    );
    // A section that was not a mapping, replaced by a key inside it.
    let bad_section = TempYaml::new("api_server: { http: 3 }\n");
    let e = Config::from_sources(
        Some(&bad_section.0),
        None,
        &cli("api_server.http.port", "3001"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(
            "invalid value for 'api_server.http': expected a mapping, got 3 (in configuration file"
        ),
        "{e}"
    );
    // An unknown key inside a section that an override replaces whole.
    let typo = TempYaml::new("api_server: { http: { prot: 1 } }\n");
    let e = Config::from_sources(Some(&typo.0), None, &cli("api_server.http", "{port: 3001}"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("unknown configuration key 'api_server.http.prot'")
            && e.contains("(in configuration file"),
        "{e}"
    );
    // A value set by one override and hidden by a later, broader one names the first.
    let e = Config::from_sources(
        None,
        Some("api_server.http.max_connections=0"),
        &cli("api_server.http", "{max_connections: 5}"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("(in TIFFIN_CONFIG_OPTIONS 'api_server.http.max_connections=0', overridden by command-line option 'api_server.http={max_connections: 5}')"),
        "{e}"
    );

    // Valid values that are overridden are fine, and the override wins.
    let c = Config::from_sources(
        Some(&TempYaml::new("api_server: { workers: 4, http: { port: 8080 } }\n").0),
        Some("api_server.workers=3"),
        &cli("api_server.workers", "2"),
    )
    .unwrap();
    assert_eq!(c.api_server.workers, 2);
    assert_eq!(c.api_server.http.port, 8080);
    // An empty section replaces nothing.
    let empty = TempYaml::new("api_server:\nrunners:\n");
    Config::from_sources(Some(&empty.0), None, &cli("api_server.http.port", "1")).unwrap();
    // A cross-field rule is judged on the merged values: a file's `min` that
    // is fine with the file's `max` but not with the overriding one is not
    // the file's fault.
    let d = TempYaml::new("api_server: { metrics: { duration: { min: 2, max: 8, factor: 2 } } }\n");
    let c = Config::from_sources(
        Some(&d.0),
        Some("api_server.metrics.duration.max=1 api_server.metrics.duration.min=0.5"),
        &[],
    )
    .unwrap();
    assert_eq!(c.api_server.metrics.duration_buckets(), [0.5, 1.0]);
}

#[test]
fn hung_worker_timeout_is_ten_seconds_and_bounded_by_two_liveness_requests_and_an_hour() {
    assert_eq!(Config::default().supervisor.hung_worker_timeout, 10.0);
    with("supervisor.hung_worker_timeout", "2").unwrap();
    with("supervisor.hung_worker_timeout", "3600").unwrap();
    for bad in ["1.5", "0", "-3", "3600.5", ".nan", ".inf"] {
        let e = with("supervisor.hung_worker_timeout", bad).unwrap_err();
        assert!(
            e.starts_with(
                "invalid value for 'supervisor.hung_worker_timeout': must be a number of \
                 seconds >= 2 and <= 3600, got "
            ),
            "{bad}: {e}"
        );
    }
}

#[test]
fn ssl_has_bentomls_defaults_and_any_override_of_it_turns_tls_on() {
    let ssl = Config::default().api_server.ssl;
    assert!(!ssl.enabled);
    assert_eq!((ssl.version, ssl.cert_reqs), (17, 0));
    assert_eq!(ssl.ciphers.as_deref(), Some("TLSv1"));
    let c = Config::load(
        None,
        Some("api_server.ssl.certfile=/c.pem api_server.ssl.keyfile=/k.pem"),
    )
    .unwrap();
    assert!(c.api_server.ssl.enabled);
    // ...unless the same source says otherwise.
    let c = Config::load(
        None,
        Some("api_server.ssl.certfile=/c.pem api_server.ssl.enabled=false"),
    )
    .unwrap();
    assert!(!c.api_server.ssl.enabled);
    // In the file, `enabled` is what it says (BentoML's rule is for overrides).
    let file = TempYaml::new("api_server: { ssl: { certfile: /c.pem, keyfile: /k.pem } }\n");
    assert!(
        !Config::load(Some(&file.0), None)
            .unwrap()
            .api_server
            .ssl
            .enabled
    );
}

#[test]
fn ssl_settings_rustls_cannot_honour_are_refused_naming_the_key() {
    let on = "api_server.ssl.certfile=/c api_server.ssl.keyfile=/k";
    for (extra, says) in [
        (
            "api_server.ssl.version=5",
            "invalid value for 'api_server.ssl.version': 5 is not supported",
        ),
        (
            "api_server.ssl.cert_reqs=3",
            "invalid value for 'api_server.ssl.cert_reqs': expected 0",
        ),
        (
            "api_server.ssl.ciphers=RC4",
            "invalid value for 'api_server.ssl.ciphers': 'RC4' is not supported",
        ),
        (
            "api_server.ssl.cert_reqs=2",
            "invalid value for 'api_server.ssl.ca_certs': must be set",
        ),
    ] {
        let e = Config::load(None, Some(&format!("{on} {extra}")))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(says), "{extra}: {e}");
    }
    let e = with("api_server.ssl.keyfile", "/k").unwrap_err();
    assert!(
        e.starts_with("invalid value for 'api_server.ssl.certfile': must be set"),
        "{e}"
    );
    for ok in [
        "api_server.ssl.version=2",
        "api_server.ssl.cert_reqs=1 api_server.ssl.ca_certs=/ca",
    ] {
        Config::load(None, Some(&format!("{on} {ok}"))).unwrap();
    }
}
