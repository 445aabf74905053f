//! Aggregation of every process's metrics into one exposition.
//!
//! On each scrape the supervisor asks every connected process for a snapshot,
//! all at once, and waits at most [`SCRAPE_DEADLINE`]. Fresh snapshots replace
//! the cached ones in their slots; a process that misses the deadline
//! contributes its cached snapshot and is counted as stale, while a process
//! whose connection ends stops being waited for at once (it is retired, not
//! stale). Only then, under one lock, are the live slots' snapshots merged
//! with the retired accumulator (see `state.rs` for why that counts every
//! process exactly once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tiffin_ipc::proto::{FromSupervisor, Role, ToSupervisor};
use tiffin_metrics::Format;

use crate::liveness::Liveness;
use crate::own_metrics::SupervisorMetrics;
use crate::state::{Shared, lock};

/// How long a scrape waits for processes before using their cached snapshots.
pub const SCRAPE_DEADLINE: Duration = Duration::from_secs(1);

/// Which processes answered a collection and which missed its deadline.
#[derive(Default)]
pub(crate) struct Collected {
    /// Answered in time (role, generation).
    pub answered: Vec<(Role, u64)>,
    /// Missed the deadline (role, generation).
    pub missed: Vec<(Role, u64)>,
}

/// Asks every connected process for a fresh snapshot (waiting at most
/// [`SCRAPE_DEADLINE`]) and stores the answers in their slots; returns how
/// many processes missed the deadline.
pub(crate) async fn collect(shared: &Shared) -> u64 {
    collect_from_all(shared).await.missed.len() as u64
}

/// [`collect`], telling which processes answered and which did not.
pub(crate) async fn collect_from_all(shared: &Shared) -> Collected {
    let targets = lock(shared).connections();
    let deadline = tokio::time::Instant::now() + SCRAPE_DEADLINE;
    let answers = futures::future::join_all(targets.into_iter().map(
        |(role, generation, conn)| async move {
            let answer =
                tokio::time::timeout_at(deadline, conn.request(FromSupervisor::SnapshotRequest))
                    .await;
            (role, generation, answer)
        },
    ))
    .await;

    let mut st = lock(shared);
    let mut collected = Collected::default();
    for (role, generation, answer) in answers {
        match answer {
            Ok(Ok(ToSupervisor::Snapshot { snapshot, requests })) => {
                st.record_snapshot(&role, generation, snapshot, requests);
                collected.answered.push((role, generation));
            }
            Ok(Ok(other)) => {
                tracing::warn!(worker = %role, msg = ?other, "unexpected answer to a snapshot request");
                collected.answered.push((role, generation));
            }
            // The process went away: its last snapshot is already retired.
            Ok(Err(_)) => {}
            Err(_) => collected.missed.push((role, generation)),
        }
    }
    collected
}

/// Refreshes snapshots in the background so that a worker killed between
/// scrapes loses at most one interval of increments; the same requests tell
/// which processes still answer (see `liveness.rs`): one silent for
/// `hung_after` is taken for hung.
pub(crate) fn refresh_periodically(
    shared: Shared,
    own: Arc<SupervisorMetrics>,
    every: Duration,
    hung_after: Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut liveness = Liveness::new(every, hung_after);
        loop {
            tick.tick().await;
            if lock(&shared).shutting_down {
                return;
            }
            let collected = collect_from_all(&shared).await;
            liveness.refreshed(&shared, &own, &collected.answered, &collected.missed);
        }
    });
}

/// Collects, merges and renders in `format`.
pub(crate) async fn aggregate(
    shared: &Shared,
    own: &Arc<SupervisorMetrics>,
    format: Format,
) -> String {
    let started = Instant::now();
    let stale = collect(shared).await;
    let st = lock(shared);
    if stale > 0 {
        tracing::warn!(
            stale,
            "processes missed the scrape deadline; using cached snapshots"
        );
    }
    // Worker gauges are recomputed from the slots at every scrape.
    for ((role, runner), n) in st.running_counts() {
        own.set_running(role, &runner, n);
    }
    own.scraped(started.elapsed().as_secs_f64(), stale);
    let (own_id, own_snapshot) = own.snapshot();
    let (retired, mut live) = st.snapshots();
    live.insert(0, (own_id, &own_snapshot));
    let merged = tiffin_metrics::merge(retired, &live);
    drop(live);
    drop(st);
    tiffin_metrics::render(&merged, format)
}
