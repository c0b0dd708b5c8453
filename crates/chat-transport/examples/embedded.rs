//! An existing actix-web service with the chat server mounted inside it.
//!
//! The service has a route of its own (`GET /hello`) and its own tracing
//! subscriber, set up once; the chat routes (REST, the WebSocket at
//! `/ws/chat`, the OpenAPI document, Swagger UI at `/docs` and ReDoc at
//! `/redoc`) are mounted beside it, and their logs go to the same
//! subscriber because every chat crate logs through `tracing`.
//!
//! It lives in `chat-transport` because that is the crate an embedding
//! service depends on: [`ChatService`] is built from a [`TransportConfig`]
//! and [`Services`] (store, password hasher, token keys), all plain values
//! the host fills from its own configuration. `chat-server` is the
//! standalone binary: its settings are its command line and environment,
//! and its `Application` owns the HTTP server, which a host service does not
//! want to give away.
//!
//! Run it with `cargo run -p chat-transport --example embedded`, then:
//!
//! ```text
//! curl http://127.0.0.1:8080/hello
//! curl http://127.0.0.1:8080/health
//! ```
//!
//! `PORT` picks another port, `RUST_LOG` filters the logs. The database is a SQLite file in a fresh
//! directory under the system's temporary directory, removed on exit.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use chat_auth::{PasswordHasher, TokenKeys};
use chat_crypto::{FernetKey, KeyRing, SearchKey, SearchKeys};
use chat_storage::{RecentCache, SqliteSynchronous, Store, StoreConfig};
use chat_transport::{ChatService, Services, TransportConfig};
use secrecy::SecretString;
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    // The host's tracing, set up once for the whole process. The chat
    // crates never install a subscriber of their own.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().context("PORT is not a port number")?,
        Err(_) => 8080,
    };
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("could not listen on port {port}"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    // A fresh directory each run: the keys are generated anew each run
    // too, and could not read what an earlier run stored.
    let data_dir = std::env::temp_dir().join(format!("embedded-chat-{}", std::process::id()));
    let database_url = format!("sqlite://{}", data_dir.join("chat.db").display());
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "could not listen for Ctrl-C; serving until killed");
            std::future::pending::<()>().await;
        }
    };
    let result = run(listener, &database_url, ctrl_c).await;
    if let Err(error) = std::fs::remove_dir_all(&data_dir) {
        tracing::warn!(%error, dir = %data_dir.display(), "could not remove the data directory");
    }
    result
}

/// Serves the host with the chat mounted on `listener` until `shutdown`
/// resolves, then shuts both down: the HTTP server stops accepting while
/// the chat closes its sockets with 1001 and stores what is queued.
pub(crate) async fn run(
    listener: TcpListener,
    database_url: &str,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let chat = chat_service(database_url).await?;
    let server = serve(chat.clone(), listener)?;
    let handle = server.handle();
    let mut server = std::pin::pin!(server);
    tokio::select! {
        result = &mut server => return Ok(result?),
        () = shutdown => {}
    }
    tracing::info!("shutting down");
    // The server future must keep being polled to carry the stop out,
    // while the chat closes its sockets and its writer drains.
    let (result, (), ()) = tokio::join!(
        server,
        chat.shutdown(Duration::from_secs(10)),
        handle.stop(true)
    );
    Ok(result?)
}

/// Builds the chat service on the database at `database_url` (created and
/// migrated here), with keys generated in code.
///
/// A production service loads its keys from its configuration or secret
/// store instead, and keeps them: the Fernet key encrypts every stored
/// message (it must outlive the data), and the JWT secret signs the access
/// tokens (a new one signs everybody out). `chat-server gen-key` prints a
/// pair, and `docs/OPERATIONS.md` explains rotating them.
async fn chat_service(database_url: &str) -> anyhow::Result<ChatService> {
    let keys = KeyRing::new(FernetKey::generate(), Vec::new());
    // A fresh Fernet key's text is 32 random bytes in base64: a fine
    // throw-away JWT secret, without a random number generator of our own.
    let jwt_secret = SecretString::from(FernetKey::generate().to_base64());

    let store = Store::connect(StoreConfig {
        url: database_url.to_owned(),
        pool_size: 8,
        pool_shards: Vec::new(),
        keys,
        // The search index's key; like the JWT secret, a real service
        // keeps it in its configuration (`SearchKey::parse`).
        search: Some(SearchKeys::new(SearchKey::generate(), None)),
        recent: RecentCache::default(),
        sqlite_synchronous: SqliteSynchronous::default(),
    })
    .await
    .context("could not open the database")?;
    for migration in store.run_pending_migrations().await? {
        tracing::info!(%migration, "applied migration");
    }
    let services = Services {
        store,
        hasher: PasswordHasher::new(PasswordHasher::DEFAULT_COST)?,
        tokens: TokenKeys::new(&jwt_secret, Duration::from_secs(30 * 60))?,
    };
    // `bind`, `workers` and `cors_origins` are read only by the chat's own
    // `Application`; here the host's HttpServer decides those.
    let config = TransportConfig::default();
    Ok(ChatService::new(config, services).await?)
}

/// The host's HTTP server on `listener`: its own routes, and the chat's
/// beside them.
///
/// The chat is mounted at the root, where its OpenAPI document says its
/// routes are. It also sets the app's JSON, query and path extractor
/// configurations (size limit, error bodies); a host route that wants its
/// own puts them on its resource or scope, which take precedence.
fn serve(chat: ChatService, listener: TcpListener) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        App::new()
            .route("/hello", web::get().to(hello))
            .configure(|cfg| chat.configure(cfg))
    })
    .workers(2)
    // `run` decides when to stop, so that the chat shuts down with the
    // server.
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

/// The host's own route.
async fn hello() -> HttpResponse {
    tracing::info!("saying hello");
    HttpResponse::Ok().body("hello from the host service\n")
}
