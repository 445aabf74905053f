//! The checks of this file's parent proven against a real Open Inference
//! Protocol server that is not tiffin: KServe's own ModelServer
//! (tests/fixtures/oip/kserve_server.py), with KServe's own JSON answers as
//! the reference where tiffin's are compared with `/predict`. Ignored by
//! default (they test the tests, not tiffin); run them with
//! `cargo nextest run --test it --run-ignored only -E 'test(/oip::wire::reference/)'`.
//! Where KServe departs from tiffin's contract, the test pins KServe's
//! answer and says so: tests/fixtures/oip/check_reference.sh lists the same.

use super::*;

use std::process::{Child, Stdio};

/// KServe's server on free ports, stopped when dropped.
struct KServe {
    child: Child,
    http: String,
    grpc: String,
    log: PathBuf,
}

impl KServe {
    fn start() -> Self {
        let (http_port, grpc_port) = (free_port(), free_port());
        let log = std::env::temp_dir().join(format!(
            "tiffin-oip-kserve-{}-{http_port}.log",
            std::process::id()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(oip_python())
            .arg("kserve_server.py")
            .args(["--model", &model_arg()])
            .args(["--http_port", &http_port.to_string()])
            .args(["--grpc_port", &grpc_port.to_string()])
            .current_dir(repo("tests/fixtures/oip"))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn kserve_server.py");
        let server = Self {
            child,
            http: format!("127.0.0.1:{http_port}"),
            grpc: format!("127.0.0.1:{grpc_port}"),
            log,
        };
        let ready = eventually(Duration::from_secs(60), || {
            http(&server.http, "GET", "/v2/health/ready", &[], b"").is_ok_and(|r| r.status == 200)
        });
        assert!(ready, "KServe never ready; log:\n{}", server.log());
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// KServe's own JSON answers for `rows`, one request of them all.
    fn answers(&self, rows: &[&[f32]]) -> Vec<Answer> {
        let r = post_json(
            &self.http,
            INFER,
            &infer_body(None, rows, json!({}), json!([])),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let answer = r.json();
        let labels = output_named(&answer, "label")["data"].clone();
        let probs: Vec<String> = output_named(&answer, "probabilities")["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(bits)
            .collect();
        labels
            .as_array()
            .expect("labels")
            .iter()
            .zip(probs.chunks(10))
            .map(|(label, p)| Answer {
                label: label.as_i64().expect("a label"),
                probabilities: p.to_vec(),
            })
            .collect()
    }
}

impl Drop for KServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[test]
#[ignore = "tests the tests: run against KServe's server, not tiffin"]
fn reference_kserve_binary_outputs_and_replayed_bodies_carry_its_json_bits() {
    let kserve = KServe::start();
    let images = held_out();
    let rows: Vec<&[f32]> = images[..2].iter().map(Vec::as_slice).collect();
    let want = kserve.answers(&rows);
    assert_binary_outputs(&kserve.http, &rows, &want);
    assert_id_and_label_only(&kserve.http, &rows, &want);
    let out = scratch("reference-bodies");
    assert_bodies_replay(&kserve.http, &kserve.answers(&rows[..1])[0], &out);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
#[ignore = "tests the tests: run against KServe's server, not tiffin"]
fn reference_kserve_answers_the_error_cases_as_the_contract_says_but_two() {
    let kserve = KServe::start();
    let out = scratch("reference-errors");
    let binary = tritonclient_binary_body(&out);
    for (what, r, status) in error_cases(&kserve.http, &binary) {
        match what {
            // KServe (FastAPI) answers a body that is not JSON with 422 and
            // `{"detail": [...]}`.
            "malformed JSON" => {
                assert_eq!(r.status, 422, "{}", r.text());
                assert!(r.json()["detail"].is_array(), "{}", r.text());
            }
            _ => assert_error_case(what, &r, status),
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    // It has no repository index (its repository extension is load/unload).
    let r = post_json(&kserve.http, "/v2/repository/index", "{}");
    assert_eq!(r.status, 404, "{}", r.text());
}

#[test]
#[ignore = "tests the tests: run against KServe's server, not tiffin"]
fn reference_kserve_classifies_with_every_client_alike_and_lists_no_version() {
    let kserve = KServe::start();
    let mut first: Option<Value> = None;
    for (client, url) in [
        ("triton-http-binary", &kserve.http),
        ("triton-grpc", &kserve.grpc),
        ("kserve-rest", &kserve.http),
        ("kserve-grpc", &kserve.grpc),
    ] {
        let run = classify(client, url, &["--limit", "40"], &[]);
        // KServe's metadata lists `versions: null`: the contract's
        // `assert_digits_metadata` would refuse it, so only its tensors here.
        assert_eq!(run["version"], Value::Null, "{client}");
        assert_eq!(run["ids"]["echoed"], run["ids"]["sent"], "{client}");
        let first = first.get_or_insert_with(|| run.clone());
        assert_same_answers(
            &pass_answers(&run, "single"),
            &pass_answers(first, "single"),
            client,
        );
    }
}
