//! A count held up while a guard lives: API requests in flight (against
//! `api_server.traffic.max_concurrency`), calls outstanding on a runner
//! worker and in flight to a runner (the autoscaler's gauge), open
//! connections, and requests in flight on one connection. The guard counts
//! down on drop, so a caller that gives up (client gone, deadline passed)
//! or returns early never leaves a count raised.
//!
//! This is the workspace's one guard type: the API server's counts, a
//! runner worker's calls in flight (which a drain waits on), and BentoML's
//! `request_in_progress` gauges ([`crate::InProgressGuard`]). What it
//! counts is anything that implements [`Count`], owned, borrowed or shared
//! through an `Arc`.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::gauge::GaugeChild;

/// Something counted up and down by a [`CountGuard`].
pub trait Count {
    /// Counts one more.
    fn up(&self);
    /// Counts one fewer.
    fn down(&self);
}

impl Count for AtomicUsize {
    fn up(&self) {
        self.fetch_add(1, Ordering::Relaxed);
    }

    fn down(&self) {
        self.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<T: Count + ?Sized> Count for &T {
    fn up(&self) {
        (**self).up();
    }

    fn down(&self) {
        (**self).down();
    }
}

impl<T: Count + ?Sized> Count for Arc<T> {
    fn up(&self) {
        (**self).up();
    }

    fn down(&self) {
        (**self).down();
    }
}

impl Count for GaugeChild {
    fn up(&self) {
        self.inc();
    }

    fn down(&self) {
        self.dec();
    }
}

/// One unit of the count `C`, released when dropped.
#[derive(Debug)]
#[must_use = "the count is held only while the guard lives"]
pub struct CountGuard<C: Count>(C);

impl<C: Count> CountGuard<C> {
    /// Counts one more until the guard drops.
    pub fn enter(count: C) -> Self {
        count.up();
        Self(count)
    }
}

impl<C: Count + Deref<Target = AtomicUsize>> CountGuard<C> {
    /// Counts one more until the guard drops; returns the guard and the
    /// count before it (read in the same atomic step, so a limit checked
    /// against it holds under concurrency).
    pub fn enter_after(count: C) -> (Self, usize) {
        let before = count.fetch_add(1, Ordering::Relaxed);
        (Self(count), before)
    }
}

impl<C: Count> Drop for CountGuard<C> {
    fn drop(&mut self) {
        self.0.down();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_count_goes_up_while_a_guard_lives_and_down_when_it_drops() {
        let n = AtomicUsize::new(0);
        let (a, before_a) = CountGuard::enter_after(&n);
        let (b, before_b) = CountGuard::enter_after(&n);
        let c = CountGuard::enter(&n);
        assert_eq!((before_a, before_b, n.load(Ordering::Relaxed)), (0, 1, 3));
        drop((a, b, c));
        assert_eq!(n.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_guard_may_own_a_gauge_child() {
        let gauge = crate::Gauge::new("count_guard_test_gauge", "x", &[]).unwrap();
        let child = gauge.labels(&[]);
        let held = CountGuard::enter(child.clone());
        assert_eq!(child.get(), 1.0);
        drop(held);
        assert_eq!(child.get(), 0.0);
    }

    #[test]
    fn a_guard_may_own_its_count_through_an_arc() {
        let n = Arc::new(AtomicUsize::new(0));
        let (held, before) = CountGuard::enter_after(Arc::clone(&n));
        assert_eq!((before, n.load(Ordering::Relaxed)), (0, 1));
        drop(held);
        assert_eq!(n.load(Ordering::Relaxed), 0);
    }
}
