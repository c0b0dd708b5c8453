//! Who is calling: the bearer token from the `Authorization` header, or, as
//! the seed's clients send it, from the `token` query parameter.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use chat_domain::{RoomId, SessionId, Username};
use chat_storage::{RoomReading, User};

use crate::error::ApiError;
use crate::state::AppState;

/// The token a request carries: the header first, then `?token=`.
pub(crate) fn bearer_token(req: &HttpRequest) -> Option<String> {
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    from_header.or_else(|| {
        web::Query::<TokenParam>::from_query(req.query_string())
            .ok()
            .and_then(|query| query.into_inner().token)
    })
}

#[derive(serde::Deserialize)]
struct TokenParam {
    token: Option<String>,
}

/// Who a valid token speaks for.
#[derive(Debug)]
pub(crate) struct Principal {
    pub(crate) user: User,
    /// The token's auth session; `None` for a token of the original backend,
    /// accepted only while `CHAT_ACCEPT_LEGACY_TOKENS` is on.
    pub(crate) session: Option<SessionId>,
    /// The token's `exp`, in seconds since the Unix epoch.
    pub(crate) expires_at: i64,
}

/// Resolves a token to the user it was issued to, provided its session is
/// still open. The session is checked in the same query that finds the
/// user, on every request. A valid token whose user no longer exists, or
/// whose session was ended, is refused like a bad one.
pub(crate) async fn authenticate(
    state: &AppState,
    token: Option<String>,
) -> Result<Principal, ApiError> {
    Ok(authenticate_reading(state, token, None).await?.0)
}

/// [`authenticate`], reading in the same query the newest seq of `room`
/// and whether the user may read it, when there is a room and the token
/// names a session (tokens of the original backend have none: then nothing
/// of the room is read).
pub(crate) async fn authenticate_reading(
    state: &AppState,
    token: Option<String>,
    room: Option<RoomId>,
) -> Result<(Principal, Option<RoomReading>), ApiError> {
    let token = token.ok_or_else(ApiError::bad_token)?;
    let claims = state.tokens.verify(&token)?;
    let username = Username::parse(claims.sub).map_err(|_| ApiError::bad_token())?;
    let (user, last_seq) = match (claims.sid, room) {
        (Some(session), Some(room)) => state
            .store
            .user_for_session_reading(&username, session, room)
            .await?
            .map_or((None, None), |(user, reading)| (Some(user), Some(reading))),
        (Some(session), None) => (
            state.store.user_for_session(&username, session).await?,
            None,
        ),
        // A token of the original backend names its user as the original
        // stored it, where `Bob` and `bob` were two users; the import kept
        // one and renamed the other, so only the exact name is that user.
        (None, _) => (
            state
                .store
                .user_by_name(&username)
                .await?
                .filter(|user| user.username == username),
            None,
        ),
    };
    let principal = Principal {
        user: user.ok_or_else(ApiError::bad_token)?,
        session: claims.sid,
        expires_at: claims.exp,
    };
    Ok((principal, last_seq))
}

/// An extractor for routes that need a signed-in user.
#[derive(Debug)]
pub(crate) struct CurrentUser(pub(crate) User);

impl FromRequest for CurrentUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let principal = SignedIn::from_request(req, payload);
        Box::pin(async move {
            principal
                .await
                .map(|signed_in| CurrentUser(signed_in.0.user))
        })
    }
}

/// An extractor for routes that need the session too (signing out).
#[derive(Debug)]
pub(crate) struct SignedIn(pub(crate) Principal);

impl FromRequest for SignedIn {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                ApiError::internal(std::io::Error::other("application state is not configured"))
            })?;
            authenticate(&state, token).await.map(SignedIn)
        })
    }
}
