//! The transport of an embedded runner (`runners.<name>.embedded`): a
//! `Runner::call` in a handler becomes a call of the runnable loaded in
//! this process (`tiffin_runner_worker::Embedded`), carrying what a call
//! to a worker carries: the request's deadline, its id and its span.

use tiffin_runner_worker::{CallContext, Embedded};
use tiffin_service::{BoxFuture, CallError, EncodedStream, RunnerTransport};

/// The [`RunnerTransport`] of an embedded runner.
pub(crate) struct EmbeddedTransport(pub Embedded);

impl EmbeddedTransport {
    /// What a call of `method` carries from the request it serves, and the
    /// call's span (ended by the caller when the call is).
    fn context(&self, method: &str) -> (CallContext, Option<tiffin_telemetry::Span>) {
        let expires = crate::deadline::remaining().map(|left| std::time::Instant::now() + left);
        let request_id = crate::request_scope::current(|r| r.id.to_str().unwrap_or("").to_owned())
            .unwrap_or_default();
        let span = crate::trace::start_runner_call(self.0.name(), method);
        let trace = span.as_ref().map(tiffin_telemetry::Span::context);
        let cx = CallContext {
            expires,
            request_id,
            trace,
        };
        (cx, span)
    }
}

impl RunnerTransport for EmbeddedTransport {
    fn call(&self, method: &str, payload: Vec<u8>) -> BoxFuture<Result<Vec<u8>, CallError>> {
        let embedded = self.0.clone();
        let method = method.to_string();
        let (cx, mut span) = self.context(&method);
        Box::pin(async move {
            let result = embedded.call(method, payload, cx).await;
            if let (Some(span), Err(e)) = (&mut span, &result) {
                span.set_error(e.to_string());
            }
            result
        })
    }

    fn call_stream(&self, method: &str, payload: Vec<u8>) -> EncodedStream {
        let (cx, span) = self.context(method);
        let items = self.0.call_stream(method.to_string(), payload, cx);
        // The span ends with the stream.
        Box::pin(futures::StreamExt::map(items, move |item| {
            let _held = &span;
            item
        }))
    }
}
