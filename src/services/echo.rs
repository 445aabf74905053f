//! `echo`: the smallest service with a runner hop, for measuring tiffin's own overhead.

use tiffin_service::{Runnable, Runner, Service, Text};

/// `POST /echo` (text) → runner `echo.echo` → the same text.
pub fn service() -> Service {
    let echo = Runner::new("echo", || {
        Runnable::new().method("echo", |s: String| Ok::<_, String>(s))
    });
    let runner = echo.clone();
    Service::new("echo")
        .runner(&echo)
        .api("echo", Text, Text, move |text: String| {
            let runner = runner.clone();
            async move { Ok(runner.call::<_, String>("echo", text).await?) }
        })
}
