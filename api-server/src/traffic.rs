//! `api_server.traffic` as applied to every API request, over HTTP and gRPC
//! alike: at most `max_concurrency` in flight (429 beyond: the client
//! should retry), and each within `timeout` (504 past it). The deadline also
//! goes with every runner call the handler makes (`deadline.rs`), so a
//! worker never starts a call whose request has already been answered.
//! Probes, scrapes and the documentation are not API requests: they are
//! never refused for concurrency.
//!
//! A streaming answer (`stream.rs`) is one request until its last item: its
//! concurrency slot is handed to the response body (`tail.rs`) when the
//! first item is ready, which is also where `timeout` stops applying; from
//! then on `stream_idle_timeout` bounds the silence between items.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use futures::FutureExt;
use futures::future::Either;
use tiffin_config::TrafficConfig;
use tiffin_service::ApiError;

use tiffin_metrics::count_guard::CountGuard;

/// The limits every API request runs within, and the requests now in them.
pub(crate) struct TrafficLimits {
    timeout: Duration,
    max_concurrency: Option<usize>,
    /// Shared with the bodies of streaming answers, which hold their slot.
    active: Arc<AtomicUsize>,
    stream_idle: Duration,
}

impl TrafficLimits {
    /// The limits `config` sets.
    pub fn new(config: &TrafficConfig) -> Self {
        TrafficLimits {
            timeout: config.timeout.duration(),
            max_concurrency: config.max_concurrency,
            active: Arc::new(AtomicUsize::new(0)),
            stream_idle: config.stream_idle_timeout.duration(),
        }
    }

    /// The longest a stream may go without an item after its first
    /// (`api_server.traffic.stream_idle_timeout`).
    pub fn stream_idle_timeout(&self) -> Duration {
        self.stream_idle
    }

    /// Runs one API request within the limits.
    ///
    /// The request is counted as active when this is called (it is awaited
    /// at once) until the returned future ends or is dropped, or, for a
    /// streaming answer, until its stream ends (`tail.rs`). Built from
    /// combinators rather than as an `async fn`, which would hold `request`
    /// twice (see `request_scope::within`).
    pub fn within<T, F>(
        &self,
        request: F,
    ) -> impl Future<Output = Result<T, ApiError>> + use<'_, T, F>
    where
        F: Future<Output = Result<T, ApiError>>,
    {
        let (active, before) = CountGuard::enter_after(Arc::clone(&self.active));
        if let Some(max) = self.max_concurrency
            && before >= max
        {
            return Either::Left(std::future::ready(Err(ApiError::too_many_requests(
                format!(
                    "too many requests in flight (api_server.traffic.max_concurrency={max}); retry later"
                ),
            ))));
        }
        let timeout = self.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let limited = tokio::time::timeout_at(deadline, crate::deadline::within(deadline, request));
        Either::Right(limited.map(move |answer| {
            // A stream holds the slot to its last item; given back (and so
            // dropped) when there is none.
            if let Some(tail) = crate::tail::current() {
                let _ = tail.defer(move |_| drop(active));
            }
            match answer {
                Ok(answer) => answer,
                Err(_) => Err(ApiError::gateway_timeout(format!(
                    "the request did not finish within {timeout:?} (api_server.traffic.timeout)"
                ))),
            }
        }))
    }
}
