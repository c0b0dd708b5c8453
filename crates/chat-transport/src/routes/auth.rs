use actix_web::{HttpRequest, HttpResponse, post, web};
use chat_auth::{RefreshToken, new_session_id};
use chat_domain::{Password, SessionId, Username};
use chat_protocol::rest::{Credentials, ErrorBody, RefreshRequest, TokenBody, UserBody};
use chat_storage::{Refresh, StorageError};
use chrono::{DateTime, TimeDelta, Utc};

use crate::auth::SignedIn;
use crate::error::ApiError;
use crate::state::AppState;

/// The one answer to every failed login, whatever the reason, so the
/// response does not tell which user names exist.
const BAD_LOGIN: &str = "Incorrect username or password";

/// The answer to a sign-in with the right password to an account the
/// operator disabled.
const ACCOUNT_DISABLED: &str = "This account is disabled; ask the operator";

/// Creates an account.
#[utoipa::path(
    post,
    path = "/api/auth/register",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 201, description = "registered", body = UserBody),
        (status = 400, description = "the name is taken", body = ErrorBody),
        (status = 429, description = "too many attempts from this address", body = ErrorBody),
        (status = 422, description = "the name or password breaks the rules", body = ErrorBody)
    )
)]
#[post("/api/auth/register")]
pub(crate) async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    state.admit(&req, |limits| &limits.register)?;
    let Credentials { username, password } = body.into_inner();
    let username = Username::parse(username).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let password = Password::parse(password).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let hash = state
        .hasher
        .hash(&password)
        .await
        .map_err(ApiError::internal)?;
    let user = match state.store.create_user(&username, &hash).await {
        Ok(user) => user,
        Err(StorageError::Conflict(_)) => {
            return Err(ApiError::BadRequest(
                "Username already registered".to_owned(),
            ));
        }
        Err(other) => return Err(other.into()),
    };
    tracing::info!(user = %user.username, id = %user.id, "user registered");
    Ok(HttpResponse::Created().json(UserBody {
        id: user.id.get(),
        username: user.username.as_str().to_owned(),
        created_at: user.created_at,
    }))
}

/// Exchanges a name and password for an access token and a refresh token.
///
/// Each sign-in opens an auth session: the access token names it, and the
/// refresh token renews it (`POST /api/auth/refresh`) until it is ended
/// (`POST /api/auth/logout`) or goes unused for the refresh lifetime.
#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "signed in: the seed's `access_token` and `token_type`, plus `refresh_token` and `expires_in`", body = TokenBody),
        (status = 401, description = "wrong name or password", body = ErrorBody),
        (status = 403, description = "the account is disabled by the operator (said only with the right password)", body = ErrorBody),
        (status = 422, description = "the body is not the JSON of a name and a password", body = ErrorBody),
        (status = 429, description = "too many attempts from this address", body = ErrorBody),
        (status = 503, description = "the database cannot be reached", body = ErrorBody)
    )
)]
#[post("/api/auth/login")]
pub(crate) async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Result<web::Json<Credentials>, actix_web::Error>,
) -> Result<HttpResponse, actix_web::Error> {
    // A body that is not the JSON of a name and a password is refused by
    // the extractor, as everywhere (422, or 413); it is counted here too.
    let body = match body {
        Ok(body) => body,
        Err(error) => {
            crate::metrics::sign_in_unreadable();
            return Err(error);
        }
    };
    let result = sign_in(&req, &state, body).await;
    crate::metrics::sign_in(&result);
    Ok(result?)
}

/// Signs in, or says why not.
async fn sign_in(
    req: &HttpRequest,
    state: &AppState,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    state.admit(req, |limits| &limits.login)?;
    let Credentials { username, password } = body.into_inner();
    // A malformed name cannot belong to anyone, but it still costs a bcrypt
    // verification so its answer takes as long as any other failure.
    // A deleted account is as if it did not exist.
    let user = match Username::parse(username) {
        Ok(name) => state.store.user_by_name(&name).await?,
        Err(_) => None,
    }
    .filter(|user| user.deleted_at.is_none());
    let verified = state
        .hasher
        .verify(&password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await
        .map_err(ApiError::internal)?;
    let user = match user {
        Some(user) if verified => user,
        _ => return Err(ApiError::Unauthorized(BAD_LOGIN.to_owned())),
    };
    // Said only to whoever knows the password.
    if user.disabled_at.is_some() {
        return Err(ApiError::Forbidden(ACCOUNT_DISABLED.to_owned()));
    }
    let session = new_session_id();
    let refresh_token = RefreshToken::generate();
    state
        .store
        .create_session(
            user.id,
            session,
            &refresh_token.digest(),
            refresh_expiry(state)?,
        )
        .await?;
    let body = token_body(state, &user.username, session, &refresh_token)?;
    tracing::info!(user = %user.username, %session, "user signed in");
    Ok(HttpResponse::Ok().json(body))
}

/// The one answer to every refused refresh, whatever the reason.
const BAD_REFRESH: &str = "Invalid or expired refresh token";

/// Exchanges a refresh token for a new access token and the next refresh
/// token of the same session.
///
/// Each refresh token works once. Presenting one that was already
/// exchanged means someone holds a copy: the whole session is ended, its
/// open sockets are closed, and the answer is 401, so the thief and the
/// owner both have to sign in again.
#[utoipa::path(
    post,
    path = "/api/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "a new access token and the next refresh token; the refresh token sent no longer works", body = TokenBody),
        (status = 401, description = "unknown, already used, expired or revoked refresh token; an already used one also ends its session", body = ErrorBody),
        (status = 422, description = "the body is not `{\"refresh_token\": ...}`", body = ErrorBody),
        (status = 503, description = "the database cannot be reached", body = ErrorBody)
    )
)]
#[post("/api/auth/refresh")]
pub(crate) async fn refresh(
    state: web::Data<AppState>,
    body: web::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let presented = RefreshToken::presented(body.into_inner().refresh_token);
    let next = RefreshToken::generate();
    let outcome = state
        .store
        .rotate_refresh_token(&presented.digest(), &next.digest(), refresh_expiry(&state)?)
        .await?;
    match outcome {
        Refresh::Rotated { user, session } => {
            let body = token_body(&state, &user.username, session, &next)?;
            tracing::debug!(user = %user.username, %session, "tokens refreshed");
            Ok(HttpResponse::Ok().json(body))
        }
        Refresh::Reused { user_id, session } => {
            tracing::warn!(
                user = %user_id,
                %session,
                "a used refresh token was presented again; the session is revoked"
            );
            state.fanout.end_session(user_id, session);
            Err(ApiError::Unauthorized(BAD_REFRESH.to_owned()))
        }
        Refresh::Refused => Err(ApiError::Unauthorized(BAD_REFRESH.to_owned())),
    }
}

/// Ends the session of the access token sent: its access and refresh
/// tokens stop working at once, on every node, and its open sockets are
/// closed with 1008 "session ended". Other sessions of the same user (other
/// devices) are not affected.
#[utoipa::path(
    post,
    path = "/api/auth/logout",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "signed out"),
        (status = 400, description = "a token of the original backend, accepted during the cut-over: it has no session to end and stays valid until it expires", body = ErrorBody),
        (status = 401, description = "missing, bad or expired token, or its session has already ended", body = ErrorBody),
        (status = 503, description = "the database cannot be reached", body = ErrorBody)
    )
)]
#[post("/api/auth/logout")]
pub(crate) async fn logout(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
) -> Result<HttpResponse, ApiError> {
    let Some(session) = principal.session else {
        return Err(ApiError::BadRequest(
            "this token has no session to end; it stays valid until it expires".to_owned(),
        ));
    };
    state.store.revoke_session(session).await?;
    state.fanout.end_session(principal.user.id, session);
    tracing::info!(user = %principal.user.username, %session, "user signed out");
    Ok(HttpResponse::NoContent().finish())
}

/// When a session opened or refreshed now ends unless refreshed again.
fn refresh_expiry(state: &AppState) -> Result<DateTime<Utc>, ApiError> {
    TimeDelta::from_std(state.config.refresh_ttl)
        .ok()
        .and_then(|ttl| Utc::now().checked_add_signed(ttl))
        .ok_or_else(|| {
            ApiError::internal(std::io::Error::other(
                "the refresh token lifetime is out of range",
            ))
        })
}

/// A new access token for `username` in `session`, with `refresh_token`.
fn token_body(
    state: &AppState,
    username: &Username,
    session: SessionId,
    refresh_token: &RefreshToken,
) -> Result<TokenBody, ApiError> {
    let issued = state.tokens.issue(username, session)?;
    let expires_in = (issued.expires_at - Utc::now()).num_seconds().max(0);
    Ok(TokenBody::with_refresh(
        issued.token,
        refresh_token.as_str(),
        u64::try_from(expires_in).unwrap_or_default(),
    ))
}
