//! The chat server binary's start-up: settings, secrets, logging,
//! migrations, then [`chat_transport::Application`]; the maintenance
//! command that re-encrypts stored messages after a key rotation
//! ([`rotate_keys`]); and the one that brings over the original Python
//! backend's database ([`import_original`]); and the one that builds the
//! search index for messages stored before it ([`reindex()`]).
//!
//! It holds no chat logic; everything it does is wiring, so it stays thin
//! and every part it wires is tested where it lives.

pub mod admin;
pub mod import;
pub mod reindex;
pub mod rotation;
pub mod secrets;
pub mod settings;

use std::time::Duration;

use anyhow::Context;
use chat_auth::{AuthError, PasswordHasher, TokenKeys};
use chat_crypto::KeyRing;
use chat_storage::{RecentCache, SqliteSynchronous, Store, StoreConfig};
use chat_transport::{Application, Services};

pub use import::{ImportOptions, ImportProgress, ImportReport, ProgressPrinter, import_original};
pub use reindex::{ReindexReport, reindex};
pub use rotation::{PreviousKey, RotationReport, rotate_keys};
pub use settings::{
    AdminArgs, AdminCommand, Cli, Command, Environment, ReindexArgs, RoomAdmin, SessionsAdmin,
    Settings, UserAdmin,
};

/// The database URL in force: the setting, or a SQLite file in the data
/// directory.
pub fn database_url(settings: &Settings) -> String {
    match &settings.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", settings.data_dir.join("chat.db").display()),
    }
}

/// Opens the database and applies pending migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    open_store_with(settings, secrets::key_ring(settings)?).await
}

/// [`open_store`] with a key ring already built from the settings.
async fn open_store_with(settings: &Settings, keys: KeyRing) -> anyhow::Result<Store> {
    let store = Store::connect(StoreConfig {
        url: database_url(settings),
        pool_size: settings.db_pool_size,
        pool_shards: settings.pool_shards(),
        keys,
        search: secrets::search_keys(settings)?,
        recent: RecentCache {
            per_room: settings.history_cache_messages,
            max_bytes: settings.history_cache_mb.saturating_mul(1024 * 1024),
        },
        sqlite_synchronous: match settings.sqlite_synchronous {
            settings::SqliteSync::Full => SqliteSynchronous::Full,
            settings::SqliteSync::Normal => SqliteSynchronous::Normal,
        },
    })
    .await
    .context("could not open the database")?;
    let applied = store
        .run_pending_migrations()
        .await
        .context("could not apply migrations")?;
    for name in applied {
        tracing::info!(migration = %name, "applied migration");
    }
    Ok(store)
}

/// Checks the CORS origins: `*`, or `scheme://host[:port]` each.
pub fn check_cors_origins(origins: &[String]) -> anyhow::Result<()> {
    for origin in origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
        if origin == "*" {
            continue;
        }
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let valid = rest.is_some_and(|host| {
            !host.is_empty() && !host.contains('/') && !host.contains(char::is_whitespace)
        });
        anyhow::ensure!(
            valid,
            "CORS_ORIGINS entry {origin:?} is not an origin like https://chat.example.com"
        );
    }
    Ok(())
}

/// Builds the server from settings: database, keys, hasher, listener.
pub async fn build(settings: &Settings) -> anyhow::Result<Application> {
    check_cors_origins(&settings.cors_origins)?;
    let store = open_store(settings).await?;
    match store.durability_warnings().await {
        Ok(warnings) => {
            for warning in warnings {
                tracing::warn!("acknowledged messages are not durable: {warning}");
            }
        }
        Err(error) => tracing::warn!(
            error = %format!("{:#}", anyhow::Error::new(error)),
            "could not read the database's durability settings"
        ),
    }
    if let Some(keys) = store.search_keys() {
        match store.search_index_state(keys.current()).await {
            Ok(chat_storage::SearchIndexState::Complete) => {}
            Ok(state) => tracing::warn!(
                ?state,
                "search finds only the messages indexed so far; run `chat-server reindex` to \
                 index the older ones"
            ),
            Err(error) => tracing::warn!(
                error = %format!("{:#}", anyhow::Error::new(error)),
                "could not read the state of the search index"
            ),
        }
    }
    let hasher =
        PasswordHasher::new(settings.bcrypt_cost).context("CHAT_BCRYPT_COST is not valid")?;
    let ttl = Duration::from_secs(u64::from(settings.token_ttl_minutes.max(1)) * 60);
    let tokens = TokenKeys::with_previous(
        &secrets::jwt_secret(settings)?,
        secrets::jwt_previous_secret(settings),
        ttl,
    )
    .map_err(|error| {
        let setting = match error {
            AuthError::WeakPreviousSecret { .. } => "SECRET_KEY_PREVIOUS",
            _ => "SECRET_KEY",
        };
        anyhow::Error::new(error).context(format!("{setting} is not valid"))
    })?
    .with_issuer_and_audience(&settings.jwt_issuer, &settings.jwt_audience)
    .context("CHAT_JWT_ISSUER and CHAT_JWT_AUDIENCE must not be empty")?
    .accepting_legacy_tokens(settings.accept_legacy_tokens);
    if settings.accept_legacy_tokens {
        tracing::warn!(
            "CHAT_ACCEPT_LEGACY_TOKENS is on: tokens of the original backend are accepted \
             and cannot be revoked by signing out; turn it off once the cut-over is done"
        );
    }
    let transport = settings.transport();
    if settings.environment == Environment::Production
        && transport.metrics_token.is_none()
        && transport.metrics_bind.is_none()
    {
        tracing::warn!(
            "GET /metrics answers anyone who reaches CHAT_BIND: set CHAT_METRICS_TOKEN, \
             or CHAT_METRICS_BIND to an address only Prometheus reaches"
        );
    }
    let services = Services {
        store,
        hasher,
        tokens,
    };
    Application::build(transport, services)
        .await
        .context("could not start the server")
}

/// Prints a fresh Fernet key and JWT secret in `.env` form. A closed
/// pipe (`chat-server gen-key | head -1`) is not an error.
pub fn print_new_keys() -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = writeln!(
        out,
        "ENCRYPTION_KEY={}\nSECRET_KEY={}\nSEARCH_KEY={}",
        chat_crypto::FernetKey::generate().to_base64(),
        secrets::generate_jwt_secret(),
        chat_crypto::SearchKey::generate().to_base64()
    );
    match written {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "could not listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "could not listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Never let a secret reach a log line: the database URL without its
/// password.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}
