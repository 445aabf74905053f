//! Serving a Python service (`tiffin serve-http service.py:svc`): which
//! interpreter runs it, and what the supervisor learns of the service
//! before it starts a worker.
//!
//! The supervisor runs no Python. It asks the interpreter once, with
//! `python -m tiffin __describe LOCATOR` (`python/tiffin/__main__.py`), to
//! import the service file and print its [`Description`]; an import error is
//! reported then, naming the file and line, before any worker starts. Every
//! worker is then `python -m tiffin __worker ...`, a process with its own
//! interpreter that imports the file again and runs tiffin's API server or
//! runner worker from the `tiffin._native` extension.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tiffin_service::Service;
use tiffin_service::foreign::Description;

/// Names the interpreter to use instead of the one found next to `tiffin`.
pub const PYTHON_ENV: &str = "TIFFIN_PYTHON";

/// How long importing the service file may take (a model library such as
/// torch can take tens of seconds to import on a cold cache).
const DESCRIBE_BOUND: Duration = Duration::from_secs(120);

/// Whether `target` names a Python service (BentoML's service locator:
/// `module:attribute`, `path/file.py:attribute` or `path/file.py`) rather
/// than one of the binary's own services.
pub fn is_locator(target: &str) -> bool {
    target.contains(':') || target.ends_with(".py")
}

/// A Python service ready to be supervised.
pub struct PythonService {
    /// The service, with handlers that are never called (the supervisor's).
    pub service: Service,
    /// The interpreter every worker runs.
    pub python: PathBuf,
    /// Its arguments before the worker subcommand.
    pub args: Vec<OsString>,
    /// Configuration the service's code sets (`bentoml.Runner(max_batch_size=...)`),
    /// as keys that override the configuration's, as the code does in BentoML.
    pub overrides: Vec<(String, String)>,
}

/// The interpreter: `$TIFFIN_PYTHON`, else the `python` beside this
/// executable (a virtual environment's `bin/`, where `pip install` put
/// `tiffin`), else `python3` on `PATH`.
pub fn interpreter() -> PathBuf {
    if let Some(p) = std::env::var_os(PYTHON_ENV) {
        return PathBuf::from(p);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("python")));
    match beside {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("python3"),
    }
}

/// Imports the service at `locator` with `python` and reads what it is.
pub fn describe(locator: &str) -> Result<PythonService> {
    let python = interpreter();
    let args: Vec<OsString> = vec!["-m".into(), "tiffin".into()];
    let json = run_describe(&python, &args, locator)?;
    let description = Description::from_json(&json).with_context(|| {
        format!("{} described the service '{locator}' in a form this tiffin cannot read (are the tiffin wheel and this binary the same version?)", python.display())
    })?;
    let mut overrides = Vec::new();
    for r in &description.runners {
        if let Some(n) = r.max_batch_size {
            overrides.push((
                format!("runners.{}.batching.max_batch_size", r.name),
                n.to_string(),
            ));
        }
        if let Some(ms) = r.max_latency_ms {
            overrides.push((
                format!("runners.{}.batching.max_latency_ms", r.name),
                ms.to_string(),
            ));
        }
    }
    Ok(PythonService {
        service: description.skeleton(),
        python,
        args,
        overrides,
    })
}

fn run_describe(python: &Path, args: &[OsString], locator: &str) -> Result<String> {
    let mut child = Command::new(python)
        .args(args)
        .arg("__describe")
        .arg(locator)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "cannot run the Python interpreter {} for the service '{locator}' (set {PYTHON_ENV} to the python of the environment with tiffin installed)",
                python.display()
            )
        })?;
    let mut out = child.stdout.take().map(drain);
    let mut err = child.stderr.take().map(drain);
    let deadline = Instant::now() + DESCRIBE_BOUND;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "importing the Python service '{locator}' took more than {} s",
                DESCRIBE_BOUND.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.take().map(join).unwrap_or_default();
    let stderr = err.take().map(join).unwrap_or_default();
    if !status.success() {
        let stderr = stderr.trim_end();
        if stderr.contains("No module named tiffin") {
            bail!(
                "{} cannot import tiffin: install tiffin's wheel into that environment (README.md, Python services), or set {PYTHON_ENV}",
                python.display()
            );
        }
        bail!("cannot load the Python service '{locator}':\n{stderr}");
    }
    Ok(stdout)
}

type Drain = std::thread::JoinHandle<String>;

fn drain(mut from: impl Read + Send + 'static) -> Drain {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = from.read_to_string(&mut s);
        s
    })
}

fn join(handle: Drain) -> String {
    handle.join().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_are_told_from_service_names() {
        for locator in [
            "service:svc",
            "examples/python/service.py:svc",
            "service.py",
            "a.b:svc",
        ] {
            assert!(is_locator(locator), "{locator}");
        }
        for name in ["sentiment_analyzer", "iris_classifier", "echo"] {
            assert!(!is_locator(name), "{name}");
        }
    }
}
