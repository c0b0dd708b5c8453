use std::net::IpAddr;
use std::time::Duration;

use secrecy::SecretString;

use crate::limits::RateLimits;

/// Everything the transport needs to know about its deployment. The server
/// binary fills it from flags and the environment; tests and embedders build
/// it by hand, starting from [`TransportConfig::default`].
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Address to listen on; port 0 picks a free port.
    pub bind: String,
    /// Number of HTTP worker threads.
    pub workers: usize,
    /// Browser origins allowed by CORS. Empty means no cross-origin access.
    pub cors_origins: Vec<String>,
    /// Longest message body, in characters.
    pub max_message_chars: usize,
    /// Largest WebSocket frame a client may send; larger ones close the
    /// socket with 1009.
    pub max_frame_bytes: usize,
    /// Largest JSON request body.
    pub max_body_bytes: usize,
    /// Frames that may wait for a slow client before it is disconnected.
    pub outbound_queue: usize,
    /// How often the server pings an idle socket.
    pub heartbeat_interval: Duration,
    /// A socket that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout: Duration,
    /// Most messages committed in one transaction by the writer.
    pub writer_max_batch: usize,
    /// Messages that may wait for the writers (over all lanes) before
    /// senders are slowed down.
    pub writer_queue: usize,
    /// Writers committing side by side, each for its share of the rooms
    /// (on PostgreSQL; SQLite, with its one write lock, gets one writer).
    /// One commit can queue `writer_max_batch` frames for one socket, so
    /// keep `outbound_queue` at least `writer_max_batch × (lanes + 1)`.
    pub writer_lanes: usize,
    /// How long shutdown waits for sockets and in-flight writes.
    pub shutdown_grace: Duration,
    /// Largest `limit` a history request may ask for.
    pub history_max_limit: i64,
    /// Redis for fan-out across several nodes; `None` runs a single node.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel, so several deployments can
    /// share one Redis.
    pub redis_namespace: String,
    /// Most events waiting to be published to Redis; beyond it, and
    /// whenever Redis is unreachable, they are dropped (and counted), and
    /// the other nodes catch up from the database.
    pub redis_backlog: usize,
    /// Rate limits; `None` turns them all off (load tests from one address).
    pub rate_limits: Option<RateLimits>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpAddr>,
    /// Most WebSocket connections one user may hold on this node.
    pub max_connections_per_user: usize,
    /// Rooms with more members than this send no read receipts (`read`
    /// frames), as large products do; positions are still kept.
    pub read_receipts_max_members: usize,
    /// How long a refresh token stays usable, and so how long an auth
    /// session lasts without a refresh. Each refresh starts it again.
    /// (The access token's lifetime is the `TokenKeys`'.)
    pub refresh_ttl: Duration,
    /// How often the node re-checks, in the database, the sessions and
    /// rooms of its open sockets and the erased messages, for changes whose
    /// notice did not reach it (see `recheck.rs`): with one node and no
    /// Redis, how long an operator's `chat-server admin` action may take to
    /// close a socket.
    pub recheck_interval: Duration,
    /// When set, `GET /metrics` answers only requests that carry it as a
    /// bearer token (`Authorization: Bearer <token>`).
    pub metrics_token: Option<SecretString>,
    /// When set, `GET /metrics` is served on a listener of its own at this
    /// address (port 0 picks a free port), and not on `bind`.
    pub metrics_bind: Option<String>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            bind: "127.0.0.1:8000".to_owned(),
            workers: std::thread::available_parallelism().map_or(2, usize::from),
            cors_origins: Vec::new(),
            max_message_chars: chat_domain::MessageBody::DEFAULT_MAX_CHARS,
            max_frame_bytes: 64 * 1024,
            max_body_bytes: 16 * 1024,
            outbound_queue: 8192,
            heartbeat_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            writer_max_batch: 1024,
            writer_queue: 8192,
            writer_lanes: 4,
            shutdown_grace: Duration::from_secs(10),
            history_max_limit: 200,
            redis_url: None,
            redis_namespace: "chat".to_owned(),
            redis_backlog: 4096,
            rate_limits: Some(RateLimits::default()),
            trusted_proxies: Vec::new(),
            max_connections_per_user: 20,
            read_receipts_max_members: 100,
            refresh_ttl: Duration::from_secs(14 * 24 * 60 * 60),
            recheck_interval: Duration::from_secs(5),
            metrics_token: None,
            metrics_bind: None,
        }
    }
}
