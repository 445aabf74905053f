//! The Open Inference Protocol's `GET` routes and repository index on this
//! server (its inference routes are APIs of the service; crate `oip/`).
//!
//! Each answer is a status and a JSON body, rendered from the service's
//! model cards and this server's readiness, so the HTTP front door and the
//! gRPC `GRPCInferenceService` give the same facts. Health follows the
//! protocol: 200 when true, a 4xx (400, as Triton answers) when false.

use std::time::Duration;

use serde_json::{Value, json};
use tiffin_oip::metadata;

use crate::route::OipRoute;
use crate::state::ServerState;

/// How long the repository index may take to list the model store.
const INDEX_TIMEOUT: Duration = Duration::from_secs(5);

/// This server's version, as `GET /v2` reports it.
pub(crate) const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The status and body of `route` (`path` is named in a 404).
pub(crate) async fn answer(state: &ServerState, route: OipRoute<'_>, path: &str) -> (u16, Value) {
    let ready = state.ready();
    match route {
        OipRoute::Live => (200, json!({ "live": true })),
        OipRoute::Ready if ready => (200, json!({ "ready": true })),
        OipRoute::Ready => (
            400,
            json!({ "error": "runners are not ready", "ready": false }),
        ),
        OipRoute::Server => (200, metadata::server(SERVER_VERSION)),
        OipRoute::Model(card) => (200, metadata::model(card)),
        OipRoute::ModelReady(card) if ready => (200, metadata::ready(card, true)),
        OipRoute::ModelReady(card) => (
            400,
            json!({ "error": format!("model '{}' is not ready", card.name), "ready": false }),
        ),
        OipRoute::Index => index(state, ready).await,
        OipRoute::NoModel => (404, json!({ "error": no_model(state, path) })),
    }
}

/// Why `path` names no model here, listing the ones served.
pub(crate) fn no_model(state: &ServerState, path: &str) -> String {
    let served: Vec<String> = state
        .routes
        .models()
        .iter()
        .map(|c| format!("{} (version {})", c.name, c.version))
        .collect();
    if served.is_empty() {
        format!(
            "no model for {path}: this service serves no model over the Open Inference Protocol"
        )
    } else {
        format!("no model for {path}; served: {}", served.join(", "))
    }
}

async fn index(state: &ServerState, ready: bool) -> (u16, Value) {
    let listed = match state.model_index.clone() {
        None => Ok(Vec::new()),
        Some(index) => {
            let listing = tokio::task::spawn_blocking(move || index.list());
            match tokio::time::timeout(INDEX_TIMEOUT, listing).await {
                Ok(Ok(listed)) => listed,
                Ok(Err(e)) => Err(format!("the listing stopped: {e}")),
                Err(_) => Err(format!("listing took over {INDEX_TIMEOUT:?}")),
            }
        }
    };
    match listed {
        Ok(listed) => {
            let rows = metadata::index_entries(state.routes.models(), ready, &listed);
            (200, metadata::index(&rows))
        }
        Err(e) => (
            500,
            json!({ "error": format!("cannot read the model repository: {e}") }),
        ),
    }
}
