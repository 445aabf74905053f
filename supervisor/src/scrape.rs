//! Aggregation of every process's metrics into one exposition.
//!
//! On each scrape the supervisor asks every connected process for a snapshot,
//! all at once, and waits at most [`SCRAPE_DEADLINE`]. Fresh snapshots replace
//! the cached ones in their slots; a process that misses the deadline
//! contributes its cached snapshot and is counted as stale. Only then, under
//! one lock, are the live slots' snapshots merged with the retired
//! accumulator: every process is counted exactly once, live or dead, so
//! counters never go backwards.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::oneshot;

use tiffin_shared::metrics::{
    self, Counter, Gauge, Histogram, OPENMETRICS_CONTENT_TYPE, Registry, TEXT_CONTENT_TYPE,
    WorkerId,
};
use tiffin_shared::proto::{FromSupervisor, Role};

use crate::SupervisorError;
use crate::state::{Shared, lock};

/// How long a scrape waits for processes before using their cached snapshots.
pub const SCRAPE_DEADLINE: Duration = Duration::from_secs(1);

/// The supervisor's own metric families.
pub(crate) struct SupervisorMetrics {
    registry: Registry,
    workers: Gauge,
    restarts: Counter,
    scrape_duration: Histogram,
    stale: Counter,
}

impl SupervisorMetrics {
    pub fn new() -> Result<Self, SupervisorError> {
        let registry = Registry::new();
        let workers = registry.gauge(
            "tiffin_supervisor_workers",
            "Worker processes currently running, by role",
            &["role", "runner_name"],
        )?;
        let restarts = registry.counter(
            "tiffin_supervisor_worker_restarts_total",
            "Worker processes restarted after an unexpected exit",
            &["role", "runner_name"],
        )?;
        let scrape_duration = registry.histogram(
            "tiffin_supervisor_scrape_duration_seconds",
            "Time to collect and merge every process's metrics",
            &[],
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
        )?;
        let stale = registry.counter(
            "tiffin_supervisor_scrape_stale_total",
            "Process snapshots that missed the scrape deadline and were served from cache",
            &[],
        )?;
        Ok(Self {
            registry,
            workers,
            restarts,
            scrape_duration,
            stale,
        })
    }

    /// Counts one crash restart of `role`.
    pub fn restarted(&self, role: &Role) {
        let (r, runner) = role_labels(role);
        self.restarts.labels(&[r, runner]).inc();
    }
}

fn role_labels(role: &Role) -> (&'static str, &str) {
    match role {
        Role::ApiServer { .. } => ("api_server", ""),
        Role::Runner { name, .. } => ("runner", name.as_str()),
        Role::Cli => ("cli", ""),
    }
}

fn worker_id(role: &Role) -> WorkerId {
    match role {
        Role::ApiServer { index } => WorkerId {
            role: "api_server".into(),
            runner: None,
            index: *index,
        },
        Role::Runner { name, index } => WorkerId {
            role: "runner".into(),
            runner: Some(name.clone()),
            index: *index,
        },
        Role::Cli => WorkerId {
            role: "cli".into(),
            runner: None,
            index: 0,
        },
    }
}

/// Asks every connected process for a fresh snapshot (waiting at most
/// [`SCRAPE_DEADLINE`]) and stores the answers in their slots; returns how
/// many processes missed the deadline.
pub(crate) async fn collect(shared: &Shared) -> u64 {
    let mut waits = Vec::new();
    {
        let mut st = lock(shared);
        let targets: Vec<(Role, u64, _)> = st
            .slots
            .iter()
            .filter_map(|(role, s)| s.conn.clone().map(|c| (role.clone(), s.generation, c)))
            .collect();
        for (role, generation, conn) in targets {
            let id = st.next_id;
            st.next_id += 1;
            let (tx, rx) = oneshot::channel();
            st.snapshot_waiters.insert(id, tx);
            if conn.send(FromSupervisor::SnapshotRequest { id }).is_ok() {
                if let Some(slot) = st.slots.get_mut(&role) {
                    slot.pending_snapshots.push(id);
                }
                waits.push((role, generation, id, rx));
            } else {
                st.snapshot_waiters.remove(&id);
            }
        }
    }
    let deadline = tokio::time::Instant::now() + SCRAPE_DEADLINE;
    let answers = futures::future::join_all(waits.into_iter().map(
        |(role, generation, id, rx)| async move {
            // Err(_) = deadline missed (stale); Ok(Err(_)) = the process went
            // away and its waiter was dropped (not stale: it is retired).
            let answer = tokio::time::timeout_at(deadline, rx).await;
            (role, generation, id, answer)
        },
    ))
    .await;

    let mut st = lock(shared);
    let mut stale = 0u64;
    for (role, generation, id, answer) in answers {
        st.snapshot_waiters.remove(&id);
        if let Some(slot) = st.slots.get_mut(&role) {
            slot.pending_snapshots.retain(|p| *p != id);
        }
        match answer {
            Ok(Ok((snapshot, requests))) => {
                // Only a still-running process of the same generation may update
                // its slot: a dead one's last snapshot is already in `retired`.
                if let Some(slot) = st.slots.get_mut(&role)
                    && slot.generation == generation
                    && slot.pid.is_some()
                {
                    slot.last = Some(snapshot);
                    slot.requests = requests;
                }
            }
            Ok(Err(_)) => {}
            Err(_) => stale += 1,
        }
    }
    stale
}

/// Refreshes snapshots in the background so that a worker killed between
/// scrapes loses at most one interval of increments.
pub(crate) fn refresh_periodically(shared: Shared, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if lock(&shared).shutting_down {
                return;
            }
            collect(&shared).await;
        }
    });
}

/// Collects, merges and renders; returns the content type and the body.
pub(crate) async fn aggregate(shared: &Shared, openmetrics: bool) -> (&'static str, String) {
    let started = Instant::now();
    let stale = collect(shared).await;
    let st = lock(shared);
    if stale > 0 {
        st.metrics.stale.labels(&[]).inc_by(stale as f64);
        tracing::warn!(
            stale,
            "processes missed the scrape deadline; using cached snapshots"
        );
    }
    // Worker gauges are recomputed from the slots at every scrape.
    let mut counts: std::collections::BTreeMap<(&'static str, String), f64> = Default::default();
    for runner in &st.runners {
        counts.insert(("runner", runner.clone()), 0.0);
    }
    counts.insert(("api_server", String::new()), 0.0);
    for (role, slot) in &st.slots {
        if slot.pid.is_some() {
            let (r, runner) = role_labels(role);
            *counts.entry((r, runner.to_string())).or_default() += 1.0;
        }
    }
    for ((r, runner), n) in counts {
        st.metrics.workers.labels(&[r, &runner]).set(n);
    }
    st.metrics
        .scrape_duration
        .labels(&[])
        .observe(started.elapsed().as_secs_f64());
    let own = st.metrics.registry.snapshot();
    let supervisor_id = WorkerId {
        role: "supervisor".into(),
        runner: None,
        index: 0,
    };
    let mut live: Vec<(WorkerId, &metrics::Snapshot)> = vec![(supervisor_id, &own)];
    for (role, slot) in &st.slots {
        if let (Some(last), Some(_)) = (&slot.last, slot.pid) {
            live.push((worker_id(role), last));
        }
    }
    let merged = metrics::merge(&st.retired, &live);
    drop(live);
    if openmetrics {
        (
            OPENMETRICS_CONTENT_TYPE,
            metrics::render_openmetrics(&merged),
        )
    } else {
        (TEXT_CONTENT_TYPE, metrics::render_text(&merged))
    }
}

/// Serves the aggregate on its own port (`--metrics-port`), at `/` and `/metrics`.
pub(crate) async fn serve_metrics_port(
    host: &str,
    port: u16,
    shared: Shared,
) -> Result<(), SupervisorError> {
    let addr = format!("{host}:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(SupervisorError::bind(
            &addr,
            " (the metrics port is already in use)",
        ))?;
    tracing::info!(%addr, "serving aggregated metrics");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let shared = shared.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(metrics_response(&shared, &req).await) }
            });
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

async fn metrics_response(
    shared: &Shared,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/" && req.uri().path() != "/metrics" {
        let mut r = Response::new(Full::new(Bytes::from_static(
            b"{\"error\":\"not found; metrics are at /\"}",
        )));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    let openmetrics = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let (content_type, body) = aggregate(shared, openmetrics).await;
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
