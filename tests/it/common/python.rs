//! The Python-service tests' tools: what scripts/setup/25-python and
//! `scripts/wheel --install target/pyvenv-python` put under `target/`.

use std::path::{Path, PathBuf};

/// A tool of a venv a setup script makes; a missing one fails the test,
/// naming the script.
pub fn venv_tool(path: &str, script: &str) -> PathBuf {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    assert!(
        tool.is_file(),
        "{} is missing: run {script} (scripts/test runs it)",
        tool.display()
    );
    tool
}

/// The `tiffin` command the wheel installs into the venv
/// scripts/setup/25-python makes (scripts/test runs `scripts/wheel --install
/// target/pyvenv-python`).
pub fn python_tiffin() -> PathBuf {
    venv_tool(
        "target/pyvenv-python/bin/tiffin",
        "scripts/setup/25-python, then scripts/wheel --install target/pyvenv-python",
    )
}
