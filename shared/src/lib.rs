//! Shared building blocks of tiffin: IPC frames, the metrics layer and the service model.
//!
//! Nothing here knows about processes; the supervisor, API server and runner
//! worker crates build on these pieces.

pub mod metrics;
