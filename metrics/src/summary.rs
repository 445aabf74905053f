//! Summaries: count, sum and quantiles of observations (payload sizes), kept
//! as a mergeable [`Sketch`] per series.
//!
//! A [`Summary`] is the generic [`MetricFamily`] over [`SummaryChild`]; this
//! module owns how a summary is defined, its series store and what one series
//! records. The `prometheus` crate has no summary, and its quantiles could not
//! be merged across processes anyway, so the series live here, in a map keyed
//! by a hash of their label values, and
//! [`Registry::snapshot`](crate::Registry::snapshot) reads them
//! beside the `prometheus` families.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::MetricsError;
use crate::family::{Handle, MetricFamily, Series as FamilySeries, wrong_kind};
use crate::registry::{Spec, global};
use crate::sketch::Sketch;
use crate::snapshot::{Series, SummaryValue, Value};

/// A summary family (count, sum, mergeable quantiles); `labels()` / `with()` select one series.
pub type Summary = MetricFamily<SummaryChild>;

/// One summary series (or a detached no-op one if its labels were rejected).
#[derive(Clone, Default)]
pub struct SummaryChild(Option<Arc<Mutex<SummaryState>>>);

/// What one summary series has recorded.
#[derive(Default)]
pub struct SummaryState {
    count: u64,
    sum: f64,
    sketch: Sketch,
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

impl Summary {
    /// Defines (or returns the existing) summary in the [`global`] registry.
    pub fn new(name: &str, documentation: &str, labelnames: &[&str]) -> Result<Self, MetricsError> {
        global().summary(name, documentation, labelnames)
    }

    /// A summary for a `static`, defined in the [`global`] registry at its first use.
    pub const fn lazy(
        name: &'static str,
        documentation: &'static str,
        labelnames: &'static [&'static str],
    ) -> Self {
        MetricFamily::lazy_from(name, documentation, labelnames, Spec::Summary)
    }
}

impl FamilySeries for SummaryChild {
    const KIND: &'static str = "Summary";

    fn attach(handle: &Handle, values: &[&str]) -> Result<Self, prometheus::Error> {
        match handle {
            Handle::Summary(store) => Ok(Self(Some(store.child(values)))),
            _ => Err(wrong_kind::<Self>()),
        }
    }
}

impl SummaryChild {
    /// Records one observation into count, sum and the quantile sketch.
    pub fn observe(&self, v: f64) {
        if let Some(state) = &self.0 {
            let mut s = state.lock();
            s.count = s.count.saturating_add(1);
            s.sum += v;
            s.sketch.add(v);
        }
    }
}

impl fmt::Debug for SummaryChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SummaryChild")
            .field("attached", &self.0.is_some())
            .finish()
    }
}
