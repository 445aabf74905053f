//! A running Python method sees its caller go away as an exception.
//!
//! A Rust method polls its [`Cancellation`]; Python code cannot be asked to.
//! So when the token of a running call turns (the API server sent the
//! worker a cancel: the client hung up), the exception
//! `asyncio.CancelledError` is raised in the thread that runs the method,
//! with CPython's `PyThreadState_SetAsyncExc`
//! (<https://docs.python.org/3/c-api/init.html#c.PyThreadState_SetAsyncExc>):
//! the interpreter raises it at the next bytecode it runs there. A loop of
//! Python steps stops at its next step; a call blocked in C (a `sleep`, a
//! native kernel) stops when it returns to Python. `finally` blocks run,
//! and `except Exception` does not swallow it (it is a `BaseException`),
//! as in an `async def` handler that asyncio cancels.
//!
//! The token turns on the worker's reader thread, which must not wait for
//! the GIL: the exception is set from a short thread of its own. Setting it
//! and ending the call both happen under the GIL, and a call that ends with
//! its token turned clears whatever is still pending, so the exception
//! never reaches a later call on the same thread.

use std::os::raw::{c_long, c_ulong};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::asyncio::CancelledError;
use pyo3::prelude::*;
use tiffin_service::Cancellation;

unsafe extern "C" {
    /// `threading.get_ident()`: in CPython's stable ABI (`pythread.h`),
    /// which pyo3-ffi does not declare. Resolved, like pyo3's own
    /// symbols, by the interpreter that loads the module.
    fn PyThread_get_thread_ident() -> c_ulong;
}

/// One running call's link to its thread, from [`Running::start`] (with
/// the GIL held, in the thread that runs the method) to [`Running::end`].
pub struct Running {
    thread: c_ulong,
    running: Arc<AtomicBool>,
    cancel: Cancellation,
}

impl Running {
    /// The call on this thread starts: a turn of `cancel` from now on
    /// raises `asyncio.CancelledError` here.
    pub fn start(_py: Python<'_>, cancel: &Cancellation) -> Running {
        // SAFETY: `_py` proves the GIL is held; the call only reads the
        // current thread's id.
        let thread = unsafe { PyThread_get_thread_ident() };
        let running = Arc::new(AtomicBool::new(true));
        let watched = Arc::clone(&running);
        cancel.on_cancel(move || {
            let spawned = std::thread::Builder::new()
                .name("tiffin-cancel".into())
                .spawn(move || Python::with_gil(|py| interrupt(py, thread, &watched)));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot interrupt a cancelled Python call");
            }
        });
        Running {
            thread,
            running,
            cancel: cancel.clone(),
        }
    }

    /// The call returned to Rust (the GIL still held since): a later turn
    /// does nothing, and an exception set but not yet raised is cleared.
    pub fn end(self, _py: Python<'_>) {
        self.running.store(false, Ordering::SeqCst);
        if self.cancel.is_cancelled() {
            // SAFETY: the GIL is held (`_py`); a null exception clears what
            // is pending for the thread, which is this live one.
            unsafe {
                pyo3::ffi::PyThreadState_SetAsyncExc(as_id(self.thread), std::ptr::null_mut())
            };
        }
    }
}

/// Raises `asyncio.CancelledError` in `thread` if its call still runs.
fn interrupt(py: Python<'_>, thread: c_ulong, running: &AtomicBool) {
    // Read under the GIL, which the call holds from its last bytecode to
    // `Running::end`: the flag cannot change under us.
    if !running.load(Ordering::SeqCst) {
        return;
    }
    let exc = py.get_type::<CancelledError>();
    // SAFETY: the GIL is held (`py`); `thread` runs the call (it has not
    // reached `Running::end`, which would have cleared `running` under
    // the GIL), so it is a live Python thread; `exc` is a live type object
    // the interpreter takes its own reference to.
    unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(as_id(thread), exc.as_ptr()) };
}

/// CPython takes the id as `unsigned long`; pyo3-ffi declares `long`, of
/// the same size: the bits pass unchanged.
fn as_id(thread: c_ulong) -> c_long {
    c_long::from_ne_bytes(thread.to_ne_bytes())
}
