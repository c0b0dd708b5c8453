//! The REST API, over a small blocking HTTP client. Calls run on worker
//! threads, never on the UI thread.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chat_protocol::rest::{
    CreateRoomRequest, Credentials, ErrorBody, MessagePage, RoomBody, TokenBody, UserBody,
};
use serde_json::Value;
use thiserror::Error;
use ureq::Agent;
use ureq::http::Response;

/// Messages per history page.
pub(crate) const PAGE_SIZE: i64 = 50;

/// Why a call failed, in words for the person at the keyboard.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum ApiError {
    /// No HTTP answer at all: wrong URL, server down, network.
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The token is missing, bad or expired (or the password is wrong).
    #[error("{0}")]
    Unauthorized(String),
    /// The server refused the request and said why.
    #[error("{detail}")]
    Rejected { status: u16, detail: String },
    /// The server answered something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl ApiError {
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Rejected { status: 404, .. })
    }
}

/// An access token. Its `Debug` form hides it: it is never printed.
#[derive(Clone)]
pub(crate) struct Token(Arc<str>);

impl Token {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A client of one server, logged in or not.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    base: String,
    agent: Agent,
    token: Option<Token>,
}

impl Api {
    /// A client of the server at `base` (`http://host:port`).
    pub(crate) fn new(base: &str) -> Api {
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(15)))
            .build();
        Api {
            base: base.trim_end_matches('/').to_owned(),
            agent: config.into(),
            token: None,
        }
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn token(&self) -> Option<&Token> {
        self.token.as_ref()
    }

    /// The WebSocket URL of the same server.
    pub(crate) fn ws_url(&self) -> String {
        let rest = self
            .base
            .strip_prefix("https://")
            .map(|rest| format!("wss://{rest}"))
            .or_else(|| {
                self.base
                    .strip_prefix("http://")
                    .map(|rest| format!("ws://{rest}"))
            })
            .unwrap_or_else(|| format!("ws://{}", self.base));
        format!("{rest}/ws/chat")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates an account.
    pub(crate) fn register(&self, credentials: &Credentials) -> Result<UserBody, ApiError> {
        let url = self.url("/api/auth/register");
        let response = self.agent.post(&url).send_json(credentials);
        read(&url, response, &[201, 200])
    }

    /// Logs in and keeps the token for later calls.
    pub(crate) fn login(&mut self, credentials: &Credentials) -> Result<(), ApiError> {
        let url = self.url("/api/auth/login");
        let response = self.agent.post(&url).send_json(credentials);
        let body: TokenBody = read(&url, response, &[200])?;
        self.token = Some(Token(body.access_token.into()));
        Ok(())
    }

    fn bearer(&self) -> String {
        let token = self.token.as_ref().map_or("", Token::expose);
        format!("Bearer {token}")
    }

    /// Every public room and the user's direct conversations.
    pub(crate) fn rooms(&self) -> Result<Vec<RoomBody>, ApiError> {
        let url = self.url("/api/rooms");
        let response = self
            .agent
            .get(&url)
            .header("Authorization", self.bearer())
            .call();
        read(&url, response, &[200])
    }

    /// Joins a public room.
    pub(crate) fn join(&self, room: &str) -> Result<RoomBody, ApiError> {
        let url = self.url(&format!("/api/rooms/{room}/join"));
        let response = self
            .agent
            .post(&url)
            .header("Authorization", self.bearer())
            .send_empty();
        read(&url, response, &[200])
    }

    /// Creates a public room; the user becomes its first member.
    pub(crate) fn create_room(&self, room: &str) -> Result<RoomBody, ApiError> {
        let url = self.url("/api/rooms");
        let response = self
            .agent
            .post(&url)
            .header("Authorization", self.bearer())
            .send_json(CreateRoomRequest {
                name: room.to_owned(),
            });
        read(&url, response, &[201, 200])
    }

    /// Leaves a room.
    pub(crate) fn leave(&self, room: &str) -> Result<(), ApiError> {
        let url = self.url(&format!("/api/rooms/{room}/leave"));
        let response = self
            .agent
            .post(&url)
            .header("Authorization", self.bearer())
            .send_empty();
        let _: Value = read(&url, response, &[204, 200])?;
        Ok(())
    }

    /// Opens the direct conversation with `username`.
    pub(crate) fn open_direct(&self, username: &str) -> Result<RoomBody, ApiError> {
        let url = self.url(&format!("/api/dm/{username}"));
        let response = self
            .agent
            .post(&url)
            .header("Authorization", self.bearer())
            .send_empty();
        read(&url, response, &[200, 201])
    }

    /// A page of a room's history: the newest messages, or those before
    /// `before`.
    pub(crate) fn messages(
        &self,
        room: &str,
        before: Option<i64>,
    ) -> Result<MessagePage, ApiError> {
        let url = self.url(&format!("/api/rooms/{room}/messages"));
        let mut request = self
            .agent
            .get(&url)
            .header("Authorization", self.bearer())
            .query("limit", PAGE_SIZE.to_string());
        if let Some(before) = before {
            request = request.query("before", before.to_string());
        }
        read(&url, request.call(), &[200])
    }
}

/// Turns an HTTP answer into the expected body or an [`ApiError`] that
/// carries the server's `detail`.
fn read<T: serde::de::DeserializeOwned>(
    url: &str,
    response: Result<Response<ureq::Body>, ureq::Error>,
    expected: &[u16],
) -> Result<T, ApiError> {
    let mut response = response.map_err(|error| ApiError::Unreachable {
        url: url.to_owned(),
        reason: error.to_string(),
    })?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|error| ApiError::Protocol(error.to_string()))?;
    if expected.contains(&status) {
        // A 204 has no body; read it as JSON `null`.
        let text = if text.trim().is_empty() {
            "null"
        } else {
            &text
        };
        return serde_json::from_str(text).map_err(|error| ApiError::Protocol(error.to_string()));
    }
    let detail = detail_of(&text).unwrap_or_else(|| format!("the server answered {status}"));
    if status == 401 {
        return Err(ApiError::Unauthorized(detail));
    }
    Err(ApiError::Rejected { status, detail })
}

/// The `detail` of an error body: a string (our server), or the list of
/// validation errors FastAPI sends, joined.
fn detail_of(text: &str) -> Option<String> {
    if let Ok(body) = serde_json::from_str::<ErrorBody>(text) {
        return Some(body.detail);
    }
    let value: Value = serde_json::from_str(text).ok()?;
    let items = value.get("detail")?.as_array()?;
    let messages: Vec<&str> = items
        .iter()
        .filter_map(|item| item.get("msg").and_then(Value::as_str))
        .collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_websocket_url_follows_the_server_url() {
        assert_eq!(
            Api::new("http://127.0.0.1:8000/").ws_url(),
            "ws://127.0.0.1:8000/ws/chat"
        );
        assert_eq!(
            Api::new("https://chat.example").ws_url(),
            "wss://chat.example/ws/chat"
        );
    }

    #[test]
    fn the_token_is_never_in_debug_output() {
        let mut api = Api::new("http://127.0.0.1:1");
        api.token = Some(Token("very-secret-token".into()));
        let debug = format!("{api:?}");
        assert!(!debug.contains("very-secret-token"), "{debug}");
    }

    #[test]
    fn error_details_are_read_from_our_server_and_from_fastapi() {
        assert_eq!(
            detail_of(r#"{"detail":"Username already registered"}"#).as_deref(),
            Some("Username already registered")
        );
        assert_eq!(
            detail_of(r#"{"detail":[{"loc":["body","password"],"msg":"too short"}]}"#).as_deref(),
            Some("too short")
        );
        assert_eq!(detail_of("<html>"), None);
    }

    #[test]
    fn an_unreachable_server_is_reported_with_the_url_tried() {
        // Port 1 on localhost is closed: the connection is refused at once.
        let api = Api::new("http://127.0.0.1:1");
        let error = api.rooms().expect_err("nothing listens on port 1");
        let text = error.to_string();
        assert!(
            text.starts_with("cannot reach the server at http://127.0.0.1:1/api/rooms"),
            "{text}"
        );
    }
}
