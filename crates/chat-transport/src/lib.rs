//! The chat server's HTTP and WebSocket transport.
//!
//! It maps REST requests and WebSocket frames onto the storage and auth
//! crates, fans stored messages out to every connection that should see
//! them, and describes its API in OpenAPI. It is a library: a service can
//! mount [`ChatService`] into its own `actix_web::App`, or run the whole
//! server with [`Application`].
//!
//! This is the only crate that knows HTTP. It must not know SQL (that is
//! the storage's) nor how settings are read (that is the binary's).

mod access;
mod auth;
mod changes;
mod config;
mod error;
mod fanout;
mod frames;
mod hub;
mod limits;
mod membership;
mod metrics;
mod openapi;
pub mod operator;
mod presence;
mod publish_backlog;
mod receipts;
mod recheck;
mod redis_fanout;
mod routes;
mod server;
mod session;
mod state;
mod wire;
mod writer;

pub use config::TransportConfig;
pub use error::ApiError;
pub use fanout::{BrokerLink, Fanout, FanoutStatus, LocalFanout, RoomEvent};
pub use hub::{Audience, ConnId, Connection, Frame, Hub, Outbound, Outgoing, PresenceChange};
pub use limits::{Rate, RateLimits};
pub use openapi::ApiDoc;
pub use redis_fanout::{BrokerError, NODE_TTL, RedisFanout};
pub use server::{Application, BuildError, ChatService};
pub use state::Services;
