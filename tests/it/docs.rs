//! The README and the `docs/` pages as a newcomer reads them: every relative
//! link lands on a file (and heading) that exists, every repository path
//! `docs/architecture.md` names exists, every code block says its language,
//! the README stays a front page (under 200 lines), every shell command in
//! its ```sh blocks parses, and each `tiffin ...` / `cargo run ... -- ...`
//! names a real subcommand with real flags (asked of the built binary's
//! `--help`), and every `tests/...rs::function` that `docs/claims.md` cites
//! as a claim's proof is a function in that file.
//!
//! Failures list every offender at once, so one run shows the whole fix.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The most lines the README may have (issue 23: a front page, not a lab notebook).
const README_MAX_LINES: usize = 200;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the repository, by its path from the root.
fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(root().join(path))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// README.md and every page under docs/, as (path relative to the root, text).
fn pages() -> Vec<(PathBuf, String)> {
    let mut paths = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ is readable")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| {
            p.strip_prefix(root())
                .expect("under the root")
                .to_path_buf()
        })
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let text = read(&p);
            (p, text)
        })
        .collect()
}

/// One fenced code block: its info string, its body, the line of its fence.
struct Block {
    lang: String,
    body: String,
    line: usize,
}

/// The fenced blocks of a Markdown text, and the text outside them (code
/// lines blanked, so line numbers stay right).
fn split_code(text: &str) -> (Vec<Block>, String) {
    let mut blocks = Vec::new();
    let mut prose = String::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match open.as_mut() {
            None if fence => {
                open = Some(Block {
                    lang: line.trim_start().trim_start_matches('`').trim().to_owned(),
                    body: String::new(),
                    line: i + 1,
                });
                prose.push('\n');
            }
            None => {
                prose.push_str(line);
                prose.push('\n');
            }
            Some(_) if fence => {
                blocks.extend(open.take());
                prose.push('\n');
            }
            Some(block) => {
                block.body.push_str(line);
                block.body.push('\n');
                prose.push('\n');
            }
        }
    }
    assert!(open.is_none(), "a code block is never closed");
    (blocks, prose)
}

/// Inline code spans (`like this`) of a prose line.
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// A line with its inline code spans removed, so a `[a](b)` inside one is not a link.
fn without_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect()
}

/// The targets of the inline links `[text](target)` of a prose text, with their line.
fn links(prose: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in prose.lines().enumerate() {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            found.push((i + 1, target.to_owned()));
            rest = &after[end..];
        }
    }
    found
}

/// GitHub's anchor for a heading (its text, inline code included): lower
/// case, punctuation but `-` and `_` dropped, spaces turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings.
fn anchors(text: &str) -> BTreeSet<String> {
    let (_, prose) = split_code(text);
    prose
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(&l.trim_start_matches('#').replace('`', "")))
        .collect()
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves_to_a_file_and_heading() {
    let mut broken = Vec::new();
    for (page, text) in pages() {
        let (_, prose) = split_code(&text);
        let dir = page.parent().unwrap_or(Path::new(""));
        for (line, target) in links(&prose) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            let on_disk = root().join(&resolved);
            if !on_disk.exists() {
                broken.push(format!(
                    "{}:{line}: {target} (no file {})",
                    page.display(),
                    resolved.display()
                ));
                continue;
            }
            if let Some(anchor) = anchor
                && on_disk.extension().is_some_and(|x| x == "md")
                && !anchors(&read(&resolved)).contains(anchor)
            {
                broken.push(format!(
                    "{}:{line}: {target} (no heading #{anchor} in {})",
                    page.display(),
                    resolved.display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_code_block_in_the_readme_and_docs_names_its_language() {
    let mut unlabelled = Vec::new();
    for (page, text) in pages() {
        let (blocks, _) = split_code(&text);
        for block in blocks.iter().filter(|b| b.lang.is_empty()) {
            unlabelled.push(format!("{}:{}", page.display(), block.line));
        }
    }
    assert!(
        unlabelled.is_empty(),
        "code blocks without a language (```sh, ```yaml, ```rust, ```python, ```text):\n{}",
        unlabelled.join("\n")
    );
}

/// Whether an inline code span reads as a repository path: `dir/…/file.ext`
/// or `dir/`, with no spaces, placeholders (`<x>`, `$X`, `*`) or leading `/`.
fn looks_like_repo_path(span: &str) -> bool {
    let plain = span
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.'));
    if !plain || !span.contains('/') || span.starts_with('/') || span.contains("//") {
        return false;
    }
    let last = span.rsplit('/').next().unwrap_or("");
    span.ends_with('/') || last.contains('.')
}

/// Checks the inline code spans of a page's prose: `check` says whether a
/// span is something to check (`None` if not) and whether it holds. Returns
/// how many were checked and each failing one with its line.
fn failing_spans(page: &str, check: impl Fn(&str) -> Option<bool>) -> (usize, Vec<String>) {
    let (_, prose) = split_code(&read(page));
    let mut checked = 0;
    let mut failing = BTreeSet::new();
    for (i, line) in prose.lines().enumerate() {
        for span in code_spans(line) {
            match check(span) {
                None => {}
                Some(holds) => {
                    checked += 1;
                    if !holds {
                        failing.insert(format!("{page}:{}: `{span}`", i + 1));
                    }
                }
            }
        }
    }
    (checked, failing.into_iter().collect())
}

#[test]
fn every_repository_path_that_architecture_md_names_exists() {
    let (checked, missing) = failing_spans("docs/architecture.md", |span| {
        looks_like_repo_path(span).then(|| root().join(span).exists())
    });
    assert!(
        checked > 50,
        "only {checked} paths found: is the path pattern right?"
    );
    assert!(
        missing.is_empty(),
        "docs/architecture.md names paths that do not exist (fix the page, the code wins):\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_readme_is_a_front_page_under_200_lines() {
    let text = read("README.md");
    let lines = text.lines().count();
    assert!(
        lines < README_MAX_LINES,
        "README.md has {lines} lines; reference material belongs in docs/ (limit {README_MAX_LINES})"
    );
    let (blocks, _) = split_code(&text);
    let first = blocks.first().expect("README.md has a code block");
    assert_eq!(
        (first.lang.as_str(), first.body.as_str()),
        ("sh", "cargo run --release -- serve-http\nscripts/test\n"),
        "README.md starts with the two commands"
    );
}

/// The README's shell commands, one per line: continuations joined,
/// comments dropped, split at `|`, `&&`, `||` and `;`, as words.
fn simple_commands(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let mut commands = Vec::new();
    for line in joined.lines() {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let push = |word: &mut String, words: &mut Vec<String>| {
            if !word.is_empty() {
                words.push(std::mem::take(word));
            }
        };
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.push(c),
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') if word.is_empty() => break,
                (None, ' ' | '\t') => push(&mut word, &mut words),
                (None, '|' | '&' | ';') => {
                    push(&mut word, &mut words);
                    if !words.is_empty() {
                        commands.push(std::mem::take(&mut words));
                    }
                }
                (None, c) => word.push(c),
            }
        }
        push(&mut word, &mut words);
        if !words.is_empty() {
            commands.push(words);
        }
    }
    commands
}

/// The arguments a command hands the tiffin CLI: after `tiffin`, or after
/// the `--` of `cargo run ... --`; `None` for any other command.
fn tiffin_args(words: &[String]) -> Option<&[String]> {
    match words.first().map(String::as_str) {
        Some("tiffin") => Some(&words[1..]),
        Some("cargo") if words.get(1).is_some_and(|w| w == "run") => {
            let dashes = words.iter().position(|w| w == "--")?;
            Some(&words[dashes + 1..])
        }
        _ => None,
    }
}

/// `tiffin <path> --help`.
fn help(path: &[&str]) -> String {
    let out = Command::new(common::tiffin_bin())
        .args(path)
        .arg("--help")
        .output()
        .expect("run tiffin --help");
    assert!(
        out.status.success(),
        "tiffin {} --help failed",
        path.join(" ")
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The subcommands a help text lists under `Commands:` (`help` excluded).
fn subcommands(help: &str) -> BTreeSet<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// What is wrong with one tiffin invocation, checked against the binary's help.
fn check_invocation(args: &[String]) -> Option<String> {
    let mut path: Vec<&str> = Vec::new();
    let mut text = help(&[]);
    let mut rest = args;
    loop {
        let subs = subcommands(&text);
        if subs.is_empty() {
            break;
        }
        match rest.first() {
            Some(sub) if subs.contains(sub) => {
                path.push(sub);
                rest = &rest[1..];
                text = help(&path);
            }
            Some(sub) if !sub.starts_with('-') => {
                return Some(format!(
                    "`{sub}` is not a subcommand of `tiffin {}`",
                    path.join(" ")
                ));
            }
            _ => break,
        }
    }
    let unknown: Vec<&str> = rest
        .iter()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.split('=').next().unwrap_or(w))
        .filter(|flag| {
            !text
                .split_whitespace()
                .any(|w| w.trim_end_matches(',') == *flag)
        })
        .collect();
    (!unknown.is_empty()).then(|| {
        format!(
            "`tiffin {}` has no flag {}",
            path.join(" "),
            unknown.join(", ")
        )
    })
}

#[test]
fn every_shell_command_in_the_readme_parses_and_names_real_subcommands_and_flags() {
    let text = read("README.md");
    let (blocks, _) = split_code(&text);
    let mut problems = Vec::new();
    let mut invocations = 0;
    for block in blocks.iter().filter(|b| b.lang == "sh") {
        let out = Command::new("bash")
            .args(["-n", "-c", &block.body])
            .output()
            .expect("run bash -n");
        if !out.status.success() {
            problems.push(format!(
                "README.md:{}: bash -n: {}",
                block.line,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        for words in simple_commands(&block.body) {
            if let Some(args) = tiffin_args(&words) {
                invocations += 1;
                if let Some(problem) = check_invocation(args) {
                    problems.push(format!("README.md:{}: {problem}", block.line));
                }
            }
        }
    }
    assert!(
        invocations >= 4,
        "only {invocations} tiffin invocations found in the README"
    );
    assert!(
        problems.is_empty(),
        "README shell commands:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_command_checker_refuses_an_unknown_subcommand_and_an_unknown_flag() {
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        check_invocation(&words("serve-http --port 3000 --config x.yaml")),
        None
    );
    assert_eq!(check_invocation(&words("models list --json")), None);
    assert!(check_invocation(&words("serve-https")).is_some());
    assert!(check_invocation(&words("models lisst")).is_some());
    assert!(check_invocation(&words("status --jsn")).is_some());
}

/// Whether a span reads as `path/to/file.rs::function`.
fn cited_test(span: &str) -> Option<(&str, &str)> {
    let (file, function) = span.split_once("::")?;
    let plain = function.chars().all(|c| c.is_alphanumeric() || c == '_');
    (file.ends_with(".rs") && plain).then_some((file, function))
}

#[test]
fn every_test_that_claims_md_cites_is_a_function_in_its_file() {
    let (cited, missing) = failing_spans("docs/claims.md", |span| {
        let (file, function) = cited_test(span)?;
        let source = std::fs::read_to_string(root().join(file)).unwrap_or_default();
        Some(source.contains(&format!("fn {function}(")))
    });
    assert!(cited > 20, "only {cited} tests cited in docs/claims.md");
    assert!(
        missing.is_empty(),
        "docs/claims.md cites tests that do not exist:\n{}",
        missing.join("\n")
    );
}
