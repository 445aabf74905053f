//! A small gRPC load generator for `scripts/bench`: `concurrency` tasks
//! spread over `connections` HTTP/2 connections call one method in a closed
//! loop for `seconds`:
//!
//! - `API`: `bentoml.grpc.v1.BentoService/Call` of that API with TEXT as text;
//! - `ndarray:API`: the same call with TEXT (comma-separated numbers) as one
//!   float32 row in an `NDArray` (a `--model` service's `predict`);
//! - `oip:MODEL`: `inference.GRPCInferenceService/ModelInfer` of that model
//!   with TEXT as one FP32 row in `raw_input_contents` (input `pixels`), as
//!   `tritonclient` sends it.
//!
//! Usage: `grpc_bench ADDR API TEXT [seconds=10] [concurrency=64] [connections=4] [label=grpc]`.
//! Prints `label req/s p50_ms p99_ms errors` on one line.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tiffin_api_server::grpc::proto::bento_service_client::BentoServiceClient;
use tiffin_api_server::grpc::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tiffin_api_server::grpc::proto::inference::{ModelInferRequest, model_infer_request};
use tiffin_api_server::grpc::proto::{NdArray, Request, nd_array, request};
use tiffin_api_server::tonic::transport::{Channel, Endpoint};

/// One call of the chosen method, ready to send again and again.
#[derive(Clone)]
enum Call {
    Bento(Request),
    Infer(ModelInferRequest),
}

impl Call {
    fn new(api: &str, text: &str) -> Result<Self, String> {
        let row = || -> Result<Vec<f32>, String> {
            text.split(',')
                .map(|v| v.trim().parse::<f32>().map_err(|e| format!("{v:?}: {e}")))
                .collect()
        };
        Ok(if let Some(api) = api.strip_prefix("ndarray:") {
            let row = row()?;
            Call::Bento(Request {
                api_name: api.to_string(),
                content: Some(request::Content::Ndarray(NdArray {
                    dtype: nd_array::DType::DtypeFloat as i32,
                    shape: vec![1, i32::try_from(row.len()).map_err(|e| e.to_string())?],
                    float_values: row,
                    ..Default::default()
                })),
            })
        } else if let Some(model) = api.strip_prefix("oip:") {
            let row = row()?;
            let raw: Vec<u8> = row.iter().flat_map(|x| x.to_le_bytes()).collect();
            Call::Infer(ModelInferRequest {
                model_name: model.to_string(),
                inputs: vec![model_infer_request::InferInputTensor {
                    name: "pixels".into(),
                    datatype: "FP32".into(),
                    shape: vec![1, i64::try_from(row.len()).map_err(|e| e.to_string())?],
                    ..Default::default()
                }],
                raw_input_contents: vec![raw],
                ..Default::default()
            })
        } else {
            Call::Bento(Request {
                api_name: api.to_string(),
                content: Some(request::Content::Text(text.to_string())),
            })
        })
    }

    /// Sends it once on `channel`; whether it was answered without error.
    async fn send(&self, channel: &Channel) -> bool {
        match self {
            Call::Bento(req) => BentoServiceClient::new(channel.clone())
                .call(req.clone())
                .await
                .is_ok(),
            Call::Infer(req) => GrpcInferenceServiceClient::new(channel.clone())
                .model_infer(req.clone())
                .await
                .is_ok(),
        }
    }
}

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

    let call = Call::new(api, text)?;
    let mut clients = Vec::new();
    for _ in 0..connections {
        let ch = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        clients.push(ch);
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let channel = clients[i % connections].clone();
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                if call.send(&channel).await {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
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
