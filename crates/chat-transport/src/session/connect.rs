//! The upgrade: checks the origin, the token and the connection limit,
//! then starts the connection's task.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, get, web};
use chat_domain::Seq;

use super::{Session, Tracked};
use crate::auth::{authenticate, bearer_token};
use crate::error::ApiError;
use crate::limits::Bucket;
use crate::state::AppState;
use crate::wire;

/// The longest a connection's deadline is set ahead. A token always expires
/// sooner (unless it is a far-dated token of the original backend); this
/// only keeps the arithmetic in range.
const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// When a connection running on a token that expires at `exp` (seconds
/// since the Unix epoch) must close.
pub(super) fn deadline_of(exp: i64) -> tokio::time::Instant {
    let left_ms = exp
        .saturating_mul(1_000)
        .saturating_sub(chrono::Utc::now().timestamp_millis());
    let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)).min(MAX_LIFETIME);
    tokio::time::Instant::now() + left
}

/// Opens a chat socket. A missing or bad token is refused with 403 before
/// the upgrade, as the seed did.
///
/// With `last_seq`, the connection starts in `general` after that seq: the
/// messages it missed come first, then a `joined` frame, then live ones,
/// with no gap. A reconnecting client should resume `general` this way
/// rather than with a `resume` frame, which can only start after the live
/// messages the connection has already received.
#[utoipa::path(
    get,
    path = "/ws/chat",
    tag = "chat",
    params(
        ("token" = Option<String>, Query, description = "access token; or send Authorization: Bearer"),
        ("last_seq" = Option<i64>, Query, minimum = 0, description = "the last seq of `general` the client has; the connection replays what came after it, then a `joined` frame, then continues live")
    ),
    responses(
        (status = 101, description = "switching to the WebSocket protocol; see docs/PROTOCOL.md"),
        (status = 400, description = "`last_seq` is not a whole number of 0 or more", body = chat_protocol::rest::ErrorBody),
        (status = 403, description = "missing, bad or expired token, or a browser origin not allowed", body = chat_protocol::rest::ErrorBody),
        (status = 429, description = "the user holds too many connections", body = chat_protocol::rest::ErrorBody)
    )
)]
#[get("/ws/chat")]
pub(crate) async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_origin(&req, &state.config.cors_origins)?;
    let resume_general = general_position(&req)?;
    let principal = match authenticate(&state, bearer_token(&req)).await {
        Ok(principal) => principal,
        Err(ApiError::Unauthorized(detail)) => return Err(ApiError::Forbidden(detail)),
        Err(other) => return Err(other),
    };
    let deadline = deadline_of(principal.expires_at);
    let auth_session = principal.session;
    let user = principal.user;
    let max = state.config.max_connections_per_user;
    if state.hub.connections_of(user.id).len() >= max {
        return Err(ApiError::TooManyRequests {
            detail: format!("too many connections for this user (at most {max})"),
            retry_after: 5,
        });
    }
    let (response, socket, stream) = wire::upgrade(&req, body, state.config.max_frame_bytes)
        .map_err(|e| ApiError::BadRequest(format!("not a WebSocket upgrade: {e}")))?;
    let state = state.into_inner();
    // Only the id and name stay with the connection (in the hub's entry).
    let (user_id, username) = (user.id, user.username);
    let (conn, outbound) =
        state
            .hub
            .connect(user_id, username, auth_session, state.config.outbound_queue);
    let bucket = state
        .config
        .rate_limits
        .map(|limits| Bucket::full(limits.ws_frames));
    // Built here and moved into the task whole: whatever the task's future
    // captures it keeps for the connection's life, so it captures only this.
    let mut task = Session {
        state,
        conn,
        socket,
        stream,
        outbound,
        rooms: Tracked::default(),
        evicted: None,
        deadline,
        bucket,
        strikes: 0,
    };
    actix_web::rt::spawn(async move {
        let close = task.run(resume_general).await;
        Box::pin(task.finish(close)).await;
    });
    Ok(response)
}

/// Where the client stands in `general`, from the `last_seq` query
/// parameter; `None` when it is not given.
fn general_position(req: &HttpRequest) -> Result<Option<Seq>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Params {
        last_seq: Option<String>,
    }
    let invalid =
        || ApiError::BadRequest("last_seq must be a whole number of 0 or more".to_owned());
    let params = web::Query::<Params>::from_query(req.query_string()).map_err(|_| invalid())?;
    params
        .into_inner()
        .last_seq
        .map(|raw| {
            raw.trim()
                .parse::<i64>()
                .ok()
                .and_then(|value| Seq::new(value).ok())
                .ok_or_else(invalid)
        })
        .transpose()
}

/// Refuses a browser page from an origin that is neither allowed nor this
/// server's own. Clients that send no `Origin` (terminals, scripts) pass.
fn check_origin(req: &HttpRequest, allowed: &[String]) -> Result<(), ApiError> {
    let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
    let same_host = origin.split_once("://").is_some_and(|(_, host)| {
        Some(host) == req.headers().get("host").and_then(|h| h.to_str().ok())
    });
    if same_host
        || allowed
            .iter()
            .any(|a| a == "*" || a.trim_end_matches('/') == origin)
    {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "origin {origin} is not allowed"
        )))
    }
}
