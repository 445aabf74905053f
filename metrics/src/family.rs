//! One labelled family, generic over the metric kind: everything
//! [`Counter`](crate::Counter), [`Gauge`](crate::Gauge),
//! [`Histogram`](crate::Histogram) and [`Summary`](crate::Summary) share.
//!
//! The four kinds differ only in how they are defined (a histogram has
//! buckets, a gauge a [`GaugeMode`](crate::GaugeMode)) and in what their series
//! can record; picking a series is the same for all of them, so it is
//! written once here: positional [`labels`](MetricFamily::labels), named
//! [`with`](MetricFamily::with), each with a `try_` twin that returns the
//! [`MetricsError`] instead of a detached series. Each kind is
//! `MetricFamily<ItsChild>` (a type alias in its own module), so
//! `Counter::new(..)` and `Counter::lazy(..)` are one type.
//!
//! A family is in one of two states:
//! - **defined** — made by `X::new` or a [`Registry`](crate::Registry) method,
//!   which define the metric on the spot and return the error there;
//! - **lazy** — made by the `const fn` `X::lazy`, for a `static`. It holds
//!   only the definition and defines it in the [`global`](crate::global)
//!   registry at its first use (a [`OnceLock`], so exactly once however many
//!   threads race), through the function it was made with: this module sits
//!   below the registry and never names it. A definition that fails is logged once; from then on the
//!   family records nothing, and the `try_` methods return that error, which
//!   is why [`MetricsError`] is `Clone`.
//!
//! Picking a series never panics and warns at most once per metric, because it
//! runs on every request: a rejected call yields a detached child whose methods
//! do nothing.

use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;

use crate::definition::{Defined, Handle, Spec};
use crate::error::MetricsError;

/// What the generic family needs of a kind's series type (sealed: this
/// module is private, so only the four kinds implement it).
pub trait Series: Default + Clone {
    /// The kind's name as a user writes it (`Counter`), for `Debug`.
    const KIND: &'static str;

    /// The series of `handle` for label `values` in definition order (their
    /// count already checked); an error if `handle` is another kind's, which
    /// the registry's definitions rule out.
    fn attach(handle: &Handle, values: &[&str]) -> Result<Self, prometheus::Error>;
}

/// The error [`Series::attach`] gives for a handle of another kind.
pub fn wrong_kind<S: Series>() -> prometheus::Error {
    prometheus::Error::Msg(format!("internal handle is not a {}", S::KIND))
}

/// Implements [`Series`] for a kind's child `$child(Option<_>)` that wraps
/// one series of the `prometheus` vector in `Handle::$kind` (`None` when
/// detached): counters, gauges and histograms differ only in those names.
macro_rules! prometheus_series {
    ($child:ident, $kind:ident) => {
        impl $crate::family::Series for $child {
            const KIND: &'static str = stringify!($kind);

            fn attach(
                handle: &$crate::definition::Handle,
                values: &[&str],
            ) -> Result<Self, prometheus::Error> {
                match handle {
                    $crate::definition::Handle::$kind(vec) => {
                        Ok(Self(Some(vec.get_metric_with_label_values(values)?)))
                    }
                    _ => Err($crate::family::wrong_kind::<Self>()),
                }
            }
        }
    };
}
pub(crate) use prometheus_series;

/// How a lazy family defines itself: the global registry's definition
/// function, handed over when a kind's `const fn lazy` makes the family
/// (this module sits below the registry, so it does not name the registry).
pub type Define = fn(&str, &str, &[&str], Spec<'_>) -> Result<Defined, MetricsError>;

/// What a lazy family defines in the global registry at its first use.
#[derive(Clone, Copy)]
struct Definition {
    /// The metric name as given (counters may or may not end in `_total`).
    name: &'static str,
    help: &'static str,
    /// The label names, in the order `labels()` takes values.
    labelnames: &'static [&'static str],
    /// The kind, with its buckets or gauge mode.
    spec: Spec<'static>,
    /// Defines it (in the global registry).
    define: Define,
}

#[derive(Clone)]
enum State {
    Defined(Defined),
    Lazy {
        definition: Definition,
        defined: OnceLock<Result<Defined, MetricsError>>,
    },
}

/// A labelled metric family of one kind; [`Counter`](crate::Counter),
/// [`Gauge`](crate::Gauge), [`Histogram`](crate::Histogram) and
/// [`Summary`](crate::Summary) are this type for their own series type `C`.
///
/// `labels` / `with` select one series (a child) to record into; clones share
/// the same series.
pub struct MetricFamily<C> {
    state: State,
    series: PhantomData<fn() -> C>,
}

/// Series picked from more labels than this are ordered in a heap buffer.
const INLINE_LABELS: usize = 8;

impl<C> MetricFamily<C> {
    /// A family over a metric already defined.
    pub(crate) fn defined(defined: Defined) -> Self {
        MetricFamily {
            state: State::Defined(defined),
            series: PhantomData,
        }
    }

    /// A family that defines itself at first use by calling `define` (the
    /// global registry's definition function).
    pub(crate) const fn lazy_from(
        name: &'static str,
        help: &'static str,
        labelnames: &'static [&'static str],
        spec: Spec<'static>,
        define: Define,
    ) -> Self {
        MetricFamily {
            state: State::Lazy {
                definition: Definition {
                    name,
                    help,
                    labelnames,
                    spec,
                    define,
                },
                defined: OnceLock::new(),
            },
            series: PhantomData,
        }
    }

    /// The definition, made on first call for a lazy family.
    fn resolve(&self) -> Result<&Defined, MetricsError> {
        match &self.state {
            State::Defined(defined) => Ok(defined),
            State::Lazy {
                definition,
                defined,
            } => defined
                .get_or_init(|| {
                    let d = definition;
                    let defined = (d.define)(d.name, d.help, d.labelnames, d.spec);
                    if let Err(err) = &defined {
                        // Logged once: this closure runs once per static.
                        tracing::warn!(metric = d.name, error = %err, "lazy metric definition failed; it records nothing");
                    }
                    defined
                })
                .as_ref()
                .map_err(Clone::clone),
        }
    }

    fn name(&self) -> &str {
        match &self.state {
            State::Defined(defined) => &defined.meta.name,
            State::Lazy { definition, .. } => definition.name,
        }
    }
}

impl<C: Series> MetricFamily<C> {
    /// Selects the series for these label values (in definition order); a
    /// wrong count yields a detached child that records nothing, and a warning
    /// once per metric.
    pub fn labels(&self, values: &[&str]) -> C {
        self.or_detached(self.try_labels(values))
    }

    /// Selects the series for these label values, or says why it cannot.
    pub fn try_labels(&self, values: &[&str]) -> Result<C, MetricsError> {
        let defined = self.resolve()?;
        defined.meta.check_count(values.len())?;
        C::attach(&defined.handle, values).map_err(|e| defined.meta.backend(e))
    }

    /// Selects the series for these `(label name, value)` pairs, in any order;
    /// an unknown, missing or repeated name yields a detached child that
    /// records nothing, and a warning once per metric.
    pub fn with(&self, labels: &[(&str, &str)]) -> C {
        self.or_detached(self.try_with(labels))
    }

    /// Selects the series for these `(label name, value)` pairs, in any
    /// order, or says which label is at fault ([`MetricsError::LabelName`]).
    pub fn try_with(&self, labels: &[(&str, &str)]) -> Result<C, MetricsError> {
        let defined = self.resolve()?;
        let meta = &defined.meta;
        let count = meta.labelnames.len();
        let mut inline = [""; INLINE_LABELS];
        let mut heap;
        let values: &mut [&str] = if count <= INLINE_LABELS {
            &mut inline[..count]
        } else {
            heap = vec![""; count];
            &mut heap
        };
        meta.order(labels, values)?;
        C::attach(&defined.handle, values).map_err(|e| meta.backend(e))
    }

    /// What `labels` and `with` hand out: the child, or after a warning a detached one.
    fn or_detached(&self, child: Result<C, MetricsError>) -> C {
        child.unwrap_or_else(|err| {
            // A failed lazy definition was logged when it failed.
            if let Ok(defined) = self.resolve() {
                defined.meta.warn_once(&err);
            }
            C::default()
        })
    }
}

impl<C> Clone for MetricFamily<C> {
    fn clone(&self) -> Self {
        MetricFamily {
            state: self.state.clone(),
            series: PhantomData,
        }
    }
}

impl<C: Series> fmt::Debug for MetricFamily<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(C::KIND).field("name", &self.name()).finish()
    }
}

#[cfg(test)]
mod tests;
