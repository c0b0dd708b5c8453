//! Settings from flags, the environment and `.env`.

use std::path::PathBuf;
use std::time::Duration;

use chat_transport::{Rate, RateLimits, TransportConfig};
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

/// The chat server.
#[derive(Debug, Parser)]
#[command(name = "chat-server", version, about, long_about = None)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings shared by every command.
    #[command(flatten)]
    pub settings: Settings,
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Apply pending migrations, then serve (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Print a fresh Fernet key, JWT secret and search key, for `.env`.
    GenKey,
    /// Re-encrypt every stored message with ENCRYPTION_KEY, in batches,
    /// while the server keeps running; then report which keys of
    /// ENCRYPTION_KEYS_PREVIOUS no message needs any more. Safe to stop and
    /// run again: it continues where it stopped.
    RotateKey {
        /// Messages re-encrypted per transaction.
        #[arg(
            long,
            default_value_t = 500,
            value_parser = clap::value_parser!(i64).range(1..=chat_storage::MAX_REENCRYPT_BATCH)
        )]
        batch_size: i64,
    },
    /// Bring the users and messages of the original Python backend's
    /// database over into this server's (DATABASE_URL): users keep their
    /// passwords, messages go into `general` in their original order, with
    /// their times and authors. Run it before the server is opened to
    /// users. Safe to stop and run again: nothing is imported twice.
    ImportOriginal(ImportArgs),
    /// Build the search index for messages stored before it was written
    /// live (an existing database), under SEARCH_KEY_NEXT when it is set
    /// (a key change) and SEARCH_KEY otherwise, while the server serves.
    /// Safe to stop and run again: it continues where it stopped. With
    /// `--drop-old`, then deletes the index entries of every other key.
    Reindex(ReindexArgs),
    /// Act on accounts, sessions and rooms as the operator, against
    /// DATABASE_URL, while the nodes run: each action reaches every node
    /// at once through Redis when REDIS_URL is set, and within
    /// CHAT_RECHECK_SECS otherwise.
    Admin(AdminArgs),
}

/// `chat-server reindex ...`.
#[derive(Debug, Clone, Args)]
pub struct ReindexArgs {
    /// Messages indexed per transaction.
    #[arg(
        long,
        default_value_t = 500,
        value_parser = clap::value_parser!(u32).range(1..=chat_storage::MAX_REINDEX_BATCH as i64)
    )]
    pub batch_size: u32,
    /// Start again from the oldest message instead of where the last run
    /// stopped (after a change of the word rules, say).
    #[arg(long)]
    pub restart: bool,
    /// When the index is built, delete the entries of every key other than
    /// SEARCH_KEY and SEARCH_KEY_NEXT (after a key change).
    #[arg(long)]
    pub drop_old: bool,
}

/// `chat-server admin [--json] ...`.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Print JSON, for scripts, instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// `chat-server admin ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Accounts.
    #[command(subcommand)]
    User(UserAdmin),
    /// Sign-in sessions.
    #[command(subcommand)]
    Sessions(SessionsAdmin),
    /// Rooms.
    #[command(subcommand)]
    Room(RoomAdmin),
}

/// `chat-server admin user ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum UserAdmin {
    /// Every account: status, open sessions, rooms.
    List,
    /// One account: status, open sessions, rooms and roles, messages.
    Show {
        /// The user's name.
        user: String,
    },
    /// Refuse the account's sign-ins, end every session it has and close
    /// its sockets on every node.
    Disable {
        /// The user's name.
        user: String,
    },
    /// Let a disabled account sign in again.
    Enable {
        /// The user's name.
        user: String,
    },
    /// Delete the account: its sessions end, it leaves every room, it can
    /// no longer sign in. Its name stays reserved and its messages stay,
    /// unless erased.
    Delete {
        /// The user's name.
        user: String,
        /// Also erase the text of every message it wrote (a deletion
        /// request): each stays as a tombstone without text.
        #[arg(long)]
        erase_messages: bool,
    },
}

/// `chat-server admin sessions ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum SessionsAdmin {
    /// End every session of a user and close its sockets on every node;
    /// the user may sign in again.
    Revoke {
        /// The user's name.
        user: String,
    },
}

/// `chat-server admin room ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum RoomAdmin {
    /// Every room and direct conversation: kind, visibility, members,
    /// owner.
    List,
    /// One room: its topic, members with their roles, bans.
    Show {
        /// The room's name.
        room: String,
    },
    /// Delete a room with its messages; every socket receiving it is told.
    /// `general` cannot be deleted.
    Delete {
        /// The room's name.
        room: String,
    },
    /// Make a user the owner of a room (the previous owner stays a
    /// moderator; a user who is not a member is added).
    SetOwner {
        /// The room's name.
        room: String,
        /// The user's name.
        user: String,
    },
    /// Give a user a role in a room: `owner`, `moderator` or `member`. A
    /// new owner replaces the previous one (who stays a moderator); a user
    /// who is not a member is added. This is how `general` and the rooms
    /// made before rooms had owners get an owner or moderators.
    SetRole {
        /// The room's name.
        room: String,
        /// The user's name.
        user: String,
        /// owner, moderator or member.
        #[arg(value_parser = parse_role)]
        role: chat_domain::Role,
    },
}

fn parse_role(value: &str) -> Result<chat_domain::Role, String> {
    chat_domain::Role::from_str_opt(&value.to_ascii_lowercase())
        .ok_or_else(|| format!("'{value}' is not a role: owner, moderator or member"))
}

/// The flags of `import-original`.
#[derive(Clone, Args)]
#[command(group(
    clap::ArgGroup::new("original_key")
        .required(true)
        .args(["passphrase_env", "key_env"])
))]
pub struct ImportArgs {
    /// The original's database: its DATABASE_URL, postgres://user:pass@host/db
    /// or sqlite://PATH (sqlite:///srv/old/chat.db is /srv/old/chat.db).
    /// Only read, never written.
    #[arg(long, env = "CHAT_IMPORT_FROM", hide_env_values = true)]
    pub from: String,

    /// The name of the environment variable holding the original's
    /// ENCRYPTION_KEY passphrase (the key is derived from it as the
    /// original did).
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,

    /// The name of the environment variable holding the original's Fernet
    /// key, when it was given one rather than a passphrase.
    #[arg(long, value_name = "VAR")]
    pub key_env: Option<String>,

    /// Read and decrypt everything and report what would be done, without
    /// importing anything (pending migrations of this server's database
    /// are applied, as by every command).
    #[arg(long)]
    pub dry_run: bool,

    /// Import even though `general` already holds messages written on this
    /// server: the imported ones come after them.
    #[arg(long)]
    pub append: bool,

    /// Messages read and written per transaction.
    #[arg(
        long,
        default_value_t = 1000,
        value_parser = clap::value_parser!(i64).range(1..=chat_storage::MAX_IMPORT_BATCH as i64)
    )]
    pub batch_size: i64,
}

impl std::fmt::Debug for ImportArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportArgs")
            .field("from", &crate::redacted_url(&self.from))
            .field("passphrase_env", &self.passphrase_env)
            .field("key_env", &self.key_env)
            .field("dry_run", &self.dry_run)
            .field("append", &self.append)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

/// How strict start-up is about secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// Missing secrets are generated once and kept in the data directory.
    Development,
    /// Missing secrets are a start-up error.
    Production,
}

/// An on/off setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// `PRAGMA synchronous` of the embedded SQLite database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqliteSync {
    /// Each commit reaches the disk before it is acknowledged.
    Full,
    /// Commits reach the disk at checkpoints: a power failure can lose the
    /// last acknowledged messages.
    Normal,
}

/// Every setting, each with a flag and an environment variable.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long,
        env = "CHAT_BIND",
        default_value = "127.0.0.1:8000",
        global = true
    )]
    pub bind: String,

    /// Database URL: postgres://user:pass@host/db or sqlite://path.
    /// Absent: a SQLite file in the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    /// Where the embedded database and generated secrets live.
    #[arg(
        long,
        env = "CHAT_DATA_DIR",
        default_value = "./chat-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// `development` or `production`; production refuses to start without
    /// SECRET_KEY and ENCRYPTION_KEY.
    #[arg(
        long = "env",
        env = "CHAT_ENV",
        value_enum,
        default_value = "development",
        global = true
    )]
    pub environment: Environment,

    /// JWT signing secret, at least 32 bytes.
    #[arg(long, env = "SECRET_KEY", hide_env_values = true, global = true)]
    pub secret_key: Option<SecretString>,

    /// The JWT secret before the last rotation: tokens it signed are still
    /// accepted until they expire; new tokens use SECRET_KEY. Remove it once
    /// CHAT_TOKEN_TTL_MINUTES have passed since the rotation.
    #[arg(
        long,
        env = "SECRET_KEY_PREVIOUS",
        hide_env_values = true,
        global = true
    )]
    pub secret_key_previous: Option<SecretString>,

    /// Fernet key that encrypts new messages (from `chat-server gen-key`),
    /// or `passphrase:<text>`, derived as the original Python backend
    /// derived its key (its database is brought over by `import-original`).
    #[arg(long, env = "ENCRYPTION_KEY", hide_env_values = true, global = true)]
    pub encryption_key: Option<SecretString>,

    /// Older Fernet keys, comma-separated, still accepted for decryption.
    #[arg(
        long,
        env = "ENCRYPTION_KEYS_PREVIOUS",
        hide_env_values = true,
        global = true
    )]
    pub encryption_keys_previous: Option<SecretString>,

    /// Key of the search index (32 bytes of url-safe base64, from
    /// `chat-server gen-key`), distinct from ENCRYPTION_KEY: words are
    /// indexed as keyed hashes under it. Required in production; generated
    /// into the data directory in development.
    #[arg(long, env = "SEARCH_KEY", hide_env_values = true, global = true)]
    pub search_key: Option<SecretString>,

    /// The search key being moved to: while set, every message is indexed
    /// under it too, and `chat-server reindex` builds its index for older
    /// messages; searches still use SEARCH_KEY until it takes its place.
    #[arg(long, env = "SEARCH_KEY_NEXT", hide_env_values = true, global = true)]
    pub search_key_next: Option<SecretString>,

    /// `on` or `off`: message search. Off, nothing is indexed (no search
    /// key is needed) and `GET /api/search` answers 404.
    #[arg(
        long,
        env = "CHAT_SEARCH",
        value_enum,
        default_value = "on",
        global = true
    )]
    pub search: Switch,

    /// Redis for running several nodes behind a load balancer
    /// (redis://host:6379). Absent: a single node, fan-out in process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and channel (deployments sharing one Redis
    /// need different ones).
    #[arg(long, env = "REDIS_NAMESPACE", default_value = "chat", global = true)]
    pub redis_namespace: String,

    /// Most events waiting to be published to Redis for the other nodes.
    /// Beyond it, and whenever Redis is unreachable, events are dropped
    /// (counted in chat_frames_dropped_total) and the other nodes read what
    /// they carried from the database once Redis is back.
    #[arg(
        long,
        env = "CHAT_REDIS_BACKLOG",
        default_value_t = 4096,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
        global = true
    )]
    pub redis_backlog: u32,

    /// Browser origins allowed to call the API, comma-separated.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',', global = true)]
    pub cors_origins: Vec<String>,

    /// Access token lifetime, in minutes.
    #[arg(
        long,
        env = "CHAT_TOKEN_TTL_MINUTES",
        default_value_t = 30,
        global = true
    )]
    pub token_ttl_minutes: u32,

    /// Refresh token lifetime, in days: a sign-in session ends after this
    /// long without a refresh. Each refresh starts it again.
    #[arg(
        long,
        env = "CHAT_REFRESH_TTL_DAYS",
        default_value_t = 14,
        value_parser = clap::value_parser!(u32).range(1..=3650),
        global = true
    )]
    pub refresh_ttl_days: u32,

    /// The `iss` claim of issued access tokens, required on every token.
    /// Every node of a deployment needs the same one.
    #[arg(
        long,
        env = "CHAT_JWT_ISSUER",
        default_value = "chat-server",
        global = true
    )]
    pub jwt_issuer: String,

    /// The `aud` claim of issued access tokens, required on every token.
    /// Every node of a deployment needs the same one.
    #[arg(long, env = "CHAT_JWT_AUDIENCE", default_value = "chat", global = true)]
    pub jwt_audience: String,

    /// `true` to also accept tokens of the original Python backend (no
    /// `iss`, `aud` or session), during the cut-over from it only. Such a
    /// token cannot be revoked by signing out; it is valid until it expires.
    #[arg(
        long,
        env = "CHAT_ACCEPT_LEGACY_TOKENS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub accept_legacy_tokens: bool,

    /// bcrypt cost (10 to 31).
    #[arg(long, env = "CHAT_BCRYPT_COST", default_value_t = 12, global = true)]
    pub bcrypt_cost: u32,

    /// Longest message, in characters.
    #[arg(
        long,
        env = "CHAT_MAX_MESSAGE_CHARS",
        default_value_t = 4000,
        global = true
    )]
    pub max_message_chars: usize,

    /// Database connections in the pool. On PostgreSQL it is split between
    /// the main thread (at least the writer lanes + 1) and the HTTP workers
    /// (at least one each).
    #[arg(long, env = "CHAT_DB_POOL_SIZE", default_value_t = 16, global = true)]
    pub db_pool_size: usize,

    /// SQLite only: `full` (the default) syncs every commit to disk before
    /// messages are acknowledged, so an acknowledged message survives a
    /// power failure; `normal` syncs at checkpoints only, faster, but a power
    /// failure or kernel crash can lose the last acknowledged messages (a
    /// crash of the process alone loses nothing either way).
    #[arg(
        long,
        env = "CHAT_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value = "full",
        global = true
    )]
    pub sqlite_synchronous: SqliteSync,

    /// Newest messages of each recently read room kept in memory, so that
    /// opening a room does not query its page; 0 turns this off.
    #[arg(
        long,
        env = "CHAT_HISTORY_CACHE_MESSAGES",
        default_value_t = 100,
        global = true
    )]
    pub history_cache_messages: usize,

    /// Memory those messages may take in all, in MiB; past it the rooms
    /// read longest ago are dropped from memory.
    #[arg(
        long,
        env = "CHAT_HISTORY_CACHE_MB",
        default_value_t = 64,
        global = true
    )]
    pub history_cache_mb: usize,

    /// HTTP worker threads; defaults to the number of cores.
    #[arg(long, env = "CHAT_WORKERS", global = true)]
    pub workers: Option<usize>,

    /// Largest WebSocket frame a client may send, in bytes (larger: close 1009).
    #[arg(
        long,
        env = "CHAT_WS_MAX_FRAME_BYTES",
        default_value_t = 65_536,
        global = true
    )]
    pub ws_max_frame_bytes: usize,

    /// Frames queued for a slow client before it is disconnected. Each
    /// writer's commit can queue up to CHAT_WRITER_MAX_BATCH frames for a
    /// socket at once, so keep this at least CHAT_WRITER_MAX_BATCH ×
    /// (CHAT_WRITER_LANES + 1).
    #[arg(long, env = "CHAT_WS_QUEUE", default_value_t = 8192, global = true)]
    pub ws_queue: usize,

    /// Seconds between pings to a quiet socket.
    #[arg(
        long,
        env = "CHAT_WS_HEARTBEAT_SECS",
        default_value_t = 15,
        global = true
    )]
    pub ws_heartbeat_secs: u64,

    /// Seconds of silence after which a socket is closed.
    #[arg(
        long,
        env = "CHAT_WS_IDLE_TIMEOUT_SECS",
        default_value_t = 45,
        global = true
    )]
    pub ws_idle_timeout_secs: u64,

    /// Most messages stored in one transaction.
    #[arg(
        long,
        env = "CHAT_WRITER_MAX_BATCH",
        default_value_t = 1024,
        global = true
    )]
    pub writer_max_batch: usize,

    /// Writers committing side by side, each for its share of the rooms
    /// (a room's messages always go through the same one). PostgreSQL only:
    /// SQLite has one write lock, so it always gets one writer.
    #[arg(long, env = "CHAT_WRITER_LANES", default_value_t = 4, global = true)]
    pub writer_lanes: usize,

    /// Seconds shutdown waits for sockets and in-flight writes.
    #[arg(
        long,
        env = "CHAT_SHUTDOWN_GRACE_SECS",
        default_value_t = 10,
        global = true
    )]
    pub shutdown_grace_secs: u64,

    /// `on` or `off`: rate limits on sign-up, sign-in, KeyPackage claims
    /// and WebSocket frames.
    /// Turn off only for load tests from a single address.
    #[arg(
        long,
        env = "CHAT_RATE_LIMIT",
        value_enum,
        default_value = "on",
        global = true
    )]
    pub rate_limit: Switch,

    /// Registrations per minute from one address.
    #[arg(
        long,
        env = "CHAT_RATE_LIMIT_REGISTER_PER_MINUTE",
        default_value_t = 5,
        global = true
    )]
    pub rate_limit_register_per_minute: u32,

    /// Sign-ins per minute from one address.
    #[arg(
        long,
        env = "CHAT_RATE_LIMIT_LOGIN_PER_MINUTE",
        default_value_t = 10,
        global = true
    )]
    pub rate_limit_login_per_minute: u32,

    /// KeyPackages one user may claim per minute, sustained: each user
    /// named in a claim counts one.
    #[arg(
        long,
        env = "CHAT_RATE_LIMIT_KEY_PACKAGE_CLAIMS_PER_MINUTE",
        default_value_t = 20,
        global = true
    )]
    pub rate_limit_key_package_claims_per_minute: u32,

    /// Users whose KeyPackages one user may claim in a burst (a claim names
    /// at most 32).
    #[arg(
        long,
        env = "CHAT_RATE_LIMIT_KEY_PACKAGE_CLAIM_BURST",
        default_value_t = 128,
        global = true
    )]
    pub rate_limit_key_package_claim_burst: u32,

    /// WebSocket frames per second one connection may send, sustained.
    #[arg(
        long,
        env = "CHAT_WS_FRAMES_PER_SECOND",
        default_value_t = 10.0,
        global = true
    )]
    pub ws_frames_per_second: f64,

    /// WebSocket frames one connection may send in a burst.
    #[arg(long, env = "CHAT_WS_FRAME_BURST", default_value_t = 30, global = true)]
    pub ws_frame_burst: u32,

    /// Reverse proxies (IP addresses, comma-separated) whose
    /// X-Forwarded-For header names the client.
    #[arg(
        long,
        env = "CHAT_TRUSTED_PROXIES",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// WebSocket connections one user may hold on this node.
    #[arg(
        long,
        env = "CHAT_MAX_CONNECTIONS_PER_USER",
        default_value_t = 20,
        global = true
    )]
    pub max_connections_per_user: usize,

    /// Rooms with more members than this send no read receipts (`read`
    /// frames); the read positions are still kept and listed.
    #[arg(
        long,
        env = "CHAT_READ_RECEIPTS_MAX_MEMBERS",
        default_value_t = 100,
        global = true
    )]
    pub read_receipts_max_members: usize,

    /// Seconds between a node's re-checks, in the database, of its open
    /// sockets' sessions and rooms and of erased messages: how long an
    /// action of `chat-server admin` takes, at most, to reach a node that
    /// does not hear it through Redis (a single node, or Redis down).
    #[arg(
        long,
        env = "CHAT_RECHECK_SECS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..=3600),
        global = true
    )]
    pub recheck_secs: u64,

    /// A secret that `GET /metrics` requires as its bearer token
    /// (`Authorization: Bearer <token>`); absent: anyone who reaches the
    /// listener may read the metrics.
    #[arg(
        long,
        env = "CHAT_METRICS_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub metrics_token: Option<SecretString>,

    /// Serve `GET /metrics` on a listener of its own at this address
    /// (e.g. 127.0.0.1:9100), and not on CHAT_BIND.
    #[arg(long, env = "CHAT_METRICS_BIND", global = true)]
    pub metrics_bind: Option<String>,

    /// Log filter, e.g. `info` or `chat_transport=debug,info`.
    #[arg(long, env = "CHAT_LOG", default_value = "info", global = true)]
    pub log: String,
}

impl Settings {
    /// The settings with every default, as if no flag or variable were set.
    pub fn defaults() -> Settings {
        Cli::parse_from(["chat-server"]).settings
    }

    /// HTTP worker threads: as set, or one per core.
    pub fn workers(&self) -> usize {
        self.workers
            .unwrap_or_else(|| TransportConfig::default().workers)
            .max(1)
    }

    /// How `CHAT_DB_POOL_SIZE` is split among the threads that query
    /// PostgreSQL. The main thread, which opens the store and runs the
    /// writers, comes first: it gets its even share, and at least one
    /// connection per writer lane and one more. The HTTP workers share the
    /// rest evenly, at least one each.
    pub fn pool_shards(&self) -> Vec<usize> {
        let workers = self.workers();
        let total = self.db_pool_size.max(1);
        let main = total
            .div_ceil(workers + 1)
            .max(self.writer_lanes.max(1) + 1);
        let rest = total.saturating_sub(main);
        let mut shards = vec![main];
        shards.extend(
            (0..workers)
                .map(|worker| (rest / workers + usize::from(worker < rest % workers)).max(1)),
        );
        shards
    }

    /// The transport's part of the settings.
    pub fn transport(&self) -> TransportConfig {
        let defaults = TransportConfig::default();
        TransportConfig {
            bind: self.bind.clone(),
            workers: self.workers(),
            cors_origins: self
                .cors_origins
                .iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            max_message_chars: self.max_message_chars,
            max_frame_bytes: self.ws_max_frame_bytes,
            outbound_queue: self.ws_queue,
            heartbeat_interval: Duration::from_secs(self.ws_heartbeat_secs.max(1)),
            idle_timeout: Duration::from_secs(self.ws_idle_timeout_secs.max(1)),
            writer_max_batch: self.writer_max_batch,
            writer_lanes: self.writer_lanes.max(1),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            redis_url: self
                .redis_url
                .as_ref()
                .map(|url| url.trim().to_owned())
                .filter(|url| !url.is_empty()),
            redis_namespace: self.redis_namespace.clone(),
            redis_backlog: self.redis_backlog as usize,
            rate_limits: (self.rate_limit == Switch::On).then(|| RateLimits {
                register: Rate::per_minute(self.rate_limit_register_per_minute),
                login: Rate::per_minute(self.rate_limit_login_per_minute),
                ws_frames: Rate {
                    burst: self.ws_frame_burst.max(1),
                    per_second: self.ws_frames_per_second.max(0.1),
                },
                key_package_claims: Rate {
                    burst: self.rate_limit_key_package_claim_burst.max(1),
                    per_second: f64::from(self.rate_limit_key_package_claims_per_minute.max(1))
                        / 60.0,
                },
                ..RateLimits::default()
            }),
            trusted_proxies: self.trusted_proxies.clone(),
            max_connections_per_user: self.max_connections_per_user.max(1),
            read_receipts_max_members: self.read_receipts_max_members,
            refresh_ttl: Duration::from_secs(
                u64::from(self.refresh_ttl_days.max(1)) * 24 * 60 * 60,
            ),
            recheck_interval: Duration::from_secs(self.recheck_secs.max(1)),
            metrics_token: self
                .metrics_token
                .clone()
                .filter(|token| !token.expose_secret().trim().is_empty()),
            metrics_bind: self
                .metrics_bind
                .as_ref()
                .map(|bind| bind.trim().to_owned())
                .filter(|bind| !bind.is_empty()),
            ..defaults
        }
    }
}
