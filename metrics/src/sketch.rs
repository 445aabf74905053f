//! A mergeable quantile sketch (DDSketch with logarithmic buckets).
//!
//! Quantiles of several processes cannot be combined from the quantiles
//! themselves (the median of medians is not the median), so each summary keeps
//! this sketch and the supervisor adds sketches together.
//!
//! How it works: with relative accuracy α = 1% let γ = (1+α)/(1−α). A positive
//! value `x` goes into bucket `k = ceil(log_γ x)`, i.e. the interval
//! (γ^(k−1), γ^k]; the bucket only keeps a count. The value reported for a
//! bucket is `2γ^k/(γ+1)`, which is within α of every value in that interval.
//! Negative values use a mirror store keyed by `|x|`; zeros have their own
//! counter.
//!
//! Guarantees:
//! - **Accuracy**: [`Sketch::quantile`]`(q)` returns a value within 1% (relative)
//!   of the element of rank `⌊q·(n−1)⌋` of the sorted input, for every `q`, as
//!   long as no buckets were collapsed (see below). NaN inputs are ignored.
//! - **Exact merge**: [`Sketch::merge`] adds bucket counts, so merging sketches
//!   gives bit-for-bit the sketch of the concatenated inputs, in any order.
//! - **Bounded size**: each store holds at most [`MAX_BUCKETS`] (2048)
//!   buckets. With γ ≈ 1.0202 that spans a dynamic range of about 10^17
//!   (e.g. 1 ns to 3 years), so real latencies never reach it. If it is
//!   exceeded, the buckets of the *lowest* values are collapsed into one, which
//!   keeps the upper quantiles (the ones alerts use) exact to 1% and makes only
//!   the lowest quantiles coarser.
//!
//! Serialization: plain serde (`BTreeMap<i32, u64>` stores), works with bincode
//! 2's serde mode and JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Relative accuracy α of every quantile the sketch returns.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Largest number of buckets kept per store (positive, negative) before the lowest are collapsed.
pub const MAX_BUCKETS: usize = 2048;

/// γ = (1+α)/(1−α): the ratio between consecutive bucket bounds.
const GAMMA: f64 = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);

/// A mergeable quantile sketch with 1% relative accuracy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sketch {
    /// Bucket index → count for values > 0.
    positive: BTreeMap<i32, u64>,
    /// Bucket index of `|x|` → count for values < 0.
    negative: BTreeMap<i32, u64>,
    /// Count of zeros (which have no logarithm).
    zero: u64,
}

impl Sketch {
    /// Creates an empty sketch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one value; NaN is ignored because it has no rank.
    pub fn add(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        if x == 0.0 {
            self.zero = self.zero.saturating_add(1);
        } else if x > 0.0 {
            bump(&mut self.positive, key(x), 1);
            collapse_lowest_keys(&mut self.positive);
        } else {
            bump(&mut self.negative, key(-x), 1);
            collapse_highest_keys(&mut self.negative);
        }
    }

    /// Adds every observation of `other` into `self` (exact: bucket counts are summed).
    pub fn merge(&mut self, other: &Sketch) {
        for (&k, &c) in &other.positive {
            bump(&mut self.positive, k, c);
        }
        for (&k, &c) in &other.negative {
            bump(&mut self.negative, k, c);
        }
        self.zero = self.zero.saturating_add(other.zero);
        collapse_lowest_keys(&mut self.positive);
        collapse_highest_keys(&mut self.negative);
    }

    /// Number of values recorded (NaNs excluded).
    pub fn count(&self) -> u64 {
        let pos = self
            .positive
            .values()
            .fold(0u64, |a, &c| a.saturating_add(c));
        let neg = self
            .negative
            .values()
            .fold(0u64, |a, &c| a.saturating_add(c));
        pos.saturating_add(neg).saturating_add(self.zero)
    }

    /// Whether no value was recorded.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Returns the q-quantile (0 ≤ q ≤ 1) within 1% relative error; NaN when empty or `q` is out of range.
    pub fn quantile(&self, q: f64) -> f64 {
        let n = self.count();
        if n == 0 || !(0.0..=1.0).contains(&q) {
            return f64::NAN;
        }
        // Rank on the 0-based sorted order; the bucket whose cumulative count
        // first exceeds it holds the element of rank ⌊rank⌋.
        let rank = q * (n - 1) as f64;
        let mut seen: u64 = 0;
        // Most negative values first: the highest keys of the negative store.
        for (&k, &c) in self.negative.iter().rev() {
            seen = seen.saturating_add(c);
            if seen as f64 > rank {
                return -representative(k);
            }
        }
        seen = seen.saturating_add(self.zero);
        if seen as f64 > rank {
            return 0.0;
        }
        for (&k, &c) in &self.positive {
            seen = seen.saturating_add(c);
            if seen as f64 > rank {
                return representative(k);
            }
        }
        // Only reachable through rounding at q = 1: answer the largest value.
        match self.positive.last_key_value() {
            Some((&k, _)) => representative(k),
            None if self.zero > 0 => 0.0,
            None => self
                .negative
                .first_key_value()
                .map_or(f64::NAN, |(&k, _)| -representative(k)),
        }
    }
}

/// Bucket index of a positive value: `ceil(log_γ x)`, saturating for ±∞ and subnormals.
fn key(x: f64) -> i32 {
    // `as` saturates, so +∞ lands in i32::MAX whose representative is +∞.
    (x.ln() / GAMMA.ln()).ceil() as i32
}

/// The value reported for bucket `k`: `2γ^k/(γ+1)`, within α of everything in (γ^(k−1), γ^k].
fn representative(k: i32) -> f64 {
    (f64::from(k) * GAMMA.ln()).exp() * 2.0 / (GAMMA + 1.0)
}

/// Adds `count` to bucket `k`.
fn bump(store: &mut BTreeMap<i32, u64>, k: i32, count: u64) {
    if count == 0 {
        return;
    }
    let slot = store.entry(k).or_insert(0);
    *slot = slot.saturating_add(count);
}

/// Keeps the positive store within [`MAX_BUCKETS`] by folding its lowest buckets upward.
fn collapse_lowest_keys(store: &mut BTreeMap<i32, u64>) {
    while store.len() > MAX_BUCKETS {
        let Some((_, c)) = store.pop_first() else {
            return;
        };
        if let Some(mut next) = store.first_entry() {
            *next.get_mut() = next.get().saturating_add(c);
        }
    }
}

/// Keeps the negative store within [`MAX_BUCKETS`] by folding its largest magnitudes (lowest values) inward.
fn collapse_highest_keys(store: &mut BTreeMap<i32, u64>) {
    while store.len() > MAX_BUCKETS {
        let Some((_, c)) = store.pop_last() else {
            return;
        };
        if let Some(mut next) = store.last_entry() {
            *next.get_mut() = next.get().saturating_add(c);
        }
    }
}

/// Deterministic pseudo-random numbers in [0, 1) (Knuth's MMIX LCG).
///
/// Accuracy tests here and in the merge need inputs that are varied yet the
/// same on every run, so a failure can be reproduced. It lives in this leaf
/// module (not in `testutil`, which reads snapshots) so that no test import
/// leads back here.
#[cfg(test)]
pub(crate) fn lcg(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn true_quantile(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    #[test]
    fn quantiles_within_one_percent() {
        let mut seed = 7;
        let mut values: Vec<f64> = (0..10_000)
            .map(|_| (lcg(&mut seed) * 12.0 - 8.0).exp())
            .collect();
        let mut s = Sketch::new();
        for &v in &values {
            s.add(v);
        }
        values.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let want = true_quantile(&values, q);
            let got = s.quantile(q);
            assert!(
                ((got - want) / want).abs() <= RELATIVE_ACCURACY + 1e-12,
                "q={q}"
            );
        }
        assert_eq!(s.count(), 10_000);
    }

    #[test]
    fn zeros_negatives_and_nan() {
        let mut s = Sketch::new();
        for v in [-4.0, -1.0, 0.0, 0.0, 2.0, f64::NAN] {
            s.add(v);
        }
        assert_eq!(s.count(), 5);
        assert!((s.quantile(0.0) + 4.0).abs() <= 0.04 + 1e-12);
        assert!((s.quantile(0.25) + 1.0).abs() <= 0.01 + 1e-12);
        assert_eq!(s.quantile(0.5), 0.0);
        assert!((s.quantile(1.0) - 2.0).abs() <= 0.02 + 1e-12);
        assert!(Sketch::new().quantile(0.5).is_nan());
        assert!(s.quantile(1.5).is_nan());
    }

    #[test]
    fn merge_is_exact_and_order_free() {
        let mut seed = 1;
        let (mut a, mut b, mut all) = (Sketch::new(), Sketch::new(), Sketch::new());
        for i in 0..1000 {
            let v = lcg(&mut seed) * 100.0;
            if i % 3 == 0 { &mut a } else { &mut b }.add(v);
            all.add(v);
        }
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, all);
        assert_eq!(ba, all);
    }

    #[test]
    fn bucket_count_is_capped() {
        let mut s = Sketch::new();
        // 5000 distinct buckets: 1.03^i spans more than 2048 buckets of γ ≈ 1.0202.
        let mut x = 1e-30;
        for _ in 0..5000 {
            s.add(x);
            x *= 1.03;
        }
        assert!(s.positive.len() <= MAX_BUCKETS);
        assert_eq!(s.count(), 5000);
        // The top stays accurate after collapsing.
        let top = x / 1.03;
        assert!(((s.quantile(1.0) - top) / top).abs() <= RELATIVE_ACCURACY + 1e-12);
    }

    #[test]
    fn infinity_does_not_break_anything() {
        let mut s = Sketch::new();
        s.add(f64::INFINITY);
        s.add(1.0);
        assert_eq!(s.quantile(1.0), f64::INFINITY);
    }
}
