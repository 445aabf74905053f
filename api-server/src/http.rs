//! The HTTP front door: the accept loop, and for each request its route's
//! answer (`route.rs` resolves the path once), body limits, error bodies,
//! CORS, bearer tokens (`App::refusal`) and the connection limit; metering
//! and observation are shared with gRPC (`state.rs`, `observation.rs`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body_util::{BodyExt, Either, Full, Limited, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tiffin_service::Answer;

use tiffin_ipc::proto::{FromSupervisor, ToSupervisor};
use tiffin_metrics::Format;
use tiffin_service::{Api, ApiError, StreamFormat};

use crate::accept::{self, HEARTBEAT, LoadBoard, inherit_listener};
use crate::connections::{self, AcceptBackoff, Activity, Connections};
use crate::cors::{Cors, CorsRequest};
use crate::observation::Observation;
use crate::route::{OipRoute, Route};
use crate::state::{Flow, ServerState};
use crate::stream::Piece;
use crate::swagger;
use crate::{ApiServerArgs, ApiServerError};

/// How long a `/metrics` request waits for the supervisor's aggregate.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

struct App {
    state: ServerState,
    max_body: u64,
    docs: Bytes,
    /// How long a request body may take to arrive (`api_server.http.body_read_timeout`).
    body_timeout: Duration,
    /// `api_server.http.cors`, when enabled.
    cors: Option<Cors>,
    /// The users of the web configuration file (`--web.config.file`), who
    /// alone may scrape `/metrics` here when it names any.
    scrape_users: Option<Arc<tiffin_tls::BasicAuth>>,
}

/// A response body: whole, or a streaming answer's items as they come.
type Body = Either<Full<Bytes>, StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>>;

/// A whole body.
fn full(bytes: Bytes) -> Body {
    Either::Left(Full::new(bytes))
}

fn json_error(status: u16, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut resp = Response::new(full(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A JSON answer with `status`.
fn json_value((status, body): (u16, serde_json::Value)) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// A compiled-in file (the Swagger UI page and its assets).
fn static_bytes(content_type: &'static str, bytes: &'static [u8]) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(bytes)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

impl App {
    /// Serves one request with its request id, span and access-log line
    /// (`observation.rs`) around everything else. The path is resolved here,
    /// once; every later stage reads the [`Route`].
    async fn observe(
        &self,
        req: Request<Incoming>,
        activity: Arc<Activity>,
        over_limit: bool,
        client: SocketAddr,
    ) -> Response<Body> {
        // Cloning the URI shares its bytes; the path outlives the request.
        let uri = req.uri().clone();
        let path = uri.path();
        let route = self.state.routes.resolve(path);
        let method = req.method();
        let observed = Observation::begin(
            &self.state,
            route,
            method,
            req.headers(),
            |tracer, parent| crate::trace::start_request(tracer, method, route, path, parent),
        );
        // The request's tail (tail.rs): a streaming answer's line and span
        // end with its stream.
        let tail = crate::tail::Tail::default();
        // The handler's future is boxed, and built inside the call rather
        // than bound first (rustc keeps a bound future beside the one it is
        // moved into): hyper moves the request's future into place, and each
        // layer around the handler moves it once more on its first poll.
        // Boxed, those moves are of a pointer: an embedded `echo` request
        // moved 51 KB unboxed, 28 KB so (docs/benchmarks.md).
        let mut resp = observed
            .scope(
                &self.state,
                Box::pin(self.handle(req, route, path, activity, over_limit, tail.clone())),
            )
            .await;
        if tail.streaming() {
            let at_end = observed.finish_at_end(&self.state, Some(client), path, &mut resp, None);
            if let Err(now) = tail.defer(at_end) {
                // The stream ended already.
                now(resp.status().as_u16());
            }
        } else {
            observed.finish(&self.state, Some(client), path, &mut resp);
        }
        resp
    }

    /// Serves one request of a connection; `over_limit` connections (opened
    /// past `api_server.http.max_connections`) serve only probes and scrapes,
    /// and are closed after each answer. `tail` is the request's (tail.rs),
    /// which [`App::observe`] reads once the head is ready.
    async fn handle(
        &self,
        req: Request<Incoming>,
        route: Route<'_>,
        path: &str,
        activity: Arc<Activity>,
        over_limit: bool,
        tail: crate::tail::Tail,
    ) -> Response<Body> {
        // Owned: a streaming answer's body holds it to its last item, so
        // that the connection is not idle (and closed) while items flow.
        let in_flight = activity.request();
        // CORS (api_server.http.cors): a preflight is answered here, before routing.
        let cross_origin = match self
            .cors
            .as_ref()
            .map(|c| c.request(req.method(), req.headers()))
        {
            Some(CorsRequest::Preflight(resp)) => return resp.map(Either::Left),
            Some(CorsRequest::CrossOrigin { origin, has_cookie }) => Some((origin, has_cookie)),
            Some(CorsRequest::SameOrigin) | None => None,
        };
        let mut resp = if over_limit && !route.is_infrastructure() {
            json_error(
                503,
                "too many open connections to this API server (api_server.http.max_connections)",
            )
        } else {
            // Set here rather than around the whole request: each task-local
            // layer moves the request's future once more.
            let resp = crate::tail::within(tail.clone(), self.serve(req, route, path)).await;
            let _ = tail.defer(move |_| drop(in_flight));
            resp
        };
        if over_limit {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some((origin, has_cookie)) = cross_origin
            && let Some(cors) = &self.cors
        {
            cors.decorate(&origin, has_cookie, resp.headers_mut());
        }
        resp
    }

    /// Answers one request, metered in the default metrics unless it is a
    /// scrape (which is not a request to the service).
    async fn serve(&self, req: Request<Incoming>, route: Route<'_>, path: &str) -> Response<Body> {
        if let Route::Metrics = route {
            return self.answer(req, route, path).await;
        }
        let status = |resp: &Response<Body>| resp.status().as_u16();
        // Boxed for the reason `observe` boxes the handler: the metered
        // layers then move a pointer, not the answer's future.
        self.state
            .metered(route, path, Box::pin(self.answer(req, route, path)), status)
            .await
    }

    /// The refusal of `req`, if it may not have its route's answer:
    /// checked before any handler runs and before the body is read, with
    /// bearer tokens (`auth.rs`) when `api_server.auth` is on. `/metrics`
    /// takes any valid token here; other credentials for the scrape belong
    /// here too.
    fn refusal(
        &self,
        req: &Request<Incoming>,
        route: Route<'_>,
        path: &str,
    ) -> Option<Response<Body>> {
        let auth = self.state.auth.as_ref()?;
        let refusal = auth
            .check(route, path, req.headers(), req.uri().query())
            .err()?;
        let mut resp = json_error(refusal.status(), &refusal.message());
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(refusal.challenge()),
        );
        Some(resp)
    }

    /// The answer to a request for `route`.
    async fn answer(&self, req: Request<Incoming>, route: Route<'_>, path: &str) -> Response<Body> {
        let refused = match (&self.scrape_users, route) {
            // The web configuration file's users replace tokens for the scrape.
            (Some(users), Route::Metrics) => scrape_refusal(users, &req).await,
            _ => self.refusal(&req, route, path),
        };
        if let Some(refused) = refused {
            return refused;
        }
        let method = req.method().clone();
        let get_only = |resp: Response<Body>| {
            if method == Method::GET || method == Method::HEAD {
                resp
            } else {
                json_error(
                    405,
                    &format!("method {method} not allowed on {path}; use GET"),
                )
            }
        };
        match route {
            Route::Live => get_only(plain(StatusCode::OK, "ok")),
            Route::Ready => get_only(if self.state.ready() {
                plain(StatusCode::OK, "ok")
            } else {
                json_error(503, "runners are not ready")
            }),
            Route::Metrics => self.scrape(req.headers()).await,
            Route::Docs => get_only({
                let mut r = Response::new(full(self.docs.clone()));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }),
            Route::DocsPage => get_only(static_bytes("text/html; charset=utf-8", swagger::INDEX)),
            Route::DocsAsset(asset) => get_only(match asset {
                Some((content_type, bytes)) => static_bytes(content_type, bytes),
                None => json_error(404, &format!("no route for {path}")),
            }),
            Route::Api(_) if method != Method::POST => {
                let mut r = json_error(
                    405,
                    &format!("method {method} not allowed on {path}; use POST"),
                );
                r.headers_mut()
                    .insert("allow", HeaderValue::from_static("POST"));
                r
            }
            Route::Api(api) => match self.state.traffic.within(self.call_api(api, req)).await {
                Ok(resp) => resp,
                Err(e) => json_error(e.status, &e.message),
            },
            Route::Oip(OipRoute::Index) if method != Method::POST => json_error(
                405,
                &format!("method {method} not allowed on {path}; use POST"),
            ),
            Route::Oip(oip) if oip.is_get() => {
                get_only(json_value(crate::oip::answer(&self.state, oip, path).await))
            }
            Route::Oip(oip) => json_value(crate::oip::answer(&self.state, oip, path).await),
            // gRPC's paths are routes of a gRPC API server only.
            Route::Grpc(_) | Route::Unknown => json_error(404, &format!("no route for {path}")),
        }
    }

    async fn call_api(
        &self,
        api: &Api,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if !api.accepts_any_content_type && !api.input.accepts(content_type) {
            return Err(ApiError::unsupported_media_type(format!(
                "unsupported content type {:?} for /{}; expected {}",
                content_type.unwrap_or(""),
                api.name,
                api.input.mime()
            )));
        }
        let too_large = || {
            ApiError::payload_too_large(format!(
                "request body exceeds the limit of {} bytes (api_server.http.max_request_size)",
                self.max_body
            ))
        };
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body) {
            return Err(too_large());
        }
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        // Multipart and image inputs need the content type after the body is read.
        let content_type = content_type.map(str::to_string);
        // The Open Inference Protocol's binary data announces where its JSON
        // ends; the route reads the JSON itself, so only a header that
        // disagrees with the body needs the header's value (oip/src/request.rs).
        let header_length = req
            .headers()
            .get(tiffin_oip::response::HEADER_LENGTH)
            .map(|v| v.to_str().unwrap_or("").to_string());
        let body = Limited::new(req.into_body(), limit).collect();
        let body = match tokio::time::timeout(self.body_timeout, body).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
            Ok(Err(e)) => {
                return Err(ApiError::bad_request(format!(
                    "cannot read request body: {e}"
                )));
            }
            Err(_) => {
                return Err(ApiError::request_timeout(format!(
                    "the request body did not arrive within {:?} (api_server.http.body_read_timeout)",
                    self.body_timeout
                )));
            }
        };
        if let Some(length) = header_length
            && matches!(
                tiffin_oip::path::parse(&api.route()),
                Some(tiffin_oip::path::OipPath::Infer(_))
            )
        {
            tiffin_oip::request::check_header_length(&body, &length)?;
        }
        if let Some(format) = api.stream_format() {
            return self.stream_answer(api, format, body, content_type).await;
        }
        let answer = api.answer(body, content_type.as_deref()).await?;
        answer_response(api, answer)
    }

    /// The response of a streaming API (docs/streaming.md, `stream.rs`):
    /// it waits for the first item, so that an error before it is the
    /// request's status and `api_server.traffic.timeout` bounds the time to
    /// it; then every item is written as soon as it comes, in chunks, ending
    /// with the format's end, or its error ending if the stream failed
    /// after items (or went silent for `stream_idle_timeout`). The request
    /// is metered to its last item. Dropping the response (the client went
    /// away) drops the stream, which cancels the runner's call.
    async fn stream_answer(
        &self,
        api: &Api,
        format: StreamFormat,
        body: Bytes,
        content_type: Option<String>,
    ) -> Result<Response<Body>, ApiError> {
        let pieces =
            crate::stream::start(&self.state, api, body, content_type.as_deref(), |s| s).await?;
        let chunks = pieces.filter_map(move |piece| {
            std::future::ready(match piece {
                Piece::Item(chunk) => Some(chunk),
                Piece::End => format.end(),
                Piece::Failed(e) => Some(format.error(&e)),
            })
        });
        let frames = chunks.map(|chunk| Ok(Frame::data(chunk))).boxed();
        let mut resp = Response::new(Either::Right(StreamBody::new(frames)));
        let headers = resp.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        // Proxies must pass each item on at once (nginx buffers otherwise).
        headers.insert(
            hyper::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        Ok(resp)
    }

    async fn scrape(&self, headers: &HeaderMap) -> Response<Body> {
        if self.state.metrics.is_none() {
            return json_error(
                404,
                "metrics are disabled (api_server.metrics.enabled=false)",
            );
        }
        let accept = headers
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let format = Format::from_accept(accept);
        let answer = self.state.control.request(ToSupervisor::Scrape { format });
        match tokio::time::timeout(SCRAPE_TIMEOUT, answer).await {
            Ok(Ok(FromSupervisor::Scraped { body })) => {
                let mut resp = Response::new(full(Bytes::from(body)));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(format.content_type()),
                );
                resp
            }
            Ok(Ok(FromSupervisor::Failed { reason })) => json_error(500, &reason),
            Ok(Ok(other)) => json_error(500, &format!("unexpected supervisor answer {other:?}")),
            Ok(Err(e)) => json_error(503, &format!("cannot reach the supervisor: {e}")),
            Err(_) => json_error(503, "supervisor did not answer the scrape in time"),
        }
    }
}

/// A 401 asking for basic auth, unless `req` names one of `users`.
async fn scrape_refusal(
    users: &Arc<tiffin_tls::BasicAuth>,
    req: &Request<Incoming>,
) -> Option<Response<Body>> {
    let header = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    if users.allows_off_thread(header).await {
        return None;
    }
    let mut resp = json_error(
        401,
        "unauthorized: /metrics asks for a user of the web configuration file (--web.config.file)",
    );
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(tiffin_tls::web_config::BASIC_CHALLENGE),
    );
    Some(resp)
}

/// Runs an HTTP API server until the supervisor asks it to drain or goes away.
pub async fn run(args: ApiServerArgs) -> Result<(), ApiServerError> {
    let fd = args.listen_fd;
    let listener = inherit_listener(fd)?;
    // Before connecting to the supervisor, which forwards SIGHUP to
    // connected API servers only (tls.rs).
    let tls = crate::tls::DoorTls::start(&args.config, tiffin_tls::Alpn::Http)?;
    let (state, mut events) = ServerState::start(&args).await?;
    // Accepts are spread over the API servers (accept.rs); without the
    // board, this one accepts as it always did.
    // One slot per possible API server: `tiffin scale api-server N` may go
    // past `api_server.workers`, up to MAX_WORKERS.
    let board = LoadBoard::open(&args.runtime_dir, args.index, tiffin_config::MAX_WORKERS)
        .map_err(|e| tracing::warn!(error = %e, "accepting without balancing"))
        .ok();

    let docs = crate::openapi::document(&args.service);
    let http = &args.config.api_server.http;
    let connections = Connections::new(http.max_connections, http.keepalive_timeout.duration());
    let mut backoff = AcceptBackoff::new(state.metrics.as_ref().map(|_| tiffin_metrics::global()))?;
    let app = Arc::new(App {
        state,
        max_body: http.max_request_size,
        docs: Bytes::from(docs.to_string()),
        body_timeout: http.body_read_timeout.duration(),
        cors: Cors::from_config(&http.cors).map_err(|e| ApiServerError::Config(e.to_string()))?,
        scrape_users: match &args.config.api_server.web_config_file {
            Some(path) => {
                let file = tiffin_tls::Named::new("api_server.web_config_file", path);
                tiffin_tls::WebConfig::load(&file)
                    .map_err(|e| ApiServerError::Config(e.to_string()))?
                    .basic_auth
            }
            None => None,
        },
    });
    app.state.announce_ready()?;
    let joined = app.state.join_runners(&mut events).await;
    if let Flow::Gone = joined {
        return Ok(());
    }

    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout.duration());
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    // A drain that came while joining the runners: nothing was accepted.
    while let Flow::Continue = joined {
        tokio::select! {
            _ = heartbeat.tick() => {
                if let Some(board) = &board {
                    board.publish(connections.open());
                }
            }
            accepted = accept::accept(&listener, board.as_ref(), || connections.open()) => {
                let (stream, client) = match accepted {
                    Ok(s) => {
                        backoff.succeeded();
                        s
                    }
                    Err(e) => {
                        tokio::time::sleep(backoff.failed(&e)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let admitted = connections.admit();
                if let Some(board) = &board {
                    board.publish(connections.open());
                }
                let over_limit = admitted.over_limit;
                let activity = Activity::accepted(&connections);
                let app = app.clone();
                let watched = activity.clone();
                let service = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    let activity = activity.clone();
                    async move { Ok::<_, Infallible>(app.observe(req, activity, over_limit, client).await) }
                });
                let conn = builder.serve_connection_with_upgrades(
                    TokioIo::new(crate::tls::wrap(tls.as_ref(), stream)),
                    service,
                );
                let conn = graceful.watch(conn.into_owned());
                let idle = connections.idle;
                tokio::spawn(async move {
                    // The connection ends when it finishes, or when it has had
                    // no request in flight for the keep-alive timeout.
                    tokio::select! {
                        result = conn => if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        },
                        _ = watched.idle_for(idle) => {}
                    }
                    drop(admitted);
                });
            }
            event = events.recv() => match app.state.on_event(event) {
                Flow::Continue => {}
                Flow::Drain => break,
                Flow::Gone => return Ok(()),
            },
        }
    }
    tracing::info!("draining: no longer accepting, finishing in-flight requests");
    drop(board);
    drop(listener);
    // Connections accepted just now have requests on their way that the
    // graceful shutdown would not wait for (it closes connections without
    // a request in flight): let them begin first, for at most FRESH_GRACE.
    connections::settle(connections.fresh()).await;
    graceful.shutdown().await;
    app.state.drained().await
}

/// The response of an answer: its status, content type (the output
/// descriptor's unless the handler set one) and headers. What a handler not
/// written in Rust set is checked here: an invalid status, content type or
/// header is the handler's bug, a 500 naming it.
fn answer_response(api: &Api, answer: Answer) -> Result<Response<Body>, ApiError> {
    let bad = |what: &str, value: &str| {
        ApiError::internal(format!(
            "the handler of /{} set an invalid {what}: {value:?}",
            api.name
        ))
    };
    let mut resp = Response::new(full(answer.body));
    *resp.status_mut() = StatusCode::from_u16(answer.status)
        .map_err(|_| bad("status", &answer.status.to_string()))?;
    let content_type = match &answer.content_type {
        Some(ct) => HeaderValue::from_str(ct).map_err(|_| bad("content type", ct))?,
        None => HeaderValue::from_static(api.output.mime()),
    };
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    for (name, value) in &answer.headers {
        let n = hyper::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad("header name", name))?;
        let v = HeaderValue::from_str(value).map_err(|_| bad("header value", value))?;
        headers.append(n, v);
    }
    Ok(resp)
}
