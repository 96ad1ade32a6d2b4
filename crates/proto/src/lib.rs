//! The language StreamSpace's parts speak to each other.
//!
//! Two halves, both pure data with no I/O:
//! - [`wire`]: the versioned JSON control messages exchanged between the control plane and an
//!   agent over the agent's WebSocket (one message per text frame), with size limits and a
//!   decoder that turns every kind of bad input into a [`wire::ProtoError`] instead of a panic.
//! - [`api`]: the objects of the REST API (sessions, commands, agents, templates, keys) and the
//!   state machines that say which status changes are allowed. The server, the store, the CLI
//!   and the typed client all use these same types, so a field means one thing everywhere.
//! - [`tunnel`]: the data side of a viewer's stream (binary frames, tokens, close codes).
//! - [`transfer`]: file transfer: path rules and the tagged frames of a transfer's data
//!   connection.

pub mod api;
pub mod recording;
pub mod transfer;
pub mod tunnel;
pub mod wire;

pub use api::{Action, CommandStatus, SessionState};
