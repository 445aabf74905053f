//! Helpers shared by the unit tests that read snapshots.
//!
//! A test that looks a series up should fail by saying which family or series
//! was missing, not by unwrapping a bare `None`; keeping that lookup here
//! gives every module's tests the same message. This module imports only
//! [`snapshot`](crate::snapshot), so the snapshot and sketch tests (which
//! the snapshot builds on) do not use it, keeping test imports acyclic too.

use crate::snapshot::{Snapshot, Value};

/// The value of one series, panicking with the names when it is missing.
pub fn value<'a>(snap: &'a Snapshot, name: &str, labels: &[(&str, &str)]) -> &'a Value {
    &snap
        .family(name)
        .unwrap_or_else(|| panic!("no family {name}"))
        .series_with(labels)
        .unwrap_or_else(|| panic!("no series {labels:?} in {name}"))
        .value
}
