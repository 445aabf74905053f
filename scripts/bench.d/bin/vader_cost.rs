//! The VADER model's CPU per call (scripts/bench section `vader`): the
//! `vader_sentiment` crate (0.1.1, what `sentiment_analyzer` used before)
//! against `tiffin_vader` on the same text, in one process, interleaved.
//!
//! `vader_cost [ROUNDS] [CALLS] [TEXT]` runs ROUNDS rounds (default 15); each
//! round times CALLS calls (default 20,000) of one scorer, then of the other,
//! alternating which goes first, and the medians over rounds are printed as
//! ns of this thread's CPU time per call, with their ratio. Interleaving puts
//! both under the same load of a shared machine (caches, frequency). Built as the root package's example `vader_cost`
//! (Cargo.toml), in release for the figures.

use std::hint::black_box;

/// The 12-word review of scripts/bench's sentiment_analyzer rows (issue 28).
const REVIEW: &str = "I love this product, it works great! The battery could be better.";

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// This thread's CPU time in ns: unlike the wall clock, it does not count
/// the time other processes of a busy machine hold the core.
fn thread_cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// CPU ns per call of `f` over `calls` calls.
fn time(calls: u32, mut f: impl FnMut()) -> f64 {
    let start = thread_cpu_ns();
    for _ in 0..calls {
        f();
    }
    (thread_cpu_ns() - start) / f64::from(calls)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(15);
    let calls: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let text = args.next().unwrap_or_else(|| REVIEW.to_string());

    let old = vader_sentiment::SentimentIntensityAnalyzer::new();
    let mut old_call = || {
        let scores = old.polarity_scores(black_box(&text));
        black_box(scores.get("compound").copied());
    };
    let mut new_call = || {
        black_box(tiffin_vader::polarity_scores(black_box(&text)));
    };
    // Warm both (lexicons parsed, caches and branch predictors primed).
    time(calls / 10 + 1, &mut old_call);
    time(calls / 10 + 1, &mut new_call);

    let (mut olds, mut news) = (Vec::new(), Vec::new());
    for round in 0..rounds.max(1) {
        if round % 2 == 0 {
            olds.push(time(calls, &mut old_call));
            news.push(time(calls, &mut new_call));
        } else {
            news.push(time(calls, &mut new_call));
            olds.push(time(calls, &mut old_call));
        }
    }
    let (old_ns, new_ns) = (median(&mut olds), median(&mut news));
    println!("text: {text:?}");
    println!(
        "rounds: {} x {calls} calls each, median thread CPU time:",
        olds.len()
    );
    println!("  vader_sentiment 0.1.1   {old_ns:>10.0} ns/call");
    println!("  tiffin_vader            {new_ns:>10.0} ns/call");
    println!(
        "  tiffin_vader / vader_sentiment = {:.3} ({:.1}x faster)",
        new_ns / old_ns,
        old_ns / new_ns
    );
}
