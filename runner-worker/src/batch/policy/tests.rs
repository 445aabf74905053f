//! The policy driven with explicit instants: every decision below is a
//! function of the arrivals and the model, never of a scheduler's timing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tiffin_service::CallError;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn lim(max: usize, latency_ms: u64, capacity: usize) -> BatchLimits {
    BatchLimits {
        max_batch_size: max,
        max_latency: MS * latency_ms as u32,
        queue_capacity: capacity,
    }
}

/// A batcher whose model says a batch of n takes `a + b·n` milliseconds.
fn batcher(limits: BatchLimits, a_ms: u64, b_ms: u64) -> Batcher<u32> {
    let model = LatencyModel::with_prior(MS * a_ms as u32, MS * b_ms as u32);
    Batcher::with_model(limits, model)
}

#[test]
fn batches_never_exceed_max_batch_size_and_keep_order() {
    let t0 = Instant::now();
    let mut b = batcher(lim(4, 1000, 100), 1, 0);
    for i in 0..10 {
        b.push(t0, i).unwrap();
    }
    let mut now = t0;
    let mut seen = Vec::new();
    while !b.is_empty() {
        match b.decide(now) {
            Decision::Dispatch(n) => {
                assert!((1..=4).contains(&n), "{n}");
                let batch = b.take(n);
                b.started(now, n);
                now += MS;
                b.finished(n, MS);
                seen.push(batch);
            }
            d => panic!("unexpected {d:?}"),
        }
    }
    assert_eq!(seen, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
}

#[test]
fn a_lone_call_under_light_load_is_dispatched_at_once() {
    let t0 = Instant::now();
    let mut b = batcher(lim(8, 1000, 100), 5, 1);
    b.push(t0, 1).unwrap();
    assert_eq!(b.decide(t0), Decision::Dispatch(1));
    // Calls 100 ms apart: no point waiting 5 ms for the next one.
    b.take(1);
    b.push(t0 + 100 * MS, 2).unwrap();
    assert_eq!(b.decide(t0 + 100 * MS), Decision::Dispatch(1));
}

#[test]
fn waits_for_more_only_within_the_fixed_cost_and_the_budget() {
    let t0 = Instant::now();
    // A batch costs 5 ms + 1 ms per call; calls arrive every 0.5 ms.
    let mut b = batcher(lim(8, 1000, 100), 5, 1);
    let step = Duration::from_micros(500);
    b.push(t0, 0).unwrap();
    b.take(1);
    b.push(t0 + step, 1).unwrap();
    let first = t0 + step;
    // Waiting pays: wait, but at most the fixed cost after the oldest arrival.
    assert_eq!(b.decide(first), Decision::WaitUntil(first + 5 * MS));
    let mut now = first;
    for i in 2..8 {
        now += step;
        b.push(now, i).unwrap();
        assert_eq!(b.decide(now), Decision::WaitUntil(first + 5 * MS));
    }
    // Full: go now.
    b.push(now + step, 8).unwrap();
    assert_eq!(b.decide(now + step), Decision::Dispatch(8));
    // Not full, but the window is over: go.
    let mut b = batcher(lim(8, 1000, 100), 5, 1);
    b.push(t0, 0).unwrap();
    b.take(1);
    b.push(first, 1).unwrap();
    assert_eq!(b.decide(first + 5 * MS), Decision::Dispatch(1));

    // A tight budget shortens the wait: the oldest must still finish a
    // batch of n+1 (5 + 2 = 7 ms) by its deadline (first + 10 ms).
    let mut b = batcher(lim(8, 10, 100), 5, 1);
    b.push(t0, 0).unwrap();
    b.take(1);
    b.push(first, 1).unwrap();
    assert_eq!(b.decide(first), Decision::WaitUntil(first + 3 * MS));
    assert_eq!(b.decide(first + 3 * MS), Decision::Dispatch(1));
}

#[test]
fn the_latency_budget_caps_the_batch_size() {
    let t0 = Instant::now();
    // 2 ms + 1 ms per call, budget 20 ms.
    let mut b = batcher(lim(16, 20, 100), 2, 1);
    for i in 0..16 {
        b.push(t0, i).unwrap_or_else(|_| panic!("admit {i}"));
    }
    // 8 ms later the oldest has 12 ms left: a batch of k takes 2 + k ms, so k ≤ 10.
    assert_eq!(b.decide(t0 + 8 * MS), Decision::Dispatch(10));
    assert_eq!(b.decide(t0 + 9 * MS), Decision::Dispatch(9));
    assert_eq!(b.decide(t0 + 16 * MS), Decision::Dispatch(2));
}

#[test]
fn every_dispatched_batch_meets_the_oldest_deadline() {
    // Simulate a steady overload with the fake clock and check the invariant.
    let t0 = Instant::now();
    let (a, per) = (3u64, 1u64);
    let limits = lim(8, 25, 32);
    let mut b = batcher(limits, a, per);
    let mut now = t0;
    let mut arrivals: VecDeque<Instant> = VecDeque::new();
    let (mut served, mut rejected, mut next) = (0, 0, 0u32);
    let mut sizes = Vec::new();
    for tick in 0..2000u32 {
        // A call every 0.4 ms: more than the method can serve.
        let at = t0 + Duration::from_micros(400) * tick;
        while now < at {
            match b.decide(now) {
                Decision::Idle => break,
                Decision::WaitUntil(t) => {
                    assert!(t > now);
                    now = t.min(at);
                }
                Decision::Reject(n) => {
                    for _ in 0..n {
                        let arrived = arrivals.pop_front().unwrap();
                        // Rejected only when it could not finish alone in time.
                        assert!(now + MS * (a + per) as u32 > arrived + limits.max_latency);
                    }
                    b.take(n);
                    rejected += n;
                }
                Decision::Dispatch(n) => {
                    assert!(n <= 8);
                    let took = MS * (a + per * n as u64) as u32;
                    let oldest = arrivals[0];
                    // The only exception: a lone call not yet past its deadline.
                    let lone = b.len() == 1 && now <= oldest + limits.max_latency;
                    assert!(
                        lone || now + took <= oldest + limits.max_latency,
                        "batch of {n} at {:?} misses the deadline",
                        now - t0
                    );
                    b.take(n);
                    arrivals.drain(..n);
                    b.started(now, n);
                    now += took;
                    b.finished(n, took);
                    served += n;
                    sizes.push(n);
                }
            }
        }
        now = now.max(at);
        match b.push(now, next) {
            Ok(()) => arrivals.push_back(now),
            Err((_, e)) => {
                assert!(matches!(e, CallError::Overloaded(_)), "{e:?}");
                rejected += 1;
            }
        }
        next += 1;
        assert!(b.len() <= 32);
    }
    assert!(
        served > 0 && rejected > 0,
        "served {served}, rejected {rejected}"
    );
    assert!(sizes.iter().any(|&n| n > 1), "{sizes:?}");
}

#[test]
fn calls_that_cannot_meet_the_deadline_are_rejected() {
    let t0 = Instant::now();
    let mut b = batcher(lim(4, 10, 100), 3, 1);
    b.push(t0, 0).unwrap();
    b.push(t0 + 2 * MS, 1).unwrap();
    b.push(t0 + 9 * MS, 2).unwrap();
    // At t0 + 9 ms a batch of one takes 4 ms: the first two calls (deadlines
    // 10 and 12 ms) cannot make it, the third (19 ms) can.
    assert_eq!(b.decide(t0 + 9 * MS), Decision::Reject(2));
    assert_eq!(b.take(2), vec![0, 1]);
    assert!(matches!(b.late_error(), CallError::Overloaded(m) if m.contains("max_latency_ms=10")));
    assert_eq!(b.decide(t0 + 9 * MS), Decision::Dispatch(1));
}

#[test]
fn the_last_queued_call_is_refused_only_past_its_deadline() {
    let t0 = Instant::now();
    // The model says 9 ms of a 10 ms budget: a call decided 2 ms after its
    // arrival would miss, but it is alone, so it is served (and measured).
    let mut b = batcher(lim(4, 10, 100), 9, 0);
    b.push(t0, 0).unwrap();
    assert_eq!(b.decide(t0 + 2 * MS), Decision::Dispatch(1));
    assert_eq!(b.decide(t0 + 11 * MS), Decision::Reject(1));
    // With a second call behind it, the first one makes room.
    let mut b = batcher(lim(4, 20, 100), 9, 0);
    b.push(t0, 0).unwrap();
    b.push(t0 + 5 * MS, 1).unwrap();
    assert_eq!(b.decide(t0 + 12 * MS), Decision::Reject(1));
    assert_eq!(b.take(1), vec![0]);
    // The second one may still wait a fixed cost (9 ms) for company.
    assert_eq!(b.decide(t0 + 12 * MS), Decision::WaitUntil(t0 + 14 * MS));
    assert_eq!(b.decide(t0 + 14 * MS), Decision::Dispatch(1));
}

#[test]
fn admission_rejects_fast_when_the_queue_cannot_drain_in_time() {
    let t0 = Instant::now();
    // 2 ms + 1 ms per call, batches of 4 (6 ms each), budget 20 ms: three
    // full batches (18 ms) fit, a thirteenth call would need a fourth.
    let mut b = batcher(lim(4, 20, 100), 2, 1);
    for i in 0..12 {
        b.push(t0, i).unwrap();
    }
    let Err((13, CallError::Overloaded(msg))) = b.push(t0, 13) else {
        panic!("13th call admitted");
    };
    assert!(msg.contains("max_latency_ms=20"), "{msg}");
    // While a batch runs, its remaining time counts too.
    let mut b = batcher(lim(4, 20, 100), 2, 1);
    b.started(t0, 4);
    for i in 0..8 {
        b.push(t0, i).unwrap();
    }
    assert!(b.push(t0, 8).is_err());
}

#[test]
fn the_queue_has_a_bound() {
    let t0 = Instant::now();
    let mut b = Batcher::new(lim(2, 10_000, 3));
    for i in 0..3 {
        b.push(t0, i).unwrap();
    }
    let Err((3, CallError::Overloaded(msg))) = b.push(t0, 3) else {
        panic!("admitted past the bound");
    };
    assert!(msg.contains("queue is full"), "{msg}");
    assert_eq!(BatchLimits::new(2, MS).queue_capacity, 1024);
    assert_eq!(BatchLimits::new(1000, MS).queue_capacity, 4000);
}

#[test]
fn a_method_slower_than_the_budget_still_serves_fresh_calls() {
    let t0 = Instant::now();
    let mut b = batcher(lim(4, 10, 100), 50, 0);
    b.push(t0, 0).unwrap();
    assert_eq!(b.decide(t0), Decision::Dispatch(1));
    assert_eq!(b.decide(t0 + 11 * MS), Decision::Reject(1));
    // While such a batch runs, a new call is refused at once.
    b.take(1);
    b.started(t0 + 11 * MS, 1);
    assert!(matches!(
        b.push(t0 + 12 * MS, 1),
        Err((1, CallError::Overloaded(_)))
    ));
    b.finished(1, 50 * MS);
    assert!(b.push(t0 + 70 * MS, 2).is_ok());
}

#[test]
fn calls_removed_from_the_queue_free_their_slots_and_keep_the_rest_in_order() {
    let t0 = Instant::now();
    let mut b = batcher(lim(4, 1000, 6), 1, 0);
    for i in 0..6 {
        b.push(t0, i).unwrap();
    }
    // The queue is full: a seventh call is refused...
    assert!(b.push(t0, 6).is_err());
    // ...until the callers of three queued calls go away.
    assert_eq!(b.remove_where(|i| i % 2 == 1), vec![1, 3, 5]);
    assert_eq!(b.len(), 3);
    b.push(t0, 7).unwrap();
    // A batch is made of the calls still wanted only, oldest first.
    assert_eq!(b.decide(t0), Decision::Dispatch(4));
    assert_eq!(b.take(4), vec![0, 2, 4, 7]);
    assert!(b.remove_where(|_| true).is_empty());
}
