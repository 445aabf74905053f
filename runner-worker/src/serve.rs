//! The worker's main loop: bind the data socket, report ready, answer calls.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Framed;

use tiffin_shared::call::CallError;
use tiffin_shared::control::ControlClient;
use tiffin_shared::frame::FrameCodec;
use tiffin_shared::metrics::{self, RunnerMetrics};
use tiffin_shared::proto::{
    DataRequest, DataResponse, FromSupervisor, PROTOCOL_VERSION, Role, ToSupervisor,
};
use tiffin_shared::service::{MethodKind, Runnable};

use crate::batch::{BatchLimits, Dispatcher, Reply};
use crate::{WorkerArgs, WorkerError};

/// Shared state of one worker process.
struct Worker {
    runnable: Runnable,
    dispatchers: HashMap<String, Dispatcher>,
    metrics: Option<RunnerMetrics>,
    requests: AtomicU64,
    in_flight: AtomicUsize,
    draining: AtomicBool,
}

/// Runs a runner worker until the supervisor asks it to drain or goes away.
pub async fn run(args: WorkerArgs) -> Result<(), WorkerError> {
    let runner = args
        .service
        .find_runner(&args.runner)
        .ok_or_else(|| WorkerError::UnknownRunner(args.runner.clone()))?
        .clone();
    let started = Instant::now();
    let runnable = runner.load().map_err(|message| WorkerError::Load {
        runner: args.runner.clone(),
        message,
    })?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "runnable loaded"
    );

    let cfg = &args.config.runners;
    let batching = cfg.batching_for(&args.runner);
    let metrics = if cfg.metrics.enabled {
        let buckets = cfg
            .metrics
            .duration
            .buckets("runners.metrics")
            .map_err(|e| WorkerError::Load {
                runner: args.runner.clone(),
                message: e.to_string(),
            })?;
        let batch_buckets = tiffin_config::batch_size_buckets(batching.max_batch_size);
        Some(RunnerMetrics::new(
            metrics::global(),
            &cfg.metrics.namespace,
            &buckets,
            &batch_buckets,
            &args.service.name,
            args.service.version_label(),
            &args.runner,
            args.index,
        )?)
    } else {
        None
    };

    let mut dispatchers = HashMap::new();
    for (name, method) in runnable.methods() {
        if let (MethodKind::Batch(f), true) = (&method.kind, batching.enabled) {
            // Queue bound: see `BatchLimits::new`.
            let limits = BatchLimits::new(
                batching.max_batch_size,
                Duration::from_millis(batching.max_latency_ms),
            );
            let observer_metrics = metrics.clone();
            let method_name = name.to_string();
            let observe = Arc::new(move |n: usize| {
                if let Some(m) = &observer_metrics {
                    m.observe_batch(&method_name, n);
                }
            });
            dispatchers.insert(
                name.to_string(),
                Dispatcher::spawn(f.clone(), limits, observe),
            );
        }
    }

    let worker = Arc::new(Worker {
        runnable,
        dispatchers,
        metrics,
        requests: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
        draining: AtomicBool::new(false),
    });

    let socket = args
        .runtime_dir
        .join(format!("runner-{}-{}.sock", args.runner, args.index));
    // A previous worker of this slot may have died and left its socket behind.
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(|source| WorkerError::Bind {
        path: socket.display().to_string(),
        source,
    })?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(
        |source| WorkerError::Bind {
            path: socket.display().to_string(),
            source,
        },
    )?;

    let snap_worker = worker.clone();
    let snapshot = Arc::new(move || {
        (
            metrics::global().snapshot(),
            snap_worker.requests.load(Ordering::Relaxed),
        )
    });
    let role = Role::Runner {
        name: args.runner.clone(),
        index: args.index,
    };
    let control_path = args.runtime_dir.join("control.sock");
    let (control, mut events) = ControlClient::connect(&control_path, role, snapshot).await?;
    control.send(ToSupervisor::Ready {
        socket: Some(socket.display().to_string()),
    })?;
    tracing::info!(socket = %socket.display(), "ready");

    let (drain_tx, drain_rx) = watch::channel(false);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, worker.clone(), drain_rx.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            event = events.recv() => match event {
                Some(FromSupervisor::Drain) => break,
                Some(_) => {}
                None => {
                    tracing::info!("supervisor went away; exiting");
                    let _ = std::fs::remove_file(&socket);
                    return Ok(());
                }
            },
        }
    }

    tracing::info!("draining");
    worker.draining.store(true, Ordering::SeqCst);
    let _ = drain_tx.send(true);
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    while worker.in_flight.load(Ordering::SeqCst) > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    control.send(ToSupervisor::Drained {
        snapshot: metrics::global().snapshot(),
    })?;
    // Give the writer task a moment to flush the final snapshot.
    tokio::time::sleep(Duration::from_millis(50)).await;
    tracing::info!("drained; exiting");
    Ok(())
}

async fn serve_connection(
    stream: UnixStream,
    worker: Arc<Worker>,
    mut drain: watch::Receiver<bool>,
) {
    let mut framed = Framed::new(stream, FrameCodec::<DataRequest, DataResponse>::default());
    match framed.next().await {
        Some(Ok(DataRequest::Hello { version })) if version == PROTOCOL_VERSION => {}
        Some(Ok(DataRequest::Hello { version })) => {
            tracing::error!(version, "peer speaks another protocol version; closing");
            return;
        }
        Some(Ok(_)) => {
            tracing::error!("data connection did not start with hello; closing");
            return;
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "malformed frame on data connection; closing");
            return;
        }
        None => return,
    }
    let (mut sink, mut stream) = framed.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<DataResponse>();
    if sink
        .send(DataResponse::Hello {
            version: PROTOCOL_VERSION,
        })
        .await
        .is_err()
    {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.feed(msg).await.is_err() {
                return;
            }
            // Batch replies that are already waiting into one write.
            while let Ok(more) = rx.try_recv() {
                if sink.feed(more).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    if *drain.borrow() {
        let _ = tx.send(DataResponse::Draining);
    }
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = drain.changed() => {
                let _ = tx.send(DataResponse::Draining);
                continue;
            }
        };
        let (id, method, payload) = match frame {
            Some(Ok(DataRequest::Call {
                id,
                method,
                payload,
            })) => (id, method, payload),
            Some(Ok(DataRequest::Hello { .. })) => continue,
            Some(Err(e)) => {
                tracing::error!(error = %e, "malformed frame on data connection; closing");
                break;
            }
            None => break,
        };
        if worker.draining.load(Ordering::SeqCst) {
            let err = CallError::Draining;
            let _ = tx.send(DataResponse::Reply {
                id,
                result: Err(err),
            });
            continue;
        }
        worker.in_flight.fetch_add(1, Ordering::SeqCst);
        // RunnerMetrics labels `method` as the endpoint `/<method>` itself.
        let started = Instant::now();
        let guard = worker.metrics.as_ref().map(|m| m.start(&method));
        if let Some(dispatcher) = worker.dispatchers.get(&method) {
            let worker = worker.clone();
            let tx = tx.clone();
            dispatcher.submit(
                payload,
                Reply::new(move |result| {
                    finish(&worker, &method, started, &result);
                    drop(guard);
                    let _ = tx.send(DataResponse::Reply { id, result });
                }),
            );
        } else {
            let result = worker.runnable.call(&method, &payload);
            finish(&worker, &method, started, &result);
            drop(guard);
            let _ = tx.send(DataResponse::Reply { id, result });
        }
    }
    drop(tx);
    let _ = writer.await;
}

fn finish(worker: &Worker, endpoint: &str, started: Instant, result: &Result<Vec<u8>, CallError>) {
    let status = match result {
        Ok(_) => 200,
        Err(CallError::BadInput(_)) => 400,
        Err(CallError::UnknownMethod(_)) => 404,
        Err(CallError::Overloaded(_) | CallError::Unavailable(_) | CallError::Draining) => 503,
        Err(CallError::Failed(_)) => 500,
    };
    if let Some(m) = &worker.metrics {
        m.finish(endpoint, status, started.elapsed().as_secs_f64());
    }
    worker.requests.fetch_add(1, Ordering::Relaxed);
    worker.in_flight.fetch_sub(1, Ordering::SeqCst);
}
