//! Histogram bucket bounds: the defaults BentoML uses, and the one rule every
//! bucket list must pass.
//!
//! A bucket layout is fixed when a histogram is defined, and the supervisor
//! can only add histograms of different processes bound by bound; so a bad
//! layout must be refused before anything is recorded, and the configuration
//! (which checks `*.metrics.duration.buckets` when the file is loaded) and the
//! registry (which checks what code passes to `Histogram::new`) must refuse the
//! same lists. Both call [`finite_bounds`] and only word the error for their
//! own audience.
//!
//! The lists here never contain `+Inf`: the `+Inf` bucket is the count, which
//! every histogram has anyway, so the registry adds it itself, as Prometheus
//! requires. Callers may still write a trailing `+Inf` (Python users do, and
//! YAML spells it `.inf`); [`finite_bounds`] drops it.
//!
//! The default values are BentoML's, so that dashboards built for BentoML
//! read tiffin's histograms the same way (see
//! <https://docs.bentoml.com/en/latest/guides/observability/metrics.html>).

/// BentoML's default request-duration buckets in seconds (Prometheus' defaults
/// extended to 10 s; `+Inf` implicit).
pub const DEFAULT_DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Buckets of `bentoml_runner_adaptive_batch_size`: 1, 2, 4, … while below
/// `max_batch_size`, then `max_batch_size` (`+Inf` implicit).
///
/// ```
/// use tiffin_metrics::batch_size_buckets;
/// assert_eq!(batch_size_buckets(100), [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0]);
/// assert_eq!(batch_size_buckets(8), [1.0, 2.0, 4.0, 8.0]);
/// ```
pub fn batch_size_buckets(max_batch_size: usize) -> Vec<f64> {
    let max = max_batch_size.max(1);
    let mut out = Vec::new();
    let mut size: usize = 1;
    while size < max {
        out.push(size as f64);
        match size.checked_mul(2) {
            Some(next) => size = next,
            None => break,
        }
    }
    out.push(max as f64);
    out
}

/// Why a list of bucket bounds is refused by [`finite_bounds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    /// A bound is NaN or infinite, other than one trailing `+Inf`.
    #[error("bounds must be finite numbers (only a trailing +Inf is allowed)")]
    NotFinite,
    /// Two neighbouring bounds are equal or in decreasing order.
    #[error("bounds must be strictly increasing")]
    NotIncreasing,
}

/// The finite bounds of a bucket list: `list` without a trailing `+Inf`,
/// provided every remaining bound is finite and they strictly increase.
///
/// An empty result is not an error here (`[+Inf]` asks for a histogram with
/// only the `+Inf` bucket); callers that need at least one bound check that.
///
/// ```
/// use tiffin_metrics::buckets::{BoundsError, finite_bounds};
/// assert_eq!(finite_bounds(&[0.1, 1.0, f64::INFINITY]), Ok(&[0.1, 1.0][..]));
/// assert_eq!(finite_bounds(&[f64::INFINITY]), Ok(&[][..]));
/// assert_eq!(finite_bounds(&[1.0, f64::NAN]), Err(BoundsError::NotFinite));
/// assert_eq!(finite_bounds(&[1.0, 1.0]), Err(BoundsError::NotIncreasing));
/// ```
pub fn finite_bounds(list: &[f64]) -> Result<&[f64], BoundsError> {
    let bounds = match list.split_last() {
        Some((&last, rest)) if last == f64::INFINITY => rest,
        _ => list,
    };
    if bounds.iter().any(|b| !b.is_finite()) {
        return Err(BoundsError::NotFinite);
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(BoundsError::NotIncreasing);
    }
    Ok(bounds)
}
