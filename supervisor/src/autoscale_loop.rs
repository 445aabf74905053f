//! The autoscaling loop: samples each autoscaled runner's load at a fixed
//! interval, feeds its [`Autoscaler`], and carries decisions out with the
//! ordinary scaling of `lifecycle.rs` (so scale-down drains, and no call is
//! lost).
//!
//! **Where the load comes from.** Every API server counts, per runner, the
//! calls it has sent and not had answered plus those waiting for a worker
//! (the gauge [`RUNNER_CALLS_IN_FLIGHT`](tiffin_ipc::load::RUNNER_CALLS_IN_FLIGHT),
//! in `api-server/src/pool.rs`). That is "running or queued" wherever the
//! queue is: in the worker's batch queue, in its socket, or in the API
//! server waiting for a worker at all. (A worker's own in-flight count
//! cannot see calls still in its socket: a plain method runs one call at a
//! time.) The snapshots that carry it are refreshed once a second by
//! `scrape.rs`, and the state reads each API server's into a typed
//! [`RunnerLoad`](tiffin_ipc::load::RunnerLoad) as it arrives; the loop sums
//! those cached counts under the state lock, taken
//! briefly and never across an await, so sampling never waits on a scrape
//! and a scrape never waits on sampling.
//!
//! **Where decisions run.** A ticker task sends [`Event::AutoscaleTick`]
//! every [`SAMPLE_EVERY`]; the main loop samples and decides, one event at a
//! time like every other lifecycle decision, so a decision never races a
//! crash restart or a `tiffin scale`. The control paths only queue events.
//!
//! **Calls waiting at zero.** An API server whose call finds no worker tells
//! the supervisor at once ([`Event::CallWaiting`]); a runner autoscaled to
//! zero then starts a worker without waiting for the next sample.
//!
//! **Manual scaling.** `tiffin scale RUNNER N` on an autoscaled runner pins
//! it at N: the loop keeps sampling (status and the desired gauge stay
//! current) but takes no decision until `tiffin scale RUNNER auto`, which
//! starts its autoscaler afresh from the count at that moment.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use tiffin_ipc::proto::{AutoscaleDecision, AutoscaleStatus};

use crate::autoscale::{Autoscaler, Decision};
use crate::lifecycle::{Event, Supervisor};
use crate::state::{AutoscaleView, lock};

/// How often each autoscaled runner's load is sampled: the interval at
/// which the API servers' snapshots are refreshed (`run.rs`), as sampling
/// faster would read the same values again.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One autoscaled runner at one tick, read under the state lock.
struct Sample {
    runner: String,
    /// Its calls in flight over every running API server
    /// ([`State::runner_calls_in_flight`](crate::state::State::runner_calls_in_flight)).
    in_flight: f64,
    /// Its workers that are not draining away.
    current: usize,
    /// `tiffin scale` holds it: sampled, but no decision is carried out.
    pinned: bool,
}

/// Queues [`Event::AutoscaleTick`] every `every` until the main loop is gone.
pub(crate) fn tick_periodically(events: mpsc::UnboundedSender<Event>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if events.send(Event::AutoscaleTick).is_err() {
                return;
            }
        }
    });
}

impl Supervisor<'_> {
    /// Puts every autoscaled runner in the status and its desired gauge.
    pub fn autoscale_init(&self) {
        let scalers = self.autoscalers.0.borrow();
        let mut st = lock(&self.shared);
        for (runner, a) in scalers.iter() {
            let p = a.policy();
            st.autoscale.insert(
                runner.clone(),
                AutoscaleView {
                    status: AutoscaleStatus {
                        runner: runner.clone(),
                        current: 0,
                        desired: a.desired(),
                        min: p.min_workers,
                        max: p.max_workers,
                        pinned: None,
                        last: None,
                    },
                    decided_at: None,
                },
            );
            self.metrics.set_desired(runner, a.desired());
        }
    }

    /// One sample of every autoscaled runner, and the decisions it completes.
    pub fn autoscale_tick(&self) {
        if self.autoscalers.is_empty() {
            return;
        }
        let st = lock(&self.shared);
        if st.shutting_down {
            return;
        }
        let samples: Vec<Sample> = st
            .autoscale
            .iter()
            .map(|(runner, view)| Sample {
                runner: runner.clone(),
                in_flight: st.runner_calls_in_flight(runner),
                current: st.active_workers(runner),
                pinned: view.status.pinned.is_some(),
            })
            .collect();
        drop(st);
        let now = Instant::now();
        let mut decisions = Vec::new();
        let mut desired = Vec::new();
        {
            let mut scalers = self.autoscalers.0.borrow_mut();
            for sample in samples {
                let Some(a) = scalers.get_mut(&sample.runner) else {
                    continue;
                };
                let decision = a.observe(now, sample.in_flight, sample.current);
                desired.push((sample.runner.clone(), a.desired()));
                if let (Some(d), false) = (decision, sample.pinned) {
                    decisions.push((sample.runner, d));
                }
            }
        }
        let mut st = lock(&self.shared);
        for (runner, n) in desired {
            self.metrics.set_desired(&runner, n);
            if let Some(view) = st.autoscale.get_mut(&runner) {
                view.status.desired = n;
            }
        }
        drop(st);
        for (runner, d) in decisions {
            self.carry_out(&runner, d);
        }
    }

    /// A call to `runner` found no worker: an autoscaled runner at zero
    /// (and not pinned) starts one now.
    pub fn call_waiting(&self, runner: &str) {
        let st = lock(&self.shared);
        let pinned = st
            .autoscale
            .get(runner)
            .is_none_or(|v| v.status.pinned.is_some());
        let current = st.active_workers(runner);
        if pinned || st.shutting_down || current > 0 {
            return;
        }
        drop(st);
        let decision = self
            .autoscalers
            .0
            .borrow_mut()
            .get_mut(runner)
            .and_then(|a| a.call_waiting(Instant::now(), current));
        if let Some(d) = decision {
            self.carry_out(runner, d);
        }
    }

    /// Applies one decision if the runner still has the count it was taken
    /// on (a crash, a `tiffin scale` or an earlier decision may have changed
    /// it since); logs it once and records it for status and metrics.
    fn carry_out(&self, runner: &str, d: Decision) {
        let mut st = lock(&self.shared);
        let current = st.active_workers(runner);
        if st.shutting_down || current != d.from {
            return;
        }
        let direction = d.direction.as_str();
        if let Some(view) = st.autoscale.get_mut(runner) {
            view.status.desired = d.to;
            view.status.last = Some(AutoscaleDecision {
                direction: direction.to_string(),
                from: d.from,
                to: d.to,
                average_in_flight: d.average_in_flight,
                reason: d.reason.clone(),
                ago_secs: 0.0,
            });
            view.decided_at = Some(Instant::now());
        }
        drop(st);
        tracing::info!(
            runner,
            direction,
            from = d.from,
            to = d.to,
            average_in_flight = d.average_in_flight,
            samples = d.samples,
            held_s = d.held.as_secs_f64(),
            reason = %d.reason,
            "autoscaling decision"
        );
        self.metrics.decided(runner, direction);
        self.metrics.set_desired(runner, d.to);
        self.resize_runner(runner, d.to);
    }

    /// Whether `runner` is autoscaled.
    pub fn is_autoscaled(&self, runner: &str) -> bool {
        self.autoscalers.0.borrow().contains_key(runner)
    }

    /// `tiffin scale RUNNER N` on an autoscaled runner: holds it at `workers`.
    pub fn pin(&self, runner: &str, workers: usize) {
        if let Some(view) = lock(&self.shared).autoscale.get_mut(runner) {
            view.status.pinned = Some(workers);
        }
        tracing::info!(
            runner,
            workers,
            "autoscaling paused: pinned by tiffin scale until `tiffin scale {runner} auto`"
        );
    }

    /// `tiffin scale RUNNER auto`: hands a runner back to its autoscaler,
    /// which starts afresh from the current count.
    pub fn unpin(&self, runner: &str) -> Result<String, String> {
        let Some(policy) = self.autoscalers.policy(runner) else {
            let st = lock(&self.shared);
            return Err(if st.runners.iter().any(|r| r == runner) {
                format!(
                    "runner '{runner}' is not autoscaled (set runners.{runner}.autoscaling.enabled: true)"
                )
            } else {
                format!(
                    "unknown runner '{runner}'; expected one of: {}",
                    st.runners.join(", ")
                )
            });
        };
        let mut st = lock(&self.shared);
        let current = st.active_workers(runner);
        let fresh = Autoscaler::new(policy.clone(), current);
        let desired = fresh.desired();
        if let Some(view) = st.autoscale.get_mut(runner) {
            view.status.pinned = None;
            view.status.desired = desired;
        }
        drop(st);
        self.autoscalers
            .0
            .borrow_mut()
            .insert(runner.to_string(), fresh);
        tracing::info!(
            runner,
            current,
            min = policy.min_workers,
            max = policy.max_workers,
            "autoscaling resumed"
        );
        Ok(format!(
            "{runner}: autoscaled ({}..={} workers), {current} now",
            policy.min_workers, policy.max_workers
        ))
    }
}
