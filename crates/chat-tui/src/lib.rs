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
//! End-to-end encrypted rooms go through `chat-e2e`: this installation's
//! MLS device, saved in a file encrypted under a passphrase given at login
//! (`secure`), reads and seals their messages and commits changes to their
//! groups.
//!
//! This crate knows the wire types (`chat-protocol`), the domain rules
//! (`chat-domain`) and the client's MLS library (`chat-e2e`), and nothing
//! of the server's insides: no storage, no transport, no actix. The chat
//! state is a plain struct (`state`) tested without a terminal; the cursive
//! screens only draw it.

mod api;
mod backoff;
mod command;
mod describe;
mod net;
mod reactions;
mod search;
mod secure;
mod state;
#[cfg(test)]
mod test_server;
mod ui;

use std::path::PathBuf;

use clap::Parser;

pub use chat_e2e::KdfParams;
pub use ui::{install, install_with};

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

    /// The folder of this installation's device state for end-to-end
    /// encrypted rooms (one encrypted file per account and server).
    /// Default: `$XDG_DATA_HOME/chat-tui`, else `~/.local/share/chat-tui`.
    #[arg(long, env = "CHAT_E2E_DIR")]
    pub state_dir: Option<PathBuf>,
}

/// How the client sets up this installation's device for end-to-end
/// encrypted rooms.
#[derive(Clone)]
pub struct Options {
    /// The server's base URL.
    pub server: String,
    /// The folder of the device state files.
    pub state_dir: PathBuf,
    /// The passphrase of the device state, when given outside the login
    /// screen (`CHAT_E2E_PASSPHRASE`, for scripts); the login screen's
    /// field is used when this is `None`.
    pub passphrase: Option<String>,
    /// The cost of deriving the state's key from the passphrase.
    pub kdf: KdfParams,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("server", &self.server)
            .field("state_dir", &self.state_dir)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("kdf", &self.kdf)
            .finish()
    }
}

impl Options {
    /// The options of the command line and the environment.
    pub fn from_cli(cli: &Cli) -> Options {
        Options {
            server: cli.server.clone(),
            state_dir: cli.state_dir.clone().unwrap_or_else(default_state_dir),
            passphrase: std::env::var("CHAT_E2E_PASSPHRASE")
                .ok()
                .filter(|passphrase| !passphrase.is_empty()),
            kdf: KdfParams::DEFAULT,
        }
    }

    /// The defaults for the server at `server`, the passphrase asked for
    /// on the login screen.
    pub fn new(server: &str) -> Options {
        Options {
            server: server.to_owned(),
            state_dir: default_state_dir(),
            passphrase: None,
            kdf: KdfParams::DEFAULT,
        }
    }
}

/// `$XDG_DATA_HOME/chat-tui`, else `~/.local/share/chat-tui`, else
/// `.chat-tui` in the working directory.
fn default_state_dir() -> PathBuf {
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(data).join("chat-tui");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(home).join(".local/share/chat-tui");
    }
    PathBuf::from(".chat-tui")
}
