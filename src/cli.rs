//! The command line: `serve-http`, `serve-grpc`, `status`, `scale`, and the hidden
//! `__worker` subcommand the supervisor uses to start its children.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use tiffin_config::Config;
use tiffin_ipc::proto::{Protocol, StatusReport};
use tiffin_ipc::runtime::EFFECTIVE_CONFIG_ENV;
use tiffin_service::Service;
use tiffin_supervisor::spawn::WorkerCommand;

#[derive(Parser)]
#[command(
    name = "tiffin",
    version,
    about = "BentoML-style model serving with first-class Prometheus metrics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a service over HTTP: supervisor, API servers and runner workers.
    ServeHttp(ServeArgs),
    /// Serve a service over gRPC (BentoML's bentoml.grpc.v1.BentoService):
    /// supervisor, API servers and runner workers; metrics on a separate port.
    ServeGrpc(ServeGrpcArgs),
    /// Show every worker of a running tiffin.
    Status(StatusArgs),
    /// Change the number of workers of a runner (or `api-server`) while serving.
    Scale(ScaleArgs),
    /// List the services this binary can serve.
    List,
    /// The model store: import, list, get, delete and export model files.
    #[command(subcommand)]
    Models(crate::models::ModelsCommand),
    /// How the supervisor starts its children (see `tiffin_supervisor::spawn`).
    #[command(name = tiffin_supervisor::spawn::WORKER_SUBCOMMAND, hide = true, subcommand)]
    Worker(WorkerCommand),
}

/// Options `serve-http` and `serve-grpc` share; `host` and `port` set the
/// `api_server.http.*` or `api_server.grpc.*` keys of the protocol served.
#[derive(Args)]
struct ServeArgs {
    /// Service to serve (default: the first one this binary offers).
    service: Option<String>,
    /// Serve a model with no code instead: a store tag NAME[:VERSION] or a
    /// path to an .onnx file (one runner named after it, POST /predict).
    #[arg(long, conflicts_with = "service")]
    model: Option<String>,
    /// Host to bind (api_server.http.host or api_server.grpc.host; default 0.0.0.0).
    #[arg(long)]
    host: Option<String>,
    /// Port to bind (api_server.http.port or api_server.grpc.port; default 3000; 0 picks a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Serve the aggregated metrics on this port too, at `/` and `/metrics`
    /// (serve-grpc: api_server.grpc.metrics.port, default 3001).
    #[arg(long)]
    metrics_port: Option<u16>,
    /// Number of API-server processes (api_server.workers).
    #[arg(long)]
    api_workers: Option<usize>,
    /// Number of worker processes for every runner (runners.workers).
    #[arg(long)]
    runner_workers: Option<usize>,
    /// YAML configuration file (else $TIFFIN_CONFIG).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seconds to let in-flight requests finish on shutdown (api_server.graceful_timeout).
    #[arg(long)]
    graceful_timeout: Option<f64>,
    /// Line format of every process's log, access log included: text or json (logging.format).
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(flatten)]
    ssl: SslArgs,
    /// Prometheus web configuration file for the scrape endpoints: TLS and
    /// basic auth (api_server.web_config_file; docs/security.md).
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,
}

/// BentoML's TLS flags (`api_server.ssl.*`); any of them turns TLS on.
#[derive(Args)]
struct SslArgs {
    /// PEM certificate chain to serve TLS with (api_server.ssl.certfile).
    #[arg(long)]
    ssl_certfile: Option<PathBuf>,
    /// PEM private key of the certificate (api_server.ssl.keyfile).
    #[arg(long)]
    ssl_keyfile: Option<PathBuf>,
    /// Password of an encrypted key file (api_server.ssl.keyfile_password).
    #[arg(long)]
    ssl_keyfile_password: Option<String>,
    /// Python's ssl protocol constant, 17 or 2 (api_server.ssl.version).
    #[arg(long)]
    ssl_version: Option<i64>,
    /// Client certificates: 0 none, 1 optional, 2 required (api_server.ssl.cert_reqs).
    #[arg(long)]
    ssl_cert_reqs: Option<i64>,
    /// PEM CA certificates that client certificates must chain to (api_server.ssl.ca_certs).
    #[arg(long)]
    ssl_ca_certs: Option<PathBuf>,
    /// Cipher string; only BentoML's default TLSv1 (api_server.ssl.ciphers).
    #[arg(long)]
    ssl_ciphers: Option<String>,
}

impl SslArgs {
    /// The `(key, YAML value)` overrides these flags set.
    fn overrides(&self) -> Vec<(String, String)> {
        let path =
            |p: &Option<PathBuf>| p.as_ref().map(|p| format!("{:?}", p.display().to_string()));
        let text = |t: &Option<String>| t.as_ref().map(|t| format!("{t:?}"));
        let number = |n: &Option<i64>| n.map(|n| n.to_string());
        [
            ("certfile", path(&self.ssl_certfile)),
            ("keyfile", path(&self.ssl_keyfile)),
            ("keyfile_password", text(&self.ssl_keyfile_password)),
            ("version", number(&self.ssl_version)),
            ("cert_reqs", number(&self.ssl_cert_reqs)),
            ("ca_certs", path(&self.ssl_ca_certs)),
            ("ciphers", text(&self.ssl_ciphers)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (format!("api_server.ssl.{k}"), v)))
        .collect()
    }
}

#[derive(Args)]
struct ServeGrpcArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Serve gRPC server reflection (api_server.grpc.reflection.enabled).
    #[arg(long)]
    enable_reflection: bool,
}

#[derive(Args)]
struct TargetArgs {
    /// Runtime directory of the supervisor to talk to.
    #[arg(long)]
    runtime_dir: Option<PathBuf>,
    /// Process id of the supervisor to talk to.
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Args)]
struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Args)]
struct ScaleArgs {
    /// Runner name, or `api-server`.
    runner: String,
    /// Desired number of workers; on an autoscaled runner this pins the
    /// count until `auto` hands it back to the autoscaler.
    workers: String,
    #[command(flatten)]
    target: TargetArgs,
}

/// Parses the command line and runs it.
pub fn main(services: Vec<Service>) -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::ServeHttp(args) => serve(Protocol::Http, args, Vec::new(), &services),
        Command::ServeGrpc(args) => {
            let mut cli = Vec::new();
            if args.enable_reflection {
                cli.push(("api_server.grpc.reflection.enabled".into(), "true".into()));
            }
            serve(Protocol::Grpc, args.serve, cli, &services)
        }
        Command::Status(args) => status(args),
        Command::Scale(args) => scale(args),
        Command::List => {
            for s in &services {
                println!("{}", s.name);
            }
            Ok(())
        }
        Command::Models(command) => crate::models::run(command),
        Command::Worker(args) => worker(args, &services),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tiffin: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn find_service(services: &[Service], name: Option<&str>) -> Result<Service> {
    let names = || {
        services
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        None => services
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("this binary offers no service")),
        Some(n) => services
            .iter()
            .find(|s| s.name == n)
            .cloned()
            .ok_or_else(|| anyhow!("unknown service '{n}'; available services: {}", names())),
    }
}

/// Builds the effective configuration: file < `$TIFFIN_CONFIG_OPTIONS` < `cli`
/// (plus the common flags), and checks it against the service's runners
/// and APIs (`api_server.auth`'s tokens).
fn effective_config(
    args: &ServeArgs,
    protocol: Protocol,
    services: &[Service],
    mut cli: Vec<(String, String)>,
) -> Result<(Service, Config, String)> {
    let service = find_service(services, args.service.as_deref())?;
    let file = args
        .config
        .clone()
        .or_else(|| std::env::var_os(tiffin_config::CONFIG_ENV).map(PathBuf::from));
    let options = std::env::var(tiffin_config::OPTIONS_ENV).ok();
    let mut set = |k: &str, v: String| cli.push((k.to_string(), v));
    let section = format!("api_server.{}", protocol.as_str());
    if let Some(h) = &args.host {
        set(&format!("{section}.host"), format!("{h:?}"));
    }
    if let Some(p) = args.port {
        set(&format!("{section}.port"), p.to_string());
    }
    if let (Protocol::Grpc, Some(p)) = (protocol, args.metrics_port) {
        set("api_server.grpc.metrics.port", p.to_string());
    }
    if let Some(n) = args.api_workers {
        set("api_server.workers", n.to_string());
    }
    if let Some(n) = args.runner_workers {
        set("runners.workers", n.to_string());
    }
    if let Some(t) = args.graceful_timeout {
        set("api_server.graceful_timeout", t.to_string());
    }
    if let Some(f) = &args.log_format {
        set("logging.format", f.clone());
    }
    if let Some(f) = &args.web_config_file {
        set(
            "api_server.web_config_file",
            format!("{:?}", f.display().to_string()),
        );
    }
    cli.extend(args.ssl.overrides());
    let config = Config::from_sources(file.as_deref(), options.as_deref(), &cli)?;
    let runner_names: Vec<&str> = service.runners().iter().map(|r| r.name()).collect();
    config.check_runners(&runner_names)?;
    // The tokens are read here too, so a bad source stops the start naming its key.
    let api_names: Vec<&str> = service.apis().iter().map(|a| a.name.as_str()).collect();
    config.api_server.auth.load(&api_names)?;
    let yaml = serde_yaml_ng::to_string(&config).context("cannot serialise the configuration")?;
    Ok((service, config, yaml))
}

fn serve(
    protocol: Protocol,
    args: ServeArgs,
    mut cli: Vec<(String, String)>,
    services: &[Service],
) -> Result<()> {
    let mut args = args;
    let model = args
        .model
        .as_deref()
        .map(crate::models::service_for)
        .transpose()?;
    let python = match args.service.as_deref() {
        Some(target) if model.is_none() && crate::python::is_locator(target) => {
            Some((target.to_string(), crate::python::describe(target)?))
        }
        _ => None,
    };
    let own_service;
    let services = match (&model, &python) {
        (Some(model), _) => {
            own_service = [model.service.clone()];
            args.service = Some(model.service.name.clone());
            &own_service[..]
        }
        (None, Some((_, py))) => {
            cli.splice(0..0, py.overrides.iter().cloned());
            own_service = [py.service.clone()];
            args.service = Some(py.service.name.clone());
            &own_service[..]
        }
        (None, None) => services,
    };
    let (service, config, yaml) = effective_config(&args, protocol, services, cli)?;
    let _log = tiffin_logging::init("supervisor".into(), config.logging.format);
    check_tls_files(&config, protocol)?;
    let (exe, exe_args, python) = match python {
        Some((locator, py)) => (py.python, py.args, Some(locator)),
        None => (
            std::env::current_exe().context("cannot find the tiffin executable")?,
            Vec::new(),
            None,
        ),
    };
    let (host, port, metrics_port, metrics_host) = match protocol {
        Protocol::Http => {
            let http = &config.api_server.http;
            (http.host.clone(), http.port, args.metrics_port, None)
        }
        Protocol::Grpc => {
            let grpc = &config.api_server.grpc;
            // The aggregate is served on its own port (gRPC has no `/metrics`
            // route), unless metrics are disabled and no port was asked for.
            let metrics_port = (config.api_server.metrics.enabled || args.metrics_port.is_some())
                .then_some(grpc.metrics.port);
            let metrics_host = Some(grpc.metrics.host.clone());
            (grpc.host.clone(), grpc.port, metrics_port, metrics_host)
        }
    };
    tiffin_supervisor::run(tiffin_supervisor::SuperviseArgs {
        host,
        port,
        metrics_port,
        metrics_host,
        protocol,
        service,
        config,
        config_yaml: yaml,
        exe,
        exe_args,
        model: model.map(|m| m.path),
        python,
    })?;
    Ok(())
}

/// Loads the TLS files and the web configuration file once before any
/// process starts, so that a bad one stops `serve-*` naming its key and file
/// (every API server would otherwise fail to start, over and over); a
/// certificate outside its validity dates only warns, as Python's `ssl`
/// serves it too.
fn check_tls_files(config: &Config, protocol: Protocol) -> Result<()> {
    let alpn = match protocol {
        Protocol::Http => tiffin_tls::Alpn::Http,
        Protocol::Grpc => tiffin_tls::Alpn::Grpc,
    };
    let mut files = Vec::new();
    if let Some(f) = tiffin_api_server::tls::files(&config.api_server.ssl, alpn) {
        files.push(f);
    }
    if let Some(path) = &config.api_server.web_config_file {
        let named = tiffin_tls::Named::new("api_server.web_config_file", path);
        let web = tiffin_tls::WebConfig::load(&named).context("the web configuration file")?;
        files.extend(web.tls);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for f in files {
        let (_, identity) = f.build().context("TLS")?;
        if let Some(warning) = identity.validity.warning(now) {
            eprintln!("warning: {}: the certificate {warning}", f.cert);
        }
    }
    Ok(())
}

fn parse_workers(value: &str) -> Result<usize> {
    value.parse::<usize>().map_err(|_| {
        anyhow!("invalid worker count '{value}': expected a whole number such as 2, or 'auto'")
    })
}

fn client_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")
}

/// The flat JSON shape of `tiffin status --json`, convenient for `jq` and scripts.
fn status_json(report: &StatusReport) -> serde_json::Value {
    let workers: Vec<serde_json::Value> = report
        .workers
        .iter()
        .map(|w| {
            serde_json::json!({
                "role": w.role.cli_name(), "runner": w.role.runner(), "index": w.role.index(), "pid": w.pid,
                "state": w.state.to_string(), "uptime_secs": w.uptime_secs,
                "restarts": w.restarts, "requests": w.requests,
            })
        })
        .collect();
    let autoscaling: Vec<serde_json::Value> = report
        .autoscaling
        .iter()
        .map(|a| {
            serde_json::json!({
                "runner": a.runner, "current": a.current, "desired": a.desired,
                "min": a.min, "max": a.max, "pinned": a.pinned,
                "last": a.last.as_ref().map(|d| serde_json::json!({
                    "direction": d.direction, "from": d.from, "to": d.to,
                    "average_in_flight": d.average_in_flight, "reason": d.reason,
                    "ago_secs": d.ago_secs,
                })),
            })
        })
        .collect();
    serde_json::json!({
        "service": report.service, "pid": report.pid, "listen": report.listen,
        "uptime_secs": report.uptime_secs, "workers": workers, "autoscaling": autoscaling,
    })
}

fn status(args: StatusArgs) -> Result<()> {
    let dir =
        tiffin_supervisor::client::locate(args.target.runtime_dir.as_deref(), args.target.pid)?;
    let report = client_runtime()?.block_on(tiffin_supervisor::client::status(&dir))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status_json(&report))?);
        return Ok(());
    }
    println!(
        "service {}  supervisor pid {}  listening on {}  up {:.0}s",
        report.service, report.pid, report.listen, report.uptime_secs
    );
    println!(
        "{:<12} {:<20} {:>5} {:>8} {:<9} {:>9} {:>8} {:>10}",
        "ROLE", "RUNNER", "INDEX", "PID", "STATE", "UPTIME", "RESTARTS", "REQUESTS"
    );
    for w in &report.workers {
        println!(
            "{:<12} {:<20} {:>5} {:>8} {:<9} {:>8.1}s {:>8} {:>10}",
            w.role.cli_name(),
            w.role.runner().unwrap_or("-"),
            w.role.index(),
            w.pid,
            w.state.to_string(),
            w.uptime_secs,
            w.restarts,
            w.requests
        );
    }
    for a in &report.autoscaling {
        let pinned = a.pinned.map_or(String::new(), |n| {
            format!("  pinned at {n} (tiffin scale {} auto)", a.runner)
        });
        println!(
            "autoscaling {}: current {} desired {} min {} max {}{pinned}",
            a.runner, a.current, a.desired, a.min, a.max
        );
        match &a.last {
            Some(d) => println!(
                "  last decision {:.0}s ago: {} {} -> {} ({})",
                d.ago_secs, d.direction, d.from, d.to, d.reason
            ),
            None => println!("  no decision yet"),
        }
    }
    Ok(())
}

fn scale(args: ScaleArgs) -> Result<()> {
    let workers = match args.workers.as_str() {
        "auto" => None,
        n => Some(parse_workers(n)?),
    };
    let dir =
        tiffin_supervisor::client::locate(args.target.runtime_dir.as_deref(), args.target.pid)?;
    let message = client_runtime()?.block_on(async {
        match workers {
            Some(n) => tiffin_supervisor::client::scale(&dir, &args.runner, n).await,
            None => tiffin_supervisor::client::autoscale(&dir, &args.runner).await,
        }
    })?;
    println!("{message}");
    Ok(())
}

fn worker(command: WorkerCommand, services: &[Service]) -> Result<()> {
    let common = command.common();
    if common.python.is_some() {
        bail!(
            "this is the native tiffin binary: a Python service's workers run under Python (python -m tiffin)"
        );
    }
    let service = match &common.model {
        Some(path) => crate::models::worker_service(&common.service, path)?,
        None => find_service(services, Some(&common.service))?,
    };
    run_worker(command, service)
}

/// Runs one worker process (an API server or a runner worker) of `service`:
/// what `tiffin __worker` does once it has built its service. Also the entry
/// of a Python service's workers (`python/src/lib.rs`), which build theirs
/// from the Python file. Blocks until the worker exits.
#[doc(hidden)]
pub fn run_worker(command: WorkerCommand, service: Service) -> Result<()> {
    let role = command.role();
    let yaml = std::env::var(EFFECTIVE_CONFIG_ENV).unwrap_or_default();
    let config = Config::from_yaml_str(&yaml)?;
    let _log = tiffin_logging::init(role.to_string(), config.logging.format);
    let runtime_dir = command.common().runtime_dir.clone();
    match command {
        WorkerCommand::ApiServer {
            index,
            fd,
            protocol,
            ..
        } => {
            // API servers share the CPUs: more threads than cores only adds
            // switching. With one thread, tokio's current-thread scheduler
            // runs the same tasks without the work-stealing one's hand-offs.
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            let threads = (cpus / config.api_server.workers.max(1)).max(1);
            let mut builder = if threads > 1 {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(threads);
                builder
            } else {
                tokio::runtime::Builder::new_current_thread()
            };
            let rt = builder.enable_all().build()?;
            let served = rt.block_on(tiffin_api_server::run(tiffin_api_server::ApiServerArgs {
                index,
                listen_fd: fd,
                runtime_dir,
                config,
                service,
                protocol,
                model_index: Some(crate::models::store_index()),
            }));
            // Drained: every request is answered. A call of an embedded model
            // that outlived its request (a timeout) may still hold a blocking
            // thread; the process need not wait for it.
            rt.shutdown_timeout(std::time::Duration::from_millis(200));
            served?;
        }
        WorkerCommand::Runner { runner, index, .. } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(tiffin_runner_worker::run(
                tiffin_runner_worker::WorkerArgs {
                    runner,
                    index,
                    runtime_dir,
                    config,
                    service,
                },
            ))?;
        }
    }
    Ok(())
}
