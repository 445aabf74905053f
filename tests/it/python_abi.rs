//! One wheel for every Python: tiffin's extension is built against the
//! stable ABI of Python 3.9 (`python/Cargo.toml`), so the wheel `scripts/test`
//! built (`scripts/wheel`) must install and serve under the oldest and the
//! newest CPython this machine has (pyenv's 3.9 and 3.13), each in a fresh
//! virtual environment, with the workers running that environment's Python.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The wheel `scripts/test` built (`scripts/wheel --install target/pyvenv-python`).
fn wheel() -> PathBuf {
    let dir = repo().join("target/wheels");
    let found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; scripts/wheel builds the wheel", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    assert_eq!(found.len(), 1, "one wheel in {}: {found:?}", dir.display());
    found.into_iter().next().expect("one wheel")
}

/// pyenv's newest CPython `major.minor.*`, or a failure naming what is missing.
fn pyenv_python(minor: &str) -> PathBuf {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")))
        .expect("PYENV_ROOT or HOME");
    let versions = root.join("versions");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&versions)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (pyenv's Pythons are on every machine)",
                versions.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{minor}.")))
        })
        .map(|p| p.join("bin/python"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no CPython {minor} under {}", versions.display()))
}

fn run_ok(cmd: &mut Command, what: &str) {
    let f = run_with_timeout(cmd, Duration::from_secs(300));
    assert!(
        f.status.is_some_and(|s| s.success()),
        "{what} failed: {:?}\n{}{}",
        f.status,
        f.stdout,
        f.stderr
    );
}

fn serve_under(minor: &str) {
    let python = pyenv_python(minor);
    let venv = repo().join(format!("target/pyvenv-abi-{minor}"));
    let _ = std::fs::remove_dir_all(&venv);
    run_ok(
        Command::new(&python).args(["-m", "venv"]).arg(&venv),
        "python -m venv",
    );
    run_ok(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--no-index", "--no-deps"])
            .arg(wheel()),
        "pip install of the wheel",
    );
    let tiffin = venv.join("bin/tiffin");
    assert!(
        tiffin.is_file(),
        "the wheel installed no {}",
        tiffin.display()
    );
    let locator = repo().join("tests/fixtures/python_abi/service.py:svc");
    let server = Launch::http(&[locator.to_str().expect("utf-8 path")])
        .bin(tiffin)
        .start();
    for text in ["abc", "tiffin"] {
        let r = server.post_text("/echo", text);
        assert_eq!(r.status, 200, "{}", r.text());
        let answer = r.json();
        let reversed: String = text.chars().rev().collect();
        assert_eq!(answer["reversed"], reversed, "{answer}");
        assert_eq!(answer["python"], minor, "the runner runs {minor}: {answer}");
        assert_eq!(
            answer["api_python"], minor,
            "the API server runs {minor}: {answer}"
        );
    }
    // Every worker is the environment's own Python running tiffin.
    let workers = server.children();
    assert!(!workers.is_empty(), "no workers");
    for (pid, cmdline) in &workers {
        assert!(
            cmdline.contains(&format!("pyvenv-abi-{minor}/bin/python"))
                && cmdline.contains("-m tiffin __worker"),
            "worker {pid} is not this venv's Python: {cmdline}"
        );
    }
    assert!(
        eventually(Duration::from_secs(10), || server
            .metrics()
            .contains("abi_served_total{api=\"echo\"} 2")),
        "the custom counter is not 2:\n{}",
        server.metrics()
    );
}

#[test]
fn the_one_wheel_serves_under_python_3_9() {
    serve_under("3.9");
}

#[test]
fn the_one_wheel_serves_under_python_3_13() {
    serve_under("3.13");
}
