//! The state an API-server process keeps whichever front door it runs
//! (HTTP in `http.rs`, gRPC in `grpc/`): the service's routes, the runner
//! pools kept current by the supervisor, the control connection and the
//! drain handshake, the default metrics and how a request is metered, the
//! traffic limits, the access log and the tracer.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::mpsc::UnboundedReceiver;

use tiffin_ipc::control::{ControlClient, SnapshotFn};
use tiffin_ipc::proto::{FromSupervisor, Role, ToSupervisor};
use tiffin_metrics::{self as metrics, ApiServerMetrics};
use tiffin_telemetry::Tracer;

use crate::access_log::AccessLog;
use crate::auth::Auth;
use crate::endpoint_label::EndpointLabels;
use crate::pool::RunnerPool;
use crate::route::{Route, Routes};
use crate::traffic::TrafficLimits;
use crate::{ApiServerArgs, ApiServerError};

/// What the main loop should do after a supervisor event.
pub(crate) enum Flow {
    /// Keep serving.
    Continue,
    /// Stop accepting, finish in-flight requests, then report drained.
    Drain,
    /// The supervisor went away: exit now.
    Gone,
}

/// How long an API server waits for its runners' workers before it accepts
/// anyway (see [`ServerState::join_runners`]).
const JOIN_BOUND: Duration = Duration::from_secs(2);

/// How often [`ServerState::join_runners`] looks at the handshakes.
const JOIN_TICK: Duration = Duration::from_millis(5);

/// The protocol-independent state of an API server.
pub(crate) struct ServerState {
    /// What each path names: the service's APIs and the fixed paths.
    pub routes: Routes,
    /// One pool per runner, in the service's order.
    pools: Vec<Arc<RunnerPool>>,
    by_name: HashMap<String, Arc<RunnerPool>>,
    /// Default metrics, unless `api_server.metrics.enabled=false`.
    pub metrics: Option<ApiServerMetrics>,
    /// The connection to the supervisor.
    pub control: ControlClient,
    /// Requests served, reported in `tiffin status`.
    requests: Arc<AtomicU64>,
    /// The `endpoint` label values given to unknown paths so far.
    endpoint_labels: EndpointLabels,
    /// `api_server.traffic`: the limits every API request runs within.
    pub traffic: TrafficLimits,
    /// The access log, unless `api_server.logging.access.enabled=false`.
    pub access_log: Option<AccessLog>,
    /// The tracer, when `tracing.exporter_type` is set.
    pub tracer: Option<Tracer>,
    /// The model repository the protocol's index lists (`ApiServerArgs::model_index`).
    pub model_index: Option<tiffin_oip::metadata::ModelIndex>,
    /// Bearer tokens (`api_server.auth`), when on.
    pub auth: Option<Auth>,
    /// The families of streaming answers, unless metrics are disabled.
    pub streams: Option<StreamMetrics>,
}

/// Time to the first item of a streaming answer.
pub(crate) const TIME_TO_FIRST_ITEM: &str = "tiffin_api_server_time_to_first_item_seconds";
/// Items sent in streaming answers.
pub(crate) const STREAM_ITEMS: &str = "tiffin_api_server_stream_items_total";

/// What none of the peers export by default, for streaming APIs
/// (docs/streaming.md): time to the first item (a dashboard's time to first
/// token) and items sent (tokens per second), labelled as BentoML's
/// `request_*` families are, by endpoint, service name and version.
pub(crate) struct StreamMetrics {
    first_item: tiffin_metrics::Histogram,
    items: tiffin_metrics::Counter,
    service_name: String,
    service_version: String,
}

impl StreamMetrics {
    fn new(
        buckets: &[f64],
        service_name: &str,
        service_version: &str,
    ) -> Result<Self, tiffin_metrics::MetricsError> {
        let labels = ["endpoint", "service_name", "service_version"];
        let reg = metrics::global();
        Ok(StreamMetrics {
            first_item: reg.histogram(
                TIME_TO_FIRST_ITEM,
                "Seconds from a streaming request's arrival to its first item",
                &labels,
                buckets,
            )?,
            items: reg.counter(STREAM_ITEMS, "Items sent in streaming answers", &labels)?,
            service_name: service_name.to_owned(),
            service_version: service_version.to_owned(),
        })
    }

    /// Records the time to the first item of a stream of `endpoint`.
    pub fn first_item(&self, endpoint: &str, seconds: f64) {
        self.first_item
            .labels(&[endpoint, &self.service_name, &self.service_version])
            .observe(seconds);
    }

    /// The item counter of `endpoint`.
    pub fn items(&self, endpoint: &str) -> tiffin_metrics::CounterChild {
        self.items
            .labels(&[endpoint, &self.service_name, &self.service_version])
    }
}

impl ServerState {
    /// Registers the default metrics, creates the runner pools (installing
    /// them as the runners' transports) and connects to the supervisor.
    /// Returns the supervisor's event stream beside the state.
    pub async fn start(
        args: &ApiServerArgs,
    ) -> Result<(Self, UnboundedReceiver<FromSupervisor>), ApiServerError> {
        let cfg = &args.config.api_server;
        let (metrics, streams) = if cfg.metrics.enabled {
            let buckets = cfg
                .metrics
                .duration
                .buckets("api_server.metrics")
                .map_err(|e| ApiServerError::Config(e.to_string()))?;
            let defaults = ApiServerMetrics::new(
                metrics::global(),
                &cfg.metrics.namespace,
                &buckets,
                &args.service.name,
                args.service.version_label(),
            )?;
            let streams =
                StreamMetrics::new(&buckets, &args.service.name, args.service.version_label())?;
            (Some(defaults), Some(streams))
        } else {
            (None, None)
        };

        let mut pools = Vec::new();
        let mut by_name = HashMap::new();
        for runner in args.service.runners() {
            if args.config.runners.embedded(runner.name()) {
                // Loaded here, in every API server: no pool, no workers.
                let embedded = tiffin_runner_worker::Embedded::load(
                    &args.service,
                    runner.name(),
                    &args.config,
                    args.index,
                )
                .map_err(|e| ApiServerError::Config(e.to_string()))?;
                runner.connect(Arc::new(crate::embedded::EmbeddedTransport(embedded)));
                continue;
            }
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
        // Read before connecting: bad tokens end this process before it
        // says hello (the supervisor checked them already, at start).
        let auth = Auth::start(
            &cfg.auth,
            &args.service,
            cfg.metrics.enabled.then(metrics::global),
        )?;
        let (control, events) =
            ControlClient::connect(&args.runtime_dir, role, Some(snapshot)).await?;
        for (name, pool) in &by_name {
            let autoscaling = args.config.runners.autoscaling_for(name);
            let scales_to_zero = autoscaling.is_some_and(|a| a.min_workers == 0);
            pool.connect_supervisor(control.clone(), scales_to_zero);
        }
        let state = ServerState {
            routes: Routes::new(args.service.apis(), args.service.models()),
            pools,
            by_name,
            metrics,
            control,
            requests,
            endpoint_labels: EndpointLabels::default(),
            traffic: TrafficLimits::new(&cfg.traffic),
            access_log: AccessLog::new(&cfg.logging.access, args.config.logging.format),
            tracer,
            model_index: args.model_index.clone(),
            auth,
            streams,
        };
        Ok((state, events))
    }

    /// Serves one request to `path` (which `route` resolved) with `serve`,
    /// recorded in the default metrics under its `endpoint` label
    /// (`endpoint_label.rs`) with the HTTP status `status` reads from the
    /// answer, and counted for `tiffin status`. A streaming answer is
    /// recorded when its stream ends, with the stream's status (`tail.rs`).
    ///
    /// Built from combinators rather than as an `async fn`, which would hold
    /// `serve` twice (see `request_scope::within`).
    pub fn metered<'a, T, F>(
        &'a self,
        route: Route<'_>,
        path: &'a str,
        serve: F,
        status: fn(&T) -> u16,
    ) -> impl Future<Output = T> + use<'a, T, F>
    where
        F: Future<Output = T>,
    {
        let started = Instant::now();
        let metered = self.metrics.as_ref().map(|m| {
            let endpoint = self.endpoint_labels.label(route, path);
            (m, endpoint, m.start(endpoint))
        });
        // A streaming answer's request ends at its last item (tail.rs). Both
        // front doors set the request's tail around `serve` already (another
        // task-local layer would move the request's future once more); a
        // caller that did not gets one here.
        let (ended, serve) = match crate::tail::current() {
            Some(tail) => (tail, futures::future::Either::Left(serve)),
            None => {
                let tail = crate::tail::Tail::default();
                let scoped = crate::tail::within(tail.clone(), serve);
                (tail, futures::future::Either::Right(scoped))
            }
        };
        serve.map(move |answer| {
            if let Some((m, endpoint, in_progress)) = metered {
                let record = move |m: &ApiServerMetrics, endpoint: &str, status: u16| {
                    drop(in_progress);
                    m.finish(endpoint, status, started.elapsed().as_secs_f64());
                };
                if ended.streaming() {
                    let (m, endpoint) = (m.clone(), endpoint.to_owned());
                    if let Err(now) = ended.defer(move |status| record(&m, &endpoint, status)) {
                        now(status(&answer));
                    }
                } else {
                    record(m, endpoint, status(&answer));
                }
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            answer
        })
    }

    /// Whether every runner has at least one live worker (or may be
    /// autoscaled to zero on purpose: its next call starts one).
    pub fn ready(&self) -> bool {
        self.pools.iter().all(|p| p.ready())
    }

    /// Waits, after [`ServerState::announce_ready`] and before the first
    /// accept, until the supervisor's first worker set of every runner is
    /// here and its connections are made (or have failed), for at most
    /// [`JOIN_BOUND`]. All API servers accept on one socket (accept.rs): one
    /// that accepted before joining its runners would answer `/readyz` with
    /// 503 while its siblings answer 200, and make its first calls wait.
    /// Events that arrive meanwhile are applied; a drain or the end of the
    /// control connection ends the wait and is returned.
    pub async fn join_runners(&self, events: &mut UnboundedReceiver<FromSupervisor>) -> Flow {
        let deadline = tokio::time::Instant::now() + JOIN_BOUND;
        let mut heard: HashSet<String> = HashSet::new();
        loop {
            let joined =
                heard.len() >= self.by_name.len() && self.pools.iter().all(|p| !p.connecting());
            if joined {
                return Flow::Continue;
            }
            tokio::select! {
                event = events.recv() => {
                    if let Some(FromSupervisor::Workers { runner, .. }) = &event {
                        heard.insert(runner.clone());
                    }
                    match self.on_event(event) {
                        Flow::Continue => {}
                        other => return other,
                    }
                }
                // Handshakes end on tasks of their own; a finished one is
                // seen at the next tick.
                _ = tokio::time::sleep(JOIN_TICK) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(bound = ?JOIN_BOUND, "accepting before every runner's workers are connected");
                    return Flow::Continue;
                }
            }
        }
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

    /// Reports the end of a drain, with the final metrics, to the
    /// supervisor, then exports the spans still queued.
    pub async fn drained(&self) -> Result<(), ApiServerError> {
        self.control.send(ToSupervisor::Drained {
            snapshot: metrics::global().snapshot(),
        })?;
        self.control.finish().await;
        tiffin_telemetry::flush_traces(self.tracer.as_ref()).await;
        tracing::info!("drained; exiting");
        Ok(())
    }
}
