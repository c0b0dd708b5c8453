use std::sync::Arc;

use chat_auth::{PasswordHasher, TokenKeys};
use chat_storage::{Room, Store};
use tokio_util::sync::CancellationToken;

use crate::config::TransportConfig;
use crate::error::ApiError;
use crate::fanout::Fanout;
use crate::hub::Hub;
use crate::limits::{AddressLimiter, client_address};
use crate::writer::WriterHandle;

/// The services the transport is built from. The caller owns their set-up
/// (database URL, keys, bcrypt cost); the transport only uses them.
#[derive(Debug, Clone)]
pub struct Services {
    /// Users, rooms and messages.
    pub store: Store,
    /// Password hashing, on the blocking pool.
    pub hasher: PasswordHasher,
    /// Issues and checks access tokens.
    pub tokens: TokenKeys,
}

/// Shared by every route and session; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) hasher: PasswordHasher,
    pub(crate) tokens: TokenKeys,
    pub(crate) hub: Hub,
    pub(crate) fanout: Arc<dyn Fanout>,
    pub(crate) writer: WriterHandle,
    pub(crate) config: Arc<TransportConfig>,
    /// The `general` room, loaded once at start-up.
    pub(crate) general: Arc<Room>,
    /// Cancelled when the server begins to shut down.
    pub(crate) shutdown: CancellationToken,
    /// Per-address limits on sign-up and sign-in, when limits are on.
    pub(crate) limiters: Option<Arc<Limiters>>,
    /// This service's gauges, read when `/metrics` is scraped.
    pub(crate) gauges: Arc<crate::metrics::Gauges>,
}

/// The per-address rate limiters.
#[derive(Debug)]
pub(crate) struct Limiters {
    pub(crate) register: AddressLimiter,
    pub(crate) login: AddressLimiter,
}

impl AppState {
    /// Admits a sign-up or sign-in from the client of `req`, or answers 429.
    pub(crate) fn admit(
        &self,
        req: &actix_web::HttpRequest,
        which: impl Fn(&Limiters) -> &AddressLimiter,
    ) -> Result<(), ApiError> {
        let Some(limiters) = &self.limiters else {
            return Ok(());
        };
        let Some(address) = client_address(req, &self.config.trusted_proxies) else {
            return Ok(());
        };
        which(limiters)
            .check(address)
            .map_err(|wait| ApiError::TooManyRequests {
                detail: "too many attempts from this address; try again later".to_owned(),
                retry_after: wait.as_secs().max(1),
            })
    }
}
