//! Adaptive batching: the dispatcher of a batchable method groups concurrent
//! calls into batches, like BentoML's `CorkDispatcher`.
//!
//! One module per concern:
//!
//! - [`latency`]: the [`LatencyModel`], the time of a batch of `n` calls
//!   `est(n) = a + b·n`, learnt online from the batches that ran.
//! - [`policy`]: the pure [`Batcher`], a FIFO of queued calls with their
//!   arrival times, the model and the [`BatchLimits`]. It never reads the
//!   clock; every method takes `now`, so its tests drive it with explicit
//!   instants.
//! - [`dispatch`]: the tokio task started by [`Dispatcher::spawn`], which
//!   drives the batcher with the runtime's clock: it admits calls, asks
//!   [`Batcher::decide`] what to do, sleeps, rejects, or runs the method on a
//!   batch and feeds the measured duration back into the model.
//!
//! Rules, with `L = max_latency`, a call's deadline `arrival + L`:
//!
//! - **Admission** (fast rejection): a call is refused with
//!   [`CallError::Overloaded`](tiffin_service::CallError::Overloaded) when the
//!   queue holds `queue_capacity` calls, or when draining the calls ahead of
//!   it plus itself (in batches of at most `max_batch_size`, after the batch
//!   now running) is estimated to take longer than `L`.
//! - **Expiry**: a queued call that can no longer finish by its deadline even
//!   in a batch of its own (`now + est(1) > deadline`) is rejected, except the
//!   last queued call, which is served unless its deadline has passed.
//! - **Size**: a batch takes the oldest calls, at most `max_batch_size`, and
//!   no more than the oldest call's deadline allows (`now + est(k) ≤ deadline`).
//! - **Waiting**: with fewer than `max_batch_size` calls queued, the
//!   dispatcher waits for more only while the oldest call can still meet its
//!   deadline in a bigger batch (`now + est(n+1) ≤ deadline`), and only when
//!   it pays: the next call is expected (the smoothed gap between arrivals is
//!   below `a`, the fixed cost a separate batch would add) and the oldest call
//!   has waited less than `a`. So a lone call under light load is dispatched at
//!   once, and no call is ever delayed by more than one batch's fixed cost.
//!   Under load, calls that arrive while a batch runs form the next batch.
//!
//! A batch expected to take long runs on the blocking pool, so calls keep
//! arriving and are timed and admitted meanwhile; a very short one runs
//! inline, where the hand-off would cost more than the batch. If a batch
//! fails as a whole, each of its calls is retried alone so that errors land
//! on the calls that caused them (one malformed input does not fail its
//! neighbours); a panicking method fails the calls of that batch with its
//! message instead of taking the dispatcher down.

pub mod dispatch;
pub mod latency;
pub mod policy;

pub use dispatch::{BatchFn, BatchObserver, BatchSpans, Call, Dispatcher, Reply};
pub use latency::LatencyModel;
pub use policy::{BatchLimits, Batcher, Decision};
