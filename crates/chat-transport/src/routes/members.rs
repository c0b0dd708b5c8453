//! Governing a room's members: listing them, adding, changing roles,
//! kicking, banning and muting. Every change goes through
//! [`crate::membership`], with the same rules as the WebSocket frames.

use actix_web::{HttpResponse, delete, get, put, web};
use chat_domain::{Role, RoomName, UserId, Username, parse_reason};
use chat_protocol::rest::{BanBody, BanRequest, ErrorBody, MemberBody, MemberRequest, MuteRequest};
use chat_storage::MembershipOp;
use chrono::Utc;

use super::rooms::{actor, change_error, parse_room};
use crate::access::{self, Access};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::membership;
use crate::state::AppState;

/// An optional JSON body: none (or only white space) is the default;
/// anything else must be a valid body, or the request is refused with 422
/// and changes nothing.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    body: &web::Bytes,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::Unprocessable(format!("invalid body: {error}")))
}

/// The room and the user a member route names, as the caller may see them.
async fn room_and_user(
    state: &AppState,
    caller: UserId,
    path: &(String, String),
) -> Result<(RoomName, Access, UserId), ApiError> {
    let name = parse_room(&path.0)?;
    let found = access::find_for_route(state, &name, caller).await?;
    let username = Username::parse(path.1.as_str()).map_err(ApiError::invalid)?;
    let user = access::user_named(state, &username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user '{username}' not found")))?;
    Ok((name, found, user.id))
}

/// Makes one change to the member named in the path.
async fn govern(
    state: &AppState,
    caller: &chat_storage::User,
    path: &(String, String),
    op: MembershipOp,
) -> Result<(), ApiError> {
    let (name, found, target) = room_and_user(state, caller.id, path).await?;
    membership::change(state, &found.key(), &actor(caller), target, op)
        .await
        .map_err(|error| change_error(&name, error))?;
    Ok(())
}

/// The members of a room with their roles, mutes and read positions, by
/// name. A private room is 404 to anyone but its members.
#[utoipa::path(
    get,
    path = "/api/rooms/{name}/members",
    tag = "members",
    params(("name" = String, Path, description = "room name")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<MemberBody>),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller is banned", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[get("/api/rooms/{name}/members")]
pub(crate) async fn list(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_room(&name)?;
    let found = access::find_for_route(&state, &name, user.id).await?;
    found
        .readable()
        .map_err(|refusal| access::for_route(&name, refusal))?;
    let members: Vec<MemberBody> = state
        .store
        .room_members(found.0.room.id)
        .await?
        .into_iter()
        .map(|member| MemberBody {
            username: member.username.into_string(),
            role: member.role.into(),
            joined_at: member.joined_at,
            muted_until: member.muted_until.filter(|until| *until > Utc::now()),
            last_read_seq: member.last_read.get(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(members))
}

/// Adds a user to the room (owner or moderator; typically a private room),
/// or, for a member, changes their role (only the owner makes moderators).
#[utoipa::path(
    put,
    path = "/api/rooms/{name}/members/{username}",
    tag = "members",
    params(
        ("name" = String, Path, description = "room name"),
        ("username" = String, Path, description = "the user")
    ),
    request_body = MemberRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "done (or nothing to change)"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller's role does not allow it", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the user is banned", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[put("/api/rooms/{name}/members/{username}")]
pub(crate) async fn put(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: MemberRequest = optional_body(&body)?;
    let role = body.role.map(Role::from);
    let (name, found, target) = room_and_user(&state, user.id, &path).await?;
    let is_member = state.store.is_member(found.0.room.id, target).await?;
    let op = match (is_member, role) {
        (false, role) => MembershipOp::Add {
            role: role.unwrap_or(Role::Member),
        },
        (true, Some(role)) => MembershipOp::SetRole(role),
        (true, None) => return Ok(HttpResponse::NoContent().finish()),
    };
    membership::change(&state, &found.key(), &actor(&user), target, op)
        .await
        .map_err(|error| change_error(&name, error))?;
    Ok(HttpResponse::NoContent().finish())
}

/// Removes a member (owner or moderator); they may join a public room
/// again. Their sockets, on every node, get `left` with reason `kicked`.
#[utoipa::path(
    delete,
    path = "/api/rooms/{name}/members/{username}",
    tag = "members",
    params(
        ("name" = String, Path, description = "room name"),
        ("username" = String, Path, description = "the member")
    ),
    security(("bearer" = [])),
    responses(
        (status = 204),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller's role does not allow it", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the user is not a member", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[delete("/api/rooms/{name}/members/{username}")]
pub(crate) async fn kick(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    govern(&state, &user, &path, MembershipOp::Kick { reason: None }).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The bans of a room that still hold (owner or moderator).
#[utoipa::path(
    get,
    path = "/api/rooms/{name}/bans",
    tag = "members",
    params(("name" = String, Path, description = "room name")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<BanBody>),
        (status = 401, body = ErrorBody),
        (status = 403, description = "only the owner and moderators see bans", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[get("/api/rooms/{name}/bans")]
pub(crate) async fn bans(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_room(&name)?;
    let found = access::find_for_route(&state, &name, user.id).await?;
    if found.role().is_none_or(|role| role < Role::Moderator) {
        return Err(ApiError::Forbidden(
            "only the owner or a moderator may see the bans".to_owned(),
        ));
    }
    let bans: Vec<BanBody> = state
        .store
        .room_bans(found.0.room.id)
        .await?
        .into_iter()
        .map(|held| BanBody {
            username: held.username.into_string(),
            banned_by: held.banned_by.map(Username::into_string),
            reason: held.reason,
            created_at: held.created_at,
            until: held.until,
        })
        .collect();
    Ok(HttpResponse::Ok().json(bans))
}

/// Bans a user (owner or moderator): they are removed at once and cannot
/// join, read or post until unbanned or `until` passes. Their sockets, on
/// every node, get `left` with reason `banned`.
#[utoipa::path(
    put,
    path = "/api/rooms/{name}/bans/{username}",
    tag = "members",
    params(
        ("name" = String, Path, description = "room name"),
        ("username" = String, Path, description = "the user")
    ),
    request_body = BanRequest,
    security(("bearer" = [])),
    responses(
        (status = 204),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller's role does not allow it", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[put("/api/rooms/{name}/bans/{username}")]
pub(crate) async fn ban(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: BanRequest = optional_body(&body)?;
    if body.until.is_some_and(|until| until <= Utc::now()) {
        return Err(ApiError::Unprocessable(
            "until must be in the future".to_owned(),
        ));
    }
    let reason = body
        .reason
        .as_deref()
        .map(parse_reason)
        .transpose()
        .map_err(ApiError::invalid)?
        .flatten();
    let op = MembershipOp::Ban {
        reason,
        until: body.until,
    };
    govern(&state, &user, &path, op).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Lifts a ban (owner or moderator).
#[utoipa::path(
    delete,
    path = "/api/rooms/{name}/bans/{username}",
    tag = "members",
    params(
        ("name" = String, Path, description = "room name"),
        ("username" = String, Path, description = "the user")
    ),
    security(("bearer" = [])),
    responses(
        (status = 204),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller's role does not allow it", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the user is not banned", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[delete("/api/rooms/{name}/bans/{username}")]
pub(crate) async fn unban(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    govern(&state, &user, &path, MembershipOp::Unban).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Mutes a member until `until` (owner or moderator): they still read,
/// but a message they send is refused with the code `muted`.
#[utoipa::path(
    put,
    path = "/api/rooms/{name}/mutes/{username}",
    tag = "members",
    params(
        ("name" = String, Path, description = "room name"),
        ("username" = String, Path, description = "the member")
    ),
    request_body = MuteRequest,
    security(("bearer" = [])),
    responses(
        (status = 204),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller's role does not allow it", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the user is not a member", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[put("/api/rooms/{name}/mutes/{username}")]
pub(crate) async fn mute(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    path: web::Path<(String, String)>,
    body: web::Json<MuteRequest>,
) -> Result<HttpResponse, ApiError> {
    if body.until <= Utc::now() {
        return Err(ApiError::Unprocessable(
            "until must be in the future".to_owned(),
        ));
    }
    govern(
        &state,
        &user,
        &path,
        MembershipOp::Mute { until: body.until },
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Lets a muted member post again (owner or moderator).
#[utoipa::path(
    delete,
    path = "/api/rooms/{name}/mutes/{username}",
    tag = "members",
    params(
        ("name" = String, Path, description = "room name"),
        ("username" = String, Path, description = "the member")
    ),
    security(("bearer" = [])),
    responses(
        (status = 204),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller's role does not allow it", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the user is not muted", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[delete("/api/rooms/{name}/mutes/{username}")]
pub(crate) async fn unmute(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    govern(&state, &user, &path, MembershipOp::Unmute).await?;
    Ok(HttpResponse::NoContent().finish())
}
