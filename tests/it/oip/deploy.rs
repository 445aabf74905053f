//! `deploy/kubernetes/kserve/`: the ServingRuntime and InferenceService that
//! run tiffin under KServe with protocol v2, validated against KServe's own
//! published CRD schemas (tests/fixtures/kserve/, checked strictly with the
//! `jsonschema` package by tests/fixtures/kserve/validate.py), agreeing with
//! each other and with deploy/kubernetes/, and the runtime's container
//! arguments started as written on the committed model.

use super::*;

const RUNTIME: &str = "deploy/kubernetes/kserve/servingruntime.yaml";
const SERVICE: &str = "deploy/kubernetes/kserve/inferenceservice.yaml";

fn manifest(path: &str) -> Value {
    let text = std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// validate.py's errors for each object of `paths`, by kind.
fn validate(paths: &[PathBuf]) -> Vec<(String, Vec<String>)> {
    let mut args: Vec<String> = vec![
        repo("tests/fixtures/kserve/validate.py")
            .display()
            .to_string(),
    ];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let mut cmd = Command::new(oip_python());
    cmd.args(&args);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.is_some_and(|s| s.success()),
        "validate.py failed: {}",
        out.stderr
    );
    let report: Value = serde_json::from_str(out.stdout.trim()).expect("JSON");
    report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| {
            let errors = o["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .map(|e| e.as_str().expect("an error").to_string())
                .collect();
            (o["kind"].as_str().expect("kind").to_string(), errors)
        })
        .collect()
}

#[test]
fn the_kserve_manifests_pass_kserves_published_crd_schemas() {
    let checked = validate(&[repo(RUNTIME), repo(SERVICE)]);
    assert_eq!(
        checked,
        vec![
            ("ServingRuntime".to_string(), vec![]),
            ("InferenceService".to_string(), vec![])
        ]
    );
    // The check can fail: a field the schema lacks, a value of the wrong type.
    let dir = std::env::temp_dir().join(format!("tiffin-oip-crd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    let text = std::fs::read_to_string(repo(RUNTIME)).unwrap();
    std::fs::write(
        &bad,
        text.replace("protocolVersions:", "protocolVersion:")
            .replace("periodSeconds: 5", "periodSeconds: five"),
    )
    .unwrap();
    let errors = &validate(std::slice::from_ref(&bad))[0].1;
    assert!(
        errors
            .iter()
            .any(|e| e.contains("'protocolVersion' was unexpected"))
            && errors
                .iter()
                .any(|e| e.contains("readinessProbe.periodSeconds")),
        "{errors:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_kserve_manifests_agree_with_each_other_and_with_the_image() {
    let runtime = manifest(RUNTIME);
    let service = manifest(SERVICE);
    let container = &runtime["spec"]["containers"][0];
    assert_eq!(runtime["spec"]["protocolVersions"], json!(["v2"]));
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        "/v2/health/ready"
    );
    let port = &container["ports"][0]["containerPort"];
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], *port);
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| *a == name)
            .map(|i| args[i + 1])
            .unwrap_or_else(|| panic!("{name} in {args:?}"))
    };
    assert_eq!(flag("--port"), port.as_i64().expect("a port").to_string());
    assert_eq!(flag("--model"), "/mnt/models/{{.Name}}.onnx");
    // tiffin names the model after its file: the InferenceService's name
    // is the file stem, so KServe's /v2/models/digits/ route is tiffin's.
    assert_eq!(service["metadata"]["name"], "digits");
    let predictor = &service["spec"]["predictor"]["model"];
    assert_eq!(predictor["runtime"], runtime["metadata"]["name"]);
    assert_eq!(predictor["protocolVersion"], "v2");
    assert_eq!(
        predictor["modelFormat"]["name"],
        runtime["spec"]["supportedModelFormats"][0]["name"]
    );
    assert!(
        predictor["storageUri"]
            .as_str()
            .is_some_and(|u| u.ends_with("/digits.onnx")),
        "{predictor}"
    );
    // The image deploy/kubernetes/kustomization.yaml names.
    let kustomization = manifest("deploy/kubernetes/kustomization.yaml");
    let image = &kustomization["images"][0];
    assert_eq!(
        container["image"],
        json!(format!(
            "{}:{}",
            image["newName"].as_str().expect("newName"),
            image["newTag"].as_str().expect("newTag")
        ))
    );
}

/// The runtime's arguments as written, `{{.Name}}` filled in as KServe
/// does and /mnt/models as the storage initializer fills it (the committed
/// model), start tiffin ready on the protocol's readiness route.
#[test]
fn the_serving_runtime_arguments_start_tiffin_ready_on_the_protocol_route() {
    let runtime = manifest(RUNTIME);
    let args: Vec<String> = runtime["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| {
            a.as_str()
                .expect("an argument")
                .replace("{{.Name}}", "digits")
                .replace("/mnt/models", &repo("models/digits").display().to_string())
        })
        .collect();
    // The harness binds 127.0.0.1 on a free port itself.
    let mut kept: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--host" || args[i] == "--port" {
            i += 2;
            continue;
        }
        kept.push(&args[i]);
        i += 1;
    }
    assert_eq!(kept[0], "serve-http", "{args:?}");
    let server = Launch::subcommand(kept[0], &kept[1..]).start();
    let ready = server.get("/v2/health/ready");
    assert_eq!(ready.status, 200, "{}", ready.text());
    let live = server.get("/v2/health/live");
    assert_eq!(live.status, 200, "{}", live.text());
    assert_digits_metadata(&server.get("/v2/models/digits").json());
}
