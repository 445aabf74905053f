//! Where a summary's series live: the [`SummaryStore`] of one summary family
//! and the [`SummaryState`] of each of its series.
//!
//! The `prometheus` crate has no summary, and its quantiles could not be
//! merged across processes anyway, so a summary's series live here, in a map
//! keyed by a hash of their label values, each with a mergeable [`Sketch`];
//! [`Registry::snapshot`](crate::Registry::snapshot) reads them beside the
//! `prometheus` families. This module sits below both the definitions (a
//! summary's handle is its store) and the [`Summary`](crate::Summary) kind
//! (whose child records into one state), so it imports neither.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::sketch::Sketch;
use crate::snapshot::{Series, SummaryValue, Value};

/// What one summary series has recorded.
#[derive(Default)]
pub struct SummaryState {
    count: u64,
    sum: f64,
    sketch: Sketch,
}

impl SummaryState {
    /// Records one observation into count, sum and the quantile sketch.
    pub fn observe(&mut self, v: f64) {
        self.count = self.count.saturating_add(1);
        self.sum += v;
        self.sketch.add(v);
    }
}

/// Summary series keyed by a hash of their label values (collisions resolved by comparing the values).
type SummaryMap = HashMap<u64, Vec<(Vec<String>, Arc<Mutex<SummaryState>>)>>;

/// The series of one summary family.
#[derive(Default)]
pub struct SummaryStore {
    children: RwLock<SummaryMap>,
}

impl SummaryStore {
    /// The series for `values`, created at 0 on first use.
    pub fn child(&self, values: &[&str]) -> Arc<Mutex<SummaryState>> {
        let mut hasher = DefaultHasher::new();
        values.hash(&mut hasher);
        let key = hasher.finish();
        let find = |map: &SummaryMap| {
            map.get(&key)?
                .iter()
                .find(|(have, _)| have.iter().eq(values.iter().copied()))
                .map(|(_, state)| state.clone())
        };
        if let Some(state) = find(&self.children.read()) {
            return state;
        }
        let mut map = self.children.write();
        if let Some(state) = find(&map) {
            return state;
        }
        let state = Arc::<Mutex<SummaryState>>::default();
        map.entry(key).or_default().push((
            values.iter().map(|v| (*v).to_owned()).collect(),
            state.clone(),
        ));
        state
    }

    /// Every series, labelled with `labelnames`, unsorted.
    pub fn series(&self, labelnames: &[String]) -> Vec<Series> {
        let map = self.children.read();
        map.values()
            .flatten()
            .map(|(values, state)| {
                let state = state.lock();
                Series {
                    labels: labelnames
                        .iter()
                        .cloned()
                        .zip(values.iter().cloned())
                        .collect(),
                    value: Value::Summary(SummaryValue {
                        count: state.count,
                        sum: state.sum,
                        sketch: state.sketch.clone(),
                    }),
                }
            })
            .collect()
    }
}
