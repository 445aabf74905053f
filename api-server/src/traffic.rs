//! `api_server.traffic` as applied to every API request, over HTTP and gRPC
//! alike: at most `max_concurrency` in flight (429 beyond: the client
//! should retry), and each within `timeout` (504 past it). The deadline also
//! goes with every runner call the handler makes (`deadline.rs`), so a
//! worker never starts a call whose request has already been answered.
//! Probes, scrapes and the documentation are not API requests: they are
//! never refused for concurrency.

use std::future::Future;
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
    active: AtomicUsize,
}

impl TrafficLimits {
    /// The limits `config` sets.
    pub fn new(config: &TrafficConfig) -> Self {
        TrafficLimits {
            timeout: config.timeout.duration(),
            max_concurrency: config.max_concurrency,
            active: AtomicUsize::new(0),
        }
    }

    /// Runs one API request within the limits.
    ///
    /// The request is counted as active when this is called (it is awaited
    /// at once) until the returned future ends or is dropped. Built from
    /// combinators rather than as an `async fn`, which would hold `request`
    /// twice (see `request_scope::within`).
    pub fn within<T, F>(
        &self,
        request: F,
    ) -> impl Future<Output = Result<T, ApiError>> + use<'_, T, F>
    where
        F: Future<Output = Result<T, ApiError>>,
    {
        let (active, before) = CountGuard::enter_after(&self.active);
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
            drop(active);
            match answer {
                Ok(answer) => answer,
                Err(_) => Err(ApiError::gateway_timeout(format!(
                    "the request did not finish within {timeout:?} (api_server.traffic.timeout)"
                ))),
            }
        }))
    }
}
