//! `bentoml.metrics.*` objects of Python code (`python/tiffin/metrics.py`),
//! kept in the process's Rust registry: the supervisor's scrape sums them
//! over every process exactly as it sums a Rust service's.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use tiffin_metrics::{Counter, Gauge, Histogram, MetricsError, Summary};

enum Family {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
    Summary(Summary),
}

/// One metric family, defined by Python.
#[pyclass(frozen, module = "tiffin._native")]
pub struct Metric {
    name: String,
    family: Family,
}

fn value_error(e: MetricsError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

impl Metric {
    fn refuse(&self, op: &str) -> PyErr {
        let kind = match self.family {
            Family::Counter(_) => "Counter",
            Family::Gauge(_) => "Gauge",
            Family::Histogram(_) => "Histogram",
            Family::Summary(_) => "Summary",
        };
        PyTypeError::new_err(format!("{kind} '{}' has no {op}()", self.name))
    }
}

#[pymethods]
impl Metric {
    /// Defines (or finds, if defined alike) the family `name` of `kind`
    /// (`counter`, `gauge`, `histogram`, `summary`).
    #[new]
    #[pyo3(signature = (kind, name, documentation, labelnames, buckets=None))]
    fn new(
        kind: &str,
        name: &str,
        documentation: &str,
        labelnames: Vec<String>,
        buckets: Option<Vec<f64>>,
    ) -> PyResult<Self> {
        let labels: Vec<&str> = labelnames.iter().map(String::as_str).collect();
        let family = match kind {
            "counter" => {
                Family::Counter(Counter::new(name, documentation, &labels).map_err(value_error)?)
            }
            "gauge" => {
                Family::Gauge(Gauge::new(name, documentation, &labels).map_err(value_error)?)
            }
            "histogram" => Family::Histogram(
                Histogram::new(
                    name,
                    documentation,
                    &labels,
                    buckets.as_deref().unwrap_or(&[]),
                )
                .map_err(value_error)?,
            ),
            "summary" => {
                Family::Summary(Summary::new(name, documentation, &labels).map_err(value_error)?)
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown metric kind '{other}'"
                )));
            }
        };
        Ok(Metric {
            name: name.to_string(),
            family,
        })
    }

    /// Adds `amount` to the series `values` (a counter or a gauge).
    fn inc(&self, values: Vec<String>, amount: f64) -> PyResult<()> {
        let v: Vec<&str> = values.iter().map(String::as_str).collect();
        match &self.family {
            Family::Counter(c) => {
                if amount < 0.0 {
                    return Err(PyValueError::new_err(
                        "counters can only be incremented by non-negative amounts",
                    ));
                }
                c.try_labels(&v).map_err(value_error)?.inc_by(amount);
            }
            Family::Gauge(g) => g.try_labels(&v).map_err(value_error)?.add(amount),
            _ => return Err(self.refuse("inc")),
        }
        Ok(())
    }

    /// Subtracts `amount` from the series `values` of a gauge.
    fn dec(&self, values: Vec<String>, amount: f64) -> PyResult<()> {
        let v: Vec<&str> = values.iter().map(String::as_str).collect();
        match &self.family {
            Family::Gauge(g) => g.try_labels(&v).map_err(value_error)?.sub(amount),
            _ => return Err(self.refuse("dec")),
        }
        Ok(())
    }

    /// Sets the series `values` of a gauge.
    fn set(&self, values: Vec<String>, value: f64) -> PyResult<()> {
        let v: Vec<&str> = values.iter().map(String::as_str).collect();
        match &self.family {
            Family::Gauge(g) => g.try_labels(&v).map_err(value_error)?.set(value),
            _ => return Err(self.refuse("set")),
        }
        Ok(())
    }

    /// Records `value` in the series `values` of a histogram or summary.
    fn observe(&self, values: Vec<String>, value: f64) -> PyResult<()> {
        let v: Vec<&str> = values.iter().map(String::as_str).collect();
        match &self.family {
            Family::Histogram(h) => h.try_labels(&v).map_err(value_error)?.observe(value),
            Family::Summary(s) => s.try_labels(&v).map_err(value_error)?.observe(value),
            _ => return Err(self.refuse("observe")),
        }
        Ok(())
    }
}
