//! Graceful shutdown, in phases: API servers first (they stop accepting and
//! finish their requests, which may still call runners), then runner
//! workers. All phases share one deadline, `api_server.graceful_timeout`;
//! whatever is left when it passes, or when a second SIGINT arrives, is
//! killed. Events keep being handled meanwhile, so exits are recorded (and
//! their final metrics retired) as they happen.

use std::time::Instant;

use tokio::signal::unix::Signal;
use tokio::sync::mpsc;

use tiffin_ipc::proto::Role;

use crate::lifecycle::{Event, Supervisor};
use crate::state::lock;

/// The signals that end serving: the first SIGINT or SIGTERM drains, a
/// second SIGINT forces exit.
pub(crate) struct Signals {
    /// SIGINT (Ctrl-C).
    pub interrupt: Signal,
    /// SIGTERM.
    pub terminate: Signal,
}

/// Drains every worker, phase by phase, within the graceful timeout.
pub(crate) async fn drain_all(
    sup: &Supervisor<'_>,
    events: &mut mpsc::UnboundedReceiver<Event>,
    signals: &mut Signals,
) {
    let deadline = {
        let mut st = lock(&sup.shared);
        st.shutting_down = true;
        Instant::now() + st.graceful_timeout
    };
    let phases: [fn(&Role) -> bool; 2] = [
        |r| matches!(r, Role::ApiServer { .. }),
        |r| matches!(r, Role::Runner { .. }),
    ];
    for in_phase in phases {
        let roles: Vec<Role> = lock(&sup.shared)
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
            if !lock(&sup.shared).slots.keys().any(in_phase) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::select! {
                _ = tokio::time::sleep(left) => break,
                _ = signals.interrupt.recv() => {
                    tracing::warn!("second SIGINT: forcing exit");
                    sup.kill_all();
                    return;
                }
                Some(event) = events.recv() => sup.handle(event),
            }
        }
    }
    sup.kill_all();
    tracing::info!("supervisor stopped");
}
