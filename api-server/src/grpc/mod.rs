//! The gRPC front door: BentoML's `bentoml.grpc.v1.BentoService` (`Call`,
//! `ServiceMetadata`, and tiffin's server-streaming `CallStream` for
//! streaming APIs, `stream.rs`), the Open Inference Protocol's
//! `inference.GRPCInferenceService` (`oip.rs`), the standard
//! `grpc.health.v1.Health` service, and server reflection when
//! `api_server.grpc.reflection.enabled`.
//!
//! `Call` maps the request's content onto the API's body exactly as the HTTP
//! front door would receive it (`content.rs`: text, JSON, arrays, files and
//! forms), runs the same handler, and maps the result back to the field of
//! the API's output descriptor. Errors become gRPC status codes
//! (`status.rs`, [`code_for_http_status`]); each call is recorded in the
//! API-server metric families with `endpoint="/<api_name>"` and the status
//! mapped back to HTTP the way BentoML's gRPC interceptor does
//! ([`http_status_for_code`]). Every call, to any of the services, gets a
//! request id, a span and an access-log line as an HTTP request does
//! (`observe.rs`), and, with `api_server.auth`, is checked for a bearer
//! token (`auth.rs`).

mod auth;
mod content;
mod incoming;
mod observe;
mod oip;
pub mod proto;
mod status;
mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Server;
use tonic::{Code, Request, Response, Status};
use tonic_health::ServingStatus;

use crate::accept::{LoadBoard, inherit_listener};
use crate::connections::{AcceptBackoff, settle};
use crate::route::Route;
use crate::state::{Flow, ServerState};
use crate::{ApiServerArgs, ApiServerError};
use tiffin_service::Api;

pub use content::{json_to_value, value_to_json};
pub use status::{code_for_http_status, http_status_for_code};

use proto::bento_service_server::{BentoService, BentoServiceServer};
use proto::service_metadata_response::InferenceApi;
use proto::{ServiceMetadataRequest, ServiceMetadataResponse};

/// Fully qualified name of the BentoML service, as health checks name it.
pub const SERVICE_NAME: &str = "bentoml.grpc.v1.BentoService";

/// How often readiness (every runner has a live worker) is re-checked for health.
const HEALTH_POLL: Duration = Duration::from_millis(50);

/// The `BentoService` implementation.
struct Bento {
    state: Arc<ServerState>,
    metadata: ServiceMetadataResponse,
}

impl Bento {
    /// The API `route` names, or `NOT_FOUND` listing the service's APIs.
    fn api<'r>(&self, route: Route<'r>, name: &str) -> Result<&'r Api, Status> {
        match route {
            Route::Api(api) => Ok(api),
            _ => Err(Status::not_found(format!(
                "no API named '{name}' in service '{}'; available: {}",
                self.metadata.name,
                self.state.routes.api_names().join(", ")
            ))),
        }
    }

    async fn dispatch(
        &self,
        route: Route<'_>,
        req: proto::Request,
    ) -> Result<proto::Response, Status> {
        let api = self.api(route, &req.api_name)?;
        if api.stream_format().is_some() {
            return Err(Status::unimplemented(format!(
                "API '{}' answers a stream: call {SERVICE_NAME}/CallStream",
                api.name
            )));
        }
        let (body, content_type) = content::request_body(api, req.content)?;
        let out = self
            .state
            .traffic
            .within(api.answer(body, content_type.as_deref()))
            .await
            .map_err(status::status_from_api_error)?;
        Ok(proto::Response {
            content: Some(content::response_content(api, out.body)?),
        })
    }

    /// `CallStream`'s answer (`stream.rs`): a streaming API's items, or the
    /// one message of an API that answers one body.
    async fn dispatch_stream(
        &self,
        route: Route<'_>,
        req: proto::Request,
    ) -> Result<stream::Messages, Status> {
        let api = self.api(route, &req.api_name)?;
        let Some(format) = api.stream_format() else {
            return Ok(stream::one(self.dispatch(route, req).await?));
        };
        let (body, content_type) = content::request_body(api, req.content)?;
        stream::answer(&self.state, api, format, body, content_type.as_deref()).await
    }

    /// Runs `dispatch` on a call's request as `Call` and `CallStream` both
    /// do: bearer token first, then metered as HTTP's `POST /<api_name>`
    /// would be.
    async fn serve<'a, T, F>(
        &'a self,
        request: Request<proto::Request>,
        dispatch: impl FnOnce(Route<'a>, proto::Request) -> F,
    ) -> Result<Response<T>, Status>
    where
        F: Future<Output = Result<T, Status>>,
    {
        let (_, extensions, req) = request.into_parts();
        let path = format!("/{}", req.api_name);
        let route = self.state.routes.api(&req.api_name);
        let status = |result: &Result<T, Status>| {
            http_status_for_code(result.as_ref().map_or_else(Status::code, |_| Code::Ok))
        };
        let result = async {
            auth::permit(&self.state, &extensions, route, &path)?;
            dispatch(route, req).await
        };
        self.state
            .metered(route, &path, result, status)
            .await
            .map(Response::new)
    }
}

#[tonic::async_trait]
impl BentoService for Bento {
    async fn call(
        &self,
        request: Request<proto::Request>,
    ) -> Result<Response<proto::Response>, Status> {
        self.serve(request, |route, req| self.dispatch(route, req))
            .await
    }

    type CallStreamStream = stream::Messages;

    async fn call_stream(
        &self,
        request: Request<proto::Request>,
    ) -> Result<Response<stream::Messages>, Status> {
        self.serve(request, |route, req| self.dispatch_stream(route, req))
            .await
    }

    async fn service_metadata(
        &self,
        _request: Request<ServiceMetadataRequest>,
    ) -> Result<Response<ServiceMetadataResponse>, Status> {
        Ok(Response::new(self.metadata.clone()))
    }
}

fn metadata(args: &ApiServerArgs) -> ServiceMetadataResponse {
    ServiceMetadataResponse {
        name: args.service.name.clone(),
        apis: args
            .service
            .apis()
            .iter()
            .map(|a| InferenceApi {
                name: a.name.clone(),
                input: Some(content::describe(&a.input_spec, a.input)),
                output: Some(content::describe(&a.output_spec, a.output)),
                docs: None,
            })
            .collect(),
        docs: format!(
            "{} (version {}), served by tiffin",
            args.service.name,
            args.service.version_label()
        ),
    }
}

/// Keeps the health statuses (overall and [`SERVICE_NAME`]) in step with
/// readiness until `stop` fires, then reports `NOT_SERVING`.
async fn track_health(
    state: Arc<ServerState>,
    reporter: tonic_health::server::HealthReporter,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut reported = None;
    loop {
        let status = if *stop.borrow() {
            ServingStatus::NotServing
        } else if state.ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if reported != Some(status) {
            reporter.set_service_status("", status).await;
            reporter.set_service_status(SERVICE_NAME, status).await;
            reported = Some(status);
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_POLL) => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs a gRPC API server until the supervisor asks it to drain or goes away.
pub async fn run(args: ApiServerArgs) -> Result<(), ApiServerError> {
    let listener = inherit_listener(args.listen_fd)?;
    // Before connecting to the supervisor, which forwards SIGHUP to
    // connected API servers only (tls.rs).
    let tls = crate::tls::DoorTls::start(&args.config, tiffin_tls::Alpn::Grpc)?;
    let (state, mut events) = ServerState::start(&args).await?;
    let state = Arc::new(state);
    let grpc_cfg = &args.config.api_server.grpc;
    let max_message =
        usize::try_from(args.config.api_server.http.max_request_size).unwrap_or(usize::MAX);

    let bento = BentoServiceServer::new(Bento {
        state: state.clone(),
        metadata: metadata(&args),
    })
    .max_decoding_message_size(max_message)
    .max_encoding_message_size(max_message);

    // The Open Inference Protocol's service, beside BentoML's (oip.rs).
    let inference =
        proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer::new(
            oip::Inference {
                state: state.clone(),
            },
        )
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);

    let (reporter, health) = tonic_health::server::health_reporter();
    let (stop_health, health_stop) = tokio::sync::watch::channel(false);
    // Not serving until the first readiness check says otherwise.
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
        .await;
    let health_task = tokio::spawn(track_health(state.clone(), reporter, health_stop));

    let (reflection_v1, reflection_v1alpha) = if grpc_cfg.reflection.enabled {
        let builder = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(proto::inference::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        (
            Some(builder().build_v1()?),
            Some(builder().build_v1alpha()?),
        )
    } else {
        (None, None)
    };

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Connections are spread over the API servers as HTTP's are
    // (incoming.rs, accept.rs); without the board, accepted as they come.
    let board = LoadBoard::open(&args.runtime_dir, args.index, tiffin_config::MAX_WORKERS)
        .map_err(|e| tracing::warn!(error = %e, "accepting without balancing"))
        .ok();
    let backoff = AcceptBackoff::new(state.metrics.as_ref().map(|_| tiffin_metrics::global()))?;
    let (incoming, door) = incoming::incoming(listener, board, backoff, tls);
    let serve = Server::builder()
        .layer(observe::ObserveLayer {
            state: state.clone(),
        })
        // Inside the observing layer: a refused call is observed too.
        .layer(tower_layer::layer_fn({
            let state = state.clone();
            move |inner| auth::Authenticate {
                inner,
                state: state.clone(),
            }
        }))
        .add_service(bento)
        .add_service(inference)
        .add_service(health)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        });
    tokio::pin!(serve);

    state.announce_ready()?;
    // `serve` accepts only once polled, below.
    let flow = match state.join_runners(&mut events).await {
        Flow::Continue => loop {
            tokio::select! {
                result = &mut serve => {
                    result?;
                    tracing::warn!("gRPC server stopped by itself; exiting");
                    return Ok(());
                }
                event = events.recv() => match state.on_event(event) {
                    Flow::Continue => {}
                    other => break other,
                },
            }
        },
        other => other,
    };
    if let Flow::Gone = flow {
        return Ok(());
    }
    tracing::info!("draining: no longer accepting, finishing in-flight requests");
    door.close();
    let _ = stop_health.send(true);
    let _ = health_task.await;
    // A connection accepted just now has a call on its way that tonic's
    // graceful shutdown would cancel (incoming.rs): keep serving until each
    // has begun its first call, for at most FRESH_GRACE.
    tokio::select! {
        result = &mut serve => {
            result?;
            return state.drained().await;
        }
        () = settle(door.fresh()) => {}
    }
    let _ = stop_tx.send(());
    serve.await?;
    state.drained().await
}
