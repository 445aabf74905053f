//! tiffin_vader against its reference: Python's vaderSentiment 3.3.2 (the
//! venv scripts/setup/25-python makes) scores every sentence of
//! vader/corpus/sentences.txt (over 5,000, covering each VADER rule; written
//! by vader/corpus/make_corpus.py) in one process, and tiffin_vader must give
//! the same four numbers for each.
//!
//! No tolerance: Python prints each score with `repr` (the shortest decimal
//! that reads back to the same double) and the test compares the bits of
//! the doubles. Both sides round the same way (Python's `round` to 3 or 4
//! decimals), so a disagreement in any step before it shows up unless the
//! rounding hides it, and the corpus is large enough that it does not.
//! The reference is the venv's Python 3.11: from 3.12 on, `sum` of floats
//! is compensated, which could move a score's last bit and, rarely, a
//! rounded digit; tiffin_vader adds left to right as 3.11 does.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// Reads the corpus as the Rust side does (split on "\n" only, the last,
/// empty piece after the final newline dropped) and prints one JSON line of
/// [neg, neu, pos, compound] per sentence.
const PYTHON: &str = r#"
import json, sys
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
analyzer = SentimentIntensityAnalyzer()
with open(sys.argv[1], encoding="utf-8", newline="\n") as f:
    sentences = f.read().split("\n")[:-1]
for s in sentences:
    r = analyzer.polarity_scores(s)
    print(json.dumps([r["neg"], r["neu"], r["pos"], r["compound"]]))
"#;

#[test]
fn tiffin_vader_scores_every_corpus_sentence_exactly_as_python_vader_sentiment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus_path = root.join("vader/corpus/sentences.txt");
    let corpus = std::fs::read_to_string(&corpus_path).expect("vader/corpus/sentences.txt");
    let sentences: Vec<&str> = corpus
        .strip_suffix('\n')
        .expect("the corpus ends with a newline")
        .split('\n')
        .collect();
    assert!(sentences.len() >= 5000, "{} sentences", sentences.len());

    let python = venv_tool("target/pyvenv-python/bin/python", "scripts/setup/25-python");
    let out = run_with_timeout(
        Command::new(&python)
            .arg("-c")
            .arg(PYTHON)
            .arg(&corpus_path),
        Duration::from_secs(120),
    );
    assert!(
        out.status.is_some_and(|s| s.success()),
        "Python's vaderSentiment failed (scripts/setup/25-python installs it):\n{}",
        out.stderr
    );
    let reference: Vec<[f64; 4]> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line of four numbers"))
        .collect();
    assert_eq!(reference.len(), sentences.len(), "one answer per sentence");

    let differences: Vec<String> = sentences
        .iter()
        .zip(&reference)
        .enumerate()
        .filter_map(|(i, (sentence, py))| {
            let s = tiffin_vader::polarity_scores(sentence);
            let rust = [s.neg, s.neu, s.pos, s.compound];
            let same = rust.iter().zip(py).all(|(a, b)| a.to_bits() == b.to_bits());
            (!same).then(|| {
                format!(
                    "line {}: {sentence:?}\n  python [neg, neu, pos, compound] = {py:?}\n  tiffin_vader                      = {rust:?}",
                    i + 1
                )
            })
        })
        .collect();
    assert!(
        differences.is_empty(),
        "{} of {} sentences score differently; the first:\n{}",
        differences.len(),
        sentences.len(),
        differences[..differences.len().min(10)].join("\n")
    );
}
