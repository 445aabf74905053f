//! Test harness shared by every integration test: each test crate declares
//! `mod common;` and takes what it needs with `use common::*;`. The files
//! below split it by what they own; this one only gathers them.

// Every test crate compiles the whole harness but uses only part of it.
#![allow(dead_code, unused_imports)]

mod browser;
mod exposition;
mod grpc;
mod host;
mod http;
mod load;
mod observe;
mod process;
pub mod prometheus;
mod python;
mod server;
mod stream;
mod wait;

pub use browser::*;
pub use exposition::*;
pub use grpc::*;
pub use host::*;
pub use http::*;
pub use load::*;
pub use observe::*;
pub use process::*;
pub use python::*;
pub use server::*;
pub use stream::*;
pub use wait::*;
