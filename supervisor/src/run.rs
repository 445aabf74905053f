//! The supervisor's entry point: bind the public port and the control
//! socket, start every worker, then handle events until a signal asks for
//! shutdown (see `shutdown.rs`), or a worker's crash loop makes serving
//! pointless: then the rest is shut down the same way and the crash loop
//! is the error the supervisor returns.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use tiffin_ipc::proto::Role;
use tiffin_ipc::runtime;

use crate::control::Context;
use crate::lifecycle::Supervisor;
use crate::own_metrics::SupervisorMetrics;
use crate::shutdown::Signals;
use crate::spawn::{SpawnSpec, WorkerCommon};
use crate::state::{Shared, State};
use crate::{SuperviseArgs, SupervisorError, rundir};

/// How often snapshots are refreshed between scrapes.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Runs the supervisor until SIGINT/SIGTERM, then drains and exits; a
/// crash loop drains too, and ends in [`SupervisorError::CrashLoop`].
pub fn run(args: SuperviseArgs) -> Result<(), SupervisorError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SupervisorError::io("cannot start the runtime"))?;
    rt.block_on(supervise(args))
}

async fn supervise(args: SuperviseArgs) -> Result<(), SupervisorError> {
    match crate::process::raise_open_files_limit() {
        Ok((old, new)) if old != new => {
            tracing::info!(
                old,
                new,
                "raised the open-files limit (RLIMIT_NOFILE) to its hard limit"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    let addr = format!("{}:{}", args.host, args.port);
    let listener = std::net::TcpListener::bind(&addr).map_err(SupervisorError::bind(
        &addr,
        " (the port is already in use; pick another with --port)",
    ))?;
    let local = listener
        .local_addr()
        .map_err(SupervisorError::io("cannot read the bound address"))?;
    let pid = std::process::id();
    let dir =
        rundir::create(pid).map_err(SupervisorError::io("cannot create the runtime directory"))?;
    let result = supervise_in(args, listener, local, &dir).await;
    rundir::remove(&dir);
    result
}

async fn supervise_in(
    args: SuperviseArgs,
    listener: std::net::TcpListener,
    local: std::net::SocketAddr,
    dir: &std::path::Path,
) -> Result<(), SupervisorError> {
    let control_path = runtime::control_socket(dir);
    let control = UnixListener::bind(&control_path)
        .map_err(SupervisorError::io("cannot bind the control socket"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&control_path, std::fs::Permissions::from_mode(0o600))
            .map_err(SupervisorError::io("cannot set control socket mode"))?;
    }
    // An embedded runner runs inside the API servers: it has no workers of
    // its own to start, scale or autoscale (runner-worker/src/embedded.rs).
    let (embedded, runners): (Vec<String>, Vec<String>) = args
        .service
        .runners()
        .iter()
        .map(|r| r.name().to_string())
        .partition(|name| args.config.runners.embedded(name));
    let graceful_timeout = args.config.api_server.graceful_timeout.duration();
    let mut state = State::new(
        args.service.name.clone(),
        runners.clone(),
        local.to_string(),
        graceful_timeout,
    );
    state.embedded = embedded;
    let shared: Shared = Arc::new(Mutex::new(state));
    let metrics = Arc::new(SupervisorMetrics::new()?);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    crate::control::serve(
        control,
        Context {
            shared: shared.clone(),
            metrics: metrics.clone(),
            events: events_tx.clone(),
        },
    );
    crate::scrape::refresh_periodically(
        shared.clone(),
        metrics.clone(),
        REFRESH_EVERY,
        args.config.supervisor.hung_worker_timeout.duration(),
    );
    if let Some(port) = args.metrics_port {
        let host = args.metrics_host.as_deref().unwrap_or(&args.host);
        let web = match &args.config.api_server.web_config_file {
            Some(path) => tiffin_tls::WebConfig::load(&tiffin_tls::Named::new(
                "api_server.web_config_file",
                path,
            ))?,
            None => tiffin_tls::WebConfig::default(),
        };
        crate::metrics_port::serve(host, port, shared.clone(), metrics.clone(), web).await?;
    }

    let sup = Supervisor {
        shared,
        metrics,
        events: events_tx,
        spec: SpawnSpec {
            exe: &args.exe,
            exe_args: &args.exe_args,
            common: WorkerCommon {
                runtime_dir: dir.to_path_buf(),
                service: args.service.name.clone(),
                model: args.model.clone(),
                python: args.python.clone(),
            },
            config_yaml: &args.config_yaml,
            listener: std::cell::RefCell::new(Some(listener)),
            protocol: args.protocol,
        },
        config: &args.config,
        gave_up: std::cell::Cell::new(None),
        autoscalers: crate::autoscale::Autoscalers::new(&args.config, &runners),
    };
    sup.autoscale_init();
    if !sup.autoscalers.is_empty() {
        crate::autoscale_loop::tick_periodically(
            sup.events.clone(),
            crate::autoscale_loop::SAMPLE_EVERY,
        );
    }
    tracing::info!(listen = %local, runtime_dir = %dir.display(), service = %args.service.name, "supervisor starting");
    for runner in &runners {
        for index in 1..=crate::autoscale::initial_workers(&args.config, runner) {
            sup.start(&Role::Runner {
                name: runner.clone(),
                index,
            });
        }
    }
    for index in 0..args.config.api_server.workers {
        sup.start(&Role::ApiServer { index });
    }

    let mut signals = Signals {
        interrupt: signal(SignalKind::interrupt())
            .map_err(SupervisorError::io("cannot watch SIGINT"))?,
        terminate: signal(SignalKind::terminate())
            .map_err(SupervisorError::io("cannot watch SIGTERM"))?,
    };
    // SIGHUP reloads certificates (docs/security.md): the API servers and
    // the metrics port each follow their own files, and this tells them to
    // look now. It no longer ends the supervisor, as it would by default.
    let mut hangup =
        signal(SignalKind::hangup()).map_err(SupervisorError::io("cannot watch SIGHUP"))?;
    let outcome = loop {
        tokio::select! {
            _ = signals.interrupt.recv() => { tracing::info!("SIGINT: shutting down gracefully (again to force)"); break Ok(()); }
            _ = signals.terminate.recv() => { tracing::info!("SIGTERM: shutting down gracefully"); break Ok(()); }
            _ = hangup.recv() => forward_hangup(&sup.shared, args.config.api_server.ssl.enabled),
            Some(event) = events.recv() => {
                sup.handle(event);
                if let Some(error) = sup.gave_up.take() {
                    break Err(error);
                }
            }
        }
    };
    crate::shutdown::drain_all(&sup, &mut events, &mut signals).await;
    outcome
}

/// Passes a SIGHUP on to every API server when they serve TLS (each then
/// reloads its certificate files); without TLS there is nothing to reload.
fn forward_hangup(shared: &Shared, tls: bool) {
    if !tls {
        tracing::info!("SIGHUP: the API port serves no TLS, nothing to reload there");
        return;
    }
    let pids: Vec<u32> = crate::state::lock(shared)
        .slots
        .iter()
        // Connected ones only: an API server has installed its SIGHUP
        // handler before it connects (api-server/src/tls.rs); one still
        // starting reads the files anyway.
        .filter(|(role, slot)| matches!(role, Role::ApiServer { .. }) && slot.conn.is_some())
        .filter_map(|(_, slot)| slot.pid)
        .collect();
    tracing::info!(
        api_servers = pids.len(),
        "SIGHUP: reloading TLS certificates"
    );
    for pid in pids {
        crate::process::kill(pid, nix::sys::signal::Signal::SIGHUP);
    }
}
