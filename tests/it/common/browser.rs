//! Debian's real headless `chromium` (scripts/setup/20-frontdoor installs
//! it), as the browser tests run it (tests/it/browser.rs, stream_browser.rs),
//! and where they keep what it shows (screenshots).

use std::path::PathBuf;
use std::process::Command;

use super::host::{free_port, require_tool};

/// Where test artifacts (screenshots) are kept: target/test-artifacts/,
/// created if missing.
pub fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// A headless chromium command with the flags every browser test gives it
/// (no sandbox, GPU, shared memory, first-run page or extensions), a window
/// of `window_size` (`1280,1400`), then `flags`, and a fresh profile
/// directory of its own: the command, to which the caller adds what it
/// opens and how it waits for it (it starts nothing, so it waits on
/// nothing), and the profile, which the caller removes once chromium is done.
pub fn headless_chromium(window_size: &str, flags: &[&str]) -> (Command, PathBuf) {
    let bin = require_tool("chromium");
    let profile = std::env::temp_dir().join(format!(
        "tiffin-chromium-{}-{}",
        std::process::id(),
        free_port()
    ));
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
    ])
    .arg(format!("--window-size={window_size}"))
    .args(flags)
    .arg(format!("--user-data-dir={}", profile.display()));
    (cmd, profile)
}
