//! The service model users write: a [`Service`] names its [`Runner`]s and its
//! APIs; a [`Runnable`] holds the model and its named methods.
//!
//! The same `Service` value is built in every process (the binary re-executes
//! itself), but each process uses a different part of it: runner workers call
//! [`Runner::load`] to build the `Runnable`, API servers run the API handlers,
//! and inside an API handler [`Runner::call`] travels over IPC to a worker.
//! Inputs and outputs of runner methods are serde values, carried as JSON so
//! any `Serialize` type (including `serde_json::Value`) works.

//!
//! Modules: [`error`] (call, runner and API errors), [`runnable`],
//! [`runner`], [`io`] (body descriptors: text, JSON, bytes), [`ndarray`]
//! (BentoML's `NumpyNdarray`), [`image`] (PNG/JPEG uploads), [`file`]
//! (uploads with their names), [`multipart`] (form bodies), [`service`] and
//! [`stream`] (how a streaming API's items are written).

pub mod codec;
pub mod error;
pub mod file;
pub mod foreign;
pub mod image;
pub mod io;
pub mod model_card;
pub mod multipart;
pub mod ndarray;
pub mod runnable;
pub mod runner;
pub mod service;
pub mod stream;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;

pub use error::{ApiError, CallError, RunnerError};
pub use file::{File, FileInput};
pub use image::Image;
pub use io::{Binary, IoDescriptor, IoKind, IoSpec, Json, JsonOf, Text};
pub use model_card::{ModelCard, TensorCard};
pub use ndarray::{DType, NdArray, NdData, NdSpec, NumpyNdarray};
pub use runnable::{Cancellation, Cancelled, EncodedItems, MethodKind, Runnable};
#[doc(hidden)]
pub use runner::RunnerTransport;
pub use runner::{EncodedStream, Method, Runner};
/// The serde this crate's traits come from (for [`JsonOf`] types and runner payloads).
pub use serde;
pub use service::{Answer, AnswerItems, Api, RawIo, Service};
pub use stream::StreamFormat;

/// A boxed, sendable future, as stored in handler tables.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
