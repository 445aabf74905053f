//! The lifecycle policy: starting a worker, what to do when one exits
//! (restart with exponential backoff, unless it was retiring), live scaling,
//! and retiring a worker by draining it.
//!
//! A slot whose processes keep exiting before they ever become ready is in
//! a crash loop: after `max_failed_starts` of them in a row (per role, from
//! the configuration; 0 = never) the supervisor stops restarting it and
//! shuts the service down with [`SupervisorError::CrashLoop`], since the
//! next start would fail as the last ones did. A process that became ready
//! resets the count: a worker that served and later crashed is restarted
//! with backoff however often it happens.
//!
//! Every decision runs on the supervisor's main loop, one [`Event`] at a
//! time, so two decisions never race; the state they change is in
//! `state.rs`.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};

use tiffin_config::{Config, MAX_WORKERS};
use tiffin_ipc::proto::{API_SERVER_TARGET_ALIASES, FromSupervisor, Role, WorkerState};

use crate::SupervisorError;
use crate::autoscale::Autoscalers;
use crate::own_metrics::SupervisorMetrics;
use crate::process::{describe, kill};
use crate::spawn::{SpawnSpec, spawn};
use crate::state::{Shared, lock};

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A worker that stayed up this long is healthy again: its backoff resets.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);
/// How long an exited process's control connection may take to deliver
/// what the process sent before it exited (see [`Supervisor::start`]). The
/// kernel closes the socket at exit, so this is reached only if something
/// else (a process it spawned) still holds the socket open.
const FINAL_WORDS: Duration = Duration::from_secs(1);

/// Things that happen to the supervisor, handled one at a time by its main loop.
pub(crate) enum Event {
    /// A worker process exited.
    Exited {
        /// Its slot.
        role: Role,
        /// Its generation.
        generation: u64,
        /// How it ended, for the log.
        status: String,
    },
    /// A crashed worker's backoff has passed.
    Restart {
        /// Its slot.
        role: Role,
        /// The generation that crashed.
        generation: u64,
    },
    /// `tiffin scale TARGET N`.
    Scale {
        /// Runner name or `api-server`.
        target: String,
        /// Desired number of workers.
        workers: usize,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// `tiffin scale RUNNER auto`: hand a pinned runner back to its autoscaler.
    Autoscale {
        /// Runner name.
        target: String,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Time to sample the autoscaled runners (`autoscale_loop.rs`).
    AutoscaleTick,
    /// An API server has a call to `runner` waiting for a worker.
    CallWaiting {
        /// Runner name.
        runner: String,
    },
}

/// The supervisor's handles: the state, its own metrics, its event queue,
/// the configuration, and what it needs to spawn workers.
pub(crate) struct Supervisor<'a> {
    pub shared: Shared,
    pub metrics: Arc<SupervisorMetrics>,
    pub events: mpsc::UnboundedSender<Event>,
    pub spec: SpawnSpec<'a>,
    /// The effective configuration (for the failed-start limits).
    pub config: &'a Config,
    /// Set when a slot's crash loop reached its limit: the main loop takes
    /// it, shuts the service down and returns it.
    pub gave_up: Cell<Option<SupervisorError>>,
    /// The autoscaled runners' decision state (`autoscale_loop.rs`).
    pub autoscalers: Autoscalers,
}

impl Supervisor<'_> {
    /// Applies one event.
    pub fn handle(&self, event: Event) {
        match event {
            Event::Exited {
                role,
                generation,
                status,
            } => self.on_exit(role, generation, status),
            Event::Restart { role, generation } => self.on_restart(role, generation),
            Event::Scale {
                target,
                workers,
                reply,
            } => {
                let result = self.scale(&target, workers);
                let result = match result {
                    Ok(message) if self.is_autoscaled(&target) => {
                        self.pin(&target, workers);
                        Ok(format!(
                            "{message} (pinned: autoscaling resumes with `tiffin scale {target} auto`)"
                        ))
                    }
                    other => other,
                };
                let _ = reply.send(result);
            }
            Event::Autoscale { target, reply } => {
                let _ = reply.send(self.unpin(&target));
            }
            Event::AutoscaleTick => self.autoscale_tick(),
            Event::CallWaiting { runner } => self.call_waiting(&runner),
        }
    }

    /// Starts a process in `role`'s slot and watches for its exit.
    ///
    /// The exit is reported only once the process's control connection has
    /// ended (or [`FINAL_WORDS`] passed): the connection's reader handles
    /// every frame the process sent before `closed()` resolves, so a
    /// draining process's final `Drained` snapshot is recorded before the
    /// exit retires the slot. Reporting at once would race the reader and
    /// could drop up to a refresh interval of that process's counts.
    pub fn start(&self, role: &Role) {
        let (pid, child) = match spawn(&self.spec, role) {
            Ok(child) => (child.id(), Some(child)),
            Err(e) => {
                tracing::error!(worker = %role, error = %e, "cannot start worker");
                (None, None)
            }
        };
        let generation = lock(&self.shared).process_started(role, pid, BACKOFF_START);
        tracing::info!(worker = %role, pid = pid.unwrap_or(0), generation, "worker started");
        let events = self.events.clone();
        let role = role.clone();
        match child {
            Some(mut child) => {
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    let status = match child.wait().await {
                        Ok(s) => describe(s),
                        Err(e) => format!("wait failed: {e}"),
                    };
                    // No registered connection: the process never said
                    // hello, or its connection already ended (and was
                    // handled in full).
                    let conn = lock(&shared).connection_of(&role, generation);
                    if let Some(conn) = conn
                        && tokio::time::timeout(FINAL_WORDS, conn.closed())
                            .await
                            .is_err()
                    {
                        tracing::warn!(worker = %role, "control connection still open a second after the process exited");
                    }
                    let _ = events.send(Event::Exited {
                        role,
                        generation,
                        status,
                    });
                });
            }
            None => {
                let _ = events.send(Event::Exited {
                    role,
                    generation,
                    status: "failed to start".into(),
                });
            }
        }
    }

    fn on_exit(&self, role: Role, generation: u64, status: String) {
        let mut st = lock(&self.shared);
        let Some(exit) = st.process_exited(&role, generation) else {
            return;
        };
        let (limit, limit_key) = self.failed_start_limit(&role);
        let delay = if exit.removed {
            tracing::info!(worker = %role, %status, "worker exited");
            None
        } else if limit > 0 && exit.failed_starts >= limit {
            tracing::error!(
                worker = %role,
                %status,
                failed_starts = exit.failed_starts,
                "worker exited before becoming ready {} times in a row; not restarting it, shutting down ({limit_key}={limit})",
                exit.failed_starts
            );
            self.gave_up.set(Some(SupervisorError::CrashLoop {
                worker: role.to_string(),
                status: status.clone(),
                count: exit.failed_starts,
                limit_key,
            }));
            None
        } else if let Some(slot) = st.slots.get_mut(&role) {
            if exit.uptime >= BACKOFF_RESET_AFTER {
                slot.backoff = BACKOFF_START;
            }
            let delay = slot.backoff;
            slot.backoff = (slot.backoff * 2).min(BACKOFF_MAX);
            slot.restarts += 1;
            slot.state = WorkerState::Backoff;
            tracing::warn!(worker = %role, %status, uptime_ms = exit.uptime.as_millis() as u64, "worker exited unexpectedly; restarting");
            self.metrics.restarted(&role);
            Some(delay)
        } else {
            None
        };
        if let Some(runner) = role.runner() {
            st.broadcast_workers(runner);
        }
        drop(st);
        if let Some(delay) = delay {
            let events = self.events.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = events.send(Event::Restart { role, generation });
            });
        }
    }

    /// How many failed starts in a row `role`'s slot may have (0: no limit),
    /// and the key that sets it, for the error.
    fn failed_start_limit(&self, role: &Role) -> (u32, String) {
        match role.runner() {
            Some(runner) => (
                self.config.runners.max_failed_starts_for(runner),
                self.config.runners.key_of(runner, "max_failed_starts"),
            ),
            None => (
                self.config.api_server.max_failed_starts,
                "api_server.max_failed_starts".to_owned(),
            ),
        }
    }

    fn on_restart(&self, role: Role, generation: u64) {
        let st = lock(&self.shared);
        let due = !st.shutting_down
            && st
                .slots
                .get(&role)
                .is_some_and(|s| s.generation == generation && !s.retiring);
        drop(st);
        if due {
            self.start(&role);
        }
    }

    fn scale(&self, target: &str, workers: usize) -> Result<String, String> {
        let st = lock(&self.shared);
        if st.shutting_down {
            return Err("the supervisor is shutting down".into());
        }
        // The bound of `api_server.workers` and `runners.workers`: a typo here
        // would fork just as many processes as one in the configuration.
        if workers > MAX_WORKERS {
            return Err(format!(
                "at most {MAX_WORKERS} workers (the range of api_server.workers and runners.workers), got {workers}"
            ));
        }
        let (current, make): (Vec<Role>, Box<dyn Fn(usize) -> Role>) = if API_SERVER_TARGET_ALIASES
            .contains(&target)
        {
            if workers == 0 {
                return Err("api-server needs at least 1 worker".into());
            }
            (
                st.active(|r| matches!(r, Role::ApiServer { .. })),
                Box::new(|i| Role::ApiServer { index: i - 1 }),
            )
        } else if st.runners.iter().any(|r| r == target) {
            if workers == 0 {
                return Err(format!("runner '{target}' needs at least 1 worker"));
            }
            let name = target.to_string();
            (
                st.active(|r| r.runner() == Some(target)),
                Box::new(move |i| Role::Runner {
                    name: name.clone(),
                    index: i,
                }),
            )
        } else if st.embedded.iter().any(|r| r == target) {
            return Err(format!(
                "runner '{target}' is embedded (runners.{target}.embedded: true): it runs inside \
                 every API server and has no workers of its own; scale the API servers instead \
                 (tiffin scale api-server N), or set embedded to false to give it workers"
            ));
        } else {
            return Err(format!(
                "unknown scale target '{target}'; expected 'api-server' or one of the runners: {}",
                st.runners.join(", ")
            ));
        };
        let have = current.len();
        drop(st);
        self.resize(current, workers, &*make);
        Ok(format!("{target}: {have} -> {workers} workers"))
    }

    /// Sets `runner`'s worker count to `workers` (0 included: the
    /// autoscaler's scale to zero), draining any that go.
    pub fn resize_runner(&self, runner: &str, workers: usize) {
        let current = lock(&self.shared).active(|r| r.runner() == Some(runner));
        let name = runner.to_string();
        self.resize(current, workers, &move |i| Role::Runner {
            name: name.clone(),
            index: i,
        });
    }

    /// Starts or retires slots so that `current` becomes `workers` slots;
    /// `make` names the slot at a 1-based position.
    fn resize(&self, current: Vec<Role>, workers: usize, make: &dyn Fn(usize) -> Role) {
        let have = current.len();
        if workers > have {
            let mut started = 0;
            let mut i = 1;
            while started < workers - have {
                let role = make(i);
                if !lock(&self.shared).slots.contains_key(&role) {
                    self.start(&role);
                    started += 1;
                }
                i += 1;
            }
        } else {
            // Retire slots that are not serving (restarting, starting) first, then
            // the highest indices: scaling down must never keep a dead slot over a
            // ready one.
            let mut doomed = current;
            let st = lock(&self.shared);
            let serving = |r: &Role| {
                st.slots
                    .get(r)
                    .is_some_and(|s| s.state == WorkerState::Ready && s.pid.is_some())
            };
            doomed.sort_by_key(|r| (serving(r), std::cmp::Reverse(r.index())));
            drop(st);
            for role in doomed.into_iter().take(have - workers) {
                self.retire(&role);
            }
        }
    }

    /// Drains one worker: stop routing to it, let it finish, then it exits;
    /// one that overruns the graceful timeout is killed.
    pub fn retire(&self, role: &Role) {
        let mut st = lock(&self.shared);
        let Some(slot) = st.slots.get_mut(role) else {
            return;
        };
        slot.retiring = true;
        let pid = slot.pid;
        match (&slot.conn, pid) {
            (Some(conn), _) => {
                let _ = conn.send(FromSupervisor::Drain);
            }
            (None, Some(pid)) => kill(pid, Signal::SIGTERM),
            (None, None) => {
                st.slots.remove(role);
            }
        }
        if let Some(runner) = role.runner() {
            st.broadcast_workers(runner);
        }
        let timeout = st.graceful_timeout;
        drop(st);
        tracing::info!(worker = %role, "draining worker");
        if let Some(pid) = pid {
            let shared = self.shared.clone();
            let role = role.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                if lock(&shared)
                    .slots
                    .get(&role)
                    .is_some_and(|s| s.pid == Some(pid))
                {
                    tracing::warn!(worker = %role, pid, "drain timed out; killing");
                    kill(pid, Signal::SIGKILL);
                }
            });
        }
    }

    /// Kills every worker still running (the end of shutdown).
    pub fn kill_all(&self) {
        let st = lock(&self.shared);
        for (role, slot) in &st.slots {
            if let Some(pid) = slot.pid {
                tracing::warn!(worker = %role, pid, "killing worker that did not exit in time");
                kill(pid, Signal::SIGKILL);
            }
        }
    }
}
