//! A first service: one runner, one method, one API.
//!
//! ```sh
//! cargo run --example first_service -- serve-http --port 3000
//! curl -d 'hello' localhost:3000/shout     # HELLO!
//! curl localhost:3000/metrics              # BentoML's metric families
//! ```
//!
//! The runner `shouter` runs in its own worker process (scale it with
//! `tiffin scale shouter 2`); the API runs in the API servers and calls the
//! runner through a typed handle obtained once, when the service is built.

use std::process::ExitCode;

use tiffin::{Runnable, Runner, Service, Text};

/// The model: loaded once in every worker of the runner.
fn load() -> Runnable {
    Runnable::new().method("shout", |text: String| format!("{}!", text.to_uppercase()))
}

fn service() -> Service {
    let shouter = Runner::new("shouter", load);
    // Typed and cheap to clone: a typo in `String, String` is a compile
    // error at the call below, not a runtime one.
    let shout = shouter.method::<String, String>("shout");
    Service::new("first_service")
        .runner(&shouter)
        .api("shout", Text, Text, move |text: String| {
            // `call` borrows the handle only to start the call; the future
            // it returns owns everything it needs.
            let call = shout.call(text);
            async move { Ok(call.await?) }
        })
}

fn main() -> ExitCode {
    tiffin::main(service())
}
