//! `echo`: the smallest service with a runner hop, for measuring tiffin's own overhead.

use tiffin_service::{Runnable, Runner, Service, Text};

/// `POST /echo` (text) → runner `echo.echo` → the same text.
pub fn service() -> Service {
    let runner = Runner::new("echo", || {
        Runnable::new().method("echo", |text: String| text)
    });
    let echo = runner.method::<String, String>("echo");
    Service::new("echo")
        .runner(&runner)
        .api("echo", Text, Text, move |text: String| {
            let call = echo.call(text);
            async move { Ok(call.await?) }
        })
}
