//! Frames sent over the WebSocket at `/ws/chat`: text frames holding one
//! JSON object each, told apart by their `"type"` field.
//!
//! [`ClientFrame`] goes from client to server, [`ServerFrame`] from server to
//! client. Both derive `Serialize` and `Deserialize`, so the server and the
//! terminal client share one definition. [`AuthFrame`] renews the access
//! token a connection runs on; [`Inbound`] reads it and every
//! [`ClientFrame`]. [`ErrorCode`] names every reason the server gives in an
//! `error` frame.

mod client;
mod error_code;
mod server;

pub use client::{AuthFrame, ClientFrame, FrameError, Inbound};
pub use error_code::ErrorCode;
pub use server::{LeftReason, ServerFrame};
