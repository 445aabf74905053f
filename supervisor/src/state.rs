//! What the supervisor knows: one slot per worker process, and the metrics
//! of processes that are gone.
//!
//! A *slot* is a role (`api_server:0`, `runner:nltk_sentiment:2`); the process
//! in it may be replaced (crash restart) and each replacement gets a new
//! *generation*, so late news of an old process is recognised and ignored.
//!
//! The state keeps one invariant that the aggregated exposition rests on:
//! **every process is counted exactly once, live or dead.** A running
//! process contributes its latest snapshot (`Slot::last`); when it exits,
//! that snapshot is folded into `retired` and cleared from the slot, in one
//! step ([`State::process_exited`]), so counters never go backwards across
//! restarts and scale-downs and are never counted twice. Only the methods
//! here touch `last` and `retired`.
//!
//! An API server's snapshot also carries its runner calls in flight, the
//! autoscaler's load: it is read into a typed [`RunnerLoad`] (`Slot::load`)
//! when the snapshot is stored, together with `last` and never apart from it.
//!
//! This file is a leaf: it imports no other module of the supervisor. The
//! lifecycle policy (when to start, restart, retire) lives in
//! `lifecycle.rs`; talking to processes lives in `control.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tiffin_ipc::Connection;
use tiffin_ipc::load::RunnerLoad;
use tiffin_ipc::proto::{
    AutoscaleStatus, FromSupervisor, Role, StatusReport, ToSupervisor, WorkerEndpoint, WorkerState,
    WorkerStatus,
};
use tiffin_metrics::{Snapshot, WorkerId};

/// The supervisor's end of a worker's control connection.
pub(crate) type WorkerConn = Connection<FromSupervisor, ToSupervisor>;

/// One worker slot.
pub(crate) struct Slot {
    /// Generation of the process in the slot (or of the last one).
    pub generation: u64,
    /// Process id while a process runs.
    pub pid: Option<u32>,
    /// Lifecycle state as `tiffin status` shows it.
    pub state: WorkerState,
    /// When the current process was started.
    pub started: Instant,
    /// Crash restarts of this slot.
    pub restarts: u64,
    /// Requests served by the current process, as of its last snapshot.
    pub requests: u64,
    /// The control connection of the current process, once it said hello.
    pub conn: Option<WorkerConn>,
    /// Where API servers reach a ready runner worker.
    pub endpoint: Option<WorkerEndpoint>,
    /// Latest metrics of the running process (None once it exited).
    last: Option<Snapshot>,
    /// The runner calls in flight `last` reports (API servers only; empty
    /// once the process exited).
    load: RunnerLoad,
    /// Delay before the next crash restart.
    pub backoff: Duration,
    /// Being scaled away or shut down: never restarted.
    pub retiring: bool,
    /// Processes in a row of this slot that exited (or failed to spawn)
    /// before they became ready; a process that became ready resets it.
    pub failed_starts: u32,
    /// The current process has been seen `Ready` (see [`State::process_exited`]).
    became_ready: bool,
}

impl Slot {
    /// Stores the latest snapshot of the slot's process and, for an API
    /// server, the load it reports.
    fn keep_snapshot(&mut self, role: &Role, snapshot: Snapshot) {
        if matches!(role, Role::ApiServer { .. }) {
            self.load = RunnerLoad::from_snapshot(&snapshot);
        }
        self.last = Some(snapshot);
    }

    /// Clears the snapshot (and load) of a process that is gone; returns the
    /// snapshot.
    fn forget_snapshot(&mut self) -> Option<Snapshot> {
        self.load = RunnerLoad::default();
        self.last.take()
    }
}

/// What became of a slot whose process exited.
pub(crate) struct Exit {
    /// The slot was retiring (or the supervisor is shutting down): it is gone.
    pub removed: bool,
    /// How long the process ran.
    pub uptime: Duration,
    /// The slot's [`Slot::failed_starts`] counting this exit: 0 when the
    /// process had become ready.
    pub failed_starts: u32,
}

/// Everything the supervisor knows, behind one lock.
pub(crate) struct State {
    /// Name of the service.
    pub service: String,
    /// Names of the service's runners, in order.
    pub runners: Vec<String>,
    /// Names of the runners embedded in the API servers (no workers of their own).
    pub embedded: Vec<String>,
    /// Every worker slot.
    pub slots: BTreeMap<Role, Slot>,
    /// Metrics of every process that has exited.
    retired: Snapshot,
    /// SIGINT/SIGTERM received: nothing is restarted any more.
    pub shutting_down: bool,
    next_generation: u64,
    /// Address of the public listener.
    pub listen: String,
    /// When the supervisor started.
    pub started: Instant,
    /// How long draining may take.
    pub graceful_timeout: Duration,
    /// What the autoscaler of each autoscaled runner wants, did last, and
    /// whether `tiffin scale` pinned it.
    pub autoscale: BTreeMap<String, AutoscaleView>,
}

/// One autoscaled runner as `tiffin status` shows it; `current` and the last
/// decision's age are filled in by [`State::report`].
#[derive(Clone)]
pub(crate) struct AutoscaleView {
    /// The status row.
    pub status: AutoscaleStatus,
    /// When the last decision was carried out.
    pub decided_at: Option<Instant>,
}

/// The state shared by the supervisor's tasks.
pub(crate) type Shared = Arc<Mutex<State>>;

/// Locks the state. `parking_lot`'s lock is never poisoned: a panicked
/// task must not stop supervision.
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock()
}

impl State {
    /// An empty state for a service with these runners.
    pub fn new(
        service: String,
        runners: Vec<String>,
        listen: String,
        graceful_timeout: Duration,
    ) -> Self {
        Self {
            service,
            runners,
            embedded: Vec::new(),
            slots: BTreeMap::new(),
            retired: Snapshot::default(),
            shutting_down: false,
            next_generation: 0,
            listen,
            started: Instant::now(),
            graceful_timeout,
            autoscale: BTreeMap::new(),
        }
    }

    /// Records that a new process (`pid`, or none if spawning failed) now
    /// occupies `role`'s slot, creating the slot if needed; returns its generation.
    pub fn process_started(&mut self, role: &Role, pid: Option<u32>, backoff: Duration) -> u64 {
        self.next_generation += 1;
        let generation = self.next_generation;
        let now = Instant::now();
        let slot = self.slots.entry(role.clone()).or_insert_with(|| Slot {
            generation,
            pid: None,
            state: WorkerState::Starting,
            started: now,
            restarts: 0,
            requests: 0,
            conn: None,
            endpoint: None,
            last: None,
            load: RunnerLoad::default(),
            backoff,
            retiring: false,
            failed_starts: 0,
            became_ready: false,
        });
        slot.generation = generation;
        slot.pid = pid;
        slot.state = WorkerState::Starting;
        slot.started = now;
        slot.conn = None;
        slot.endpoint = None;
        slot.forget_snapshot();
        slot.became_ready = false;
        generation
    }

    /// Records the exit of generation `generation` of `role`: its last
    /// snapshot joins `retired`, the slot's run of failed starts grows
    /// (or resets, if the process had become ready), and the slot is removed
    /// when it was retiring. `None` when that process is not the slot's
    /// current one.
    pub fn process_exited(&mut self, role: &Role, generation: u64) -> Option<Exit> {
        let shutting_down = self.shutting_down;
        let slot = self.slots.get_mut(role)?;
        if slot.generation != generation {
            return None;
        }
        let last = slot.forget_snapshot();
        slot.conn = None;
        slot.endpoint = None;
        slot.pid = None;
        let removed = slot.retiring || shutting_down;
        let uptime = slot.started.elapsed();
        // `process_started` sets every new generation `Starting` and its
        // `Ready` message moves it on, but hung-worker detection sets a
        // process back to `Starting` before killing it: a ready process is
        // also recognised by having been seen ready at a snapshot (every one
        // answers the refresh within a second or two of becoming ready).
        let became_ready = slot.became_ready || slot.state == WorkerState::Ready;
        slot.failed_starts = if became_ready {
            0
        } else {
            slot.failed_starts.saturating_add(1)
        };
        let failed_starts = slot.failed_starts;
        if let Some(last) = &last {
            tiffin_metrics::retire(&mut self.retired, last);
        }
        if removed {
            self.slots.remove(role);
        }
        Some(Exit {
            removed,
            uptime,
            failed_starts,
        })
    }

    /// The slot of `role` when its current process is `pid`: the check a
    /// control connection's hello must pass. Returns the generation.
    pub fn generation_of(&self, role: &Role, pid: u32) -> Option<u64> {
        self.slots
            .get(role)
            .filter(|s| s.pid == Some(pid))
            .map(|s| s.generation)
    }

    /// Takes generation `generation` of `role` out of routing (not ready, no
    /// endpoint) and tells the API servers; returns its pid to be killed, or
    /// `None` when that process is no longer the slot's.
    pub fn take_out_of_routing(&mut self, role: &Role, generation: u64) -> Option<u32> {
        let slot = self.current(role, generation)?;
        let pid = slot.pid?;
        slot.state = WorkerState::Starting;
        slot.endpoint = None;
        if let Some(runner) = role.runner() {
            self.broadcast_workers(runner);
        }
        Some(pid)
    }

    /// The slot of `role` if its current process is generation `generation`.
    pub fn current(&mut self, role: &Role, generation: u64) -> Option<&mut Slot> {
        self.slots
            .get_mut(role)
            .filter(|s| s.generation == generation)
    }

    /// Stores a fresh snapshot of a running process. A snapshot that arrives
    /// after its process exited is dropped: that process is already counted
    /// in `retired`.
    pub fn record_snapshot(
        &mut self,
        role: &Role,
        generation: u64,
        snapshot: Snapshot,
        requests: u64,
    ) {
        if let Some(slot) = self.current(role, generation)
            && slot.pid.is_some()
        {
            slot.keep_snapshot(role, snapshot);
            slot.requests = requests;
            slot.became_ready |= slot.state == WorkerState::Ready;
        }
    }

    /// The control connection of generation `generation` of `role`, while
    /// it is open and registered.
    pub fn connection_of(&mut self, role: &Role, generation: u64) -> Option<WorkerConn> {
        self.current(role, generation).and_then(|s| s.conn.clone())
    }

    /// Stores the final snapshot a draining process sends before it exits.
    pub fn record_final_snapshot(&mut self, role: &Role, generation: u64, snapshot: Snapshot) {
        if let Some(slot) = self.current(role, generation) {
            slot.keep_snapshot(role, snapshot);
        }
    }

    /// Every running process's latest snapshot beside the retired metrics:
    /// what one exposition merges.
    pub fn snapshots(&self) -> (&Snapshot, Vec<(WorkerId, &Snapshot)>) {
        let live = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.pid.is_some())
            .filter_map(|(role, slot)| slot.last.as_ref().map(|last| (role.worker_id(), last)))
            .collect();
        (&self.retired, live)
    }

    /// Control connections of running processes, with their slot's generation.
    pub fn connections(&self) -> Vec<(Role, u64, WorkerConn)> {
        self.slots
            .iter()
            .filter_map(|(role, s)| s.conn.clone().map(|c| (role.clone(), s.generation, c)))
            .collect()
    }

    /// Sends the current ready set of `runner` to every API server.
    pub fn broadcast_workers(&self, runner: &str) {
        let msg = FromSupervisor::Workers {
            runner: runner.to_string(),
            endpoints: self.endpoints(runner),
        };
        for (role, slot) in &self.slots {
            if let (Role::ApiServer { .. }, Some(conn)) = (role, &slot.conn) {
                let _ = conn.send(msg.clone());
            }
        }
    }

    /// Ready, non-retiring endpoints of one runner.
    pub fn endpoints(&self, runner: &str) -> Vec<WorkerEndpoint> {
        self.slots
            .iter()
            .filter(|(role, slot)| {
                role.runner() == Some(runner) && !slot.retiring && slot.state == WorkerState::Ready
            })
            .filter_map(|(_, slot)| slot.endpoint.clone())
            .collect()
    }

    /// Calls in flight to `runner` (running in a worker, queued for one, or
    /// waiting for one), summed over the API servers' latest snapshots.
    pub fn runner_calls_in_flight(&self, runner: &str) -> f64 {
        self.slots
            .values()
            .filter(|slot| slot.pid.is_some())
            .map(|slot| slot.load.calls_in_flight(runner))
            .sum()
    }

    /// Workers of `runner` that are not draining away.
    pub fn active_workers(&self, runner: &str) -> usize {
        self.slots
            .iter()
            .filter(|(role, slot)| role.runner() == Some(runner) && !slot.retiring)
            .count()
    }

    /// Running processes per `(role label, runner name)`, every runner and
    /// the API servers listed even at zero.
    pub fn running_counts(&self) -> BTreeMap<(&'static str, String), f64> {
        let mut counts = BTreeMap::new();
        for runner in &self.runners {
            counts.insert(("runner", runner.clone()), 0.0);
        }
        counts.insert(("api_server", String::new()), 0.0);
        for (role, slot) in &self.slots {
            if slot.pid.is_some() {
                let key = (role.label(), role.runner().unwrap_or("").to_string());
                *counts.entry(key).or_default() += 1.0;
            }
        }
        counts
    }

    /// A status report for `tiffin status`.
    pub fn report(&self) -> StatusReport {
        StatusReport {
            service: self.service.clone(),
            pid: std::process::id(),
            listen: self.listen.clone(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            workers: self
                .slots
                .iter()
                .map(|(role, s)| WorkerStatus {
                    role: role.clone(),
                    pid: s.pid.unwrap_or(0),
                    state: if s.retiring && s.pid.is_some() {
                        WorkerState::Draining
                    } else {
                        s.state
                    },
                    uptime_secs: if s.pid.is_some() {
                        s.started.elapsed().as_secs_f64()
                    } else {
                        0.0
                    },
                    restarts: s.restarts,
                    requests: s.requests,
                })
                .collect(),
            autoscaling: self
                .autoscale
                .values()
                .map(|view| {
                    let mut status = view.status.clone();
                    status.current = self.active_workers(&status.runner);
                    if let (Some(last), Some(at)) = (&mut status.last, view.decided_at) {
                        last.ago_secs = at.elapsed().as_secs_f64();
                    }
                    status
                })
                .collect(),
        }
    }

    /// Roles of non-retiring slots that `matches` selects.
    pub fn active(&self, matches: impl Fn(&Role) -> bool) -> Vec<Role> {
        self.slots
            .iter()
            .filter(|(role, slot)| matches(role) && !slot.retiring)
            .map(|(role, _)| role.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiffin_metrics::Registry;

    fn counted(n: f64) -> Snapshot {
        let reg = Registry::new();
        let c = reg.counter("calls", "calls", &[]).unwrap();
        c.labels(&[]).inc_by(n);
        reg.snapshot()
    }

    fn total(state: &State) -> f64 {
        let (retired, live) = state.snapshots();
        let merged = tiffin_metrics::merge(retired, &live);
        tiffin_metrics::render_text(&merged)
            .lines()
            .find_map(|l| l.strip_prefix("calls_total "))
            .map_or(0.0, |v| v.parse().unwrap())
    }

    fn in_flight(n: f64) -> Snapshot {
        let reg = Registry::new();
        let g = reg
            .gauge(
                tiffin_ipc::load::RUNNER_CALLS_IN_FLIGHT,
                "calls",
                &[tiffin_ipc::load::RUNNER_LABEL],
            )
            .unwrap();
        g.labels(&["r"]).set(n);
        reg.snapshot()
    }

    #[test]
    fn runner_load_sums_the_running_api_servers_and_ignores_other_roles() {
        let mut st = State::new("s".into(), vec!["r".into()], "x".into(), Duration::ZERO);
        let api = |index| Role::ApiServer { index };
        let runner = Role::Runner {
            name: "r".into(),
            index: 1,
        };
        let a = st.process_started(&api(0), Some(10), Duration::ZERO);
        let b = st.process_started(&api(1), Some(11), Duration::ZERO);
        let w = st.process_started(&runner, Some(12), Duration::ZERO);
        st.record_snapshot(&api(0), a, in_flight(2.0), 0);
        st.record_snapshot(&api(1), b, in_flight(3.0), 0);
        st.record_snapshot(&runner, w, in_flight(50.0), 0);
        assert_eq!(st.runner_calls_in_flight("r"), 5.0);
        assert_eq!(st.runner_calls_in_flight("other"), 0.0);
        st.record_final_snapshot(&api(1), b, in_flight(1.0));
        assert_eq!(st.runner_calls_in_flight("r"), 3.0);
        assert!(st.process_exited(&api(1), b).is_some());
        assert_eq!(
            st.runner_calls_in_flight("r"),
            2.0,
            "an exited API server has no load"
        );
        let again = st.process_started(&api(1), Some(13), Duration::ZERO);
        assert_eq!(
            st.runner_calls_in_flight("r"),
            2.0,
            "nor its replacement before it reports"
        );
        st.record_snapshot(&api(1), again, in_flight(4.0), 0);
        assert_eq!(st.runner_calls_in_flight("r"), 6.0);
    }

    #[test]
    fn an_exited_process_is_counted_once_and_a_late_snapshot_of_it_is_ignored() {
        let mut st = State::new("s".into(), vec!["r".into()], "x".into(), Duration::ZERO);
        let role = Role::Runner {
            name: "r".into(),
            index: 1,
        };
        let first = st.process_started(&role, Some(10), Duration::ZERO);
        st.record_snapshot(&role, first, counted(3.0), 3);
        assert_eq!(total(&st), 3.0);
        assert!(st.process_exited(&role, first).is_some());
        assert_eq!(total(&st), 3.0, "the dead process still counts, once");
        // A snapshot of the dead generation that arrives late changes nothing.
        st.record_snapshot(&role, first, counted(100.0), 100);
        let second = st.process_started(&role, Some(11), Duration::ZERO);
        st.record_snapshot(&role, first, counted(100.0), 100);
        st.record_snapshot(&role, second, counted(2.0), 2);
        assert_eq!(total(&st), 5.0);
        // The exit of an old generation is not the current process's exit.
        assert!(st.process_exited(&role, first).is_none());
        assert_eq!(total(&st), 5.0);
    }

    #[test]
    fn exits_before_ready_are_counted_in_a_row_and_reset_by_a_ready_process() {
        let mut st = State::new("s".into(), vec!["r".into()], "x".into(), Duration::ZERO);
        let role = Role::Runner {
            name: "r".into(),
            index: 1,
        };
        let exit = |st: &mut State, ready: bool| {
            let g = st.process_started(&role, Some(10), Duration::ZERO);
            if ready && let Some(slot) = st.current(&role, g) {
                slot.state = WorkerState::Ready;
            }
            st.process_exited(&role, g).map(|e| e.failed_starts)
        };
        assert_eq!(exit(&mut st, false), Some(1));
        assert_eq!(exit(&mut st, false), Some(2));
        // A spawn failure (no pid) is a failed start too.
        let g = st.process_started(&role, None, Duration::ZERO);
        assert_eq!(
            st.process_exited(&role, g).map(|e| e.failed_starts),
            Some(3)
        );
        assert_eq!(
            exit(&mut st, true),
            Some(0),
            "a ready process resets the run"
        );
        assert_eq!(exit(&mut st, false), Some(1));

        // A ready process that is taken out of routing before it is killed
        // (hung-worker detection sets it back to `Starting`) was still ready.
        let g = st.process_started(&role, Some(11), Duration::ZERO);
        if let Some(slot) = st.current(&role, g) {
            slot.state = WorkerState::Ready;
        }
        st.record_snapshot(&role, g, counted(1.0), 1);
        if let Some(slot) = st.current(&role, g) {
            slot.state = WorkerState::Starting;
        }
        assert_eq!(
            st.process_exited(&role, g).map(|e| e.failed_starts),
            Some(0)
        );
        // A snapshot before the process was ready is no sign of readiness.
        let g = st.process_started(&role, Some(12), Duration::ZERO);
        st.record_snapshot(&role, g, counted(1.0), 1);
        assert_eq!(
            st.process_exited(&role, g).map(|e| e.failed_starts),
            Some(1)
        );
    }

    #[test]
    fn a_retiring_slot_is_removed_when_its_process_exits() {
        let mut st = State::new("s".into(), vec![], "x".into(), Duration::ZERO);
        let role = Role::ApiServer { index: 0 };
        let g = st.process_started(&role, Some(10), Duration::ZERO);
        st.record_final_snapshot(&role, g, counted(1.0));
        if let Some(slot) = st.slots.get_mut(&role) {
            slot.retiring = true;
        }
        let exit = st.process_exited(&role, g).unwrap();
        assert!(exit.removed);
        assert!(st.slots.is_empty());
        assert_eq!(total(&st), 1.0);
    }
}
