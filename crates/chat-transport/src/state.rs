use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chat_auth::{PasswordHasher, TokenKeys};
use chat_domain::UserId;
use chat_storage::{Room, Store};
use tokio_util::sync::CancellationToken;

use crate::config::TransportConfig;
use crate::error::ApiError;
use crate::fanout::Fanout;
use crate::hub::Hub;
use crate::limits::{Limiter, client_address};
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
    /// Per-address limits on sign-up and sign-in and per-user limits on
    /// claims, when limits are on.
    pub(crate) limiters: Option<Arc<Limiters>>,
    /// This service's gauges, read when `/metrics` is scraped.
    pub(crate) gauges: Arc<crate::metrics::Gauges>,
}

/// The rate limiters of REST routes.
#[derive(Debug)]
pub(crate) struct Limiters {
    pub(crate) register: Limiter<IpAddr>,
    pub(crate) login: Limiter<IpAddr>,
    pub(crate) key_package_claims: Limiter<UserId>,
}

impl AppState {
    /// Admits a sign-up or sign-in from the client of `req`, or answers 429.
    pub(crate) fn admit(
        &self,
        req: &actix_web::HttpRequest,
        which: impl Fn(&Limiters) -> &Limiter<IpAddr>,
    ) -> Result<(), ApiError> {
        let Some(limiters) = &self.limiters else {
            return Ok(());
        };
        let Some(address) = client_address(req, &self.config.trusted_proxies) else {
            return Ok(());
        };
        which(limiters)
            .check(address, 1)
            .map_err(|wait| too_many("too many attempts from this address", wait))
    }

    /// Admits a claim by `claimer` of the KeyPackages of `users` users, or
    /// answers 429 having counted nothing.
    pub(crate) fn admit_claim(&self, claimer: UserId, users: usize) -> Result<(), ApiError> {
        let Some(limiters) = &self.limiters else {
            return Ok(());
        };
        limiters
            .key_package_claims
            .check(claimer, u32::try_from(users).unwrap_or(u32::MAX))
            .map_err(|wait| too_many("too many KeyPackages claimed", wait))
    }
}

/// The 429 of a rate limit that admits again after `wait`.
fn too_many(what: &str, wait: Duration) -> ApiError {
    ApiError::TooManyRequests {
        detail: format!("{what}; try again later"),
        // Rounded up: a client that waits as long as told is admitted.
        retry_after: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
    }
}
