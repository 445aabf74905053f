//! A small gRPC load generator for `scripts/bench`: `concurrency` tasks
//! spread over `connections` HTTP/2 connections call
//! `bentoml.grpc.v1.BentoService/Call` in a closed loop for `seconds`.
//!
//! Usage: `grpc_bench ADDR API TEXT [seconds=10] [concurrency=64] [connections=4] [label=grpc]`.
//! Prints `label req/s p50_ms p99_ms errors` on one line.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tiffin_api_server::grpc::proto::bento_service_client::BentoServiceClient;
use tiffin_api_server::grpc::proto::{Request, request};
use tiffin_api_server::tonic::transport::Endpoint;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> Result<T, String> {
    match args.get(i) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("argument {i} ({v:?}) is not valid")),
    }
}

async fn bench(args: Vec<String>) -> Result<(), String> {
    let usage = "usage: grpc_bench ADDR API TEXT [seconds] [concurrency] [connections] [label]";
    let (Some(addr), Some(api), Some(text)) = (args.get(1), args.get(2), args.get(3)) else {
        return Err(usage.into());
    };
    let seconds: f64 = arg(&args, 4, 10.0)?;
    let concurrency: usize = arg(&args, 5, 64)?;
    let connections: usize = arg::<usize>(&args, 6, 4)?.max(1);
    let label: String = arg(&args, 7, "grpc".to_string())?;

    let mut clients = Vec::new();
    for _ in 0..connections {
        let ch = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        clients.push(BentoServiceClient::new(ch));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut client = clients[i % connections].clone();
        let req = Request {
            api_name: api.clone(),
            content: Some(request::Content::Text(text.clone())),
        };
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                match client.call(req.clone()).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.map_err(|e| e.to_string())?;
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{label} {:.0} {:.3} {:.3} {errors}",
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("grpc_bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grpc_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
