//! Starting the server and talking to it.

use std::ops::RangeInclusive;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use chat_auth::{PasswordHasher, TokenKeys};
use chat_crypto::{FernetKey, KeyRing};
use chat_storage::testing::TestDatabase;
use chat_storage::{Store, StoreConfig};
use chat_transport::{Application, Services, TransportConfig};
use futures_util::{SinkExt, StreamExt};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The JWT secret every test server uses, so tests can mint tokens.
pub(crate) const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

/// The search key of every test node: the nodes of a deployment share it.
pub(crate) fn search_keys() -> chat_crypto::SearchKeys {
    chat_crypto::SearchKeys::new(
        chat_crypto::SearchKey::parse("c2VhcmNoLWtleS1vZi10aGUtc3RvcmFnZS10ZXN0cyE=")
            .expect("a valid search key"),
        None,
    )
}

/// How long a test waits for a frame it expects.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Runs a test body once per backend: `sqlite` always, `postgres` when a
/// test database is configured. `tweaks = <expr>;` first configures the
/// server (the expression is evaluated inside the generated modules, so a
/// function of the calling module is named `super::f()`).
#[macro_export]
macro_rules! backend_tests {
    (tweaks = $tweaks:expr; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let app = $crate::helpers::TestApp::spawn_sqlite($tweaks).await?;
                    let result = super::$name(&app).await;
                    app.stop().await;
                    result
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let Some(app) = $crate::helpers::TestApp::spawn_postgres($tweaks).await? else {
                        return Ok(());
                    };
                    let result = super::$name(&app).await;
                    app.stop().await;
                    result
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::backend_tests!(tweaks = Default::default(); $($name),*);
    };
}

/// Tweaks a test applies to the default configuration.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tweaks {
    pub(crate) cors_origins: Vec<String>,
    pub(crate) max_connections_per_user: Option<usize>,
    /// Largest room that sends read receipts; 100 unless set.
    pub(crate) read_receipts_max_members: Option<usize>,
    /// Rate limits; off unless a test turns them on.
    pub(crate) rate_limits: Option<chat_transport::RateLimits>,
    /// Redis URL and namespace, for a node of a cluster.
    pub(crate) redis: Option<(String, String)>,
    /// Most events waiting to be published to Redis; 4,096 unless set.
    pub(crate) redis_backlog: Option<usize>,
    pub(crate) outbound_queue: Option<usize>,
    pub(crate) max_frame_bytes: Option<usize>,
    pub(crate) max_message_chars: Option<usize>,
    /// Access token lifetime; 30 minutes unless set.
    pub(crate) token_ttl: Option<Duration>,
    /// Accept tokens without `iss`, `aud` and `sid`
    /// (`CHAT_ACCEPT_LEGACY_TOKENS`).
    pub(crate) legacy_tokens: bool,
    /// How often the server pings, and how long a silent socket lives.
    pub(crate) heartbeat: Option<(Duration, Duration)>,
    /// The bearer token `/metrics` requires (`CHAT_METRICS_TOKEN`).
    pub(crate) metrics_token: Option<String>,
    /// Serve `/metrics` on a listener of its own (`CHAT_METRICS_BIND`).
    pub(crate) metrics_listener: bool,
    /// Search off (`CHAT_SEARCH=off`): nothing indexed.
    pub(crate) search_off: bool,
}

/// The seconds a 429 answer's `Retry-After` asks for; 0 without one.
pub(crate) fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// The sum of the samples of metric `name` in the Prometheus text
/// `exposition` that carry every one of `labels` (each `key="value"`); 0
/// when there are none.
pub(crate) fn sample(exposition: &str, name: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_set) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = metric == name
                && labels
                    .iter()
                    .all(|label| label_set.split(',').any(|have| have == *label));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A running server and what a test needs to talk to it.
pub(crate) struct TestApp {
    pub(crate) address: String,
    /// Where `/metrics` listens, when it has a listener of its own.
    pub(crate) metrics_address: Option<String>,
    pub(crate) http: reqwest::Client,
    pub(crate) store: Store,
    pub(crate) tokens: TokenKeys,
    database: Option<TestDatabase>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub(crate) async fn spawn_sqlite(tweaks: Tweaks) -> Result<TestApp> {
        TestApp::spawn(TestDatabase::sqlite(), tweaks).await
    }

    pub(crate) async fn spawn_postgres(tweaks: Tweaks) -> Result<Option<TestApp>> {
        match TestDatabase::postgres().await {
            Some(database) => Ok(Some(TestApp::spawn(database, tweaks).await?)),
            None => Ok(None),
        }
    }

    async fn spawn(database: TestDatabase, tweaks: Tweaks) -> Result<TestApp> {
        let keys = KeyRing::new(FernetKey::generate(), Vec::new());
        let url = database.url().to_owned();
        let mut app = TestApp::spawn_node(&url, keys, tweaks).await?;
        app.database = Some(database);
        Ok(app)
    }

    /// Another server on an existing database, e.g. a second node.
    pub(crate) async fn spawn_node(url: &str, keys: KeyRing, tweaks: Tweaks) -> Result<TestApp> {
        let store = Store::connect(StoreConfig {
            url: url.to_owned(),
            pool_size: 8,
            // As chat-server splits it: the thread that starts first (here
            // one of the test's), then one per worker (PostgreSQL only).
            pool_shards: vec![4, 2, 2],
            keys,
            search: (!tweaks.search_off).then(search_keys),
            recent: chat_storage::RecentCache::default(),
            sqlite_synchronous: chat_storage::SqliteSynchronous::default(),
        })
        .await?;
        store.run_pending_migrations().await?;
        let tokens = TokenKeys::new(
            &SecretString::from(SECRET.to_owned()),
            tweaks.token_ttl.unwrap_or(Duration::from_secs(30 * 60)),
        )?
        .accepting_legacy_tokens(tweaks.legacy_tokens);
        let defaults = TransportConfig::default();
        let config = TransportConfig {
            bind: "127.0.0.1:0".to_owned(),
            workers: 2,
            outbound_queue: tweaks.outbound_queue.unwrap_or(defaults.outbound_queue),
            max_frame_bytes: tweaks.max_frame_bytes.unwrap_or(defaults.max_frame_bytes),
            max_message_chars: tweaks
                .max_message_chars
                .unwrap_or(defaults.max_message_chars),
            shutdown_grace: Duration::from_secs(2),
            heartbeat_interval: tweaks
                .heartbeat
                .map_or(defaults.heartbeat_interval, |(interval, _)| interval),
            idle_timeout: tweaks
                .heartbeat
                .map_or(defaults.idle_timeout, |(_, timeout)| timeout),
            rate_limits: tweaks.rate_limits,
            cors_origins: tweaks.cors_origins.clone(),
            max_connections_per_user: tweaks
                .max_connections_per_user
                .unwrap_or(defaults.max_connections_per_user),
            read_receipts_max_members: tweaks
                .read_receipts_max_members
                .unwrap_or(defaults.read_receipts_max_members),
            redis_url: tweaks.redis.as_ref().map(|(url, _)| url.clone()),
            redis_namespace: tweaks
                .redis
                .as_ref()
                .map_or(defaults.redis_namespace.clone(), |(_, ns)| ns.clone()),
            redis_backlog: tweaks.redis_backlog.unwrap_or(defaults.redis_backlog),
            metrics_token: tweaks.metrics_token.clone().map(SecretString::from),
            metrics_bind: tweaks.metrics_listener.then(|| "127.0.0.1:0".to_owned()),
            ..defaults
        };
        let services = Services {
            store: store.clone(),
            hasher: PasswordHasher::new(PasswordHasher::MIN_COST)?,
            tokens: tokens.clone(),
        };
        let app = Application::build(config, services).await?;
        let address = format!("127.0.0.1:{}", app.port());
        let metrics_address = app.metrics_address().map(|address| address.to_string());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = app.run_until_stopped(shutdown).await {
                eprintln!("server failed: {error}");
            }
        });
        Ok(TestApp {
            address,
            metrics_address,
            http: reqwest::Client::new(),
            store,
            tokens,
            database: None,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// Stops the server and drops the test database.
    pub(crate) async fn stop(mut self) {
        self.shutdown_server().await;
        drop(self.store);
        if let Some(database) = self.database.take() {
            database.drop_database().await;
        }
    }

    /// Shuts the server down as SIGTERM would; returns whether it finished
    /// within ten seconds.
    pub(crate) async fn shutdown_server(&mut self) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.server.take() {
            Some(server) => tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .is_ok(),
            None => true,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// Where `/metrics` is served: on its own listener, if it has one.
    pub(crate) fn metrics_url(&self) -> String {
        let address = self.metrics_address.as_ref().unwrap_or(&self.address);
        format!("http://{address}/metrics")
    }

    /// `/metrics`, which must answer 200 in Prometheus's text format.
    pub(crate) async fn metrics(&self) -> Result<String> {
        let response = self.http.get(self.metrics_url()).send().await?;
        if response.status() != 200 {
            bail!("/metrics answered {}", response.status());
        }
        Ok(response.text().await?)
    }

    /// The sum of the samples of metric `name` that carry every one of
    /// `labels` (each `key="value"`), as `/metrics` says now.
    pub(crate) async fn metric(&self, name: &str, labels: &[&str]) -> Result<f64> {
        Ok(sample(&self.metrics().await?, name, labels))
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Result<reqwest::Response> {
        Ok(self.http.post(self.url(path)).json(body).send().await?)
    }

    /// Registers a user with a valid password and returns the response.
    pub(crate) async fn register(&self, username: &str) -> Result<reqwest::Response> {
        self.post_json(
            "/api/auth/register",
            &json!({"username": username, "password": "correct-horse"}),
        )
        .await
    }

    /// Registers and logs in; returns the access token.
    pub(crate) async fn user(&self, username: &str) -> Result<String> {
        let registered = self.register(username).await?;
        if registered.status() != 201 {
            bail!("register {username}: {}", registered.status());
        }
        self.login(username).await
    }

    pub(crate) async fn login(&self, username: &str) -> Result<String> {
        self.sign_in(username).await.map(|tokens| tokens.access)
    }

    /// Logs in; returns both tokens.
    pub(crate) async fn sign_in(&self, username: &str) -> Result<Tokens> {
        let response = self
            .post_json(
                "/api/auth/login",
                &json!({"username": username, "password": "correct-horse"}),
            )
            .await?;
        if response.status() != 200 {
            bail!("login {username}: {}", response.status());
        }
        Tokens::from_body(&response.json().await?)
    }

    /// `POST /api/auth/refresh` with a refresh token.
    pub(crate) async fn refresh(&self, refresh_token: &str) -> Result<reqwest::Response> {
        self.post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": refresh_token}),
        )
        .await
    }

    /// Refreshes; returns the new tokens, failing unless the answer is 200.
    pub(crate) async fn refreshed(&self, refresh_token: &str) -> Result<Tokens> {
        let response = self.refresh(refresh_token).await?;
        if response.status() != 200 {
            bail!("refresh: {}", response.status());
        }
        Tokens::from_body(&response.json().await?)
    }

    /// `POST /api/auth/logout` with an access token and no body.
    pub(crate) async fn logout(&self, access_token: &str) -> Result<reqwest::Response> {
        Ok(self
            .http
            .post(self.url("/api/auth/logout"))
            .bearer_auth(access_token)
            .send()
            .await?)
    }

    pub(crate) async fn get_authed(&self, path: &str, token: &str) -> Result<reqwest::Response> {
        Ok(self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await?)
    }

    pub(crate) async fn post_authed(
        &self,
        path: &str,
        token: &str,
        body: &Value,
    ) -> Result<reqwest::Response> {
        Ok(self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await?)
    }

    /// POSTs `body` as it is, labelled JSON, as the holder of `token`.
    pub(crate) async fn http_post_raw(
        &self,
        path: &str,
        token: &str,
        body: &str,
    ) -> Result<reqwest::Response> {
        Ok(self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await?)
    }

    /// Sends `method` to `path` as the holder of `token`, with a JSON body
    /// when given.
    pub(crate) async fn send_authed(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response> {
        let request = self.http.request(method, self.url(path)).bearer_auth(token);
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        Ok(request.send().await?)
    }

    /// Opens a WebSocket and reads the greeting.
    pub(crate) async fn connect(&self, token: &str) -> Result<Client> {
        self.connect_with_query(token, "").await
    }

    /// Opens a WebSocket whose URL also carries `query` (`&name=value...`)
    /// and reads the greeting.
    pub(crate) async fn connect_with_query(&self, token: &str, query: &str) -> Result<Client> {
        let url = format!("ws://{}/ws/chat?token={token}{query}", self.address);
        let (socket, _) = tokio_tungstenite::connect_async(url).await?;
        let mut client = Client { socket };
        let greeting = client.recv().await?;
        if greeting["type"] != "system" {
            bail!("expected a greeting, got {greeting}");
        }
        Ok(client)
    }
}

impl TestApp {
    /// Opens a WebSocket whose receive buffer is tiny, to play a client that
    /// cannot keep up.
    pub(crate) async fn connect_with_small_buffer(&self, token: &str) -> Result<Client> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let stream = socket.connect(self.address.parse()?).await?;
        let url = format!("ws://{}/ws/chat?token={token}", self.address);
        let (socket, _) =
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await?;
        let mut client = Client { socket };
        client.recv().await?;
        Ok(client)
    }
}

/// The two tokens of a login or refresh answer.
#[derive(Debug, Clone)]
pub(crate) struct Tokens {
    pub(crate) access: String,
    pub(crate) refresh: String,
}

impl Tokens {
    pub(crate) fn from_body(body: &Value) -> Result<Tokens> {
        let field = |name: &str| {
            body[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("no {name} in {body}"))
        };
        Ok(Tokens {
            access: field("access_token")?,
            refresh: field("refresh_token")?,
        })
    }
}

/// A WebSocket client.
pub(crate) struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub(crate) fn from_stream(socket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client { socket }
    }

    pub(crate) async fn send(&mut self, frame: Value) -> Result<()> {
        self.send_text(frame.to_string()).await
    }

    pub(crate) async fn send_text(&mut self, text: String) -> Result<()> {
        self.socket.send(Message::text(text)).await?;
        Ok(())
    }

    /// Sends one raw frame: a fragment of a message, or bytes no client
    /// library would send as text.
    pub(crate) async fn send_frame(&mut self, frame: Frame) -> Result<()> {
        self.socket.send(Message::Frame(frame)).await?;
        Ok(())
    }

    /// The next JSON frame, skipping control frames.
    pub(crate) async fn recv(&mut self) -> Result<Value> {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .context("timed out waiting for a frame")?
                .ok_or_else(|| anyhow!("the socket closed"))??;
            match message {
                Message::Text(text) => return Ok(serde_json::from_str(&text)?),
                Message::Close(frame) => bail!("the server closed the socket: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame of the given type, skipping others (presence and
    /// system notices arrive whenever others come and go).
    pub(crate) async fn recv_type(&mut self, kind: &str) -> Result<Value> {
        loop {
            let frame = self.recv().await?;
            if frame["type"] == kind {
                return Ok(frame);
            }
        }
    }

    /// Reads (and so answers pings) for `span`, sending nothing; returns
    /// how many pings arrived.
    pub(crate) async fn listen_for(&mut self, span: Duration) -> Result<usize> {
        let until = tokio::time::Instant::now() + span;
        let mut pings = 0;
        while let Ok(next) = tokio::time::timeout_at(until, self.socket.next()).await {
            match next {
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(Message::Close(frame))) => bail!("the server closed the socket: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
                None => bail!("the socket closed"),
            }
        }
        Ok(pings)
    }

    /// Reads until the server closes the socket; returns the close frame.
    pub(crate) async fn closed(&mut self) -> Result<Option<CloseFrame>> {
        loop {
            let next = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .context("timed out waiting for the close")?;
            match next {
                Some(Ok(Message::Close(frame))) => return Ok(frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok(None),
            }
        }
    }

    /// Reads everything until the socket ends; returns how many `message`
    /// frames arrived and the close frame, if one did.
    pub(crate) async fn drain_until_closed(&mut self) -> Result<(usize, Option<CloseFrame>)> {
        let mut messages = 0;
        loop {
            let next = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .context("timed out: the socket stayed open")?;
            match next {
                Some(Ok(Message::Text(text))) => {
                    if text.contains(r#""type":"message""#) {
                        messages += 1;
                    }
                }
                Some(Ok(Message::Close(frame))) => return Ok((messages, frame)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ok((messages, None)),
            }
        }
    }

    /// Asserts that no frame of `kind` arrives within a short while.
    pub(crate) async fn expect_no(&mut self, kind: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Ok(()),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(&text)?;
                    if frame["type"] == kind {
                        bail!("unexpected {kind} frame: {frame}");
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => bail!("the socket ended: {other:?}"),
            }
        }
    }

    /// Sends a message and waits for its ack.
    pub(crate) async fn send_acked(
        &mut self,
        room: &str,
        content: &str,
        client_id: &str,
    ) -> Result<Value> {
        self.acked(
            json!({"type": "message", "room": room, "content": content, "client_id": client_id}),
        )
        .await
    }

    /// Sends `frame`, which carries a `client_id`, and returns its ack.
    pub(crate) async fn acked(&mut self, frame: Value) -> Result<Value> {
        let client_id = frame["client_id"].clone();
        self.send(frame).await?;
        loop {
            let frame = self.recv().await?;
            if frame["type"] == "ack" && frame["client_id"] == client_id {
                return Ok(frame);
            }
            if frame["type"] == "error" {
                bail!("error instead of ack: {frame}");
            }
        }
    }

    /// Sends `m{i}` to `general` for each `i` (client id `a{i}`), without
    /// waiting for acks.
    pub(crate) async fn send_burst(&mut self, numbers: RangeInclusive<usize>) -> Result<()> {
        for i in numbers {
            self.send(json!({"type": "message", "content": format!("m{i}"), "client_id": format!("a{i}")}))
                .await?;
        }
        Ok(())
    }

    /// Sends `m{i}` to `general` for each `i` (client id `a{i}`), each
    /// once the previous one is acknowledged.
    pub(crate) async fn send_acked_series(&mut self, numbers: RangeInclusive<usize>) -> Result<()> {
        for i in numbers {
            self.send_acked("general", &format!("m{i}"), &format!("a{i}"))
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn close(mut self) -> Result<()> {
        self.socket.close(None).await?;
        Ok(())
    }
}
