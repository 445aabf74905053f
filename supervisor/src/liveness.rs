//! Hung-worker detection: a process that stops answering its control
//! connection is taken out of routing, killed and replaced.
//!
//! Every process answers the supervisor's snapshot request, sent once a
//! second by the background refresh (`scrape.rs`), from a task that does not
//! wait for the model (runner workers answer from a control thread of their
//! own, see `runner-worker/src/liveness.rs`), so a slow inference is not
//! silence. A process that leaves `supervisor.hung_worker_timeout` seconds of
//! refreshes unanswered (default 10: ten refreshes in a row; stopped with
//! SIGSTOP, or stuck so that no thread runs) is marked not
//! ready (so it leaves the API servers' pools, and `/readyz` reports it if
//! it was the only worker of its runner), counted in
//! `tiffin_supervisor_worker_hung_total`, and killed; its exit then takes the
//! ordinary crash path: restart with backoff.

use std::collections::HashMap;
use std::time::Duration;

use nix::sys::signal::Signal;

use tiffin_ipc::proto::Role;

use crate::own_metrics::SupervisorMetrics;
use crate::process::kill;
use crate::state::{Shared, lock};

/// Missed refreshes in a row, per process (role and generation).
pub(crate) struct Liveness {
    misses: HashMap<(Role, u64), u32>,
    /// Consecutive missed refreshes after which a process counts as hung.
    hung_after_misses: u32,
}

impl Liveness {
    /// Counts a process as hung once it has missed every refresh of
    /// `hung_after` (refreshes come `every` apart; at least one miss).
    pub fn new(every: Duration, hung_after: Duration) -> Liveness {
        let misses = (hung_after.as_secs_f64() / every.as_secs_f64().max(f64::MIN_POSITIVE)).ceil();
        Liveness {
            misses: HashMap::new(),
            // `as` saturates: a NaN or huge ratio cannot wrap.
            hung_after_misses: (misses as u32).max(1),
        }
    }

    /// Records one refresh: `answered` processes reset their count, `missed`
    /// ones add one; those that reach the limit are taken out and killed.
    pub fn refreshed(
        &mut self,
        shared: &Shared,
        metrics: &SupervisorMetrics,
        answered: &[(Role, u64)],
        missed: &[(Role, u64)],
    ) {
        for key in answered {
            self.misses.remove(key);
        }
        let mut hung = Vec::new();
        for key in missed {
            let n = self.misses.entry(key.clone()).or_default();
            *n += 1;
            if *n == self.hung_after_misses {
                hung.push(key.clone());
            }
        }
        // Processes that are gone (exited, replaced) need no count.
        let st = lock(shared);
        self.misses.retain(|(role, generation), _| {
            st.slots
                .get(role)
                .is_some_and(|s| s.generation == *generation)
        });
        drop(st);
        for (role, generation) in hung {
            self.take_out(shared, metrics, &role, generation);
        }
    }

    fn take_out(
        &mut self,
        shared: &Shared,
        metrics: &SupervisorMetrics,
        role: &Role,
        generation: u64,
    ) {
        let Some(pid) = lock(shared).take_out_of_routing(role, generation) else {
            return;
        };
        tracing::error!(worker = %role, pid, missed = self.hung_after_misses, "worker stopped answering the supervisor; taking it out of routing and killing it");
        metrics.hung(role);
        kill(pid, Signal::SIGKILL);
        self.misses.remove(&(role.clone(), generation));
    }
}
