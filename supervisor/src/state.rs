//! The supervisor's state machine: worker slots, crash restarts with backoff,
//! live scaling with drain, and graceful shutdown.
//!
//! A *slot* is a role (`api_server:0`, `runner:nltk_sentiment:2`); the process
//! in it may be replaced (crash restart) and each replacement gets a new
//! *generation*, so late events of an old process are recognised and ignored.
//! When a process exits, its last metrics snapshot is folded into `retired`,
//! which keeps every counter monotonic across restarts and scale-downs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use tiffin_shared::metrics::Snapshot;
use tiffin_shared::proto::{
    FromSupervisor, Role, StatusReport, WorkerEndpoint, WorkerState, WorkerStatus,
};

use crate::scrape::SupervisorMetrics;
use crate::spawn::{SpawnSpec, spawn};
use crate::{SuperviseArgs, SupervisorError, rundir};

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A worker that stayed up this long is healthy again: its backoff resets.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);

/// One worker slot.
pub(crate) struct Slot {
    pub generation: u64,
    pub pid: Option<u32>,
    pub state: WorkerState,
    pub started: Instant,
    pub restarts: u64,
    pub requests: u64,
    pub conn: Option<mpsc::UnboundedSender<FromSupervisor>>,
    pub endpoint: Option<WorkerEndpoint>,
    /// Latest metrics of the running process (None once it exited).
    pub last: Option<Snapshot>,
    pub backoff: Duration,
    /// Ids of snapshot requests this process has not answered yet; dropped
    /// when its connection closes so a scrape never waits on a dead process.
    pub pending_snapshots: Vec<u64>,
    /// Being scaled away or shut down: never restarted.
    pub retiring: bool,
}

/// Everything the supervisor knows, behind one lock.
pub(crate) struct State {
    pub service: String,
    pub runners: Vec<String>,
    pub slots: BTreeMap<Role, Slot>,
    pub retired: Snapshot,
    pub shutting_down: bool,
    pub next_generation: u64,
    pub next_id: u64,
    pub snapshot_waiters: HashMap<u64, oneshot::Sender<(Snapshot, u64)>>,
    pub listen: String,
    pub started: Instant,
    pub metrics: SupervisorMetrics,
    pub graceful_timeout: Duration,
}

/// The state shared by the supervisor's tasks.
pub(crate) type Shared = Arc<Mutex<State>>;

/// Locks the state, recovering from a poisoned lock (a panicked task must not stop supervision).
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Things that happen to the supervisor, handled one at a time by its main loop.
pub(crate) enum Event {
    Exited {
        role: Role,
        generation: u64,
        status: String,
    },
    Restart {
        role: Role,
        generation: u64,
    },
    Scale {
        target: String,
        workers: usize,
        reply: oneshot::Sender<Result<String, String>>,
    },
}

impl State {
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
                matches!(role, Role::Runner { name, .. } if name == runner)
                    && !slot.retiring
                    && slot.state == WorkerState::Ready
            })
            .filter_map(|(_, slot)| slot.endpoint.clone())
            .collect()
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
        }
    }

    fn active(&self, matches: impl Fn(&Role) -> bool) -> Vec<Role> {
        self.slots
            .iter()
            .filter(|(role, slot)| matches(role) && !slot.retiring)
            .map(|(role, _)| role.clone())
            .collect()
    }
}

/// The supervisor's handles besides the state.
struct Supervisor<'a> {
    shared: Shared,
    events: mpsc::UnboundedSender<Event>,
    spec: SpawnSpec<'a>,
}

impl Supervisor<'_> {
    fn start(&self, role: &Role) {
        let mut st = lock(&self.shared);
        st.next_generation += 1;
        let generation = st.next_generation;
        let (pid, child) = match spawn(&self.spec, role) {
            Ok(child) => (child.id(), Some(child)),
            Err(e) => {
                tracing::error!(worker = %role, error = %e, "cannot start worker");
                (None, None)
            }
        };
        let slot = st.slots.entry(role.clone()).or_insert_with(|| Slot {
            generation,
            pid: None,
            state: WorkerState::Starting,
            started: Instant::now(),
            restarts: 0,
            requests: 0,
            conn: None,
            endpoint: None,
            last: None,
            backoff: BACKOFF_START,
            pending_snapshots: Vec::new(),
            retiring: false,
        });
        slot.generation = generation;
        slot.pid = pid;
        slot.state = WorkerState::Starting;
        slot.started = Instant::now();
        slot.conn = None;
        slot.endpoint = None;
        slot.last = None;
        drop(st);
        tracing::info!(worker = %role, pid = pid.unwrap_or(0), generation, "worker started");
        let events = self.events.clone();
        let role = role.clone();
        match child {
            Some(mut child) => {
                tokio::spawn(async move {
                    let status = match child.wait().await {
                        Ok(s) => describe(s),
                        Err(e) => format!("wait failed: {e}"),
                    };
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
        let shutting_down = st.shutting_down;
        let Some(slot) = st.slots.get_mut(&role) else {
            return;
        };
        if slot.generation != generation {
            return;
        }
        let last = slot.last.take();
        let pending = std::mem::take(&mut slot.pending_snapshots);
        slot.conn = None;
        slot.endpoint = None;
        slot.pid = None;
        let retiring = slot.retiring || shutting_down;
        let uptime = slot.started.elapsed();
        let delay = if retiring {
            None
        } else {
            if uptime >= BACKOFF_RESET_AFTER {
                slot.backoff = BACKOFF_START;
            }
            let delay = slot.backoff;
            slot.backoff = (slot.backoff * 2).min(BACKOFF_MAX);
            slot.restarts += 1;
            slot.state = WorkerState::Backoff;
            Some(delay)
        };
        if let Some(last) = &last {
            tiffin_shared::metrics::retire(&mut st.retired, last);
        }
        // A scrape waiting on the dead process stops waiting now.
        for id in pending {
            st.snapshot_waiters.remove(&id);
        }
        if retiring {
            st.slots.remove(&role);
            tracing::info!(worker = %role, %status, "worker exited");
        } else {
            tracing::warn!(worker = %role, %status, uptime_ms = uptime.as_millis() as u64, "worker exited unexpectedly; restarting");
            st.metrics.restarted(&role);
        }
        if let Role::Runner { name, .. } = &role {
            st.broadcast_workers(name);
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
        let (current, make): (Vec<Role>, Box<dyn Fn(usize) -> Role>) = if target == "api-server"
            || target == "api_server"
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
            let matches = name.clone();
            (
                st.active(move |r| matches!(r, Role::Runner { name: n, .. } if *n == matches)),
                Box::new(move |i| Role::Runner {
                    name: name.clone(),
                    index: i,
                }),
            )
        } else {
            return Err(format!(
                "unknown scale target '{target}'; expected 'api-server' or one of the runners: {}",
                st.runners.join(", ")
            ));
        };
        let have = current.len();
        drop(st);
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
            doomed.sort_by_key(|r| (serving(r), std::cmp::Reverse(role_index(r))));
            drop(st);
            for role in doomed.into_iter().take(have - workers) {
                self.retire(&role);
            }
        }
        Ok(format!("{target}: {have} -> {workers} workers"))
    }

    /// Drains one worker: stop routing to it, let it finish, then it exits.
    fn retire(&self, role: &Role) {
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
            (None, Some(pid)) => kill(pid, nix::sys::signal::Signal::SIGTERM),
            (None, None) => {
                st.slots.remove(role);
            }
        }
        if let Role::Runner { name, .. } = role {
            st.broadcast_workers(name);
        }
        let timeout = st.graceful_timeout;
        drop(st);
        tracing::info!(worker = %role, "draining worker");
        if let Some(pid) = pid {
            // A worker that does not finish draining in time is killed.
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
                    kill(pid, nix::sys::signal::Signal::SIGKILL);
                }
            });
        }
    }
}

fn role_index(role: &Role) -> usize {
    match role {
        Role::ApiServer { index } | Role::Runner { index, .. } => *index,
        Role::Cli => 0,
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(s) => format!("killed by {s}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => "unknown status".into(),
    }
}

/// Signals a worker and everything it spawned: each worker leads its own
/// process group (see `spawn`), so the group id is its pid.
pub(crate) fn kill(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let pid = nix::unistd::Pid::from_raw(raw);
        if nix::sys::signal::killpg(pid, sig).is_err() {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }
}

/// Runs the supervisor until SIGINT/SIGTERM, then drains and exits.
pub fn run(args: SuperviseArgs) -> Result<(), SupervisorError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SupervisorError::io("cannot start the runtime"))?;
    rt.block_on(supervise(args))
}

async fn supervise(args: SuperviseArgs) -> Result<(), SupervisorError> {
    let addr = format!("{}:{}", args.host, args.port);
    let listener = std::net::TcpListener::bind(&addr).map_err(SupervisorError::bind(
        &addr,
        " (the port is already in use; pick another with --port)",
    ))?;
    let local = listener
        .local_addr()
        .map_err(SupervisorError::io("cannot read the bound address"))?;
    let pid = std::process::id();
    let dir =
        rundir::create(pid).map_err(SupervisorError::io("cannot create the runtime directory"))?;
    let result = supervise_in(args, listener, local, &dir).await;
    rundir::remove(&dir);
    result
}

async fn supervise_in(
    args: SuperviseArgs,
    listener: std::net::TcpListener,
    local: std::net::SocketAddr,
    dir: &std::path::Path,
) -> Result<(), SupervisorError> {
    let control_path = dir.join(rundir::CONTROL_SOCKET);
    let control = UnixListener::bind(&control_path)
        .map_err(SupervisorError::io("cannot bind the control socket"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&control_path, std::fs::Permissions::from_mode(0o600))
            .map_err(SupervisorError::io("cannot set control socket mode"))?;
    }
    let runners: Vec<String> = args
        .service
        .runners()
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    let shared: Shared = Arc::new(Mutex::new(State {
        service: args.service.name.clone(),
        runners: runners.clone(),
        slots: BTreeMap::new(),
        retired: Snapshot::default(),
        shutting_down: false,
        next_generation: 0,
        next_id: 1,
        snapshot_waiters: HashMap::new(),
        listen: local.to_string(),
        started: Instant::now(),
        metrics: SupervisorMetrics::new()?,
        graceful_timeout: Duration::from_secs_f64(args.config.api_server.graceful_timeout.max(0.0)),
    }));
    let (events_tx, mut events) = mpsc::unbounded_channel();
    crate::control::serve(control, shared.clone(), events_tx.clone());
    crate::scrape::refresh_periodically(shared.clone(), Duration::from_secs(1));
    if let Some(port) = args.metrics_port {
        let host = args.metrics_host.as_deref().unwrap_or(&args.host);
        crate::scrape::serve_metrics_port(host, port, shared.clone()).await?;
    }

    let sup = Supervisor {
        shared: shared.clone(),
        events: events_tx,
        spec: SpawnSpec {
            exe: &args.exe,
            service: &args.service.name,
            runtime_dir: dir,
            config_yaml: &args.config_yaml,
            listener: std::cell::RefCell::new(Some(listener)),
            protocol: args.protocol,
        },
    };
    tracing::info!(listen = %local, runtime_dir = %dir.display(), service = %args.service.name, "supervisor starting");
    for runner in &runners {
        for index in 1..=args.config.runners.workers_for(runner) {
            sup.start(&Role::Runner {
                name: runner.clone(),
                index,
            });
        }
    }
    for index in 0..args.config.api_server.workers {
        sup.start(&Role::ApiServer { index });
    }

    let mut sigint =
        signal(SignalKind::interrupt()).map_err(SupervisorError::io("cannot watch SIGINT"))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(SupervisorError::io("cannot watch SIGTERM"))?;
    loop {
        tokio::select! {
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down gracefully (again to force)"); break; }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down gracefully"); break; }
            Some(event) = events.recv() => handle(&sup, event),
        }
    }

    // Graceful shutdown: API servers first (stop accepting, finish requests), then runners.
    lock(&shared).shutting_down = true;
    let deadline = Instant::now() + lock(&shared).graceful_timeout;
    let phases: [fn(&Role) -> bool; 2] = [
        |r| matches!(r, Role::ApiServer { .. }),
        |r| matches!(r, Role::Runner { .. }),
    ];
    for in_phase in phases {
        let roles: Vec<Role> = lock(&shared)
            .slots
            .keys()
            .filter(|r| in_phase(r))
            .cloned()
            .collect();
        for role in &roles {
            sup.retire(role);
        }
        // The supervisor's own copy of the listener would keep the port
        // accepting into a backlog nobody serves while API servers drain.
        drop(sup.spec.listener.borrow_mut().take());
        loop {
            if !lock(&shared).slots.keys().any(in_phase) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::select! {
                _ = tokio::time::sleep(left) => break,
                _ = sigint.recv() => { tracing::warn!("second SIGINT: forcing exit"); kill_all(&shared); return Ok(()); }
                Some(event) = events.recv() => handle(&sup, event),
            }
        }
    }
    kill_all(&shared);
    tracing::info!("supervisor stopped");
    Ok(())
}

fn handle(sup: &Supervisor<'_>, event: Event) {
    match event {
        Event::Exited {
            role,
            generation,
            status,
        } => sup.on_exit(role, generation, status),
        Event::Restart { role, generation } => sup.on_restart(role, generation),
        Event::Scale {
            target,
            workers,
            reply,
        } => {
            let _ = reply.send(sup.scale(&target, workers));
        }
    }
}

fn kill_all(shared: &Shared) {
    let st = lock(shared);
    for (role, slot) in &st.slots {
        if let Some(pid) = slot.pid {
            tracing::warn!(worker = %role, pid, "killing worker that did not exit in time");
            kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}
