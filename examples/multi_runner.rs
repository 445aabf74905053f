//! A service with two runners: the API calls one, then the other, and each
//! scales on its own (`tiffin scale tokenizer 1`, `tiffin scale scorer 4`).
//!
//! ```sh
//! cargo run --example multi_runner -- serve-http --port 3000
//! curl -d 'the quick brown fox' localhost:3000/score
//! ```
//!
//! Both calls go over the worker processes' sockets; a runner that fails to
//! load or dies answers 503 for its own calls only.

use std::process::ExitCode;

use serde_json::json;
use tiffin::{Json, Runnable, Runner, Service, Text};

fn tokenizer() -> Runnable {
    Runnable::new().method("tokenize", |text: String| {
        text.split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<String>>()
    })
}

fn scorer() -> Runnable {
    // A fallible method: an error's message becomes the API's 500 body.
    Runnable::new().try_method("score", |tokens: Vec<String>| {
        if tokens.is_empty() {
            return Err("nothing to score");
        }
        let letters: usize = tokens.iter().map(String::len).sum();
        Ok(letters as f64 / tokens.len() as f64)
    })
}

fn service() -> Service {
    let tokens = Runner::new("tokenizer", tokenizer);
    let scores = Runner::new("scorer", scorer);
    let tokenize = tokens.method::<String, Vec<String>>("tokenize");
    let score = scores.method::<Vec<String>, f64>("score");
    Service::new("multi_runner")
        .runner(&tokens)
        .runner(&scores)
        .api("score", Text, Json, move |text: String| {
            // The second call needs the first's answer, so it starts inside
            // the future: handles are `Copy`, so the future holds its own.
            let tokenized = tokenize.call(text);
            async move {
                let tokens = tokenized.await?;
                let n = tokens.len();
                let mean = score.call(tokens).await?;
                Ok(json!({ "tokens": n, "mean_token_length": mean }))
            }
        })
}

fn main() -> ExitCode {
    tiffin::main(service())
}
