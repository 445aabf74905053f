//! Helpers shared by the metrics unit tests.

use super::snapshot::{Snapshot, Value};

/// Deterministic pseudo-random numbers in [0, 1) (Knuth's MMIX LCG).
pub fn lcg(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 11) as f64 / (1u64 << 53) as f64
}

/// The value of one series, panicking with the names when it is missing.
pub fn value<'a>(snap: &'a Snapshot, name: &str, labels: &[(&str, &str)]) -> &'a Value {
    &snap
        .family(name)
        .unwrap_or_else(|| panic!("no family {name}"))
        .series_with(labels)
        .unwrap_or_else(|| panic!("no series {labels:?} in {name}"))
        .value
}
