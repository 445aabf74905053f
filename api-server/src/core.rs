//! What the HTTP and gRPC front doors share: the inherited listener, the
//! default metrics, the runner pools kept current by the supervisor, the
//! control connection, and the drain handshake.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::Either;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc::UnboundedReceiver;

use tiffin_ipc::control::{ControlClient, SnapshotFn};
use tiffin_ipc::proto::{FromSupervisor, Role, ToSupervisor};
use tiffin_metrics::{self as metrics, ApiServerMetrics};
use tiffin_service::{Api, ApiError};
use tiffin_telemetry::Tracer;

use crate::access_log::AccessLog;
use crate::count::Counted;
use crate::pool::RunnerPool;
use crate::{ApiServerArgs, ApiServerError};

/// Distinct unknown endpoints labelled by their own name; beyond this,
/// scanners and typos share one label so they cannot blow up the series count.
const MAX_UNKNOWN_ENDPOINTS: usize = 100;
/// Longest unknown path labelled by itself: a longer one (a scanner's, or an
/// attack on the exposition's size) shares [`OTHER_ENDPOINT`], so unknown
/// labels cost at most `MAX_UNKNOWN_ENDPOINTS × MAX_UNKNOWN_ENDPOINT_LEN`
/// bytes per series family whatever clients send.
const MAX_UNKNOWN_ENDPOINT_LEN: usize = 64;
/// `endpoint` label for unknown endpoints past [`MAX_UNKNOWN_ENDPOINTS`] or
/// longer than [`MAX_UNKNOWN_ENDPOINT_LEN`].
const OTHER_ENDPOINT: &str = "/__unmatched__";

/// How long an exiting API server waits for its last spans to be exported.
const TRACE_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// What the main loop should do after a supervisor event.
pub(crate) enum Flow {
    /// Keep serving.
    Continue,
    /// Stop accepting, finish in-flight requests, then report drained.
    Drain,
    /// The supervisor went away: exit now.
    Gone,
}

/// The protocol-independent state of an API server.
pub(crate) struct Core {
    /// The service's APIs by name.
    pub apis: HashMap<String, Api>,
    /// One pool per runner, in the service's order.
    pub pools: Vec<Arc<RunnerPool>>,
    by_name: HashMap<String, Arc<RunnerPool>>,
    /// Default metrics, unless `api_server.metrics.enabled=false`.
    pub metrics: Option<ApiServerMetrics>,
    /// The connection to the supervisor.
    pub control: ControlClient,
    /// Requests served, reported in `tiffin status`.
    pub requests: Arc<AtomicU64>,
    /// Unknown endpoints seen so far, each its own `endpoint` label value up to a cap.
    unknown_endpoints: Mutex<HashSet<String>>,
    /// `api_server.traffic`: the limits every API request runs within.
    traffic: Traffic,
    /// The access log, unless `api_server.logging.access.enabled=false`.
    pub access_log: Option<AccessLog>,
    /// The tracer, when `tracing.exporter_type` is set.
    pub tracer: Option<Tracer>,
}

/// `api_server.traffic` as applied: a deadline per request, and a cap on
/// API requests in flight.
struct Traffic {
    timeout: Duration,
    max_concurrency: Option<usize>,
    active: AtomicUsize,
}

/// Takes ownership of the listening TCP socket the supervisor placed at
/// `fd`, registered for readiness only: `balance::accept` decides when to
/// take a connection from it, so no accept happens behind its back.
pub(crate) fn inherit_listener(
    fd: RawFd,
) -> Result<AsyncFd<std::net::TcpListener>, ApiServerError> {
    // SAFETY: the supervisor placed a listening TCP socket at this fd for us
    // (it is our only user of that number), and nothing else in this process owns it.
    let std_listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    std_listener
        .set_nonblocking(true)
        .and_then(|()| {
            // SAFETY: a std TcpListener owns its descriptor until dropped, and
            // its as_raw_fd always returns that one; the AsyncFd owns the
            // listener, so the descriptor stays open as long as it is registered.
            unsafe { AsyncFd::register_with_interest(std_listener, Interest::READABLE) }
                .map_err(Into::into)
        })
        .map_err(|source| ApiServerError::Listener { fd, source })
}

impl Core {
    /// Registers the default metrics, creates the runner pools (installing
    /// them as the runners' transports) and connects to the supervisor.
    /// Returns the supervisor's event stream beside the state.
    pub async fn start(
        args: &ApiServerArgs,
    ) -> Result<(Self, UnboundedReceiver<FromSupervisor>), ApiServerError> {
        let cfg = &args.config.api_server;
        let metrics = if cfg.metrics.enabled {
            let buckets = cfg
                .metrics
                .duration
                .buckets("api_server.metrics")
                .map_err(|e| ApiServerError::Config(e.to_string()))?;
            Some(ApiServerMetrics::new(
                metrics::global(),
                &cfg.metrics.namespace,
                &buckets,
                &args.service.name,
                args.service.version_label(),
            )?)
        } else {
            None
        };

        let mut pools = Vec::new();
        let mut by_name = HashMap::new();
        for runner in args.service.runners() {
            let pool = RunnerPool::new(runner.name());
            runner.connect(Arc::new(crate::pool::PoolTransport(pool.clone())));
            by_name.insert(runner.name().to_string(), pool.clone());
            pools.push(pool);
        }

        let requests = Arc::new(AtomicU64::new(0));
        let counted = requests.clone();
        let snapshot: SnapshotFn = Arc::new(move || {
            (
                metrics::global().snapshot(),
                counted.load(Ordering::Relaxed),
            )
        });
        let role = Role::ApiServer { index: args.index };
        let tracer =
            Tracer::from_config(&args.config.tracing, &args.service.name, &role.to_string())
                .map_err(|e| ApiServerError::Config(e.to_string()))?;
        let (control, events) =
            ControlClient::connect(&args.runtime_dir, role, Some(snapshot)).await?;
        for (name, pool) in &by_name {
            let autoscaling = args.config.runners.autoscaling_for(name);
            let scales_to_zero = autoscaling.is_some_and(|a| a.min_workers == 0);
            pool.connect_supervisor(control.clone(), scales_to_zero);
        }
        let core = Core {
            apis: args
                .service
                .apis()
                .iter()
                .map(|a| (a.name.clone(), a.clone()))
                .collect(),
            pools,
            by_name,
            metrics,
            control,
            requests,
            unknown_endpoints: Mutex::default(),
            traffic: Traffic {
                timeout: cfg.traffic.timeout.duration(),
                max_concurrency: cfg.traffic.max_concurrency,
                active: AtomicUsize::new(0),
            },
            access_log: AccessLog::new(&cfg.logging.access, args.config.logging.format),
            tracer,
        };
        Ok((core, events))
    }

    /// Runs one API request within `api_server.traffic`: at most
    /// `max_concurrency` at once (429 beyond: the client should retry), and
    /// within `timeout` (504 past it). The deadline goes with every runner
    /// call the handler makes, so a worker never starts a call whose request
    /// has already been answered.
    ///
    /// The request is counted as active when this is called (it is awaited
    /// at once) until the returned future ends or is dropped. Built from
    /// combinators rather than as an `async fn`, which would hold `request`
    /// twice (see `request_scope::within`).
    pub fn within_traffic_limits<T, F>(
        &self,
        request: F,
    ) -> impl Future<Output = Result<T, ApiError>> + use<'_, T, F>
    where
        F: Future<Output = Result<T, ApiError>>,
    {
        let traffic = &self.traffic;
        let (active, before) = Counted::enter(&traffic.active);
        if let Some(max) = traffic.max_concurrency
            && before >= max
        {
            return Either::Left(std::future::ready(Err(ApiError::new(
                429,
                format!(
                    "too many requests in flight (api_server.traffic.max_concurrency={max}); retry later"
                ),
            ))));
        }
        let timeout = traffic.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let limited = tokio::time::timeout_at(deadline, crate::deadline::within(deadline, request));
        Either::Right(limited.map(move |answer| {
            drop(active);
            match answer {
                Ok(answer) => answer,
                Err(_) => Err(ApiError::new(
                    504,
                    format!(
                        "the request did not finish within {timeout:?} (api_server.traffic.timeout)"
                    ),
                )),
            }
        }))
    }

    /// Whether every runner has at least one live worker (or may be
    /// autoscaled to zero on purpose: its next call starts one).
    pub fn ready(&self) -> bool {
        self.pools.iter().all(|p| p.ready())
    }

    /// The `endpoint` label for `endpoint`: itself when `known` (or metrics
    /// are off), and for unknown endpoints itself up to a cap of distinct
    /// values, then one shared label.
    pub fn endpoint_label<'a>(&self, endpoint: &'a str, known: bool) -> &'a str {
        if known || self.metrics.is_none() {
            return endpoint;
        }
        if endpoint.len() > MAX_UNKNOWN_ENDPOINT_LEN {
            return OTHER_ENDPOINT;
        }
        let mut seen = self
            .unknown_endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if seen.contains(endpoint) {
            return endpoint;
        }
        if seen.len() < MAX_UNKNOWN_ENDPOINTS {
            seen.insert(endpoint.to_string());
            return endpoint;
        }
        OTHER_ENDPOINT
    }

    /// Applies one supervisor event (`None`: the connection closed).
    pub fn on_event(&self, event: Option<FromSupervisor>) -> Flow {
        match event {
            Some(FromSupervisor::Workers { runner, endpoints }) => {
                if let Some(pool) = self.by_name.get(&runner) {
                    pool.update(endpoints);
                }
                Flow::Continue
            }
            Some(FromSupervisor::Drain) => Flow::Drain,
            Some(_) => Flow::Continue,
            None => {
                tracing::info!("supervisor went away; exiting");
                Flow::Gone
            }
        }
    }

    /// Tells the supervisor this API server accepts requests.
    pub fn announce_ready(&self) -> Result<(), ApiServerError> {
        self.control.send(ToSupervisor::Ready { socket: None })?;
        tracing::info!("ready");
        Ok(())
    }

    /// Exports the spans still queued, within [`TRACE_FLUSH_LIMIT`].
    pub async fn flush_traces(&self) {
        if let Some(tracer) = self.tracer.clone() {
            let flushed = tokio::task::spawn_blocking(move || tracer.shutdown(TRACE_FLUSH_LIMIT));
            let _ = tokio::time::timeout(TRACE_FLUSH_LIMIT * 2, flushed).await;
        }
    }

    /// Reports the end of a drain, with the final metrics, to the supervisor.
    pub async fn drained(&self) -> Result<(), ApiServerError> {
        self.control.send(ToSupervisor::Drained {
            snapshot: metrics::global().snapshot(),
        })?;
        self.control.finish().await;
        self.flush_traces().await;
        tracing::info!("drained; exiting");
        Ok(())
    }
}
