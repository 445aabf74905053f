//! The Python package's own unit tests (`python/tests/`: batching along
//! `batch_dim`, the `bentoml.io` descriptors, `bentoml.metrics` label checks,
//! unsupported names), run with `unittest` against the wheel `scripts/test`
//! installed into `target/pyvenv-python`: the code a user's `pip install` gets.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

#[test]
fn the_python_packages_unit_tests_pass_against_the_installed_wheel() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/pyvenv-python/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: scripts/setup/25-python and scripts/wheel --install target/pyvenv-python make it",
        python.display()
    );
    let f = run_with_timeout(
        Command::new(&python)
            .args(["-m", "unittest", "discover", "-s", "python/tests", "-v"])
            .current_dir(root),
        Duration::from_secs(120),
    );
    let ran = f
        .stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    assert!(
        f.status.is_some_and(|s| s.success()) && ran >= 16,
        "unittest: {:?}, {ran} tests\n{}",
        f.status,
        f.stderr
    );
}
