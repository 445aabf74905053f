//! The files in `deploy/` are valid for the tools that read them: the
//! Prometheus config passes `promtool check config`, and every PromQL query of
//! the Grafana dashboard parses (`promtool check rules` on them as recording rules).

use crate::common;

use std::path::Path;
use std::process::Command;

use common::require_tool;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tiffin-deploy-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn prometheus_config_passes_promtool() {
    let promtool = require_tool("promtool");
    let out = Command::new(promtool)
        .args(["check", "config"])
        .arg(repo("deploy/prometheus.yml"))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    let promtool = require_tool("promtool");
    let text = std::fs::read_to_string(repo("deploy/grafana-dashboard.json")).expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(|e| e.replace("$service", ".*")))
        .collect();
    assert!(exprs.len() >= 8, "dashboard queries: {exprs:?}");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let quoted = serde_json::to_string(e).expect("quote");
        rules.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = scratch("rules");
    let file = dir.join("rules.yml");
    std::fs::write(&file, rules).expect("write rules");
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
