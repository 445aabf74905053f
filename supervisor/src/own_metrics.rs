//! The supervisor's own metric families (`tiffin_supervisor_*`): worker
//! counts, crash restarts, how scrapes went, and what the autoscaler
//! wants and did (`autoscale_loop.rs`). They are merged into the
//! aggregated exposition like any process's metrics, under role `supervisor`.

use tiffin_ipc::proto::Role;
use tiffin_metrics::{Counter, Gauge, Histogram, MetricsError, Registry, Snapshot, WorkerId};

/// Buckets of `tiffin_supervisor_scrape_duration_seconds`: scrapes take
/// milliseconds, and the deadline of a late process is 1 s.
const SCRAPE_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The supervisor's own metric families, in a registry of their own.
pub(crate) struct SupervisorMetrics {
    registry: Registry,
    workers: Gauge,
    restarts: Counter,
    hung: Counter,
    scrape_duration: Histogram,
    stale: Counter,
    autoscale_desired: Gauge,
    autoscale_decisions: Counter,
}

impl SupervisorMetrics {
    /// Defines the families.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let workers = registry.gauge(
            "tiffin_supervisor_workers",
            "Worker processes currently running, by role",
            &["role", "runner_name"],
        )?;
        // What happened to worker processes, counted by the role they had.
        let worker_events = |name, help| registry.counter(name, help, &["role", "runner_name"]);
        let restarts = worker_events(
            "tiffin_supervisor_worker_restarts_total",
            "Worker processes restarted after an unexpected exit",
        )?;
        let hung = worker_events(
            "tiffin_supervisor_worker_hung_total",
            "Worker processes killed because they stopped answering the supervisor",
        )?;
        let scrape_duration = registry.histogram(
            "tiffin_supervisor_scrape_duration_seconds",
            "Time to collect and merge every process's metrics",
            &[],
            &SCRAPE_BUCKETS,
        )?;
        let stale = registry.counter(
            "tiffin_supervisor_scrape_stale_total",
            "Process snapshots that missed the scrape deadline and were served from cache",
            &[],
        )?;
        let autoscale_desired = registry.gauge(
            "tiffin_supervisor_autoscale_desired_workers",
            "Workers the autoscaler wants for an autoscaled runner, from its latest sample",
            &["runner_name"],
        )?;
        let autoscale_decisions = registry.counter(
            "tiffin_supervisor_autoscale_decisions_total",
            "Autoscaling decisions carried out, by runner and direction (up or down)",
            &["runner_name", "direction"],
        )?;
        Ok(Self {
            registry,
            autoscale_desired,
            autoscale_decisions,
            workers,
            restarts,
            hung,
            scrape_duration,
            stale,
        })
    }

    /// Counts one crash restart of `role`.
    pub fn restarted(&self, role: &Role) {
        self.restarts
            .labels(&[role.label(), role.runner().unwrap_or("")])
            .inc();
    }

    /// Counts one process of `role` found hung.
    pub fn hung(&self, role: &Role) {
        self.hung
            .labels(&[role.label(), role.runner().unwrap_or("")])
            .inc();
    }

    /// Sets the running-worker gauge of one `(role label, runner name)`.
    pub fn set_running(&self, role: &str, runner: &str, n: f64) {
        self.workers.labels(&[role, runner]).set(n);
    }

    /// Sets the autoscaler's desired worker count of `runner`.
    pub fn set_desired(&self, runner: &str, n: usize) {
        self.autoscale_desired.labels(&[runner]).set(n as f64);
    }

    /// Counts one autoscaling decision of `runner` carried out, `up` or `down`.
    pub fn decided(&self, runner: &str, direction: &str) {
        self.autoscale_decisions.labels(&[runner, direction]).inc();
    }

    /// Records one scrape: its duration and how many processes missed it.
    pub fn scraped(&self, seconds: f64, stale: u64) {
        if stale > 0 {
            self.stale.labels(&[]).inc_by(stale as f64);
        }
        self.scrape_duration.labels(&[]).observe(seconds);
    }

    /// The families' current values, and under which identity they merge.
    pub fn snapshot(&self) -> (WorkerId, Snapshot) {
        let id = WorkerId {
            role: "supervisor".into(),
            runner: None,
            index: 0,
        };
        (id, self.registry.snapshot())
    }
}
