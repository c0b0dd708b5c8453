//! The REST calls the bench makes: registration, login, room creation and
//! the URLs of the WebSocket and of a room's history.

use std::time::Duration;

use anyhow::{Context, bail};
use chat_protocol::rest::{CreateRoomRequest, Credentials, TokenBody};
use rand::Rng;
use rand::distr::Alphanumeric;
use reqwest::{Client, StatusCode, Url};

/// How long one REST call may take. Registration and login wait for bcrypt
/// on a busy server, so this is generous.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A handle on the server under test.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    http: Client,
    base: Url,
}

impl Api {
    /// A client for the server at `server`, an `http://host:port` URL.
    pub(crate) fn new(server: &str) -> anyhow::Result<Api> {
        let base =
            Url::parse(server).with_context(|| format!("--server {server:?} is not a URL"))?;
        if base.scheme() != "http" {
            bail!(
                "--server must be an http:// URL (the bench speaks no TLS), not {}://",
                base.scheme()
            );
        }
        let http = Client::builder()
            .tcp_nodelay(true)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("could not build the HTTP client")?;
        Ok(Api { http, base })
    }

    /// The shared HTTP client, for scenarios that time requests themselves.
    pub(crate) fn http(&self) -> &Client {
        &self.http
    }

    /// An absolute URL on the server.
    pub(crate) fn url(&self, path: &str) -> anyhow::Result<Url> {
        self.base
            .join(path)
            .with_context(|| format!("bad path {path:?}"))
    }

    /// The WebSocket URL for a token: `ws://host:port/ws/chat?token=...`.
    pub(crate) fn ws_url(&self, token: &str) -> anyhow::Result<String> {
        let mut url = self.url("/ws/chat")?;
        if url.set_scheme("ws").is_err() {
            bail!("cannot make a ws:// URL from {}", self.base);
        }
        url.query_pairs_mut().append_pair("token", token);
        Ok(url.into())
    }

    /// The newest-page URL of a room's history.
    pub(crate) fn page_url(&self, room: &str, limit: i64) -> anyhow::Result<Url> {
        let mut url = self.url(&format!("/api/rooms/{room}/messages"))?;
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string());
        Ok(url)
    }

    /// Registers a user. A name that is taken is not an error here: the
    /// login that follows tells whether the password fits.
    pub(crate) async fn register(&self, username: &str, password: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .post(self.url("/api/auth/register")?)
            .json(&credentials(username, password))
            .send()
            .await
            .with_context(|| format!("could not register {username}"))?;
        match response.status() {
            StatusCode::CREATED | StatusCode::BAD_REQUEST | StatusCode::CONFLICT => Ok(()),
            status => {
                let body = response.text().await.unwrap_or_default();
                bail!("registering {username} answered {status}: {body}")
            }
        }
    }

    /// Logs in and returns the access token.
    pub(crate) async fn login(&self, username: &str, password: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(self.url("/api/auth/login")?)
            .json(&credentials(username, password))
            .send()
            .await
            .with_context(|| format!("could not log in as {username}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("logging in as {username} answered {status}: {body}");
        }
        let token: TokenBody = response
            .json()
            .await
            .with_context(|| format!("the login of {username} did not return a token"))?;
        Ok(token.access_token)
    }

    /// Creates a public room; a room that exists already is fine.
    pub(crate) async fn create_room(&self, token: &str, name: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .post(self.url("/api/rooms")?)
            .bearer_auth(token)
            .json(&CreateRoomRequest {
                name: name.to_owned(),
                visibility: None,
                topic: None,
                encrypted: false,
            })
            .send()
            .await
            .with_context(|| format!("could not create room {name}"))?;
        match response.status() {
            StatusCode::CREATED | StatusCode::CONFLICT => Ok(()),
            status => {
                let body = response.text().await.unwrap_or_default();
                bail!("creating room {name} answered {status}: {body}")
            }
        }
    }
}

fn credentials(username: &str, password: &str) -> Credentials {
    Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    }
}

/// The names of one run. A random prefix keeps the users and rooms of
/// different runs against the same database apart.
#[derive(Debug, Clone)]
pub(crate) struct RunNames {
    prefix: String,
}

impl RunNames {
    /// A fresh random prefix of six lower-case letters and digits.
    pub(crate) fn new() -> RunNames {
        let prefix = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(6)
            .map(|byte| char::from(byte).to_ascii_lowercase())
            .collect();
        RunNames { prefix }
    }

    /// The `index`th user's name, e.g. `bench_k3x9qa_17`.
    pub(crate) fn user(&self, index: usize) -> String {
        format!("bench_{}_{index}", self.prefix)
    }

    /// Every user of the run shares this password (at least 8 characters).
    pub(crate) fn password(&self) -> String {
        format!("bench-password-{}", self.prefix)
    }

    /// A room name of this run, e.g. `bench-k3x9qa-fanout`.
    pub(crate) fn room(&self, what: &str) -> String {
        format!("bench-{}-{what}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_are_valid_user_and_room_names() {
        let names = RunNames::new();
        let user = names.user(19_999);
        assert!((3..=50).contains(&user.len()), "{user}");
        assert!(
            user.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{user}"
        );
        let room = names.room("r499");
        assert!((1..=64).contains(&room.len()), "{room}");
        assert!(
            room.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'),
            "{room}"
        );
        assert!(names.password().len() >= 8);
    }

    #[test]
    fn two_runs_get_different_prefixes() {
        assert_ne!(RunNames::new().user(0), RunNames::new().user(0));
    }

    #[test]
    fn the_websocket_url_carries_the_token() {
        let api = Api::new("http://127.0.0.1:8000").expect("a valid URL");
        assert_eq!(
            api.ws_url("a.b.c").expect("a URL"),
            "ws://127.0.0.1:8000/ws/chat?token=a.b.c"
        );
        assert!(Api::new("https://example.invalid").is_err());
    }
}
