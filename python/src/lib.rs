//! `tiffin._native`: the part of a Python service's workers that is tiffin.
//!
//! A Python service's worker is `python -m tiffin __worker ...`
//! (`python/tiffin/__main__.py`). Its Python imports the service file,
//! describes it, and calls [`worker`], which runs the same Rust API server or
//! runner worker as the native binary's workers, with the GIL released: the
//! API server hands requests to the Python thread's [`Inbox`](inbox::Inbox)
//! and the runner worker calls the Python runnable under the GIL, one call
//! (or batch) at a time. Custom metrics defined in Python ([`metric`]) land
//! in the same registry as tiffin's own, so the supervisor's scrape sums
//! them over every process.

mod call;
mod cancel;
mod host;
mod inbox;
mod metric;
mod stream;

use std::collections::HashMap;

use clap::Parser;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use tiffin::WorkerCommand;
use tiffin_config::Config;
use tiffin_service::foreign::Description;

/// The worker's command line, as the supervisor wrote it after `__worker`.
#[derive(Parser)]
#[command(name = "tiffin")]
struct Argv {
    #[command(subcommand)]
    worker: WorkerCommand,
}

/// Runs this process as the worker `argv` names, serving the service
/// `description` (JSON): with `inbox` as its handlers' queue in an API
/// server, with `runnable` (the Python runnable's host) in a runner worker.
/// Returns when the worker exits.
#[pyfunction]
#[pyo3(signature = (argv, description, inbox=None, runnable=None))]
fn worker(
    py: Python<'_>,
    argv: Vec<String>,
    description: &str,
    inbox: Option<PyRef<'_, inbox::Inbox>>,
    runnable: Option<Py<PyAny>>,
) -> PyResult<()> {
    let command = Argv::try_parse_from(std::iter::once("tiffin".to_string()).chain(argv))
        .map_err(|e| PyValueError::new_err(e.to_string()))?
        .worker;
    let description = Description::from_json(description)
        .map_err(|e| PyValueError::new_err(format!("service description: {e}")))?;
    let service = match (&command, inbox, runnable) {
        (WorkerCommand::ApiServer { .. }, Some(inbox), _) => {
            let shared = inbox.shared.clone();
            let service = host::api_service(&description, shared.clone());
            let yaml = std::env::var(tiffin::EFFECTIVE_CONFIG_ENV).unwrap_or_default();
            let config =
                Config::from_yaml_str(&yaml).map_err(|e| PyValueError::new_err(e.to_string()))?;
            let runners: HashMap<_, _> = service
                .runners()
                .iter()
                .map(|r| (r.name().to_string(), *r))
                .collect();
            let _ = call::CALLS.set(call::Calls {
                runners,
                inbox: shared,
                bound: config.api_server.traffic.timeout.duration(),
            });
            service
        }
        (WorkerCommand::Runner { runner, .. }, _, Some(host)) => {
            host::runner_service(&description, runner, host)
        }
        _ => {
            return Err(PyValueError::new_err(
                "an API server needs an inbox and a runner worker a runnable",
            ));
        }
    };
    py.allow_threads(move || tiffin::run_worker(command, service))
        .map_err(|e| PyRuntimeError::new_err(format!("{e:#}")))
}

/// The module `tiffin._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(worker, m)?)?;
    m.add_function(wrap_pyfunction!(call::call, m)?)?;
    m.add_function(wrap_pyfunction!(call::call_blocking, m)?)?;
    m.add_class::<call::CallCancel>()?;
    m.add("RunnerError", m.py().get_type::<call::RunnerError>())?;
    m.add_class::<inbox::Inbox>()?;
    m.add_class::<inbox::Reply>()?;
    m.add_class::<metric::Metric>()?;
    m.add_function(wrap_pyfunction!(stream::stream, m)?)?;
    m.add_class::<stream::Sink>()?;
    m.add_class::<stream::RunnerStream>()?;
    Ok(())
}
