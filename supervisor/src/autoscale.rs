//! The autoscaling decision of one runner: how many workers it should have,
//! from the calls running or queued on it, and when to act on that.
//!
//! This is pure logic with the clock passed in, so every rule is unit-tested
//! with a fake clock (below); the loop that samples the supervisor's state
//! and carries decisions out is `autoscale_loop.rs`.
//!
//! The rule is Ray Serve's
//! (<https://docs.ray.io/en/latest/serve/advanced-guides/advanced-autoscaling.html>):
//!
//! 1. Samples of the runner's calls in flight (running in a worker or queued
//!    for one, summed over the API servers) are averaged over `look_back`.
//! 2. `desired = ceil(average / target_in_flight)`, clamped to
//!    `[min_workers, max_workers]`.
//! 3. Workers are added only once a desire above the current count has
//!    held for `upscale_delay`, and drained only once a desire below it has
//!    held for `downscale_delay`; any sample that wants the current count
//!    again restarts the wait. After acting, the next decision waits a full
//!    delay again.
//!
//! **Hysteresis.** A load right at a boundary (an average of 2.0 calls with
//! a target of 1 per worker) would otherwise flip the desire between two
//! counts on every bit of noise. Growing uses the plain rule, so more
//! workers come as soon as the load needs them; shrinking asks for room:
//! `d` workers are wanted downwards only while `average <= d * target *
//! (1 - DOWNSCALE_TOLERANCE)`. In that band both counts are stable and no
//! decision is taken.
//!
//! **From zero.** A runner at zero workers has no delay to wait out: any
//! call in flight (or a call that the API server reports as waiting) starts
//! one at once, since every such call is waiting for it.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use tiffin_config::{Autoscaling, Config};

/// Share of the target a load must fall below before fewer workers are
/// wanted (see the module docs).
pub(crate) const DOWNSCALE_TOLERANCE: f64 = 0.1;

/// Which way a decision goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// More workers.
    Up,
    /// Fewer workers.
    Down,
}

impl Direction {
    /// The `direction` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// One decision to change a runner's worker count, with the figures it
/// was taken on (logged, shown by `tiffin status`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Decision {
    /// Which way.
    pub direction: Direction,
    /// Workers before.
    pub from: usize,
    /// Workers after.
    pub to: usize,
    /// Average calls in flight over the look-back window.
    pub average_in_flight: f64,
    /// Samples in that average.
    pub samples: usize,
    /// How long the desire had held.
    pub held: Duration,
    /// Why, in words.
    pub reason: String,
}

/// The wait for a desire to hold.
#[derive(Clone, Copy, Debug)]
struct Pending {
    direction: Direction,
    since: Instant,
}

/// The decision state of one runner.
#[derive(Debug)]
pub(crate) struct Autoscaler {
    policy: Autoscaling,
    samples: VecDeque<(Instant, f64)>,
    pending: Option<Pending>,
    desired: usize,
}

impl Autoscaler {
    /// A runner governed by `policy`, currently with `current` workers.
    pub fn new(policy: Autoscaling, current: usize) -> Self {
        let desired = current.clamp(policy.min_workers, policy.max_workers);
        Self {
            policy,
            samples: VecDeque::new(),
            pending: None,
            desired,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Autoscaling {
        &self.policy
    }

    /// The count the latest sample asked for (clamped), acted on or not.
    pub fn desired(&self) -> usize {
        self.desired
    }

    /// Average calls in flight over the look-back window ending at `now`.
    fn average(&mut self, now: Instant) -> f64 {
        let look_back = self.policy.look_back;
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > look_back)
        {
            self.samples.pop_front();
        }
        if self.samples.is_empty() {
            return 0.0;
        }
        self.samples.iter().map(|(_, v)| v).sum::<f64>() / self.samples.len() as f64
    }

    /// The desired count for `average` given `current` workers, with the
    /// downscale tolerance (module docs), clamped.
    fn want(&self, average: f64, current: usize) -> usize {
        let p = &self.policy;
        let up = (average / p.target_in_flight).ceil();
        let down = (average / (p.target_in_flight * (1.0 - DOWNSCALE_TOLERANCE))).ceil();
        // Float to count: both are finite and >= 0 (the target is > 0 and
        // samples are counts); `as` saturates anything larger.
        let (up, down) = (up as usize, down as usize);
        let raw = if up > current {
            up
        } else if down < current {
            down
        } else {
            current
        };
        raw.clamp(p.min_workers, p.max_workers)
    }

    /// Records one sample (`in_flight` calls at `now`, `current` workers
    /// not draining) and returns the decision it completes, if any.
    pub fn observe(&mut self, now: Instant, in_flight: f64, current: usize) -> Option<Decision> {
        let in_flight = if in_flight.is_finite() && in_flight > 0.0 {
            in_flight
        } else {
            0.0
        };
        self.samples.push_back((now, in_flight));
        let average = self.average(now);
        let desired = self.want(average, current);
        self.desired = desired;
        let direction = match desired.cmp(&current) {
            std::cmp::Ordering::Greater => Direction::Up,
            std::cmp::Ordering::Less => Direction::Down,
            std::cmp::Ordering::Equal => {
                self.pending = None;
                return None;
            }
        };
        if current == 0 && in_flight > 0.0 {
            return Some(self.decide(
                Direction::Up,
                current,
                desired,
                average,
                Duration::ZERO,
                "calls are waiting for a runner with no worker".into(),
            ));
        }
        let since = match self.pending {
            Some(p) if p.direction == direction => p.since,
            _ => {
                self.pending = Some(Pending {
                    direction,
                    since: now,
                });
                now
            }
        };
        let held = now.saturating_duration_since(since);
        let (delay, key) = match direction {
            Direction::Up => (self.policy.upscale_delay, "upscale_delay_s"),
            Direction::Down => (self.policy.downscale_delay, "downscale_delay_s"),
        };
        if held < delay {
            return None;
        }
        let reason = format!(
            "average {average:.2} calls in flight over {:.1}s at target {} per worker wants {desired}, held {:.1}s (>= {key} {:.1}s)",
            self.policy.look_back.as_secs_f64(),
            self.policy.target_in_flight,
            held.as_secs_f64(),
            delay.as_secs_f64(),
        );
        Some(self.decide(direction, current, desired, average, held, reason))
    }

    /// A call is waiting for a worker and the runner has `current` workers:
    /// at zero, one starts at once (the minimum, if that is more).
    pub fn call_waiting(&mut self, now: Instant, current: usize) -> Option<Decision> {
        if current > 0 || self.policy.max_workers == 0 {
            return None;
        }
        let to = self.policy.min_workers.max(1);
        self.desired = self.desired.max(to);
        let average = self.average(now);
        Some(self.decide(
            Direction::Up,
            0,
            to,
            average,
            Duration::ZERO,
            "a call is waiting for a runner with no worker".into(),
        ))
    }

    fn decide(
        &mut self,
        direction: Direction,
        from: usize,
        to: usize,
        average_in_flight: f64,
        held: Duration,
        reason: String,
    ) -> Decision {
        self.pending = None;
        Decision {
            direction,
            from,
            to,
            average_in_flight,
            samples: self.samples.len(),
            held,
            reason,
        }
    }
}

/// The autoscaler of every autoscaled runner, owned by the main loop.
pub(crate) struct Autoscalers(pub(crate) RefCell<BTreeMap<String, Autoscaler>>);

impl Autoscalers {
    /// One autoscaler per runner whose autoscaling is enabled, starting
    /// from its initial worker count.
    pub fn new(config: &Config, runners: &[String]) -> Self {
        let map = runners
            .iter()
            .filter_map(|runner| {
                let policy = config.runners.autoscaling_for(runner)?;
                let start = initial_workers(config, runner);
                Some((runner.clone(), Autoscaler::new(policy, start)))
            })
            .collect();
        Self(RefCell::new(map))
    }

    /// Whether no runner is autoscaled.
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    /// The policy of `runner`, when it is autoscaled.
    pub fn policy(&self, runner: &str) -> Option<Autoscaling> {
        self.0.borrow().get(runner).map(|a| a.policy().clone())
    }
}

/// Workers a runner starts with: `runners[.<name>].workers`, clamped to its
/// autoscaling range when it has one.
pub(crate) fn initial_workers(config: &Config, runner: &str) -> usize {
    let workers = config.runners.workers_for(runner);
    match config.runners.autoscaling_for(runner) {
        Some(a) => workers.clamp(a.min_workers, a.max_workers),
        None => workers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min: usize, max: usize, target: f64) -> Autoscaling {
        Autoscaling {
            min_workers: min,
            max_workers: max,
            target_in_flight: target,
            look_back: Duration::from_secs(4),
            upscale_delay: Duration::from_secs(3),
            downscale_delay: Duration::from_secs(10),
        }
    }

    /// A fake clock: one sample a second, starting at `t0`.
    struct Clock {
        t0: Instant,
        s: u64,
    }

    impl Clock {
        fn new() -> Self {
            Clock {
                t0: Instant::now(),
                s: 0,
            }
        }
        fn tick(&mut self) -> Instant {
            self.s += 1;
            self.t0 + Duration::from_secs(self.s)
        }
    }

    /// Feeds `load` once a second for `seconds`, applying every decision to
    /// `current`; returns the decisions.
    fn run(
        a: &mut Autoscaler,
        clock: &mut Clock,
        current: &mut usize,
        seconds: u64,
        load: impl Fn(u64) -> f64,
    ) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for _ in 0..seconds {
            let now = clock.tick();
            if let Some(d) = a.observe(now, load(clock.s), *current) {
                assert_eq!(d.from, *current);
                *current = d.to;
                decisions.push(d);
            }
        }
        decisions
    }

    #[test]
    fn desired_is_the_ceiling_of_load_over_target_clamped_to_min_and_max() {
        let a = Autoscaler::new(policy(1, 4, 2.0), 1);
        assert_eq!(a.want(0.0, 1), 1, "min");
        assert_eq!(a.want(3.0, 1), 2, "ceil(3/2)");
        assert_eq!(a.want(4.0, 1), 2);
        assert_eq!(a.want(4.1, 1), 3);
        assert_eq!(a.want(64.0, 1), 4, "max");
        let zero = Autoscaler::new(policy(0, 2, 1.0), 1);
        assert_eq!(zero.want(0.0, 1), 0, "min 0 lets an idle runner go to zero");
        // Samples that are not counts are taken as no load.
        let mut a = Autoscaler::new(policy(0, 2, 1.0), 0);
        assert!(a.observe(Instant::now(), f64::NAN, 0).is_none());
        assert!(a.observe(Instant::now(), -3.0, 0).is_none());
    }

    #[test]
    fn growth_waits_for_upscale_delay_and_then_goes_straight_to_the_desire() {
        let mut a = Autoscaler::new(policy(1, 8, 1.0), 1);
        let (mut clock, mut current) = (Clock::new(), 1);
        // Three seconds of load 4: the desire (4, once the average says so)
        // holds for the 3 s upscale delay before anything happens.
        let d = run(&mut a, &mut clock, &mut current, 3, |_| 4.0);
        assert!(d.is_empty(), "{d:?}");
        let d = run(&mut a, &mut clock, &mut current, 1, |_| 4.0);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].direction, d[0].from, d[0].to), (Direction::Up, 1, 4));
        assert!(d[0].reason.contains("upscale_delay_s"), "{}", d[0].reason);
        // Steady load at the new size: nothing more.
        assert!(run(&mut a, &mut clock, &mut current, 30, |_| 4.0).is_empty());
    }

    #[test]
    fn shrinking_waits_for_downscale_delay_and_a_returning_load_resets_the_wait() {
        let mut a = Autoscaler::new(policy(1, 8, 1.0), 4);
        let (mut clock, mut current) = (Clock::new(), 4);
        // Load 4 for a while: the count fits.
        assert!(run(&mut a, &mut clock, &mut current, 5, |_| 4.0).is_empty());
        // Idle: the 4 s average falls; the desire for fewer appears once it
        // is low enough, and must then hold 10 s.
        let d = run(&mut a, &mut clock, &mut current, 11, |_| 0.0);
        assert!(d.is_empty(), "{d:?}");
        // A burst that wants 4 again restarts the wait.
        assert!(run(&mut a, &mut clock, &mut current, 1, |_| 16.0).is_empty());
        let d = run(&mut a, &mut clock, &mut current, 12, |_| 0.0);
        assert!(
            d.is_empty(),
            "the burst restarted the downscale wait: {d:?}"
        );
        let d = run(&mut a, &mut clock, &mut current, 10, |_| 0.0);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].direction, d[0].to), (Direction::Down, 1));
        assert!(d[0].reason.contains("downscale_delay_s"));
    }

    #[test]
    fn a_steady_load_at_a_boundary_does_not_flap() {
        // Target 1 per worker and a load that hovers around 2.0: noise of
        // +-5% either way. Up to 3 happens once (2.05 needs 3), then the
        // tolerance keeps 3 (2.0 > 2 * 0.9 = 1.8): one decision at most.
        for start in [1, 2, 3] {
            let mut a = Autoscaler::new(policy(1, 8, 1.0), start);
            let (mut clock, mut current) = (Clock::new(), start);
            let d = run(&mut a, &mut clock, &mut current, 600, |s| {
                if s % 2 == 0 { 2.1 } else { 1.95 }
            });
            assert!(d.len() <= 1, "start {start}: {d:?}");
            assert!(d.iter().all(|d| d.direction == Direction::Up));
            assert!((2..=3).contains(&current), "start {start}: {current}");
        }
        // Exactly at the boundary with a noiseless load: never any decision.
        for start in [2, 3] {
            let mut a = Autoscaler::new(policy(1, 8, 1.0), start);
            let (mut clock, mut current) = (Clock::new(), start);
            let d = run(&mut a, &mut clock, &mut current, 600, |_| 2.0);
            assert!(d.is_empty(), "start {start}: {d:?}");
        }
    }

    #[test]
    fn flickering_desire_never_completes_a_delay() {
        // The desire for more appears every other second only: the wait
        // restarts each time, so nothing is decided.
        let mut a = Autoscaler::new(
            Autoscaling {
                look_back: Duration::from_millis(500),
                ..policy(1, 8, 1.0)
            },
            2,
        );
        let (mut clock, mut current) = (Clock::new(), 2);
        let d = run(&mut a, &mut clock, &mut current, 120, |s| {
            if s % 2 == 0 { 5.0 } else { 2.0 }
        });
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn min_and_max_are_never_crossed() {
        let mut a = Autoscaler::new(policy(2, 3, 1.0), 2);
        let (mut clock, mut current) = (Clock::new(), 2);
        let loads = [0.0, 100.0, 0.0, 50.0, 0.0];
        for load in loads {
            for d in run(&mut a, &mut clock, &mut current, 40, |_| load) {
                assert!((2..=3).contains(&d.to), "{d:?}");
            }
            assert!((2..=3).contains(&a.desired()));
        }
        // A start count outside the range is clamped in the desire.
        let a = Autoscaler::new(policy(2, 3, 1.0), 7);
        assert_eq!(a.desired(), 3);
    }

    #[test]
    fn from_zero_a_waiting_call_or_any_load_starts_a_worker_at_once() {
        let mut a = Autoscaler::new(policy(0, 4, 1.0), 0);
        let now = Instant::now();
        let d = a.call_waiting(now, 0).expect("a waiting call starts one");
        assert_eq!((d.from, d.to), (0, 1));
        assert!(a.call_waiting(now, 1).is_none(), "not at zero");
        let d = a
            .observe(now, 3.0, 0)
            .expect("load at zero is acted on at once");
        assert_eq!((d.direction, d.from, d.to), (Direction::Up, 0, 3));
        // Idle at 1 worker goes back to zero after the downscale delay.
        let mut a = Autoscaler::new(policy(0, 4, 1.0), 1);
        let (mut clock, mut current) = (Clock::new(), 1);
        let d = run(&mut a, &mut clock, &mut current, 11, |_| 0.0);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(current, 0);
        // At zero and idle: nothing.
        assert!(run(&mut a, &mut clock, &mut current, 60, |_| 0.0).is_empty());
    }

    #[test]
    fn each_decision_needs_a_full_delay_after_the_last() {
        let mut a = Autoscaler::new(policy(1, 8, 1.0), 1);
        let (mut clock, mut current) = (Clock::new(), 1);
        // A load that keeps rising: decisions are at least the delay apart.
        let d = run(&mut a, &mut clock, &mut current, 30, |s| s as f64);
        assert!(d.len() >= 2, "{d:?}");
        for pair in d.windows(2) {
            assert!(pair[1].held >= Duration::from_secs(3), "{pair:?}");
        }
    }
}
