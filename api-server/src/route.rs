//! What a request names on this API server, resolved once per request.
//!
//! Every stage of a request asks something of its path: is it a probe
//! (answered past the connection limit, left out of the access log), does it
//! get its own `endpoint` label or share the capped unknown ones
//! (`endpoint_label.rs`), is it worth naming a span after, and finally which
//! answer it gets. [`Routes::resolve`] answers the path once, as a
//! [`Route`], and each stage reads that instead of matching the path again,
//! so the list of paths this server knows is written here only.
//!
//! One table serves both front doors. The HTTP server answers the gRPC
//! method paths with 404 like any unknown path, and the gRPC server's
//! observe layer (`grpc/observe.rs`) sees HTTP's paths only from a confused
//! client; but the access log leaves out the probes of either kind
//! whichever door they knock on, and a shared table keeps that true.

use std::collections::HashMap;

use tiffin_oip::path::{ModelRef, OipPath};
use tiffin_service::{Api, ModelCard};

use crate::swagger;

/// A method of the gRPC services this server may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrpcMethod {
    /// `bentoml.grpc.v1.BentoService/Call`.
    Call,
    /// `bentoml.grpc.v1.BentoService/ServiceMetadata`.
    ServiceMetadata,
    /// `grpc.health.v1.Health/Check`: a probe.
    HealthCheck,
    /// `grpc.health.v1.Health/Watch`: a probe.
    HealthWatch,
    /// Server reflection, `v1` or `v1alpha` (served only when enabled).
    Reflection,
    /// `inference.GRPCInferenceService`'s `ServerLive`, `ServerReady` or
    /// `ModelReady`: a probe.
    InferenceHealth,
    /// `inference.GRPCInferenceService`'s metadata calls and `ModelInfer`.
    Inference,
}

/// What a path names on this server.
#[derive(Clone, Copy)]
pub(crate) enum Route<'a> {
    /// One of the service's APIs (`POST /<name>` over HTTP; `Call` with
    /// its `api_name` over gRPC).
    Api(&'a Api),
    /// `/livez` or `/healthz`: the process is alive.
    Live,
    /// `/readyz`: every runner can serve.
    Ready,
    /// `/metrics`: the supervisor's aggregate of every process.
    Metrics,
    /// `/docs.json`, `/schema.json` or `/schema`: the OpenAPI document.
    Docs,
    /// `/`: the Swagger UI page.
    DocsPage,
    /// A path under the Swagger UI's prefix: its content type and bytes,
    /// or `None` when no asset has that name (404 to a `GET`).
    DocsAsset(Option<(&'static str, &'static [u8])>),
    /// A method of the gRPC services.
    Grpc(GrpcMethod),
    /// A `GET` route of the Open Inference Protocol (its inference routes
    /// are [`Route::Api`]s of the service).
    Oip(OipRoute<'a>),
    /// Anything else.
    Unknown,
}

/// What the Open Inference Protocol's `GET` routes (and its repository
/// index, a `POST`) name on this server (crate `oip/`).
#[derive(Clone, Copy)]
pub(crate) enum OipRoute<'a> {
    /// `/v2/health/live`: a probe.
    Live,
    /// `/v2/health/ready`: a probe.
    Ready,
    /// `/v2`: the server's metadata.
    Server,
    /// `/v2/models/{name}[/versions/{v}]`: a model's metadata.
    Model(&'a ModelCard),
    /// `/v2/models/{name}[/versions/{v}]/ready`.
    ModelReady(&'a ModelCard),
    /// `POST /v2/repository/index`.
    Index,
    /// A model or version this server does not serve (404 `{"error"}`).
    NoModel,
}

impl OipRoute<'_> {
    /// Whether the route is answered to `GET` (and `HEAD`) only: all but
    /// the index, and a path naming no model, which is 404 to any method.
    pub fn is_get(self) -> bool {
        !matches!(self, OipRoute::Index | OipRoute::NoModel)
    }
}

impl Route<'_> {
    /// Probes and scrapes over HTTP: answered even past the connection
    /// limit, and never refused for concurrency.
    pub fn is_infrastructure(self) -> bool {
        matches!(
            self,
            Route::Live
                | Route::Ready
                | Route::Metrics
                | Route::Oip(OipRoute::Live | OipRoute::Ready)
        )
    }

    /// Probes and scrapes of either front door, which the access log leaves
    /// out (an orchestrator polls them every few seconds; `access_log.rs`).
    pub fn is_probe(self) -> bool {
        self.is_infrastructure()
            || matches!(
                self,
                Route::Grpc(
                    GrpcMethod::HealthCheck | GrpcMethod::HealthWatch | GrpcMethod::InferenceHealth
                )
            )
    }

    /// Whether the request's path is its own `endpoint` label; any other
    /// path shares the capped unknown labels. (`/metrics` is not metered.)
    pub fn is_labelled(self) -> bool {
        matches!(
            self,
            Route::Api(_)
                | Route::Live
                | Route::Ready
                | Route::Docs
                | Route::DocsPage
                | Route::DocsAsset(Some(_))
                | Route::Oip(
                    OipRoute::Live
                        | OipRoute::Ready
                        | OipRoute::Server
                        | OipRoute::Model(_)
                        | OipRoute::ModelReady(_)
                        | OipRoute::Index
                )
        )
    }

    /// Whether an HTTP request's span is named after its path
    /// (`{method} {path}`) rather than its method alone (`trace.rs`).
    pub fn names_http_span(self) -> bool {
        matches!(self, Route::Api(_)) || self.is_infrastructure()
    }

    /// Whether a gRPC call's span is named after its method (`trace.rs`).
    pub fn names_grpc_span(self) -> bool {
        matches!(self, Route::Grpc(_))
    }
}

/// The routes of one service: its APIs by name, and the fixed paths.
pub(crate) struct Routes {
    apis: HashMap<String, Api>,
    /// The same APIs by path, without its leading `/` (an API may be
    /// declared with a route other than its name).
    paths: HashMap<String, Api>,
    /// The models the service declares, for the protocol's routes.
    models: Vec<ModelCard>,
}

impl Routes {
    /// The routes of a service with `apis` and `models`.
    pub fn new(apis: &[Api], models: &[ModelCard]) -> Self {
        Routes {
            models: models.to_vec(),
            apis: apis.iter().map(|a| (a.name.clone(), a.clone())).collect(),
            paths: apis
                .iter()
                .map(|a| (a.route().trim_start_matches('/').to_string(), a.clone()))
                .collect(),
        }
    }

    /// What `path` names. Fixed paths win over an API of the same name, and
    /// the Swagger UI's prefix over an API whose name starts with it.
    pub fn resolve(&self, path: &str) -> Route<'_> {
        match path {
            "/livez" | "/healthz" => Route::Live,
            "/readyz" => Route::Ready,
            "/metrics" => Route::Metrics,
            "/docs.json" | "/schema.json" | "/schema" => Route::Docs,
            "/" => Route::DocsPage,
            "/bentoml.grpc.v1.BentoService/Call" => Route::Grpc(GrpcMethod::Call),
            "/bentoml.grpc.v1.BentoService/ServiceMetadata" => {
                Route::Grpc(GrpcMethod::ServiceMetadata)
            }
            "/grpc.health.v1.Health/Check" => Route::Grpc(GrpcMethod::HealthCheck),
            "/grpc.health.v1.Health/Watch" => Route::Grpc(GrpcMethod::HealthWatch),
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
            | "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" => {
                Route::Grpc(GrpcMethod::Reflection)
            }
            "/inference.GRPCInferenceService/ServerLive"
            | "/inference.GRPCInferenceService/ServerReady"
            | "/inference.GRPCInferenceService/ModelReady" => {
                Route::Grpc(GrpcMethod::InferenceHealth)
            }
            "/inference.GRPCInferenceService/ServerMetadata"
            | "/inference.GRPCInferenceService/ModelMetadata"
            | "/inference.GRPCInferenceService/ModelInfer" => Route::Grpc(GrpcMethod::Inference),
            p if p.starts_with(swagger::PREFIX) => Route::DocsAsset(swagger::asset(p)),
            p => match self.paths.get(p.trim_start_matches('/')) {
                Some(api) => Route::Api(api),
                None => tiffin_oip::path::parse(p).map_or(Route::Unknown, |oip| self.oip(oip)),
            },
        }
    }

    /// What a path of the protocol names here. An inference path reaches
    /// this only when no API has it: its model is not served.
    fn oip(&self, path: OipPath<'_>) -> Route<'_> {
        let card = |m: ModelRef<'_>| self.model(m.name, m.version);
        Route::Oip(match path {
            OipPath::Live => OipRoute::Live,
            OipPath::Ready => OipRoute::Ready,
            OipPath::Server => OipRoute::Server,
            OipPath::Index => OipRoute::Index,
            OipPath::Model(m) => card(m).map_or(OipRoute::NoModel, OipRoute::Model),
            OipPath::ModelReady(m) => card(m).map_or(OipRoute::NoModel, OipRoute::ModelReady),
            OipPath::Infer(_) => OipRoute::NoModel,
        })
    }

    /// The served model `name`, at `version` when one is named.
    pub fn model(&self, name: &str, version: Option<&str>) -> Option<&ModelCard> {
        self.models
            .iter()
            .find(|c| c.name == name && version.is_none_or(|v| v == c.version))
    }

    /// The models the service declares.
    pub fn models(&self) -> &[ModelCard] {
        &self.models
    }

    /// The API called `name` (a gRPC `Call`'s `api_name`), or
    /// [`Route::Unknown`].
    pub fn api(&self, name: &str) -> Route<'_> {
        self.apis.get(name).map_or(Route::Unknown, Route::Api)
    }

    /// The names of the service's APIs, sorted.
    pub fn api_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.apis.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_paths_resolve_to_their_routes_and_the_rest_is_unknown() {
        let routes = Routes::new(&[], &[]);
        assert!(matches!(routes.resolve("/livez"), Route::Live));
        assert!(matches!(routes.resolve("/healthz"), Route::Live));
        assert!(matches!(routes.resolve("/schema"), Route::Docs));
        assert!(matches!(routes.resolve("/"), Route::DocsPage));
        assert!(matches!(
            routes.resolve("/static_content/swagger-ui.css"),
            Route::DocsAsset(Some(_))
        ));
        assert!(matches!(
            routes.resolve("/static_content/nope.js"),
            Route::DocsAsset(None)
        ));
        assert!(matches!(routes.resolve("/classify"), Route::Unknown));
        assert!(matches!(routes.api("classify"), Route::Unknown));
    }

    #[test]
    fn apis_resolve_by_name_and_fixed_paths_win_over_an_api_of_the_same_name() {
        use tiffin_service::{Service, Text};
        let echo = |text: String| async move { Ok(text) };
        let service = Service::new("s")
            .api("classify", Text, Text, echo)
            .api("livez", Text, Text, echo);
        let routes = Routes::new(service.apis(), service.models());
        let Route::Api(api) = routes.resolve("/classify") else {
            panic!("/classify is an API");
        };
        assert_eq!(api.name, "classify");
        assert!(matches!(routes.resolve("//classify"), Route::Api(_)));
        assert!(matches!(routes.api("classify"), Route::Api(_)));
        assert!(matches!(routes.resolve("/livez"), Route::Live));
        assert_eq!(routes.api_names(), ["classify", "livez"]);
    }

    #[test]
    fn probes_of_both_front_doors_are_probes_but_only_http_ones_are_infrastructure() {
        let routes = Routes::new(&[], &[]);
        let watch = routes.resolve("/grpc.health.v1.Health/Watch");
        assert!(watch.is_probe() && !watch.is_infrastructure() && watch.names_grpc_span());
        let metrics = routes.resolve("/metrics");
        assert!(metrics.is_probe() && metrics.is_infrastructure() && !metrics.is_labelled());
        let missing = routes.resolve("/static_content/nope.js");
        assert!(!missing.is_labelled() && !missing.names_http_span());
    }
}
