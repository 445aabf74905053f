//! The one Prometheus exposition parser of the tests: text format 0.0.4 and
//! OpenMetrics text, read strictly (an unreadable line fails the test,
//! naming it), into families with their `# TYPE`/`# HELP` and samples with
//! unescaped label values. Every test that reads a number off `/metrics`
//! goes through [`parse_exposition`] and [`Exposition::sum`].

use std::collections::BTreeMap;

/// One sample of a Prometheus text (or OpenMetrics) exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// Whether every `(name, value)` pair is one of this sample's labels.
    pub fn has(&self, labels: &[(&str, &str)]) -> bool {
        labels.iter().all(|(k, v)| self.label(k) == Some(v))
    }
}

/// A parsed exposition: `# TYPE` and `# HELP` per family, samples in order.
#[derive(Debug, Default, Clone)]
pub struct Exposition {
    pub types: BTreeMap<String, String>,
    pub helps: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The family (a name with a `# TYPE` line) a sample name belongs to.
    pub fn family_of(&self, sample_name: &str) -> Option<&str> {
        if let Some((name, _)) = self.types.get_key_value(sample_name) {
            return Some(name);
        }
        for suffix in ["_bucket", "_sum", "_count", "_total", "_created", "_info"] {
            if let Some(base) = sample_name.strip_suffix(suffix)
                && let Some((name, _)) = self.types.get_key_value(base)
            {
                return Some(name);
            }
        }
        None
    }

    /// Samples named exactly `name` that carry every label in `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name == name && s.has(labels))
    }

    /// Sum of the samples named `name` carrying every label in `labels`
    /// (exact names and unescaped values; other labels may be present), so
    /// several series add up; `0.0` when none matches (a fold from `0.0`:
    /// `Iterator::sum` of no `f64` is `-0.0`, which prints as `-0`).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels)
            .fold(0.0, |total, s| total + s.value)
    }

    /// Every sample belonging to `family`.
    pub fn family_samples<'a>(&'a self, family: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| self.family_of(&s.name) == Some(family))
    }
}

/// Parses a Prometheus text exposition (0.0.4) or OpenMetrics text; panics on
/// any line it cannot read, naming the line.
pub fn parse_exposition(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for (n, line) in text.lines().enumerate() {
        let bad = |why: &str| -> ! { panic!("exposition line {}: {why}: {line:?}", n + 1) };
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| bad("TYPE without a type"));
            if out
                .types
                .insert(name.to_string(), kind.trim().to_string())
                .is_some()
            {
                bad("second TYPE line for this family");
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.helps.insert(name.to_string(), help.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| bad("no value"));
        let name = &line[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            bad("bad metric name");
        }
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(mut body) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = body.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = body.find('=').unwrap_or_else(|| bad("label without '='"));
                let label = body[..eq].trim().to_string();
                let mut chars = body[eq + 1..].char_indices();
                if chars.next().map(|(_, c)| c) != Some('"') {
                    bad("label value is not quoted");
                }
                let mut value = String::new();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            _ => bad("bad escape in label value"),
                        },
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                let end = end.unwrap_or_else(|| bad("unterminated label value"));
                if labels.insert(label, value).is_some() {
                    bad("duplicate label");
                }
                body = &body[eq + 1 + end + 1..];
                body = body.strip_prefix(',').unwrap_or(body);
            }
        }
        let mut fields = rest.split_whitespace();
        let value = fields.next().unwrap_or_else(|| bad("no value"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse::<f64>()
                .unwrap_or_else(|_| bad("value is not a number")),
        };
        out.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

/// Runs `promtool check metrics` on `text`, fails with what it said unless
/// it exits 0, and returns what it printed (stdout, then stderr).
pub fn promtool_check(text: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(super::host::require_tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).expect("write to promtool");
    drop(stdin);
    let out = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics: {said}\nmetrics:\n{text}"
    );
    said
}
