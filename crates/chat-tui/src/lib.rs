//! `chat-tui`: the terminal client of the chat server.
//!
//! A login screen, then rooms on the left, the messages of the room on
//! screen in the middle, who is online on the right and an input line at
//! the bottom. It talks to the server over its REST API (a small blocking
//! HTTP client on worker threads) and its WebSocket (a background thread
//! that reconnects with backoff and resumes every room from its last seq).
//! It keeps the refresh token of the login in memory, renews the access
//! token before it expires (or when a call is refused with 401), and hands
//! each new one to the open socket in an `auth` frame.
//!
//! This crate knows the wire types (`chat-protocol`) and the domain rules
//! (`chat-domain`) and nothing of the server's insides: no storage, no
//! transport, no actix. The chat state is a plain struct (`state`) tested
//! without a terminal; the cursive screens only draw it.

mod api;
mod backoff;
mod command;
mod describe;
mod net;
mod reactions;
mod search;
mod state;
#[cfg(test)]
mod test_server;
mod ui;

use clap::Parser;

pub use ui::install;

/// The client's command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat-tui",
    version,
    about = "Terminal client of the chat server"
)]
pub struct Cli {
    /// The server's base URL.
    #[arg(long, env = "CHAT_SERVER", default_value = "http://127.0.0.1:8000")]
    pub server: String,
}
