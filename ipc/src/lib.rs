//! How tiffin's processes talk over Unix sockets.
//!
//! - [`frame`]: length-prefixed frames carrying bincode messages, with a size
//!   limit checked before anything is allocated.
//! - [`connection`]: the one multiplexed request/response connection type
//!   (hello exchange, request ids, replies, events, fail-everything-on-close).
//! - [`proto`]: the messages of the data and control connections.
//! - [`stream`]: flow control of a streamed call (credits, the window).
//! - [`load`]: the runner calls in flight an API server reports, which the
//!   supervisor's autoscaler reads as a typed [`load::RunnerLoad`].
//! - [`role`]: who a process is, and every spelling of that.
//! - [`runtime`]: socket names in the runtime directory and what a child
//!   inherits from the supervisor.
//! - [`control`]: the client side of a control connection.
//! - [`clock`]: the monotonic clock that request deadlines are written in.
//!
//! Nothing here knows about process lifecycles; the supervisor, API server
//! and runner worker crates build on these pieces.

pub mod clock;
pub mod connection;
pub mod control;
pub mod frame;
pub mod load;
pub mod peer;
pub mod proto;
pub mod role;
pub mod runtime;
pub mod stream;

pub use connection::{Connection, ConnectionError, Envelope, Incoming, Opening, PendingReply};
pub use role::Role;
