//! A [`Runner`]: how to load a [`Runnable`] in a runner worker, and how an
//! API handler calls it through the transport its API server installed.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::BoxFuture;
use crate::codec;
use crate::error::{CallError, RunnerError};
use crate::runnable::Runnable;
/// How an API-server process reaches a runner's workers; installed by the API server.
pub trait RunnerTransport: Send + Sync {
    /// Sends one call with a JSON payload and waits for the JSON result.
    fn call(&self, method: &str, payload: Vec<u8>) -> BoxFuture<Result<Vec<u8>, CallError>>;
}

type LoadFn = dyn Fn() -> Result<Runnable, String> + Send + Sync;

struct RunnerInner {
    name: String,
    load: Box<LoadFn>,
    transport: OnceLock<Arc<dyn RunnerTransport>>,
}

/// A named runner: how to load its [`Runnable`] (in a worker) and how to call
/// it (from an API handler). Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<RunnerInner>,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("name", &self.inner.name)
            .finish()
    }
}

impl Runner {
    /// A runner named `name` whose workers build their model with `load`.
    pub fn new<F>(name: &str, load: F) -> Self
    where
        F: Fn() -> Runnable + Send + Sync + 'static,
    {
        Self::try_new(name, move || Ok(load()))
    }

    /// Like [`Runner::new`] for a loader that can fail (the worker exits with the message).
    pub fn try_new<F>(name: &str, load: F) -> Self
    where
        F: Fn() -> Result<Runnable, String> + Send + Sync + 'static,
    {
        Self {
            inner: Arc::new(RunnerInner {
                name: name.to_string(),
                load: Box::new(load),
                transport: OnceLock::new(),
            }),
        }
    }

    /// The runner's name (`runner_name` label).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Builds the runnable; called once in each runner worker.
    pub fn load(&self) -> Result<Runnable, String> {
        (self.inner.load)()
    }

    /// Installs the transport used by [`Runner::call`]; the API server does this once.
    pub fn connect(&self, transport: Arc<dyn RunnerTransport>) -> bool {
        self.inner.transport.set(transport).is_ok()
    }

    /// Calls `method` on a worker of this runner and decodes its result.
    pub async fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        method: &str,
        input: I,
    ) -> Result<O, RunnerError> {
        let transport = self
            .inner
            .transport
            .get()
            .ok_or_else(|| RunnerError::NotConnected(self.inner.name.clone()))?
            .clone();
        let payload = codec::encode(&input).map_err(|e| RunnerError::Codec(e.to_string()))?;
        let out = transport.call(method, payload).await?;
        codec::decode_owned(out).map_err(|e| RunnerError::Codec(e.to_string()))
    }
}
