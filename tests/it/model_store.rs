//! `tiffin models ...` end to end, each test with its own `$TIFFIN_HOME`:
//! import (metadata read from the model, labels, sha256), list, `latest`
//! resolving to the newest version, get, export, delete, clear errors for
//! bad tags, missing models and files that are not models, a corrupt entry
//! (hash mismatch) detected, and `serve-http --model NAME` serving a stored
//! model.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

struct Home(PathBuf);

impl Home {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tiffin-home-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Home(dir)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(tiffin_bin())
            .args(args)
            .env("TIFFIN_HOME", &self.0)
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tiffin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "tiffin {args:?} must fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn import_list_get_latest_export_delete() {
    let home = Home::new("cycle");
    let model = repo("models/digits/digits.onnx");
    let m = model.to_str().unwrap();
    let first = home
        .ok(&[
            "models", "import", m, "--name", "digits", "--label", "team=ml",
        ])
        .trim()
        .to_string();
    let second = home
        .ok(&["models", "import", m, "--name", "digits"])
        .trim()
        .to_string();
    assert!(first.starts_with("digits:") && second.starts_with("digits:"));
    assert_ne!(first, second);
    assert!(second > first, "versions sort by age: {first} < {second}");

    let list: serde_json::Value =
        serde_json::from_str(&home.ok(&["models", "list", "--json"])).unwrap();
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let meta = &entries[0];
    assert_eq!(
        format!("digits:{}", meta["version"].as_str().unwrap()),
        first
    );
    assert_eq!(meta["sha256"], sha256_hex(&model));
    assert_eq!(meta["size"], std::fs::metadata(&model).unwrap().len());
    assert_eq!(meta["framework"], "onnx");
    assert_eq!(meta["labels"]["team"], "ml");
    assert_eq!(meta["inputs"][0]["name"], "pixels");
    assert_eq!(meta["inputs"][0]["dtype"], "float32");
    assert_eq!(meta["inputs"][0]["shape"], serde_json::json!([null, 64]));
    assert_eq!(meta["outputs"][1]["name"], "label");
    assert!(meta["created"].as_str().unwrap().ends_with('Z'));
    // The entry is where the store says.
    let version = meta["version"].as_str().unwrap();
    assert!(
        home.0
            .join("models/digits")
            .join(version)
            .join("model.onnx")
            .is_file()
    );
    let table = home.ok(&["models", "list"]);
    assert!(table.contains(version), "{table}");

    // `NAME` and `NAME:latest` are the newest.
    for tag in ["digits", "digits:latest"] {
        let got: serde_json::Value =
            serde_json::from_str(&home.ok(&["models", "get", tag])).unwrap();
        assert_eq!(
            format!("digits:{}", got["version"].as_str().unwrap()),
            second
        );
    }
    let got: serde_json::Value =
        serde_json::from_str(&home.ok(&["models", "get", &first])).unwrap();
    assert_eq!(got["labels"]["team"], "ml");

    let out = home.0.join("exported.onnx");
    home.ok(&["models", "export", &first, out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&model).unwrap());

    // Deleting the newest makes the older one latest again.
    let e = home.fails(&["models", "delete", "digits"]);
    assert!(e.contains("explicit version"), "{e}");
    home.ok(&["models", "delete", &second]);
    let got: serde_json::Value =
        serde_json::from_str(&home.ok(&["models", "get", "digits:latest"])).unwrap();
    assert_eq!(
        format!("digits:{}", got["version"].as_str().unwrap()),
        first
    );
    home.ok(&["models", "delete", &first]);
    let e = home.fails(&["models", "get", "digits"]);
    assert!(
        e.contains("no model digits:latest") && e.contains("store is empty"),
        "{e}"
    );
}

#[test]
fn bad_tags_missing_models_and_non_models_get_clear_errors() {
    let home = Home::new("errors");
    let e = home.fails(&["models", "get", "../etc"]);
    assert!(
        e.contains("invalid model tag \"../etc\"") && e.contains("starts with"),
        "{e}"
    );
    let e = home.fails(&["models", "get", "a:b:c"]);
    assert!(e.contains("invalid model tag"), "{e}");
    let e = home.fails(&["models", "get", "nothing"]);
    assert!(e.contains("no model nothing:latest"), "{e}");
    let m = repo("models/digits/digits.onnx");
    home.ok(&["models", "import", m.to_str().unwrap(), "--name", "digits"]);
    let e = home.fails(&["models", "get", "digits:20000101T000000Z-000000"]);
    assert!(e.contains("versions: "), "{e}");
    let e = home.fails(&["models", "get", "other"]);
    assert!(e.contains("models: digits"), "{e}");
    let csv = repo("models/digits/test/labels.csv");
    let e = home.fails(&["models", "import", csv.to_str().unwrap(), "--name", "x"]);
    assert!(e.contains("labels.csv is not an ONNX model"), "{e}");
    let e = home.fails(&[
        "models",
        "import",
        m.to_str().unwrap(),
        "--name",
        "bad/name",
    ]);
    assert!(e.contains("contains '/'"), "{e}");
    let e = home.fails(&[
        "models",
        "import",
        m.to_str().unwrap(),
        "--name",
        "x",
        "--label",
        "novalue",
    ]);
    assert!(e.contains("invalid label \"novalue\""), "{e}");
    // Nothing half-imported is listed.
    let list: serde_json::Value =
        serde_json::from_str(&home.ok(&["models", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn a_corrupt_entry_is_detected_by_its_hash() {
    let home = Home::new("corrupt");
    let m = repo("models/digits/digits.onnx");
    let tag = home
        .ok(&["models", "import", m.to_str().unwrap(), "--name", "digits"])
        .trim()
        .to_string();
    let version = tag.strip_prefix("digits:").unwrap();
    let file = home
        .0
        .join("models/digits")
        .join(version)
        .join("model.onnx");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let e = home.fails(&["models", "get", &tag]);
    assert!(
        e.contains(&format!("model {tag} in the store is corrupt")),
        "{e}"
    );
    assert!(
        e.contains("has sha256") && e.contains(&sha256_hex(&m)),
        "{e}"
    );
    // Serving it is refused too, and list reports it.
    let out = Command::new(tiffin_bin())
        .args([
            "serve-http",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--model",
            "digits",
        ])
        .env("TIFFIN_HOME", &home.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is corrupt"));
    let list = home.run(&["models", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert!(
        rows[0]["error"].as_str().unwrap().contains("corrupt"),
        "{rows}"
    );
    // A metadata file that does not parse is corrupt as well.
    std::fs::write(file.with_file_name("model.json"), b"{").unwrap();
    let e = home.fails(&["models", "get", &tag]);
    assert!(e.contains("model.json does not parse"), "{e}");
}

#[test]
fn serve_http_model_name_serves_the_stored_model() {
    let home = Home::new("serve");
    let m = repo("models/digits/digits.onnx");
    home.ok(&["models", "import", m.to_str().unwrap(), "--name", "mnist8"]);
    let server = Launch::http(&["--model", "mnist8:latest"])
        .env("TIFFIN_HOME", home.0.to_str().unwrap())
        .start();
    let body = format!("[[{}]]", vec!["0"; 64].join(","));
    let r = server.post("/predict", "application/json", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["label"].as_array().unwrap().len(), 1);
    let status = status_json(&server);
    assert_eq!(status["service"], "mnist8", "{status}");
}

#[test]
fn a_stored_model_is_asked_for_over_the_open_inference_protocol_by_its_store_name_and_version() {
    let home = Home::new("oip");
    let m = repo("models/digits/digits.onnx");
    let m = m.to_str().unwrap();
    let tag = |out: String| out.trim().rsplit(':').next().unwrap().to_string();
    let old = tag(home.ok(&["models", "import", m, "--name", "mnist8"]));
    let new = tag(home.ok(&["models", "import", m, "--name", "mnist8"]));
    let other = tag(home.ok(&["models", "import", m, "--name", "other"]));
    let server = Launch::http(&["--model", "mnist8:latest"])
        .env("TIFFIN_HOME", home.0.to_str().unwrap())
        .start();

    let meta = server.get("/v2/models/mnist8");
    assert_eq!(meta.status, 200, "{}", meta.text());
    assert_eq!(meta.json()["versions"], serde_json::json!([new]));
    assert_eq!(
        server
            .get(&format!("/v2/models/mnist8/versions/{new}"))
            .status,
        200
    );
    let gone = server.get(&format!("/v2/models/mnist8/versions/{old}"));
    assert_eq!(gone.status, 404, "{}", gone.text());
    assert!(
        gone.json()["error"].as_str().unwrap().contains(&new),
        "{}",
        gone.text()
    );

    let row = vec!["0"; 64].join(",");
    let body = format!(
        r#"{{"inputs":[{{"name":"pixels","shape":[1,64],"datatype":"FP32","data":[{row}]}}]}}"#
    );
    let r = server.post(
        &format!("/v2/models/mnist8/versions/{new}/infer"),
        "application/json",
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model_name"], "mnist8");
    assert_eq!(r.json()["model_version"], new.as_str());

    let index = server.post("/v2/repository/index", "application/json", b"{}");
    assert_eq!(index.status, 200, "{}", index.text());
    let rows: Vec<(String, String, String)> = index
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("name"), s("version"), s("state"))
        })
        .collect();
    let row = |n: &str, v: &str, s: &str| (n.to_string(), v.to_string(), s.to_string());
    assert_eq!(
        rows,
        vec![
            row("mnist8", &new, "READY"),
            row("mnist8", &old, "UNAVAILABLE"),
            row("other", &other, "UNAVAILABLE"),
        ]
    );
}
