use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chat_crypto::KeyRing;
use deadpool::Runtime;
use deadpool::managed::{Object, Pool};
use diesel::connection::SimpleConnection;
use diesel::result::ConnectionError;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionResult};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

use crate::config::Target;
use crate::shards::PgPools;
use crate::{StorageError, StoreConfig};

/// SQLite behind diesel-async: every call runs on tokio's blocking pool.
pub(crate) type SqliteConn = SyncConnectionWrapper<SqliteConnection, DetachOnCancel>;

/// Runs SQLite's blocking calls on Tokio's blocking pool. When the future
/// waiting for one is dropped (a client went away mid-request), the call
/// finishes on its own in the background; the connection's lock keeps the
/// next user waiting until it has. diesel-async's default spawner instead
/// waits for it with `block_in_place`, which panics on the current-thread
/// runtimes actix-web's workers use.
pub(crate) struct DetachOnCancel(tokio::runtime::Handle);

impl diesel_async::sync_connection_wrapper::SpawnBlocking for DetachOnCancel {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<R, Box<dyn std::error::Error + Send + Sync + 'static>>,
    >
    where
        R: Send + 'static,
    {
        let handle = self.0.spawn_blocking(task);
        Box::pin(async move { handle.await.map_err(Box::from) })
    }

    fn get_runtime() -> Self {
        let handle = tokio::runtime::Handle::try_current()
            .unwrap_or_else(|_| fallback_runtime().handle().clone());
        DetachOnCancel(handle)
    }
}

/// A runtime for SQLite calls made outside any Tokio runtime (a synchronous
/// caller); created on first use.
fn fallback_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("chat-storage-sqlite")
            .build()
            .unwrap_or_else(|error| panic!("cannot start a Tokio runtime: {error}"))
    })
}

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// How long a call waits for a connection (to free up, or to be opened)
/// before it fails with [`StorageError::Unavailable`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Set on every SQLite connection, followed by the `synchronous` setting
/// (see [`SqliteSynchronous`]). `busy_timeout` comes first so that the
/// switch to WAL waits for a concurrent connection instead of failing.
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; \
     PRAGMA journal_mode = WAL; \
     PRAGMA foreign_keys = ON;";

/// How SQLite makes a commit durable (`PRAGMA synchronous`, in WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqliteSynchronous {
    /// Every commit is synced to disk before it returns: an acknowledged
    /// message survives a power failure or a kernel crash. The default.
    #[default]
    Full,
    /// The WAL is synced only at checkpoints: a process crash loses
    /// nothing, but a power failure or kernel crash can roll back the last
    /// commits, messages that were already acknowledged.
    Normal,
}

impl SqliteSynchronous {
    fn pragma(self) -> &'static str {
        match self {
            SqliteSynchronous::Full => "PRAGMA synchronous = FULL;",
            SqliteSynchronous::Normal => "PRAGMA synchronous = NORMAL;",
        }
    }
}

/// Applies [`SQLITE_PRAGMAS`] and `synchronous` to a new connection.
fn sqlite_setup(synchronous: SqliteSynchronous) -> String {
    format!("{SQLITE_PRAGMAS} {}", synchronous.pragma())
}

/// How one shard of the connection pool is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShard {
    /// Connections checked out now.
    pub in_use: usize,
    /// Connections open and waiting to be used.
    pub idle: usize,
    /// The most connections the shard holds.
    pub max: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

/// One pool per backend; which one is decided by the URL at run time.
pub(crate) enum Pools {
    Postgres(PgPools),
    Sqlite {
        pool: Pool<SqliteManager>,
        /// For the migration connection, which is opened outside the pool.
        path: PathBuf,
        synchronous: SqliteSynchronous,
    },
}

pub(crate) struct Inner {
    pub(crate) pools: Pools,
    pub(crate) keys: KeyRing,
    pub(crate) search: Option<chat_crypto::SearchKeys>,
    pub(crate) room_keys: crate::rooms::RoomKeys,
    pub(crate) recent: crate::recent::RecentMessages,
}

/// The handle to the database. Cheap to clone: clones share one pool.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .finish_non_exhaustive()
    }
}

/// Checks a connection out of `pool`; every failure is an outage.
pub(crate) async fn checkout<M>(pool: &Pool<M>) -> Result<Object<M>, StorageError>
where
    M: deadpool::managed::Manager<Error = diesel_async::pooled_connection::PoolError>,
{
    Ok(pool.get().await?)
}

/// A SQLite connection inside a write transaction. If the caller stops
/// waiting before the transaction ends, dropping this queues a rollback on
/// the connection at once, so its write lock does not outlive the caller
/// and hold up every other writer.
pub(crate) struct SqliteWrite {
    object: Object<SqliteManager>,
    finished: bool,
}

impl SqliteWrite {
    pub(crate) fn new(object: Object<SqliteManager>) -> SqliteWrite {
        SqliteWrite {
            object,
            finished: false,
        }
    }

    pub(crate) fn connection(&mut self) -> &mut SqliteConn {
        &mut self.object
    }

    /// The transaction committed or rolled back: nothing to clean up.
    pub(crate) fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for SqliteWrite {
    fn drop(&mut self) {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        if self.finished {
            return;
        }
        // The task is queued now and runs after whatever call still holds
        // the connection; nobody needs to wait for it.
        drop(self.object.spawn_blocking(|c| {
            let open = matches!(
                AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
                Ok(Some(_))
            );
            if open {
                AnsiTransactionManager::rollback_transaction(c)?;
            }
            Ok(())
        }));
    }
}

/// Opens a PostgreSQL connection for the pool.
///
/// Every query of this crate is a short look-up by key or a range scan of an
/// index, and each runs as a prepared statement. PostgreSQL plans a prepared
/// statement once for all parameters only when that generic plan looks no
/// dearer than planning for the actual values; with `LIMIT $n` it never
/// does, so the history page was planned afresh on every call (about 40 % of
/// the database's time per page). The generic plans are the ones wanted
/// here, so the connection asks for them.
///
/// It also prices a random page read like the solid-state storage a
/// database runs on today (`random_page_cost = 1.1`, the value PostgreSQL's
/// manual gives for it) unless the operator has set that cost themselves.
/// At the default of 4, a table of a few pages looks cheaper to scan whole
/// than to probe by key, and the foreign-key check PostgreSQL runs for
/// every inserted message (`messages.user_id` to `users.id`) scanned the
/// users table row by row: with 200 users, 100 rows read per message, a
/// quarter of the database's time under load.
async fn establish_postgres(url: String) -> ConnectionResult<AsyncPgConnection> {
    let mut connection = AsyncPgConnection::establish(&url).await?;
    connection
        .batch_execute(POSTGRES_SESSION_SETUP)
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(connection)
}

/// Run on every new PostgreSQL connection; see [`establish_postgres`].
/// `source = 'default'` means that neither the server's configuration nor
/// the database or role sets the cost.
const POSTGRES_SESSION_SETUP: &str = "\
    SET plan_cache_mode = force_generic_plan; \
    SELECT set_config('random_page_cost', '1.1', false) FROM pg_settings \
        WHERE name = 'random_page_cost' AND source = 'default'";

/// The pool manager for SQLite connections.
///
/// A SQLite call runs on the blocking pool and holds its connection's lock
/// until it is done, even when the caller stopped waiting for it. Before a
/// connection is handed out again, `recycle` takes that lock, so it waits
/// for any such call to finish, and it refuses a connection that was left
/// inside a transaction (its caller went away before COMMIT); the pool then
/// drops it, which rolls the transaction back.
pub(crate) struct SqliteManager {
    path: String,
    synchronous: SqliteSynchronous,
}

impl deadpool::managed::Manager for SqliteManager {
    type Type = SqliteConn;
    type Error = diesel_async::pooled_connection::PoolError;

    async fn create(&self) -> Result<SqliteConn, Self::Error> {
        establish_sqlite(self.path.clone(), self.synchronous)
            .await
            .map_err(diesel_async::pooled_connection::PoolError::ConnectionError)
    }

    async fn recycle(
        &self,
        connection: &mut SqliteConn,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Self::Error> {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        let idle = connection
            .spawn_blocking(|c| {
                let depth =
                    AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth();
                Ok(matches!(depth, Ok(None)))
            })
            .await
            .map_err(diesel_async::pooled_connection::PoolError::QueryError)?;
        if idle {
            Ok(())
        } else {
            Err(deadpool::managed::RecycleError::message(
                "the connection was left inside a transaction",
            ))
        }
    }
}

/// Runs `$body` with `$conn` bound to a `&mut` connection of whichever
/// backend the store uses. The body is written once and compiled for each
/// connection type, so every query exists in one copy only.
macro_rules! with_conn {
    ($store:expr, |$conn:ident| $body:expr) => {{
        match &$store.inner.pools {
            $crate::store::Pools::Postgres(pools) => {
                let mut object = $crate::store::checkout(pools.local()).await?;
                let $conn: &mut ::diesel_async::AsyncPgConnection = &mut object;
                $body
            }
            $crate::store::Pools::Sqlite { pool, .. } => {
                let mut object = $crate::store::checkout(pool).await?;
                let $conn: &mut $crate::store::SqliteConn = &mut object;
                $body
            }
        }
    }};
}

/// Like [`with_conn!`], inside a write transaction that commits when the
/// body returns `Ok` and rolls back otherwise.
///
/// On SQLite the transaction starts with `BEGIN IMMEDIATE`, which takes the
/// database's write lock up front. A plain (deferred) transaction would read
/// first and upgrade to a writer later; if another connection wrote in
/// between, SQLite cannot wait for it and fails with SQLITE_BUSY at once.
/// Taking the lock first makes concurrent writers queue on `busy_timeout`
/// instead. PostgreSQL uses row locks (see `LockRoomCounters`).
macro_rules! write_transaction {
    ($store:expr, |$conn:ident| $body:expr) => {{
        match &$store.inner.pools {
            $crate::store::Pools::Postgres(pools) => {
                let mut object = $crate::store::checkout(pools.local()).await?;
                let connection: &mut ::diesel_async::AsyncPgConnection = &mut object;
                ::diesel_async::AsyncConnection::transaction::<_, $crate::StorageError, _>(
                    connection,
                    async |$conn| $body,
                )
                .await
            }
            $crate::store::Pools::Sqlite { pool, .. } => {
                // The same steps as diesel-async's `immediate_transaction`,
                // which exists only for its default spawner. The inner
                // connection's transaction manager tracks the open
                // transaction, so a connection whose caller went away before
                // COMMIT is seen as broken and never reused.
                use ::diesel::connection::{AnsiTransactionManager, TransactionManager};
                let mut write = $crate::store::SqliteWrite::new($crate::store::checkout(pool).await?);
                let connection: &mut $crate::store::SqliteConn = write.connection();
                connection
                    .spawn_blocking(|c| {
                        AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
                    })
                    .await?;
                let result: Result<_, $crate::StorageError> = async {
                    let $conn: &mut $crate::store::SqliteConn = &mut *connection;
                    $body
                }
                .await;
                let outcome = match result {
                    Ok(value) => connection
                        .spawn_blocking(|c| AnsiTransactionManager::commit_transaction(c))
                        .await
                        .map(|()| value)
                        .map_err($crate::StorageError::from),
                    Err(error) => {
                        if let Err(rollback) = connection
                            .spawn_blocking(|c| AnsiTransactionManager::rollback_transaction(c))
                            .await
                        {
                            ::tracing::warn!(error = %rollback, "rollback failed");
                        }
                        Err(error)
                    }
                };
                write.finish();
                outcome
            }
        }
    }};
}

impl Store {
    /// Builds the connection pool for `config.url`. Connections are opened on
    /// demand, so this succeeds while the database is down; it does not
    /// migrate (see [`Store::run_pending_migrations`]).
    pub async fn connect(config: StoreConfig) -> Result<Store, StorageError> {
        Store::connect_with_timeout(config, DEFAULT_TIMEOUT).await
    }

    /// [`Store::connect`] with another limit on how long a call waits for a
    /// connection before it fails with [`StorageError::Unavailable`].
    pub async fn connect_with_timeout(
        config: StoreConfig,
        timeout: Duration,
    ) -> Result<Store, StorageError> {
        let target = Target::parse(&config.url)?;
        let limits = PoolLimits {
            max_size: config.pool_size.max(1),
            timeout,
        };
        let pools = match target {
            Target::Postgres(url) => {
                // A connection whose socket closed (the server restarted or
                // dropped it) is replaced when it is next checked out, so the
                // pool recovers on its own. The check is local: the default
                // recycling method would also send `SELECT 1` first, a round
                // trip that doubled the statements of a typical request.
                let sizes = if config.pool_shards.is_empty() {
                    vec![limits.max_size]
                } else {
                    config.pool_shards.clone()
                };
                let shards = sizes
                    .into_iter()
                    .map(|max_size| {
                        let mut config = ManagerConfig::default();
                        config.recycling_method = RecyclingMethod::Fast;
                        config.custom_setup =
                            Box::new(|url| establish_postgres(url.to_owned()).boxed());
                        let manager =
                            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
                                url.clone(),
                                config,
                            );
                        PoolLimits {
                            max_size: max_size.max(1),
                            ..limits
                        }
                        .build(manager)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Pools::Postgres(PgPools::new(shards))
            }
            Target::Sqlite(path) => {
                create_parent_directory(&path)?;
                let manager = SqliteManager {
                    path: path.to_string_lossy().into_owned(),
                    synchronous: config.sqlite_synchronous,
                };
                Pools::Sqlite {
                    pool: limits.build(manager)?,
                    path,
                    synchronous: config.sqlite_synchronous,
                }
            }
        };
        Ok(Store {
            inner: Arc::new(Inner {
                pools,
                keys: config.keys,
                search: config.search,
                room_keys: crate::rooms::RoomKeys::default(),
                recent: crate::recent::RecentMessages::new(config.recent),
            }),
        })
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner.pools {
            Pools::Postgres(_) => "postgres",
            Pools::Sqlite { .. } => "sqlite",
        }
    }

    /// Whether several transactions can write at once. PostgreSQL's can,
    /// when they lock different rows; SQLite has one write lock per
    /// database, so a second writer would only wait for it.
    pub fn writes_in_parallel(&self) -> bool {
        matches!(self.inner.pools, Pools::Postgres(_))
    }

    /// Opens up to `connections` PostgreSQL connections in the calling
    /// thread's shard of the pool (no more than the shard holds) and leaves
    /// them idle there, so that the thread's first queries do not wait for
    /// them to open. Call it from the thread that will use them, e.g. where
    /// the message writers run. Connections are otherwise opened on first
    /// use; SQLite's are cheap to open, and this does nothing there.
    pub async fn warm_up(&self, connections: usize) -> Result<(), StorageError> {
        if let Pools::Postgres(pools) = &self.inner.pools {
            let pool = pools.local();
            let wanted = connections.min(pool.status().max_size);
            let opened =
                futures_util::future::try_join_all((0..wanted).map(|_| checkout(pool))).await?;
            drop(opened);
        }
        Ok(())
    }

    /// How each shard of the connection pool is used now, in shard order
    /// (one entry for SQLite and for an unsharded pool), for metrics.
    pub fn pool_status(&self) -> Vec<PoolShard> {
        let statuses: Vec<deadpool::Status> = match &self.inner.pools {
            Pools::Postgres(pools) => pools.shards().iter().map(|pool| pool.status()).collect(),
            Pools::Sqlite { pool, .. } => vec![pool.status()],
        };
        statuses
            .into_iter()
            .map(|status| PoolShard {
                in_use: status.size.saturating_sub(status.available),
                idle: status.available,
                max: status.max_size,
                waiting: status.waiting,
            })
            .collect()
    }

    /// Checks that the database answers (`SELECT 1`), for readiness probes.
    pub async fn ping(&self) -> Result<(), StorageError> {
        with_conn!(self, |conn| {
            diesel::sql_query("SELECT 1").execute(conn).await?;
            Ok(())
        })
    }

    /// Applies the migrations the database has not seen yet and returns
    /// their versions, oldest first.
    pub async fn run_pending_migrations(&self) -> Result<Vec<String>, StorageError> {
        self.migrate(Direction::ApplyPending).await
    }

    /// Reverts every applied migration, newest first, and returns their
    /// versions. Exists so tests can prove each `down.sql` undoes its `up.sql`.
    #[doc(hidden)]
    pub async fn revert_all_migrations(&self) -> Result<Vec<String>, StorageError> {
        self.migrate(Direction::RevertAll).await
    }

    /// Runs diesel's (blocking) migration harness on the blocking pool, with
    /// the migrations of this store's backend.
    async fn migrate(&self, direction: Direction) -> Result<Vec<String>, StorageError> {
        let outcome = match &self.inner.pools {
            Pools::Postgres(pools) => {
                // A connection from the pool, so the pool's timeouts apply;
                // it leaves the pool because the harness must own it.
                let connection = Object::take(checkout(pools.local()).await?);
                tokio::task::spawn_blocking(move || {
                    let mut harness = AsyncConnectionWrapper::<AsyncPgConnection>::from(connection);
                    direction.run(&mut harness, POSTGRES_MIGRATIONS)
                })
                .await
            }
            Pools::Sqlite {
                path, synchronous, ..
            } => {
                // A plain connection: the harness is synchronous anyway.
                let path = path.to_string_lossy().into_owned();
                let setup = sqlite_setup(*synchronous);
                tokio::task::spawn_blocking(move || {
                    let mut connection = SqliteConnection::establish(&path)?;
                    connection.batch_execute(&setup)?;
                    direction.run(&mut connection, SQLITE_MIGRATIONS)
                })
                .await
            }
        };
        outcome
            .map_err(StorageError::unavailable)?
            .map_err(StorageError::Migration)
    }
}

#[derive(Clone, Copy)]
enum Direction {
    ApplyPending,
    RevertAll,
}

impl Direction {
    fn run<DB: diesel::backend::Backend>(
        self,
        harness: &mut impl MigrationHarness<DB>,
        migrations: EmbeddedMigrations,
    ) -> diesel::migration::Result<Vec<String>> {
        let versions = match self {
            Direction::ApplyPending => harness.run_pending_migrations(migrations)?,
            Direction::RevertAll => harness.revert_all_migrations(migrations)?,
        };
        Ok(versions.iter().map(ToString::to_string).collect())
    }
}

/// The size of a pool and how long its callers wait.
#[derive(Clone, Copy)]
struct PoolLimits {
    max_size: usize,
    timeout: Duration,
}

impl PoolLimits {
    /// A pool whose every wait (for a free connection, for a new one to
    /// open, for an idle one to pass its check) ends after `timeout`, so a
    /// dead or hung database makes calls fail instead of queueing forever.
    fn build<M>(&self, manager: M) -> Result<Pool<M>, StorageError>
    where
        M: deadpool::managed::Manager,
    {
        Pool::builder(manager)
            .max_size(self.max_size)
            .wait_timeout(Some(self.timeout))
            .create_timeout(Some(self.timeout))
            .recycle_timeout(Some(self.timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(StorageError::unavailable)
    }
}

/// Opens a pooled SQLite connection and applies [`SQLITE_PRAGMAS`] and
/// `synchronous`.
async fn establish_sqlite(
    path: String,
    synchronous: SqliteSynchronous,
) -> ConnectionResult<SqliteConn> {
    let mut connection = SqliteConn::establish(&path).await?;
    connection
        .batch_execute(&sqlite_setup(synchronous))
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(connection)
}

fn create_parent_directory(path: &Path) -> Result<(), StorageError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(StorageError::unavailable)
        }
        _ => Ok(()),
    }
}
