//! The batching policy: the pure [`Batcher`] decides admission, expiry,
//! batch size and when to wait, from the calls' arrival times, the
//! [`LatencyModel`] and the [`BatchLimits`].
//!
//! It never reads the clock: every method takes `now`, so that the decisions
//! are a function of their inputs. The dispatcher passes the runtime's clock;
//! the tests pass explicit instants, so a batch never forms by the luck of a
//! scheduler. The rules are listed in the [`batch`](super) module.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tiffin_service::CallError;

use super::latency::LatencyModel;

/// Limits of one dispatcher.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Largest batch handed to the method.
    pub max_batch_size: usize,
    /// Latency budget of a call, from its arrival to its batch's end.
    pub max_latency: Duration,
    /// Most calls allowed to wait.
    pub queue_capacity: usize,
}

impl BatchLimits {
    /// Fewest calls the queue holds, whatever `max_batch_size` is.
    pub const MIN_QUEUE: usize = 1024;

    /// The limits with the default queue bound: four full batches, but at
    /// least [`Self::MIN_QUEUE`] calls. What keeps waits short is admission by
    /// the latency estimate; the count bound only caps memory if the estimate
    /// is wrong. Four batches alone would refuse calls that easily meet the
    /// budget: with `max_batch_size=2`, 16 concurrent callers of a fast model
    /// would get 503s.
    pub fn new(max_batch_size: usize, max_latency: Duration) -> Self {
        let max_batch_size = max_batch_size.max(1);
        Self {
            max_batch_size,
            max_latency,
            queue_capacity: max_batch_size.saturating_mul(4).max(Self::MIN_QUEUE),
        }
    }
}

/// What the dispatcher should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is queued: wait for a call.
    Idle,
    /// Run the method on the `n` oldest calls now.
    Dispatch(usize),
    /// Wait for more calls, but no later than this instant.
    WaitUntil(Instant),
    /// The `n` oldest calls cannot meet their deadline: reject them.
    Reject(usize),
}

/// The pure batching logic: queue, latency model, arrival rate. Never reads the clock.
#[derive(Debug)]
pub struct Batcher<T> {
    limits: BatchLimits,
    model: LatencyModel,
    queue: VecDeque<(Instant, T)>,
    last_arrival: Option<Instant>,
    /// Smoothed gap between arrivals, seconds.
    gap: Option<f64>,
    /// Estimated end of the batch now running.
    busy_until: Option<Instant>,
}

impl<T> Batcher<T> {
    /// Weight of the newest gap in the smoothed arrival gap.
    const GAP_WEIGHT: f64 = 0.2;

    /// An empty batcher with the default latency model.
    pub fn new(limits: BatchLimits) -> Self {
        Self::with_model(limits, LatencyModel::new())
    }

    /// An empty batcher with a given latency model.
    pub fn with_model(limits: BatchLimits, model: LatencyModel) -> Self {
        let limits = BatchLimits {
            max_batch_size: limits.max_batch_size.max(1),
            queue_capacity: limits.queue_capacity.max(1),
            ..limits
        };
        Self {
            limits,
            model,
            queue: VecDeque::new(),
            last_arrival: None,
            gap: None,
            busy_until: None,
        }
    }

    /// The latency model.
    pub fn model(&self) -> &LatencyModel {
        &self.model
    }

    /// Number of queued calls.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no call is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Estimated time of one batch of a single call, as used for deadlines.
    /// A method slower than the whole budget would reject every call forever
    /// (and never be measured again); then only calls already past their
    /// deadline are rejected.
    fn single_cost(&self) -> Duration {
        let one = self.model.estimate(1);
        if one >= self.limits.max_latency {
            Duration::ZERO
        } else {
            one
        }
    }

    /// Estimated time to run `n` queued calls in full batches.
    fn drain_time(&self, n: usize) -> Duration {
        let max = self.limits.max_batch_size;
        let full = n / max;
        let rest = n % max;
        let mut t = self.model.estimate(max) * full as u32;
        if rest > 0 {
            t += self.model.estimate(rest);
        }
        t
    }

    /// Admits a call that arrived at `now`, or hands it back with the reason.
    pub fn push(&mut self, now: Instant, item: T) -> Result<(), (T, CallError)> {
        if let Some(last) = self.last_arrival {
            let g = now.saturating_duration_since(last).as_secs_f64();
            self.gap = Some(match self.gap {
                Some(old) => old + Self::GAP_WEIGHT * (g - old),
                None => g,
            });
        }
        self.last_arrival = Some(now);
        let waiting = self.queue.len();
        if waiting >= self.limits.queue_capacity {
            return Err((
                item,
                CallError::Overloaded(format!(
                    "batch queue is full ({waiting} calls waiting, max_batch_size={})",
                    self.limits.max_batch_size
                )),
            ));
        }
        // The rest of the running batch, then (unless the method is slower
        // than the whole budget, see `single_cost`) the queue ahead and itself.
        let running = self
            .busy_until
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or_default();
        let ahead = if self.single_cost() > Duration::ZERO {
            self.drain_time(waiting + 1)
        } else {
            Duration::ZERO
        };
        let expected = running + ahead;
        if expected > self.limits.max_latency {
            return Err((
                item,
                CallError::Overloaded(format!(
                    "{waiting} calls are waiting; this one would finish in about {} ms, \
                     over max_latency_ms={}",
                    expected.as_millis(),
                    self.limits.max_latency.as_millis()
                )),
            ));
        }
        self.queue.push_back((now, item));
        Ok(())
    }

    /// What to do at `now` (the method is not running).
    pub fn decide(&self, now: Instant) -> Decision {
        let Some(&(oldest, _)) = self.queue.front() else {
            return Decision::Idle;
        };
        let budget = self.limits.max_latency;
        let one = self.single_cost();
        let mut late = self
            .queue
            .iter()
            .take_while(|(at, _)| now + one > *at + budget)
            .count();
        // Like BentoML, the last queued call is only refused once its deadline
        // has actually passed: it has nobody to make room for, and serving it
        // keeps the model learning (an estimate that drifted too high would
        // otherwise refuse every call forever).
        if late == self.queue.len() && self.queue.back().is_some_and(|(at, _)| now <= *at + budget)
        {
            late -= 1;
        }
        if late > 0 {
            return Decision::Reject(late);
        }
        let deadline = oldest + budget;
        let n = self.queue.len();
        let max = self.limits.max_batch_size;
        // Largest batch the oldest call's deadline allows (at least 1: it fits alone).
        let mut k = n.min(max);
        while k > 1 && now + self.model.estimate(k) > deadline {
            k -= 1;
        }
        if k < n.min(max) || n >= max {
            return Decision::Dispatch(k);
        }
        // n < max and all n fit: wait for one more if it pays and the budget allows.
        let fixed = self.model.intercept();
        let arrivals_expected = self.gap.is_some_and(|g| g < fixed.as_secs_f64());
        let wait_end = (oldest + fixed).min(
            deadline
                .checked_sub(self.model.estimate(n + 1))
                .unwrap_or(oldest),
        );
        if arrivals_expected && wait_end > now {
            Decision::WaitUntil(wait_end)
        } else {
            Decision::Dispatch(n)
        }
    }

    /// Takes the `n` oldest calls off the queue.
    pub fn take(&mut self, n: usize) -> Vec<T> {
        let n = n.min(self.queue.len());
        self.queue.drain(..n).map(|(_, item)| item).collect()
    }

    /// Takes every queued call for which `gone` holds off the queue (their
    /// callers went away), keeping the others in order; their places are
    /// free at once, so they never hold a batch slot.
    pub fn remove_where(&mut self, mut gone: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for (at, item) in self.queue.drain(..) {
            if gone(&item) {
                removed.push(item);
            } else {
                kept.push_back((at, item));
            }
        }
        self.queue = kept;
        removed
    }

    /// Notes that a batch of `n` started at `now` (for admission estimates).
    pub fn started(&mut self, now: Instant, n: usize) {
        self.busy_until = Some(now + self.model.estimate(n));
    }

    /// Records that a batch of `n` took `took`: ends the running batch and refits the model.
    pub fn finished(&mut self, n: usize, took: Duration) {
        self.busy_until = None;
        self.model.observe(n, took);
    }

    /// The error given to a call rejected by [`Decision::Reject`].
    pub fn late_error(&self) -> CallError {
        CallError::Overloaded(format!(
            "call cannot be served within max_latency_ms={} (a batch takes about {} ms)",
            self.limits.max_latency.as_millis(),
            self.model.estimate(1).as_millis()
        ))
    }
}

#[cfg(test)]
mod tests;
