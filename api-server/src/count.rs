//! A count held up while a guard lives: calls outstanding on a runner
//! worker, API requests in flight. The guard counts down on drop, so a
//! caller that gives up (client gone, deadline passed) never leaves the
//! count raised.

use std::sync::atomic::{AtomicUsize, Ordering};

/// One unit of a count, released when dropped.
pub(crate) struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    /// Counts one more; returns the guard and the count before it.
    pub fn enter(counter: &'a AtomicUsize) -> (Self, usize) {
        let before = counter.fetch_add(1, Ordering::Relaxed);
        (Self(counter), before)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_goes_up_while_a_guard_lives_and_down_when_it_drops() {
        let n = AtomicUsize::new(0);
        let (a, before_a) = Counted::enter(&n);
        let (b, before_b) = Counted::enter(&n);
        assert_eq!((before_a, before_b, n.load(Ordering::Relaxed)), (0, 1, 2));
        drop(a);
        drop(b);
        assert_eq!(n.load(Ordering::Relaxed), 0);
    }
}
