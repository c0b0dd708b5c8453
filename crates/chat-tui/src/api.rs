//! The REST API, over a small blocking HTTP client. Calls run on worker
//! threads, never on the UI thread.
//!
//! The access token is short-lived. The client keeps the refresh token of
//! the login in memory (never on disk) and exchanges it for a new pair when
//! the access token is three quarters through its life, or when a call is
//! refused with 401; the connection thread then hands the new token to the
//! open WebSocket in an `auth` frame.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chat_protocol::mls::{
    ClaimedKeyPackages, CommitAccepted, CommitUpload, DeviceBody, DeviceRegistration, DevicesBody,
    KeyPackageClaim, KeyPackageStock, KeyPackageUpload, WelcomeBody, WelcomesBody,
};
use chat_protocol::rest::{
    CreateRoomRequest, Credentials, ErrorBody, MemberBody, MemberRequest, MessagePage,
    OpenDirectRequest, RefreshRequest, RoleBody, RoomBody, RoomDetail, SearchBody, SearchParams,
    TokenBody, UserBody, VisibilityBody,
};
use chat_protocol::ws::ErrorCode;
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
    Rejected {
        status: u16,
        detail: String,
        /// The error's stable code, when the server gave one.
        code: Option<ErrorCode>,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl ApiError {
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Rejected { status: 404, .. })
    }
}

/// What became of a commit uploaded to a room's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommitOutcome {
    /// Accepted: its place in the room and the group's new epoch.
    Accepted(CommitAccepted),
    /// Refused: another commit on the same epoch was accepted first.
    Stale,
}

/// A token. Its `Debug` form hides it: it is never printed.
#[derive(Clone, PartialEq, Eq)]
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

/// The tokens of the signed-in session. Clones of an [`Api`] share them,
/// so a refresh made by any thread (a REST worker, the connection thread)
/// is seen by all.
#[derive(Debug)]
struct Tokens {
    access: Token,
    /// `None` from a server that issues none (the original backend): the
    /// access token then lives until it expires.
    refresh: Option<Token>,
    /// When to renew the access token.
    renew_at: Option<Instant>,
    /// How many times the tokens were refreshed. Two tokens issued in the
    /// same second can be identical, so this, not the token, tells whether
    /// another thread has refreshed since a token was read.
    generation: u64,
}

impl Tokens {
    fn from_body(body: TokenBody, generation: u64) -> Tokens {
        // Renewed when three quarters of its life are gone, which leaves a
        // quarter (7.5 minutes by default) for a slow or failed refresh.
        let renew_at = body
            .expires_in
            .map(|seconds| Instant::now() + Duration::from_millis(seconds.saturating_mul(750)));
        Tokens {
            access: Token(body.access_token.into()),
            refresh: body.refresh_token.map(|token| Token(token.into())),
            renew_at,
            generation,
        }
    }
}

/// How long to wait before trying again after a renewal failed for a
/// reason other than a refusal (the server was unreachable).
const RENEW_RETRY: Duration = Duration::from_secs(5);

/// A client of one server, logged in or not.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    base: String,
    agent: Agent,
    /// Held for the whole of a refresh, so two threads never refresh at
    /// once: a refresh token works once, and using it twice ends the
    /// session.
    tokens: Option<Arc<Mutex<Tokens>>>,
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
            tokens: None,
        }
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    fn lock(&self) -> Option<MutexGuard<'_, Tokens>> {
        self.tokens
            .as_ref()
            .map(|tokens| tokens.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The current access token, once logged in.
    pub(crate) fn token(&self) -> Option<Token> {
        self.current().map(|(token, _)| token)
    }

    /// The current access token and how many refreshes it took to get it.
    pub(crate) fn current(&self) -> Option<(Token, u64)> {
        self.lock()
            .map(|tokens| (tokens.access.clone(), tokens.generation))
    }

    /// Renews the access token if it is due; returns the new one, or `None`
    /// when nothing was due. An [`ApiError::Unauthorized`] means the
    /// session is over; after any other failure the renewal is tried again
    /// a little later.
    pub(crate) fn renew_if_due(&self) -> Result<Option<Token>, ApiError> {
        let Some(mut tokens) = self.lock() else {
            return Ok(None);
        };
        if tokens.renew_at.is_none_or(|at| Instant::now() < at) {
            return Ok(None);
        }
        match self.refresh_locked(&mut tokens) {
            Ok(token) => Ok(Some(token)),
            Err(error @ ApiError::Unauthorized(_)) => Err(error),
            Err(error) => {
                tokens.renew_at = Some(Instant::now() + RENEW_RETRY);
                Err(error)
            }
        }
    }

    /// A fresher access token than the one of generation `seen`, which the
    /// server refused: the current one if another thread has refreshed
    /// meanwhile, otherwise a new one from the refresh token.
    pub(crate) fn refresh_after(&self, seen: u64) -> Result<Token, ApiError> {
        let Some(mut tokens) = self.lock() else {
            return Err(ApiError::Unauthorized("not logged in".to_owned()));
        };
        if tokens.generation != seen {
            return Ok(tokens.access.clone());
        }
        self.refresh_locked(&mut tokens)
    }

    /// Exchanges the refresh token for a new pair, with the lock held.
    fn refresh_locked(&self, tokens: &mut Tokens) -> Result<Token, ApiError> {
        let Some(refresh) = tokens.refresh.clone() else {
            return Err(ApiError::Unauthorized(
                "the access token has expired".to_owned(),
            ));
        };
        let url = self.url("/api/auth/refresh");
        let response = self.agent.post(&url).send_json(RefreshRequest {
            refresh_token: refresh.expose().to_owned(),
        });
        let body: TokenBody = read(&url, response, &[200])?;
        *tokens = Tokens::from_body(body, tokens.generation + 1);
        Ok(tokens.access.clone())
    }

    /// Runs `call` with the current bearer header; if the server answers
    /// 401 and there is a refresh token, refreshes once and runs it again.
    fn authed<T>(&self, call: impl Fn(&str) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let Some((token, generation)) = self.current() else {
            return call("Bearer ");
        };
        match call(&bearer(&token)) {
            Err(ApiError::Unauthorized(detail)) => {
                let has_refresh = self.lock().is_some_and(|tokens| tokens.refresh.is_some());
                if !has_refresh {
                    return Err(ApiError::Unauthorized(detail));
                }
                let fresh = self.refresh_after(generation)?;
                call(&bearer(&fresh))
            }
            other => other,
        }
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

    /// Logs in and keeps the tokens for later calls.
    pub(crate) fn login(&mut self, credentials: &Credentials) -> Result<(), ApiError> {
        let url = self.url("/api/auth/login");
        let response = self.agent.post(&url).send_json(credentials);
        let body: TokenBody = read(&url, response, &[200])?;
        self.tokens = Some(Arc::new(Mutex::new(Tokens::from_body(body, 0))));
        Ok(())
    }

    /// Every public room and the user's direct conversations.
    pub(crate) fn rooms(&self) -> Result<Vec<RoomBody>, ApiError> {
        self.get("/api/rooms")
    }

    /// One room in full: its topic, owner, this user's role.
    pub(crate) fn room(&self, room: &str) -> Result<RoomDetail, ApiError> {
        self.get(&format!("/api/rooms/{room}"))
    }

    /// The members of a room, with their roles and mutes.
    pub(crate) fn members(&self, room: &str) -> Result<Vec<MemberBody>, ApiError> {
        self.get(&format!("/api/rooms/{room}/members"))
    }

    /// Adds `username` to a room, or gives a member `role` (the owner
    /// makes moderators).
    pub(crate) fn put_member(
        &self,
        room: &str,
        username: &str,
        role: Option<RoleBody>,
    ) -> Result<(), ApiError> {
        let url = self.url(&format!("/api/rooms/{room}/members/{username}"));
        self.authed(|bearer| {
            let response = self
                .agent
                .put(&url)
                .header("Authorization", bearer)
                .send_json(MemberRequest { role });
            let _: Value = read(&url, response, &[204, 200])?;
            Ok(())
        })
    }

    /// A signed-in GET, read as `T` from a 200.
    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let url = self.url(path);
        self.authed(|bearer| {
            let response = self.agent.get(&url).header("Authorization", bearer).call();
            read(&url, response, &[200])
        })
    }

    /// Joins a public room.
    pub(crate) fn join(&self, room: &str) -> Result<RoomBody, ApiError> {
        self.post_empty(&format!("/api/rooms/{room}/join"), &[200])
    }

    /// Creates a room (public unless `visibility` says otherwise,
    /// end-to-end encrypted when `encrypted`); the user becomes its owner.
    pub(crate) fn create_room(
        &self,
        room: &str,
        visibility: Option<VisibilityBody>,
        encrypted: bool,
    ) -> Result<RoomBody, ApiError> {
        let url = self.url("/api/rooms");
        self.authed(|bearer| {
            let response = self
                .agent
                .post(&url)
                .header("Authorization", bearer)
                .send_json(CreateRoomRequest {
                    name: room.to_owned(),
                    visibility,
                    topic: None,
                    encrypted,
                });
            read(&url, response, &[201, 200])
        })
    }

    /// Leaves a room.
    pub(crate) fn leave(&self, room: &str) -> Result<(), ApiError> {
        let _: Value = self.post_empty(&format!("/api/rooms/{room}/leave"), &[204, 200])?;
        Ok(())
    }

    /// Opens the direct conversation with `username`: end-to-end encrypted
    /// when `encrypted`, else as it is (a new one is plaintext).
    pub(crate) fn open_direct(
        &self,
        username: &str,
        encrypted: bool,
    ) -> Result<RoomBody, ApiError> {
        let path = format!("/api/dm/{username}");
        if !encrypted {
            return self.post_empty(&path, &[200, 201]);
        }
        self.post_json(
            &path,
            &OpenDirectRequest {
                encrypted: Some(true),
            },
            &[200, 201],
        )
    }

    /// A signed-in POST with a JSON body, read as `T` when the status is
    /// one of `accepted`.
    fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        accepted: &[u16],
    ) -> Result<T, ApiError> {
        let url = self.url(path);
        self.authed(|bearer| {
            let response = self
                .agent
                .post(&url)
                .header("Authorization", bearer)
                .send_json(body);
            read(&url, response, accepted)
        })
    }

    /// A signed-in DELETE, expecting 204.
    fn delete(&self, path: &str) -> Result<(), ApiError> {
        let url = self.url(path);
        self.authed(|bearer| {
            let response = self
                .agent
                .delete(&url)
                .header("Authorization", bearer)
                .call();
            let _: Value = read(&url, response, &[204, 200])?;
            Ok(())
        })
    }

    /// Registers this client's MLS device for the signed-in user; doing it
    /// again with the same key changes nothing.
    pub(crate) fn register_device(
        &self,
        registration: &DeviceRegistration,
    ) -> Result<DeviceBody, ApiError> {
        self.post_json("/api/mls/devices", registration, &[200, 201])
    }

    /// The devices of a user, oldest first.
    pub(crate) fn devices(&self, username: &str) -> Result<Vec<DeviceBody>, ApiError> {
        let body: DevicesBody = self.get(&format!("/api/mls/devices/{username}"))?;
        Ok(body.devices)
    }

    /// The devices of every member of an encrypted room.
    pub(crate) fn room_devices(&self, room: &str) -> Result<Vec<DeviceBody>, ApiError> {
        let body: DevicesBody = self.get(&format!("/api/rooms/{room}/mls/devices"))?;
        Ok(body.devices)
    }

    /// Adds KeyPackages to the device's stock; the answer says how many
    /// are left to hand out.
    pub(crate) fn upload_key_packages(
        &self,
        upload: &KeyPackageUpload,
    ) -> Result<KeyPackageStock, ApiError> {
        self.post_json("/api/mls/key-packages", upload, &[200, 201])
    }

    /// Claims one KeyPackage of every device of each of `usernames`, or
    /// of the listed `devices` of theirs only.
    pub(crate) fn claim_key_packages(
        &self,
        usernames: &[String],
        devices: Option<Vec<String>>,
    ) -> Result<ClaimedKeyPackages, ApiError> {
        self.post_json(
            "/api/mls/key-packages/claim",
            &KeyPackageClaim {
                users: usernames.to_vec(),
                devices,
            },
            &[200],
        )
    }

    /// Uploads a commit to a room's group. A commit built on an epoch the
    /// room has already left comes back as [`CommitOutcome::Stale`].
    pub(crate) fn post_commit(
        &self,
        room: &str,
        upload: &CommitUpload,
    ) -> Result<CommitOutcome, ApiError> {
        let path = format!("/api/rooms/{room}/mls/commits");
        match self.post_json(&path, upload, &[200, 201]) {
            Ok(accepted) => Ok(CommitOutcome::Accepted(accepted)),
            Err(ApiError::Rejected {
                status: 409,
                code: Some(ErrorCode::StaleEpoch),
                ..
            }) => Ok(CommitOutcome::Stale),
            Err(error) => Err(error),
        }
    }

    /// The Welcomes waiting for a device, oldest first.
    pub(crate) fn welcomes(&self, device_id: &str) -> Result<Vec<WelcomeBody>, ApiError> {
        let body: WelcomesBody = self.get(&format!("/api/mls/welcomes?device_id={device_id}"))?;
        Ok(body.welcomes)
    }

    /// Tells the server a device has processed a Welcome.
    pub(crate) fn ack_welcome(&self, id: i64, device_id: &str) -> Result<(), ApiError> {
        self.delete(&format!("/api/mls/welcomes/{id}?device_id={device_id}"))
    }

    /// A signed-in POST without a body, read as `T` when the status is one
    /// of `accepted`.
    fn post_empty<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        accepted: &[u16],
    ) -> Result<T, ApiError> {
        let url = self.url(path);
        self.authed(|bearer| {
            let response = self
                .agent
                .post(&url)
                .header("Authorization", bearer)
                .send_empty();
            read(&url, response, accepted)
        })
    }

    /// A page of a room's history: the newest messages, or those before
    /// `before`.
    pub(crate) fn messages(
        &self,
        room: &str,
        before: Option<i64>,
    ) -> Result<MessagePage, ApiError> {
        let url = self.url(&format!("/api/rooms/{room}/messages"));
        self.authed(|bearer| {
            let mut request = self
                .agent
                .get(&url)
                .header("Authorization", bearer)
                .query("limit", PAGE_SIZE.to_string());
            if let Some(before) = before {
                request = request.query("before", before.to_string());
            }
            read(&url, request.call(), &[200])
        })
    }

    /// A page of search results over the user's rooms (or one of them),
    /// newest first.
    pub(crate) fn search(&self, params: &SearchParams) -> Result<SearchBody, ApiError> {
        let url = self.url("/api/search");
        self.authed(|bearer| {
            let mut request = self
                .agent
                .get(&url)
                .header("Authorization", bearer)
                .query("q", &params.q);
            if let Some(room) = &params.room {
                request = request.query("room", room);
            }
            if let Some(before) = params.before {
                request = request.query("before", before.to_string());
            }
            if let Some(limit) = params.limit {
                request = request.query("limit", limit.to_string());
            }
            read(&url, request.call(), &[200])
        })
    }
}

#[cfg(test)]
impl Api {
    /// Replaces the access token, as if it had expired or been damaged.
    pub(crate) fn set_access_token(&self, token: &str) {
        if let Some(mut tokens) = self.lock() {
            tokens.access = Token(token.into());
        }
    }

    /// Makes the renewal due now.
    pub(crate) fn make_renewal_due(&self) {
        if let Some(mut tokens) = self.lock() {
            tokens.renew_at = Some(Instant::now());
        }
    }
}

/// The `Authorization` header for `token`.
fn bearer(token: &Token) -> String {
    format!("Bearer {}", token.expose())
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
    let code = serde_json::from_str::<ErrorBody>(&text)
        .ok()
        .and_then(|body| body.code);
    Err(ApiError::Rejected {
        status,
        detail,
        code,
    })
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
    fn the_tokens_are_never_in_debug_output() {
        let mut api = Api::new("http://127.0.0.1:1");
        api.tokens = Some(Arc::new(Mutex::new(Tokens::from_body(
            TokenBody::with_refresh("very-secret-token", "very-secret-refresh", 1_800),
            0,
        ))));
        let debug = format!("{api:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
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

    use crate::test_server::TestServer;

    #[test]
    fn the_renewal_is_due_three_quarters_through_the_tokens_life() {
        let before = Instant::now();
        let tokens = Tokens::from_body(TokenBody::with_refresh("a", "r", 1_800), 0);
        let renew_at = tokens.renew_at.expect("a renewal time");
        let after = Instant::now();
        assert!(renew_at >= before + Duration::from_secs(1_350));
        assert!(renew_at <= after + Duration::from_secs(1_350));
        // A server that sends no lifetime and no refresh token: nothing to renew.
        let seed = Tokens::from_body(TokenBody::bearer("a"), 0);
        assert!(seed.renew_at.is_none() && seed.refresh.is_none());
    }

    #[test]
    fn a_refused_call_refreshes_the_tokens_once_and_is_retried() {
        let server = TestServer::start();
        let api = server.signed_in("alice");
        api.set_access_token("expired-or-damaged");
        let rooms = api.rooms().expect("retried with a fresh token");
        assert!(rooms.iter().any(|room| room.name == "general"));
        let token = api.token().expect("logged in");
        assert_ne!(token.expose(), "expired-or-damaged");
        // The refreshed session goes on working.
        assert!(api.rooms().is_ok());
    }

    #[test]
    fn threads_refreshing_one_stale_token_use_the_refresh_token_once() {
        let server = TestServer::start();
        let api = server.signed_in("alice");
        let (_, seen) = api.current().expect("logged in");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let api = api.clone();
                std::thread::spawn(move || api.refresh_after(seen))
            })
            .collect();
        let tokens: Vec<Token> = handles
            .into_iter()
            .map(|handle| handle.join().expect("thread").expect("refreshed"))
            .collect();
        assert!(tokens.iter().all(|token| *token == tokens[0]));
        // One refresh between them.
        assert_eq!(
            api.current().map(|(_, generation)| generation),
            Some(seen + 1)
        );
        // Had the refresh token been used twice, the server would have ended
        // the session.
        assert!(api.rooms().is_ok());
        assert!(api.refresh_after(seen + 1).is_ok());
    }

    #[test]
    fn a_due_renewal_brings_a_new_token_and_nothing_else_does() {
        let server = TestServer::start();
        let api = server.signed_in("alice");
        assert_eq!(api.renew_if_due(), Ok(None));
        assert_eq!(api.current().map(|(_, generation)| generation), Some(0));
        api.make_renewal_due();
        let renewed = api.renew_if_due().expect("renewed").expect("a new token");
        assert_eq!(api.current(), Some((renewed, 1)));
        assert_eq!(api.renew_if_due(), Ok(None));
        assert!(api.rooms().is_ok());
    }

    #[test]
    fn without_a_refresh_token_a_refusal_is_final() {
        let server = TestServer::start();
        let api = server.signed_in("alice");
        if let Some(mut tokens) = api.lock() {
            tokens.refresh = None;
        }
        api.set_access_token("expired-or-damaged");
        assert!(matches!(api.rooms(), Err(ApiError::Unauthorized(_))));
    }

    #[test]
    fn a_search_the_server_refuses_comes_back_in_its_words() {
        let server = TestServer::start();
        let api = server.signed_in("alice");
        let search = |q: &str, room: Option<&str>| {
            api.search(&SearchParams {
                q: q.to_owned(),
                room: room.map(str::to_owned),
                ..SearchParams::default()
            })
        };
        let nothing = search("nothing", None).expect("a search");
        assert!(nothing.results.is_empty() && nothing.next.is_none());

        let error = search("ab*", None).expect_err("a prefix too short");
        assert!(
            matches!(&error, ApiError::Rejected { status: 422, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains('3'), "{error}");

        let error = search("tea", Some("nowhere")).expect_err("no such room");
        assert!(error.is_not_found(), "{error:?}");
    }
}
