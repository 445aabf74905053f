//! Bearer tokens on the gRPC front door (`api_server.auth`; the rules are
//! `auth.rs`'s): a tower layer inside the observing one, so a refused call
//! still gets its request id and access-log line.
//!
//! The layer sees a call's path and metadata but not its message, so it
//! decides what the path alone can: health open, reflection per
//! `public_docs`, every other method a valid token (`UNAUTHENTICATED`
//! otherwise, before the message is decoded). The token's [`Grant`] goes on
//! in the request's extensions, and [`permit`] checks it against the API
//! that `Call`'s `api_name` (or `ModelInfer`'s model) names
//! (`PERMISSION_DENIED`).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::Status;

use crate::auth::Grant;
use crate::route::Route;
use crate::state::ServerState;

/// The service the layer makes (see the module docs): `inner` behind the
/// token check. `grpc/mod.rs` adds it with `tower_layer::layer_fn`.
#[derive(Clone)]
pub(super) struct Authenticate<S> {
    /// The services behind the check.
    pub(super) inner: S,
    /// The API server's state: routes and the token table.
    pub(super) state: Arc<ServerState>,
}

impl<S, ReqBody, ResBody> tower_service::Service<hyper::Request<ReqBody>> for Authenticate<S>
where
    S: tower_service::Service<hyper::Request<ReqBody>, Response = hyper::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: hyper::Request<ReqBody>) -> Self::Future {
        let Some(auth) = &self.state.auth else {
            return Either::Left(self.inner.call(req));
        };
        let path = req.uri().path();
        let route = self.state.routes.resolve(path);
        // gRPC has no query string: a `?` in a method path is no parameter.
        match auth.check(route, path, req.headers(), None) {
            Ok(grant) => {
                if let Some(grant) = grant {
                    req.extensions_mut().insert(grant);
                }
                Either::Left(self.inner.call(req))
            }
            Err(refusal) => Either::Right(ready(Ok(refusal.grpc_status().into_http()))),
        }
    }
}

/// Whether a call whose token the layer granted (`extensions`) may call
/// the API `route` names; counted as a refusal of `path` otherwise. A
/// route that names no API is left to the service (its `NOT_FOUND`).
pub(super) fn permit(
    state: &ServerState,
    extensions: &tonic::Extensions,
    route: Route<'_>,
    path: &str,
) -> Result<(), Status> {
    let (Some(auth), Route::Api(api)) = (&state.auth, route) else {
        return Ok(());
    };
    auth.permit(extensions.get::<Grant>().copied(), &api.name)
        .map_err(|refusal| {
            auth.count(&refusal, route, path);
            refusal.grpc_status()
        })
}
