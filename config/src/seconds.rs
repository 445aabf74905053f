//! Keys that hold a number of seconds: [`Seconds`], checked against its
//! key's range as it is read, and handed out as a [`Duration`].
//!
//! The YAML holds a plain number (`graceful_timeout: 2.5`), as in BentoML;
//! each key has its own range (a timeout of 0 would fail everything at once,
//! while a delay of 0 just means "at once"). The range is part of the key's
//! type ([`SecondsRange`], one marker type per kind of key), so a value is
//! checked once, when it is read, and a [`Seconds`] in hand is always in
//! range: the code that uses it asks for [`Seconds::duration`] and has
//! nothing left to check.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::validate::{
    MAX_GRACEFUL_TIMEOUT, MAX_HTTP_TIMEOUT, MAX_HUNG_WORKER_TIMEOUT, MAX_TRAFFIC_TIMEOUT,
    MIN_HUNG_WORKER_TIMEOUT,
};

/// Largest `runners.autoscaling.look_back_s` and `upscale_delay_s` /
/// `downscale_delay_s`, in seconds: one day. (Kept here, beside the range
/// markers that use it, so this module imports nothing from the keys'
/// own modules.)
pub const MAX_AUTOSCALING_SECONDS: f64 = 86_400.0;

/// Largest `tracing.timeout` / `tracing.otlp.timeout`, in seconds.
pub const MAX_TRACING_TIMEOUT: f64 = 600.0;

/// Where the range of a [`Seconds`] key starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lower {
    /// This many seconds or more (0: no wait at all is allowed).
    AtLeast(f64),
    /// More than this many seconds (a timeout of 0 would fail everything).
    Above(f64),
}

/// The range of one kind of [`Seconds`] key.
pub trait SecondsRange {
    /// Where the range starts.
    const LOWER: Lower;
    /// The largest value allowed.
    const MAX: f64;
}

/// A number of seconds within the range `R` of its key.
///
/// Read from a YAML number and written back as one; any other value, or one
/// out of range (NaN and infinities included), is refused with the range in
/// words: `must be a number of seconds > 0 and <= 3600, got 0`.
///
/// ```
/// use tiffin_config::Config;
/// let config = Config::load(None, Some("api_server.traffic.timeout=2.5")).unwrap();
/// let timeout = config.api_server.traffic.timeout;
/// assert_eq!(timeout, 2.5);
/// assert_eq!(timeout.duration(), std::time::Duration::from_millis(2500));
/// ```
pub struct Seconds<R> {
    secs: f64,
    range: PhantomData<R>,
}

impl<R: SecondsRange> Seconds<R> {
    /// `secs` if it lies in `R`; else the reason, naming the range and the value.
    pub fn new(secs: f64) -> Result<Self, String> {
        let (fits_lower, shown) = match R::LOWER {
            Lower::AtLeast(min) => (secs >= min, format!(">= {min}")),
            Lower::Above(min) => (secs > min, format!("> {min}")),
        };
        // NaN fails both comparisons, so it is refused too.
        if fits_lower && secs <= R::MAX {
            Ok(Seconds::trusted(secs))
        } else {
            Err(format!(
                "must be a number of seconds {shown} and <= {}, got {secs}",
                R::MAX
            ))
        }
    }

    /// A default that is known to lie in `R` (the crate's own constants).
    pub(crate) const fn trusted(secs: f64) -> Self {
        Seconds {
            secs,
            range: PhantomData,
        }
    }

    /// The number of seconds, as written.
    pub fn get(self) -> f64 {
        self.secs
    }

    /// The number of seconds as a [`Duration`] (exact: every range is
    /// finite and starts at 0 or above).
    pub fn duration(self) -> Duration {
        seconds(self.secs)
    }
}

/// A number of seconds as a [`Duration`].
///
/// Exact for every value a [`Seconds`] holds; any other value saturates
/// instead of panicking as [`Duration::from_secs_f64`] would: negative or
/// NaN gives zero, too large (or infinite) gives [`Duration::MAX`].
pub fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(if value > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    })
}

// By hand rather than derived: a derive would ask the marker `R` for each
// trait, though only the number is copied, compared or shown.
impl<R> Clone for Seconds<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Seconds<R> {}

impl<R> PartialEq for Seconds<R> {
    fn eq(&self, other: &Self) -> bool {
        self.secs == other.secs
    }
}

/// Compares with a plain number of seconds (`timeout == 2.5`).
impl<R> PartialEq<f64> for Seconds<R> {
    fn eq(&self, other: &f64) -> bool {
        self.secs == *other
    }
}

impl<R> fmt::Debug for Seconds<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.secs)
    }
}

impl<R> Serialize for Seconds<R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.secs)
    }
}

impl<'de, R: SecondsRange> Deserialize<'de> for Seconds<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Seconds::new(secs).map_err(serde::de::Error::custom)
    }
}

/// Declares the marker type of one range.
macro_rules! ranges {
    ($($(#[$doc:meta])* $name:ident: $lower:expr, $max:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum $name {}

        impl SecondsRange for $name {
            const LOWER: Lower = $lower;
            const MAX: f64 = $max;
        }
    )*};
}

ranges! {
    /// `api_server.graceful_timeout`: 0 (no grace) to [`MAX_GRACEFUL_TIMEOUT`].
    GracefulTimeout: Lower::AtLeast(0.0), MAX_GRACEFUL_TIMEOUT;
    /// `api_server.http.*_timeout`: above 0, at most [`MAX_HTTP_TIMEOUT`].
    HttpTimeout: Lower::Above(0.0), MAX_HTTP_TIMEOUT;
    /// `api_server.traffic.timeout` and `stream_idle_timeout`: above 0, at
    /// most [`MAX_TRAFFIC_TIMEOUT`].
    TrafficTimeout: Lower::Above(0.0), MAX_TRAFFIC_TIMEOUT;
    /// `supervisor.hung_worker_timeout`: [`MIN_HUNG_WORKER_TIMEOUT`] to
    /// [`MAX_HUNG_WORKER_TIMEOUT`].
    HungWorkerTimeout: Lower::AtLeast(MIN_HUNG_WORKER_TIMEOUT), MAX_HUNG_WORKER_TIMEOUT;
    /// `runners.autoscaling.look_back_s`: above 0, at most
    /// [`MAX_AUTOSCALING_SECONDS`].
    LookBack: Lower::Above(0.0), MAX_AUTOSCALING_SECONDS;
    /// `runners.autoscaling.upscale_delay_s` and `downscale_delay_s`: 0 (at
    /// once) to [`MAX_AUTOSCALING_SECONDS`].
    ScaleDelay: Lower::AtLeast(0.0), MAX_AUTOSCALING_SECONDS;
    /// `tracing.timeout` and `tracing.otlp.timeout`: above 0, at most
    /// [`MAX_TRACING_TIMEOUT`].
    TracingTimeout: Lower::Above(0.0), MAX_TRACING_TIMEOUT;
}
