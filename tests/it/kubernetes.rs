//! `deploy/kubernetes/` checked by the tools that read it, and its scaling
//! loop run on real software as far as this machine allows:
//!
//! - `kubectl kustomize` renders the kustomization, `kubernetes-validate
//!   --strict` checks every object against the Kubernetes API schemas of
//!   [`KUBERNETES_VERSION`], and the ServiceMonitor passes the Prometheus
//!   Operator's validators (npm `@kubernetes-models/prometheus-operator`,
//!   generated from the operator's API types). All installed by
//!   `scripts/setup/30-deploy`.
//! - The ConfigMap's file, the Deployment's arguments and its environment
//!   (with `$(TIFFIN_CPU_LIMIT)` expanded as the kubelet would) start the
//!   real binary, which then runs one API server and one runner worker per
//!   CPU of the limit.
//! - Three supervisors stand in for three pods and one real Prometheus
//!   scrapes them with the relabelling the operator generates for the
//!   ServiceMonitor. Under uneven load on a slow endpoint, the Prometheus
//!   adapter's per-pod query (from `prometheus-adapter.yaml`, its template
//!   filled in as the adapter does) gives each pod its own count, the
//!   dashboard's service-wide sums equal the sums of the instances' own
//!   `/metrics`. That is where the test stops: no HPA controller, adapter
//!   or operator runs here, so what the HPA makes of those figures is not
//!   tested (it is Kubernetes's documented algorithm).

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::prometheus::Prometheus;
use common::{
    Launch, Server, example_bin, free_port, http, parse_exposition, require_tool, status_json,
    worker_role,
};
use serde_json::Value;

/// The Kubernetes version the manifests are validated against. The preStop
/// `sleep` action needs 1.30 or later (it is rejected by 1.28's schema).
const KUBERNETES_VERSION: &str = "1.32.0";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A tool that `scripts/setup/30-deploy` installs under `target/`.
fn installed(path: &str) -> PathBuf {
    let p = repo(path);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup/30-deploy (scripts/test runs it)",
        p.display()
    );
    p
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tiffin-k8s-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn run(cmd: &mut Command) -> (bool, String) {
    let f = common::run_with_timeout(cmd, Duration::from_secs(120));
    let ok = f.status.is_some_and(|s| s.success());
    (ok, format!("{}{}", f.stdout, f.stderr))
}

/// Every YAML document of `text`, as JSON values.
fn documents(text: &str) -> Vec<Value> {
    text.split("\n---")
        .map(|d| d.trim_start_matches("---"))
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        })
        .map(|d| serde_yaml_ng::from_str(d).unwrap_or_else(|e| panic!("YAML: {e}\n{d}")))
        .collect()
}

/// `kubectl kustomize deploy/kubernetes`: what `kubectl apply -k` would send.
fn rendered() -> (String, Vec<Value>) {
    let kubectl = require_tool("kubectl");
    let (ok, out) = run(Command::new(kubectl)
        .arg("kustomize")
        .arg(repo("deploy/kubernetes")));
    assert!(ok, "kubectl kustomize failed:\n{out}");
    let docs = documents(&out);
    (out, docs)
}

fn file(path: &str) -> Value {
    let text = std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut docs = documents(&text);
    assert_eq!(docs.len(), 1, "{path}: one object");
    docs.remove(0)
}

fn object<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind} in the kustomization");
    found[0]
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container: {containers:?}");
    &containers[0]
}

fn args(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .expect("container args")
        .iter()
        .map(|a| str_of(a, "arg").to_string())
        .collect()
}

fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("{name} in {args:?}"));
    args.get(i + 1)
        .unwrap_or_else(|| panic!("{name} without a value"))
}

/// A Kubernetes quantity in whole units ("2", "1500m").
fn quantity(q: &str) -> f64 {
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().expect("milli quantity") / 1000.0,
        None => q.parse().unwrap_or_else(|_| panic!("quantity {q:?}")),
    }
}

/// `$(NAME)` expanded from the variables defined before, as the kubelet
/// expands a container's `env` values.
fn expand(value: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = value.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("$({k})"), v);
    }
    assert!(!out.contains("$("), "unexpanded variable in {value:?}");
    out
}

/// The container's environment as the kubelet would set it, for a pod
/// whose resources are those of the manifest.
fn environment(deployment: &Value) -> BTreeMap<String, String> {
    let c = container(deployment);
    let mut vars = BTreeMap::new();
    for e in c["env"].as_array().expect("env") {
        let name = str_of(&e["name"], "env name").to_string();
        let value = if let Some(v) = e["value"].as_str() {
            expand(v, &vars)
        } else {
            let field = &e["valueFrom"]["resourceFieldRef"];
            assert_eq!(field["containerName"], c["name"], "{e}");
            let resource = str_of(&field["resource"], "resource");
            let (section, key) = resource.split_once('.').expect("limits.cpu");
            let amount = quantity(str_of(&c["resources"][section][key], resource));
            let divisor = quantity(field["divisor"].as_str().unwrap_or("1"));
            // resourceFieldRef rounds up to a whole number of divisors.
            ((amount / divisor).ceil() as u64).to_string()
        };
        vars.insert(name, value);
    }
    vars
}

#[test]
fn every_manifest_passes_kubernetes_validate_strict() {
    let validate = installed("target/pyvenv-deploy/bin/kubernetes-validate");
    let (text, docs) = rendered();
    let dir = scratch("validate");
    let all = dir.join("rendered.yaml");
    std::fs::write(&all, &text).expect("write rendered");
    let adapter = repo("deploy/kubernetes/prometheus-adapter.yaml");
    let (ok, out) = run(Command::new(&validate)
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .arg(&all)
        .arg(&adapter));
    assert!(ok, "kubernetes-validate:\n{out}");
    for kind in [
        "configmap/tiffin-config",
        "deployment/tiffin",
        "service/tiffin",
        "poddisruptionbudget/tiffin",
        "horizontalpodautoscaler/tiffin",
        "configmap/adapter-config",
    ] {
        assert!(
            out.contains(&format!("passed for resource {kind} ")),
            "{kind} validated:\n{out}"
        );
    }
    // Only the CRD object has no built-in schema: the next test checks it.
    let skipped = out.lines().filter(|l| l.starts_with("WARN")).count();
    assert_eq!(
        skipped, 1,
        "only the ServiceMonitor has no built-in schema:\n{out}"
    );
    assert_eq!(docs.len(), 6, "{docs:?}");

    // --strict rejects a field the API does not have (the check can fail).
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        text.replace("terminationGracePeriodSeconds", "terminationGracePeriod"),
    )
    .expect("write bad");
    let (ok, out) = run(Command::new(&validate)
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .arg(&bad));
    assert!(!ok && out.contains("terminationGracePeriod"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the operator's validator on `monitor`; `Err` carries its message.
fn validate_monitor(monitor: &Value, dir: &Path) -> Result<(), String> {
    let models = installed(
        "target/npm-deploy/node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
    );
    let kind = str_of(&monitor["kind"], "kind");
    let module = models.join(format!("{kind}.js"));
    let input = dir.join(format!("{kind}.json"));
    std::fs::write(&input, monitor.to_string()).expect("write monitor");
    let script = format!(
        "const m = await import({module:?});\n\
         const fs = await import('node:fs');\n\
         const obj = JSON.parse(fs.readFileSync({input:?}, 'utf8'));\n\
         try {{ new m.{kind}(obj).validate(); console.log('valid'); }}\n\
         catch (e) {{ console.log('invalid: ' + e.message); process.exit(1); }}",
        module = module.display().to_string(),
        input = input.display().to_string(),
    );
    let (ok, out) = run(Command::new(require_tool("node"))
        .args(["--input-type=module", "-e"])
        .arg(script));
    if ok && out.contains("valid") {
        Ok(())
    } else {
        Err(out)
    }
}

#[test]
fn the_service_monitor_passes_the_prometheus_operator_schema() {
    let (_, docs) = rendered();
    let monitor = object(&docs, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let dir = scratch("monitor");
    validate_monitor(monitor, &dir).unwrap_or_else(|e| panic!("ServiceMonitor: {e}"));
    // The validator does fail: a duration Prometheus cannot parse, no selector.
    let mut bad = monitor.clone();
    bad["spec"]["endpoints"][0]["interval"] = Value::from("5 seconds");
    let e = validate_monitor(&bad, &dir).expect_err("bad interval");
    assert!(e.contains("interval"), "{e}");
    let mut bad = monitor.clone();
    bad["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("selector");
    let e = validate_monitor(&bad, &dir).expect_err("no selector");
    assert!(e.contains("selector"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_manifests_agree_with_each_other_and_with_deploy_prometheus_yml() {
    let (_, docs) = rendered();
    let deployment = object(&docs, "Deployment");
    let service = object(&docs, "Service");
    let monitor = object(&docs, "ServiceMonitor");
    let pdb = object(&docs, "PodDisruptionBudget");
    let hpa = object(&docs, "HorizontalPodAutoscaler");
    let c = container(deployment);
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let labels_match = |selector: &Value| {
        selector
            .as_object()
            .expect("selector")
            .iter()
            .all(|(k, v)| &pod_labels[k] == v)
    };
    assert!(labels_match(&deployment["spec"]["selector"]["matchLabels"]));
    assert!(
        labels_match(&service["spec"]["selector"]),
        "Service selects the pods"
    );
    assert!(
        labels_match(&pdb["spec"]["selector"]["matchLabels"]),
        "PDB selects the pods"
    );
    let service_labels = &service["metadata"]["labels"];
    assert!(
        monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("monitor selector")
            .iter()
            .all(|(k, v)| &service_labels[k] == v),
        "ServiceMonitor selects the Service"
    );

    // The monitor scrapes the supervisor's --metrics-port at the path of
    // deploy/prometheus.yml.
    let prometheus_yml = file("deploy/prometheus.yml");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(
        endpoint["path"], prometheus_yml["scrape_configs"][0]["metrics_path"],
        "metrics_path as in deploy/prometheus.yml"
    );
    let port_name = str_of(&endpoint["port"], "monitor port");
    let service_port = service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == port_name)
        .unwrap_or_else(|| panic!("Service has a port named {port_name}"));
    let container_port = c["ports"]
        .as_array()
        .expect("container ports")
        .iter()
        .find(|p| p["name"] == service_port["targetPort"])
        .expect("the Service's targetPort names a container port");
    let a = args(c);
    assert_eq!(
        container_port["containerPort"].to_string(),
        flag(&a, "--metrics-port"),
        "the scraped port is the one tiffin serves metrics on"
    );

    // Stopping: preStop sleep, then SIGTERM and the drain, all within the grace period.
    let grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_f64()
        .expect("terminationGracePeriodSeconds");
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_f64()
        .expect("preStop sleep");
    let drain: f64 = flag(&a, "--graceful-timeout")
        .parse()
        .expect("graceful timeout");
    assert!(
        grace > pre_stop + drain,
        "terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} + --graceful-timeout {drain}"
    );
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert!(c[probe]["httpGet"]["path"].is_string(), "{probe}");
    }
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");

    // The HPA scales this Deployment on the metric the adapter serves.
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    let rule = adapter_rule();
    let metric = &hpa["spec"]["metrics"][0];
    assert_eq!(metric["type"], "Pods");
    assert_eq!(
        metric["pods"]["metric"]["name"].as_str(),
        Some(rule.series.as_str())
    );
    assert_eq!(
        rule.name_as, "${1}",
        "the adapter serves the series under its own name"
    );
}

#[test]
fn the_deployment_config_starts_the_real_binary_with_workers_from_the_cpu_limit() {
    let (_, docs) = rendered();
    let deployment = object(&docs, "Deployment");
    let config_map = object(&docs, "ConfigMap");
    let c = container(deployment);
    let env = environment(deployment);
    let cpus: usize = env["TIFFIN_CPU_LIMIT"].parse().expect("cpu limit");
    assert!(cpus >= 1, "{env:?}");

    // The mounted file, at a path of ours.
    let mount = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == "config")
        .expect("config mount");
    let a = args(c);
    let config_path = flag(&a, "--config").to_string();
    let key = config_path
        .strip_prefix(&format!("{}/", str_of(&mount["mountPath"], "mountPath")))
        .expect("--config is in the ConfigMap's mount");
    let dir = scratch("config");
    let file = dir.join(key);
    std::fs::write(&file, str_of(&config_map["data"][key], "config data")).expect("write config");

    // The container's arguments, with our file and a free metrics port
    // (the harness adds --host 127.0.0.1 --port 0).
    let metrics_port = free_port();
    let args: Vec<String> = a
        .iter()
        .map(|x| {
            if *x == config_path {
                file.display().to_string()
            } else if *x == flag(&a, "--metrics-port") {
                metrics_port.to_string()
            } else {
                x.clone()
            }
        })
        .collect();
    let rest: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    let mut launch = Launch::subcommand(&args[0], &rest);
    for (k, v) in &env {
        launch = launch.env(k, v);
    }
    let mut server = launch.start();
    let status = status_json(&server);
    let workers = status["workers"].as_array().expect("workers");
    let api = workers
        .iter()
        .filter(|w| worker_role(w).0 == "api-server")
        .count();
    assert_eq!(api, cpus, "api_server.workers from the CPU limit: {status}");
    let mut runners: BTreeMap<String, usize> = BTreeMap::new();
    for w in workers {
        if let (role, Some(runner), _) = worker_role(w)
            && role == "runner"
        {
            *runners.entry(runner).or_default() += 1;
        }
    }
    assert!(!runners.is_empty(), "{status}");
    assert!(
        runners.values().all(|n| *n == cpus),
        "runners.workers from the CPU limit: {runners:?}"
    );
    assert_eq!(server.get("/livez").status, 200);
    let scrape = http(
        &format!("127.0.0.1:{metrics_port}"),
        "GET",
        "/metrics",
        &[],
        b"",
    )
    .expect("metrics port");
    assert_eq!(scrape.status, 200);
    assert!(scrape.text().contains("tiffin_supervisor_workers"));
    // SIGTERM (what the kubelet sends after preStop) drains and exits 0.
    let exit = server.signal_and_wait(libc::SIGTERM);
    assert!(exit.success(), "{exit:?}\n{}", server.log());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The adapter's one rule, from `prometheus-adapter.yaml`.
struct AdapterRule {
    series_query: String,
    /// The metric name in `series_query`.
    series: String,
    metrics_query: String,
    name_as: String,
    /// Prometheus label → Kubernetes resource.
    overrides: BTreeMap<String, String>,
}

fn adapter_rule() -> AdapterRule {
    let map = file("deploy/kubernetes/prometheus-adapter.yaml");
    let config: Value = serde_yaml_ng::from_str(str_of(&map["data"]["config.yaml"], "config.yaml"))
        .expect("adapter config is YAML");
    let rules = config["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1, "{rules:?}");
    let r = &rules[0];
    let series_query = str_of(&r["seriesQuery"], "seriesQuery").to_string();
    let series = series_query
        .split('{')
        .next()
        .expect("series name")
        .to_string();
    let overrides = r["resources"]["overrides"]
        .as_object()
        .expect("overrides")
        .iter()
        .map(|(label, o)| {
            (
                label.clone(),
                str_of(&o["resource"], "resource").to_string(),
            )
        })
        .collect();
    AdapterRule {
        series_query,
        series,
        metrics_query: str_of(&r["metricsQuery"], "metricsQuery").to_string(),
        name_as: str_of(&r["name"]["as"], "name.as").to_string(),
        overrides,
    }
}

/// The adapter's query for `pods` of `namespace`, as it builds it for the
/// HPA: the series, label matchers for the namespace and the pods, grouped
/// by the pod label.
fn adapter_pods_query(rule: &AdapterRule, namespace: &str, pods: &[&str]) -> String {
    let label_of = |resource: &str| {
        rule.overrides
            .iter()
            .find(|(_, r)| r.as_str() == resource)
            .map(|(l, _)| l.clone())
            .unwrap_or_else(|| panic!("no label maps to {resource}"))
    };
    let (ns, pod) = (label_of("namespace"), label_of("pod"));
    let matchers = format!("{ns}=\"{namespace}\",{pod}=~\"{}\"", pods.join("|"));
    rule.metrics_query
        .replace("<<.Series>>", &rule.series)
        .replace("<<.LabelMatchers>>", &matchers)
        .replace("<<.GroupBy>>", &pod)
}

/// The dashboard query whose text contains `needle`, for service `service`.
fn dashboard_query(needle: &str, service: &str) -> String {
    let text = std::fs::read_to_string(repo("deploy/grafana-dashboard.json")).expect("dashboard");
    let dash: Value = serde_json::from_str(&text).expect("dashboard JSON");
    dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .find(|e| e.contains(needle))
        .unwrap_or_else(|| panic!("no dashboard query with {needle}"))
        .replace("$service", service)
}

/// The value of the instance's own aggregated `/metrics` (its metrics port).
fn own(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let r = http(metrics, "GET", "/metrics", &[], b"").expect("own /metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    parse_exposition(&r.text()).sum(name, labels)
}

#[test]
fn three_pods_scraped_by_one_prometheus_give_the_adapter_query_each_pods_own_figure() {
    let (_, docs) = rendered();
    let deployment = object(&docs, "Deployment");
    let service = object(&docs, "Service");
    let monitor = object(&docs, "ServiceMonitor");
    let hpa = object(&docs, "HorizontalPodAutoscaler");
    let rule = adapter_rule();
    let target = quantity(str_of(
        &hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"],
        "averageValue",
    ));
    assert!(
        target >= 1.0 && target.fract() == 0.0,
        "whole target {target}"
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    let service_name = str_of(&service["metadata"]["name"], "service name");
    let container_name = str_of(&container(deployment)["name"], "container");
    let port_name = str_of(&endpoint["port"], "port");
    let metrics_path = str_of(&endpoint["path"], "path");

    // Three pods: the example service's `slow` API holds a request in its
    // runner, so requests stay in progress while Prometheus scrapes.
    let bin = example_bin("custom_service");
    assert!(bin.exists(), "{} (cargo build --examples)", bin.display());
    let pods = ["tiffin-5d8c9-a", "tiffin-5d8c9-b", "tiffin-5d8c9-c"];
    let namespace = "default";
    let instances: Vec<(Server, String)> = pods
        .iter()
        .map(|_| {
            let port = free_port();
            let server = Launch::http(&[
                "--api-workers",
                "1",
                "--runner-workers",
                "1",
                "--metrics-port",
                &port.to_string(),
            ])
            .bin(bin.clone())
            .start();
            (server, format!("127.0.0.1:{port}"))
        })
        .collect();
    let service_label = "custom";

    // One scrape job as the operator generates it for the ServiceMonitor
    // (role endpoints): the discovered pod's metadata becomes the namespace,
    // service, pod, container and endpoint labels, job is the Service's name,
    // instance the target address. Static targets carry that metadata here.
    let mut targets = String::new();
    for (pod, (_, metrics)) in pods.iter().zip(&instances) {
        targets.push_str(&format!(
            "      - targets: [\"{metrics}\"]\n        labels:\n\
             \x20         __meta_kubernetes_namespace: {namespace}\n\
             \x20         __meta_kubernetes_service_name: {service_name}\n\
             \x20         __meta_kubernetes_pod_name: {pod}\n\
             \x20         __meta_kubernetes_pod_container_name: {container_name}\n\
             \x20         __meta_kubernetes_endpoint_port_name: {port_name}\n"
        ));
    }
    let job = format!("serviceMonitor/{namespace}/{service_name}/0");
    let honor = endpoint["honorLabels"].as_bool().unwrap_or(false);
    let scrape = format!(
        "  - job_name: {job}\n    honor_labels: {honor}\n    metrics_path: \"{metrics_path}\"\n    static_configs:\n{targets}\
         \x20   relabel_configs:\n\
         \x20     - {{source_labels: [__meta_kubernetes_endpoint_port_name], regex: {port_name}, action: keep}}\n\
         \x20     - {{source_labels: [__meta_kubernetes_namespace], target_label: namespace}}\n\
         \x20     - {{source_labels: [__meta_kubernetes_service_name], target_label: service}}\n\
         \x20     - {{source_labels: [__meta_kubernetes_pod_name], target_label: pod}}\n\
         \x20     - {{source_labels: [__meta_kubernetes_pod_container_name], target_label: container}}\n\
         \x20     - {{source_labels: [__meta_kubernetes_service_name], target_label: job, replacement: \"${{1}}\"}}\n\
         \x20     - {{target_label: endpoint, replacement: {port_name}}}\n"
    );
    let prom = Prometheus::start(&scrape);
    prom.wait_up(service_name, pods.len(), Duration::from_secs(30));

    // The adapter discovers the series by its seriesQuery, with the labels
    // its overrides name.
    let series = http(
        &prom.addr,
        "GET",
        &format!(
            "/api/v1/series?match[]={}",
            common::prometheus::percent_encode(&rule.series_query)
        ),
        &[],
        b"",
    )
    .expect("series");
    let series: Value = serde_json::from_slice(&series.body).expect("series JSON");
    let found = series["data"].as_array().cloned().unwrap_or_default();
    assert!(!found.is_empty(), "seriesQuery finds nothing: {series}");
    for s in &found {
        for label in rule.overrides.keys() {
            assert!(s[label].is_string(), "series without {label}: {s}");
        }
    }

    // Uneven load: 2T+1, T and T/2 requests in flight on the three pods.
    let t = target as u64;
    let loads = [2 * t + 1, t, (t / 2).max(1)];
    let stop = Arc::new(AtomicBool::new(false));
    let done: Vec<Arc<AtomicU64>> = pods.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut clients = Vec::new();
    for (i, (server, _)) in instances.iter().enumerate() {
        for _ in 0..loads[i] {
            let (addr, stop, done) = (server.addr.clone(), stop.clone(), done[i].clone());
            clients.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let r = http(
                        &addr,
                        "POST",
                        "/slow",
                        &[("Content-Type", "application/json")],
                        b"300",
                    )
                    .expect("POST /slow");
                    assert_eq!(r.status, 200, "{}", r.text());
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
    }

    // Until one round sees, for every pod, the load applied in its own
    // /metrics and the same figure from the adapter's query (a client is
    // between two requests for a moment now and then: retry, bounded).
    let in_progress = "bentoml_api_server_request_in_progress";
    let adapter_query = adapter_pods_query(&rule, namespace, &pods);
    let dashboard_in_progress = dashboard_query(&format!("sum({in_progress}"), service_label);
    let deadline = Instant::now() + Duration::from_secs(40);
    let (per_pod, dashboard_sum) = loop {
        let own_values: Vec<f64> = instances
            .iter()
            .map(|(_, m)| own(m, in_progress, &[]))
            .collect();
        let adapter = prom.query(&adapter_query);
        let dashboard = prom.query(&dashboard_in_progress);
        let per_pod: Option<Vec<f64>> = adapter.as_ref().ok().and_then(|r| {
            pods.iter()
                .map(|p| r.iter().find(|(m, _)| m["pod"] == *p).map(|(_, v)| *v))
                .collect()
        });
        let steady = own_values.iter().zip(&loads).all(|(v, l)| *v == *l as f64);
        if steady
            && let Some(per_pod) = per_pod
            && per_pod == own_values
            && let Ok(d) = &dashboard
            && d.len() == 1
            && d[0].1 == own_values.iter().sum::<f64>()
        {
            break (per_pod, d[0].1);
        }
        assert!(
            Instant::now() < deadline,
            "loads {loads:?}; own {own_values:?}; adapter {adapter_query} => {adapter:?}; \
             dashboard {dashboard_in_progress} => {dashboard:?}\nprometheus log:\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // What is checked ends here: the figures the adapter would hand the HPA
    // are each pod's own. No HPA controller, adapter or operator runs; what
    // the controller does with the figures is Kubernetes's.
    eprintln!(
        "per-pod requests in progress (adapter query) {per_pod:?}, dashboard sum {dashboard_sum}, \
         HPA target {target} per pod"
    );

    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client thread");
    }

    // Counters, once Prometheus has scraped the final values: the dashboard's
    // request-rate aggregation over its selector (without the rate) equals
    // the sum of the three instances' own counts, and every answered request.
    let rate_query = dashboard_query("bentoml_api_server_request_total", service_label);
    let totals_query = rate_query.replace("rate(", "(").replace("[1m]", "");
    let answered: u64 = done.iter().map(|d| d.load(Ordering::SeqCst)).sum();
    let total = "bentoml_api_server_request_total";
    let mut own_totals: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (_, m) in &instances {
        let r = http(m, "GET", "/metrics", &[], b"").expect("own /metrics");
        for s in parse_exposition(&r.text()).find(total, &[]) {
            let key = (
                s.label("endpoint").unwrap_or_default().to_string(),
                s.label("http_response_code")
                    .unwrap_or_default()
                    .to_string(),
            );
            *own_totals.entry(key).or_default() += s.value;
        }
    }
    let slow = own_totals
        .get(&("/slow".to_string(), "200".to_string()))
        .copied();
    assert_eq!(
        slow,
        Some(answered as f64),
        "every answered request is counted once: {own_totals:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = prom.query(&totals_query);
        let prom_totals: Option<BTreeMap<(String, String), f64>> = r.as_ref().ok().map(|v| {
            v.iter()
                .map(|(m, x)| {
                    let label = |l: &str| m[l].as_str().unwrap_or_default().to_string();
                    ((label("endpoint"), label("http_response_code")), *x)
                })
                .collect()
        });
        if prom_totals.as_ref() == Some(&own_totals) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{totals_query} => {r:?}; the instances' own totals {own_totals:?}\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let rate = prom.query(&rate_query).expect("dashboard rate query");
    assert!(
        rate.iter()
            .any(|(m, v)| m["endpoint"] == "/slow" && *v > 0.0),
        "{rate_query} => {rate:?}"
    );
    // Supervisor gauges: the dashboard's worker count is the three pods' sum.
    let workers_query = dashboard_query(
        "sum by (role, runner_name) (tiffin_supervisor_workers)",
        service_label,
    );
    let r = prom.query(&workers_query).expect("workers query");
    let own_api: f64 = instances
        .iter()
        .map(|(_, m)| own(m, "tiffin_supervisor_workers", &[("role", "api_server")]))
        .sum();
    let prom_api: f64 = r
        .iter()
        .filter(|(m, _)| m["role"] == "api_server")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(prom_api, own_api, "{workers_query} => {r:?}");
    assert_eq!(own_api, 3.0);
}
