//! The API server's open connections: how many there may be, how long one
//! may sit idle, and what accepting does when descriptors run out.
//!
//! hyper bounds how long a request's headers may take
//! (`api_server.http.header_read_timeout`), but nothing in hyper closes a
//! connection that never sends a byte or idles between requests, and
//! hyper-util's protocol detection waits without a timer. So every
//! connection gets an [`Activity`]: requests in flight and the time of the
//! last request boundary. A watchdog closes the connection once it has had
//! no request in flight for `api_server.http.keepalive_timeout`; a request
//! that waits on a slow model is in flight, so it is never cut.
//!
//! Past `api_server.http.max_connections` open connections, new ones are
//! still accepted, so that health probes and scrapes keep answering, but
//! every other request on them gets 503 and the connection is closed after
//! its answer ([`Connections::admit`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::time::Instant as TokioInstant;

use tiffin_metrics::{Counter, MetricsError, Registry};

use tiffin_metrics::count_guard::{Count, CountGuard};

/// How long a drain waits for just-accepted connections to begin their
/// first request or call ([`Fresh`]; HTTP here, gRPC in `grpc/incoming.rs`).
pub(crate) const FRESH_GRACE: Duration = Duration::from_secs(1);

/// Marks one connection as fresh in a server's count until its first
/// request or call begins, or it ends, whichever comes first. A graceful
/// shutdown would close a fresh connection under a client whose request is
/// on its way, so a drain waits for the count to reach zero ([`settle`]).
#[derive(Debug)]
pub(crate) struct Fresh {
    count: Arc<AtomicUsize>,
    fresh: AtomicBool,
}

impl Fresh {
    /// A connection accepted now, counted in `count`.
    pub fn new(count: &Arc<AtomicUsize>) -> Arc<Self> {
        count.fetch_add(1, Ordering::Relaxed);
        Arc::new(Self {
            count: Arc::clone(count),
            fresh: AtomicBool::new(true),
        })
    }

    /// Its first request began (or it ended): no longer fresh.
    pub fn begun(&self) {
        if self.fresh.swap(false, Ordering::Relaxed) {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Resolves once no connection in `count` is fresh, or after [`FRESH_GRACE`].
pub(crate) async fn settle(count: &AtomicUsize) {
    let waited = TokioInstant::now();
    while count.load(Ordering::Relaxed) > 0 && waited.elapsed() < FRESH_GRACE {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The per-server count of open connections and its limit.
#[derive(Debug)]
pub(crate) struct Connections {
    open: Arc<AtomicUsize>,
    /// Accepted connections whose first request has not begun ([`Fresh`]).
    fresh: Arc<AtomicUsize>,
    max: usize,
    /// How long a connection may go without a request in flight.
    pub idle: Duration,
}

/// Holds one open connection in the count until dropped.
pub(crate) struct Admitted {
    _open: CountGuard<Arc<AtomicUsize>>,
    /// Opened past the limit: serve only probes and scrapes on it.
    pub over_limit: bool,
}

impl Connections {
    /// A count with room for `max` connections that may idle for `idle`.
    pub fn new(max: usize, idle: Duration) -> Arc<Self> {
        Arc::new(Self {
            open: Arc::default(),
            fresh: Arc::default(),
            max,
            idle,
        })
    }

    /// Counts a newly accepted connection.
    pub fn admit(&self) -> Admitted {
        let (open, before) = CountGuard::enter_after(Arc::clone(&self.open));
        Admitted {
            _open: open,
            over_limit: before >= self.max,
        }
    }

    /// Connections accepted whose first request has not begun yet: a
    /// drain [`settle`]s them before its graceful shutdown (`http.rs`).
    pub fn fresh(&self) -> &AtomicUsize {
        &self.fresh
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// What the idle watchdog of one connection watches.
#[derive(Debug)]
pub(crate) struct Activity {
    /// tokio's clock, so tests can pause it; the same as `Instant` otherwise.
    epoch: TokioInstant,
    in_flight: AtomicUsize,
    /// Milliseconds after `epoch` of the last request start or end.
    last_ms: AtomicU64,
    /// Counted in [`Connections::fresh`] until its first request begins.
    fresh: Option<Arc<Fresh>>,
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.begun();
    }
}

/// A request on the connection begins (`up`) or ends (`down`): both are
/// request boundaries for the idle timer.
impl Count for Activity {
    fn up(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.begun();
        self.touch();
    }

    fn down(&self) {
        self.touch();
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    /// The activity of a connection accepted now.
    #[cfg(test)]
    pub fn new() -> Arc<Self> {
        Self::with(None)
    }

    /// The activity of a connection accepted now, counted as fresh in
    /// `connections` until its first request begins.
    pub fn accepted(connections: &Connections) -> Arc<Self> {
        Self::with(Some(Fresh::new(&connections.fresh)))
    }

    fn with(fresh: Option<Arc<Fresh>>) -> Arc<Self> {
        Arc::new(Self {
            epoch: TokioInstant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            fresh,
        })
    }

    /// The first request began (or the connection ended): no longer fresh.
    fn begun(&self) {
        if let Some(fresh) = &self.fresh {
            fresh.begun();
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// A request started; it counts until the guard is dropped (owned, so
    /// that a streaming answer's body can hold it to its last item).
    pub fn request(self: &Arc<Self>) -> CountGuard<Arc<Self>> {
        CountGuard::enter(Arc::clone(self))
    }

    /// Resolves once the connection has had no request in flight for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = last + idle;
            let now = TokioInstant::now();
            if self.in_flight.load(Ordering::Relaxed) == 0 && now >= due {
                return;
            }
            // Busy or recently active: look again when the current period ends.
            let wake = if due > now { due } else { now + idle };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// What `accept` does when it fails: wait a little longer each time (so a
/// process out of descriptors does not spin), log at most once a second
/// with the number of failures since, and count every failure.
pub(crate) struct AcceptBackoff {
    delay: Duration,
    suppressed: u64,
    last_log: Option<Instant>,
    errors: Option<Counter>,
}

const BACKOFF_START: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(1);

impl AcceptBackoff {
    /// A backoff counting into `tiffin_api_server_accept_errors_total` of
    /// `registry` (none when metrics are disabled).
    pub fn new(registry: Option<&Registry>) -> Result<Self, MetricsError> {
        let errors = registry
            .map(|r| {
                r.counter(
                    "tiffin_api_server_accept_errors_total",
                    "Failed accepts on the public listener (for example: out of file descriptors)",
                    &["reason"],
                )
            })
            .transpose()?;
        Ok(Self {
            delay: BACKOFF_START,
            suppressed: 0,
            last_log: None,
            errors,
        })
    }

    /// An accept succeeded: the next failure starts from the shortest wait.
    pub fn succeeded(&mut self) {
        self.delay = BACKOFF_START;
    }

    /// An accept failed: counts and maybe logs it, and returns how long to
    /// wait before accepting again.
    pub fn failed(&mut self, error: &std::io::Error) -> Duration {
        let reason = match error.raw_os_error() {
            Some(libc::EMFILE) => "emfile",
            Some(libc::ENFILE) => "enfile",
            _ => "other",
        };
        if let Some(errors) = &self.errors {
            errors.labels(&[reason]).inc();
        }
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            tracing::warn!(error = %error, reason, suppressed = self.suppressed, retry_in_ms = self.delay.as_millis() as u64, "accept failed");
            self.last_log = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        let wait = self.delay;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_past_the_limit_are_marked_and_leave_the_count_on_drop() {
        let conns = Connections::new(2, Duration::from_secs(5));
        let a = conns.admit();
        let b = conns.admit();
        let c = conns.admit();
        assert!(!a.over_limit && !b.over_limit && c.over_limit);
        drop(a);
        assert_eq!(conns.open(), 2);
        let d = conns.admit();
        assert!(d.over_limit, "two still open: b and c");
        drop((b, c, d));
        assert_eq!(conns.open(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_expires_but_one_with_a_request_in_flight_does_not() {
        let activity = Activity::new();
        let idle = Duration::from_secs(5);
        let slow = activity.request();
        // A request waiting on a slow model for a minute is not idleness.
        let watch = activity.idle_for(idle);
        tokio::pin!(watch);
        assert!(
            tokio::time::timeout(Duration::from_secs(60), &mut watch)
                .await
                .is_err()
        );
        drop(slow);
        let started = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(60), &mut watch)
            .await
            .expect("idle after the request ended");
        assert!(started.elapsed() >= idle - Duration::from_millis(1));
    }

    #[test]
    fn accept_failures_back_off_to_a_bound_and_reset_on_success() {
        let mut backoff = AcceptBackoff::new(None).unwrap();
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        let waits: Vec<Duration> = (0..12).map(|_| backoff.failed(&emfile)).collect();
        assert_eq!(waits[0], BACKOFF_START);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), BACKOFF_MAX);
        backoff.succeeded();
        assert_eq!(backoff.failed(&emfile), BACKOFF_START);
    }
}
