//! The chat server's storage: users, their auth sessions, rooms,
//! memberships and messages, on PostgreSQL or SQLite, behind one async
//! [`Store`].
//!
//! The backend is chosen at run time from the database URL (`postgres://…`
//! or `sqlite://path`), and every query is written once, in diesel's DSL,
//! for both. Migrations for each backend are embedded in the binary. The API
//! speaks in the types of `chat_domain` and plain structs; no diesel type
//! leaves the crate, so other Rust services can embed it as a library.
//!
//! Message bodies are encrypted with the [`chat_crypto::KeyRing`] before they
//! reach the database and decrypted on the way out: the database only ever
//! holds Fernet tokens and the id of the key that made each one. Rotating
//! the key means re-encrypting every stored message under the new primary
//! key, in batches, while the server runs: see [`Store::reencrypt_batch`] and
//! [`Store::count_by_key`].
//!
//! A database written by the original Python backend is brought over by
//! reading it with [`OriginalDatabase`] and writing through
//! [`Store::import_users`] and [`Store::import_messages`], which record
//! what they brought so that an import can stop and resume.
//!
//! # The ordering guarantee
//!
//! Every message gets a `seq` within its room: 1, 2, 3... with no gaps, in
//! commit order. [`Store::append_messages`] locks the room's counter row for
//! the length of its transaction, so this holds with any number of
//! concurrent writers, in one process or many. A client that has seen seq
//! `n` has seen everything before it, and resumes with `Cursor::After(n)`.
//!
//! # What this crate must not know
//!
//! HTTP, WebSockets, serde wire types and configuration formats. Storage rows
//! convert to wire types in `chat-protocol` and above, never here.
//!
//! # Using it
//!
//! Connect with a [`StoreConfig`], apply the embedded migrations, then call
//! the store's methods; it is cheap to clone and safe to share:
//!
//! ```no_run
//! use chat_crypto::{FernetKey, KeyRing, SearchKey, SearchKeys};
//! use chat_domain::{MessageBody, RoomName, Username};
//! use chat_storage::{Cursor, NewMessage, RecentCache, SqliteSynchronous, Store, StoreConfig};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::connect(StoreConfig {
//!     url: "sqlite://data/chat.db".to_owned(),
//!     pool_size: 8,
//!     pool_shards: Vec::new(),
//!     // In production the key comes from configuration, and stays.
//!     keys: KeyRing::new(FernetKey::generate(), Vec::new()),
//!     search: Some(SearchKeys::new(SearchKey::generate(), None)),
//!     recent: RecentCache::default(),
//!     sqlite_synchronous: SqliteSynchronous::default(),
//! })
//! .await?;
//! store.run_pending_migrations().await?;
//!
//! // The hash comes from `chat_auth::PasswordHasher`.
//! let alice = store
//!     .create_user(&Username::parse("alice")?, "$2b$12$...")
//!     .await?;
//! let general = store
//!     .room_by_name(&RoomName::general())
//!     .await?
//!     .ok_or("not migrated")?;
//! let stored = store
//!     .append_messages(vec![NewMessage {
//!         room_id: general.id,
//!         user_id: alice.id,
//!         username: alice.username.clone(),
//!         body: MessageBody::parse("hello")?,
//!         client_id: None,
//!         reply_to: None,
//!         mls: false,
//!     }])
//!     .await?;
//! assert_eq!(stored.len(), 1);
//! let page = store.history(general.id, Cursor::Latest, 50).await?;
//! assert_eq!(page.messages.last().and_then(|m| m.content.as_deref()), Some("hello"));
//! # Ok(())
//! # }
//! ```

#[macro_use]
mod store;
#[macro_use]
mod sequence;

mod admin;
mod changes;
mod client_ids;
mod config;
mod durability;
mod error;
mod governance;
mod import;
mod insert_messages;
mod messages;
mod mls;
mod model;
mod original;
mod recent;
mod room_counters;
mod rooms;
mod rotation;
mod rows;
mod schema;
mod search;
mod search_index;
mod sessions;
mod shards;
mod standing;
mod users;

#[cfg(feature = "testing")]
pub mod testing;

pub use admin::{DeletedUser, OpenSession, RoomOverview, UserDetails, UserSummary};
pub use config::StoreConfig;
pub use error::{BoxError, StorageError};
pub use import::{
    ImportMessage, ImportState, ImportUser, ImportedUser, LastImported, MAX_IMPORT_BATCH,
};
pub use messages::MAX_PAGE;
pub use mls::{
    ClaimedKeyPackage, Device, KeyPackageStock, MemberDevice, MlsGroup, NewCommit, NewKeyPackage,
    PendingWelcome,
};
pub use model::{
    Actor, AppendResult, Appended, Ban, Changed, Cursor, Member, MemberEvent, Membership,
    MembershipOp, Message, MessageChange, MessageOp, NewChange, NewMessage, Page, Reaction,
    Refresh, Room, RoomAccess, RoomReading, User, Version,
};
pub use original::{OriginalDatabase, OriginalMessage, OriginalPosition, OriginalUser};
pub use recent::RecentCache;
pub use rooms::RoomKey;
pub use rotation::{MAX_REENCRYPT_BATCH, ReencryptProgress};
pub use search::{
    MAX_REINDEX_BATCH, MAX_SEARCH_PAGE, ReindexProgress, SearchHit, SearchIndexState, SearchPage,
};
pub use store::{DEFAULT_TIMEOUT, PoolShard, SqliteSynchronous, Store};
