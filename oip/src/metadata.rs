//! What the protocol's `GET` routes answer: the server's metadata, a
//! model's metadata and readiness, and the repository index, each rendered
//! from a service's [`ModelCard`]s.

use std::sync::Arc;

use serde_json::{Value, json};
use tiffin_service::{ModelCard, TensorCard};

use crate::Datatype;

/// The protocol extensions tiffin serves, as `GET /v2` lists them.
pub const EXTENSIONS: [&str; 2] = ["binary_tensor_data", "model_repository"];

/// The server's name in its metadata.
pub const SERVER_NAME: &str = "tiffin";

/// `GET /v2`: the server's name, version and extensions.
pub fn server(version: &str) -> Value {
    json!({ "name": SERVER_NAME, "version": version, "extensions": EXTENSIONS })
}

/// A tensor's datatype as the protocol spells it (`FP32`), or its numpy
/// name as it is when the protocol has none.
pub fn datatype(t: &TensorCard) -> &str {
    match Datatype::from_numpy(&t.dtype) {
        Some(d) => d.as_str(),
        None => &t.dtype,
    }
}

/// A tensor's shape as the protocol writes it: `-1` for a free dimension.
pub fn shape(t: &TensorCard) -> Vec<i64> {
    t.shape
        .iter()
        .map(|d| d.and_then(|n| i64::try_from(n).ok()).unwrap_or(-1))
        .collect()
}

fn tensor(t: &TensorCard) -> Value {
    json!({ "name": t.name, "datatype": datatype(t), "shape": shape(t) })
}

/// `GET /v2/models/{name}[/versions/{version}]`.
pub fn model(card: &ModelCard) -> Value {
    json!({
        "name": card.name,
        "versions": [card.version],
        "platform": card.platform,
        "inputs": card.inputs.iter().map(tensor).collect::<Vec<_>>(),
        "outputs": card.outputs.iter().map(tensor).collect::<Vec<_>>(),
    })
}

/// `GET /v2/models/{name}/ready` (and `/v2/health/ready`).
pub fn ready(card: &ModelCard, ready: bool) -> Value {
    json!({ "name": card.name, "ready": ready })
}

/// One row of `POST /v2/repository/index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The model's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `READY` when served and ready, `UNAVAILABLE` otherwise.
    pub state: &'static str,
    /// Why it is not ready, if it is not.
    pub reason: String,
}

/// `POST /v2/repository/index`: the models, as the repository extension lists them.
pub fn index(entries: &[IndexEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({ "name": e.name, "version": e.version, "state": e.state, "reason": e.reason })
            })
            .collect(),
    )
}

type ListFn = dyn Fn() -> Result<Vec<(String, String)>, String> + Send + Sync;

/// Lists every model a repository holds, as (name, version), for the
/// repository index; the binary passes the model store's (`src/models.rs`).
#[derive(Clone)]
pub struct ModelIndex(Arc<ListFn>);

impl ModelIndex {
    /// An index that lists with `list` (file I/O: call it off the async threads).
    pub fn new(
        list: impl Fn() -> Result<Vec<(String, String)>, String> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(list))
    }

    /// Every (name, version) the repository holds, or why it cannot be read.
    pub fn list(&self) -> Result<Vec<(String, String)>, String> {
        (self.0)()
    }
}

impl std::fmt::Debug for ModelIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModelIndex")
    }
}

/// The index rows: the `served` models first (`READY` when `ready`), then
/// every other model `listed` in the repository, `UNAVAILABLE`.
pub fn index_entries(
    served: &[ModelCard],
    ready: bool,
    listed: &[(String, String)],
) -> Vec<IndexEntry> {
    let mut rows: Vec<IndexEntry> = served
        .iter()
        .map(|c| IndexEntry {
            name: c.name.clone(),
            version: c.version.clone(),
            state: if ready { "READY" } else { "UNAVAILABLE" },
            reason: if ready {
                String::new()
            } else {
                "its runner has no ready worker".into()
            },
        })
        .collect();
    for (name, version) in listed {
        if !served
            .iter()
            .any(|c| c.name == *name && c.version == *version)
        {
            rows.push(IndexEntry {
                name: name.clone(),
                version: version.clone(),
                state: "UNAVAILABLE",
                reason: "in the model store, not served by this server".into(),
            });
        }
    }
    rows
}
