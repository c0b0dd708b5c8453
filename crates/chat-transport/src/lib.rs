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
//!
//! # Using it
//!
//! Build the [`Services`] (a migrated [`chat_storage::Store`], a
//! [`chat_auth::PasswordHasher`], [`chat_auth::TokenKeys`]) and a
//! [`TransportConfig`] from your own configuration, then either mount the
//! chat beside your routes or let [`Application`] serve it alone:
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use chat_transport::{ChatService, Services, TransportConfig};
//!
//! # async fn example(services: Services) -> Result<(), Box<dyn std::error::Error>> {
//! let chat = ChatService::new(TransportConfig::default(), services).await?;
//! let mounted = chat.clone();
//! HttpServer::new(move || {
//!     App::new()
//!         .route("/hello", web::get().to(|| async { "hello" }))
//!         .configure(|cfg| mounted.configure(cfg))
//! })
//! .bind("127.0.0.1:8080")?
//! .run()
//! .await?;
//! // Close the chat's sockets and store what is queued.
//! chat.shutdown(std::time::Duration::from_secs(10)).await;
//! # Ok(())
//! # }
//! ```
//!
//! `examples/embedded.rs` is the whole program: the store on SQLite, the
//! keys, the host's tracing, and a shutdown that stops both together
//! (`cargo run -p chat-transport --example embedded`).

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
mod mls;
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
