//! The latency model: how long a batch of `n` calls takes, `t(n) = a + b·n`,
//! learnt online from the batches that ran.
//!
//! The batching policy asks it every decision (admission, expiry, batch size,
//! how long waiting for company pays), and the dispatcher feeds it every
//! measured batch, so it must be cheap, defined from the first call on, and
//! follow a model whose speed changes (a warming cache, a busy machine).

use std::time::Duration;

/// Online linear fit of batch duration against batch size, `t(n) = a + b·n`.
///
/// Exponentially weighted least squares: every observation multiplies the
/// old sums by `DECAY`, so the fit follows a model whose speed changes. The
/// slope is shrunk toward the prior slope by a small ridge term, so that
/// while only one batch size has been seen (e.g. every batch of 1 under light
/// load) the fit stays defined: the intercept then takes the measured time.
#[derive(Debug, Clone)]
pub struct LatencyModel {
    w: f64,
    sn: f64,
    st: f64,
    snn: f64,
    snt: f64,
    prior_b: f64,
    a: f64,
    b: f64,
}

impl LatencyModel {
    /// Weight kept by past observations at each new one (half-life ≈ 14 batches).
    pub const DECAY: f64 = 0.95;
    /// Ridge strength pulling the slope toward the prior slope.
    const RIDGE: f64 = 1e-3;
    /// Prior intercept: a small, optimistic guess, so that nothing is rejected
    /// and nobody waits long before the first measurements arrive.
    pub const PRIOR_A: Duration = Duration::from_micros(100);
    /// Prior cost per item.
    pub const PRIOR_B: Duration = Duration::from_micros(10);

    /// A model starting from the priors.
    pub fn new() -> Self {
        Self::with_prior(Self::PRIOR_A, Self::PRIOR_B)
    }

    /// A model starting from `a + b·n`.
    pub fn with_prior(a: Duration, b: Duration) -> Self {
        Self {
            w: 0.0,
            sn: 0.0,
            st: 0.0,
            snn: 0.0,
            snt: 0.0,
            prior_b: b.as_secs_f64(),
            a: a.as_secs_f64(),
            b: b.as_secs_f64(),
        }
    }

    /// Records that a batch of `n` took `took`, and refits.
    pub fn observe(&mut self, n: usize, took: Duration) {
        let (n, t) = (n as f64, took.as_secs_f64());
        let d = Self::DECAY;
        self.w = self.w * d + 1.0;
        self.sn = self.sn * d + n;
        self.st = self.st * d + t;
        self.snn = self.snn * d + n * n;
        self.snt = self.snt * d + n * t;
        let (mean_n, mean_t) = (self.sn / self.w, self.st / self.w);
        let var = self.snn - self.w * mean_n * mean_n;
        let cov = self.snt - self.w * mean_n * mean_t;
        let b = ((cov + Self::RIDGE * self.prior_b) / (var.max(0.0) + Self::RIDGE)).max(0.0);
        self.b = b;
        self.a = (mean_t - b * mean_n).max(0.0);
    }

    /// Fixed cost of a batch.
    pub fn intercept(&self) -> Duration {
        nanos(self.a)
    }

    /// Cost of each item of a batch.
    pub fn slope(&self) -> Duration {
        nanos(self.b)
    }

    /// Estimated duration of a batch of `n`.
    pub fn estimate(&self, n: usize) -> Duration {
        nanos(self.a + self.b * n as f64)
    }
}

/// Seconds to a duration, rounded to the nanosecond (so that exact inputs give exact estimates).
fn nanos(secs: f64) -> Duration {
    Duration::from_nanos((secs.max(0.0) * 1e9).round() as u64)
}

impl Default for LatencyModel {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn close(d: Duration, want_ms: f64) -> bool {
        (d.as_secs_f64() * 1e3 - want_ms).abs() < 0.01
    }

    #[test]
    fn the_model_learns_a_linear_batch_cost() {
        let mut m = LatencyModel::new();
        for i in 0..200usize {
            let n = 1 + i % 16;
            m.observe(n, Duration::from_micros(2000 + 300 * n as u64));
        }
        assert!(close(m.intercept(), 2.0), "{m:?}");
        assert!(close(m.slope(), 0.3), "{m:?}");
        assert!(close(m.estimate(10), 5.0), "{m:?}");
    }

    #[test]
    fn the_model_follows_a_change_and_survives_a_single_size() {
        let mut m = LatencyModel::new();
        for _ in 0..100 {
            m.observe(1, 10 * MS);
        }
        // Only size 1 seen: the slope stays at the prior, the total is measured.
        assert!(close(m.estimate(1), 10.0), "{m:?}");
        assert!(
            close(m.slope(), LatencyModel::PRIOR_B.as_secs_f64() * 1e3),
            "{m:?}"
        );
        for i in 0..300usize {
            let n = 1 + i % 8;
            m.observe(n, MS * (1 + n as u32));
        }
        assert!(close(m.intercept(), 1.0) && close(m.slope(), 1.0), "{m:?}");
    }
}
