use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chat_domain::{RoomKind, RoomName, Seq, UserId, Username};
use chat_protocol::rest::{
    CreateRoomRequest, ErrorBody, MarkReadRequest, MessagePage, PageQuery, RoomBody,
};
use chat_storage::{Cursor, Membership, Room, RoomKey, User};

use crate::auth::{CurrentUser, authenticate_reading, bearer_token};
use crate::error::ApiError;
use crate::frames;
use crate::presence;
use crate::state::AppState;

fn room_body(room: &Room, membership: Option<&Membership>) -> RoomBody {
    let last_read = membership.map_or(0, |m| m.last_read.get());
    RoomBody {
        name: room.name.as_str().to_owned(),
        kind: room.kind.into(),
        last_seq: room.last_seq.get(),
        last_read_seq: last_read,
        unread: if membership.is_some() {
            (room.last_seq.get() - last_read).max(0)
        } else {
            0
        },
        member: membership.is_some(),
    }
}

/// A room as `user` sees it: membership, last read seq, unread count.
async fn body_for(state: &AppState, room: &Room, user: UserId) -> Result<RoomBody, ApiError> {
    let memberships = state.store.rooms_for(user).await?;
    Ok(room_body(
        room,
        memberships.iter().find(|m| m.room.id == room.id),
    ))
}

fn parse_room(name: &str) -> Result<RoomName, ApiError> {
    RoomName::parse(name).map_err(|e| ApiError::Unprocessable(e.to_string()))
}

async fn find_room(state: &AppState, name: &str) -> Result<Room, ApiError> {
    let name = parse_room(name)?;
    state
        .store
        .room_by_name(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("room '{name}' not found")))
}

/// A direct conversation is visible to its two members only; to anyone
/// else it does not exist.
async fn ensure_visible(state: &AppState, room: &RoomKey, user: &User) -> Result<(), ApiError> {
    if room.kind == RoomKind::Direct && !state.store.is_member(room.id, user.id).await? {
        return Err(ApiError::NotFound(format!(
            "room '{}' not found",
            room.name
        )));
    }
    Ok(())
}

/// Every public room, and the direct conversations of the caller, with
/// unread counts for the rooms the caller is in.
#[utoipa::path(
    get,
    path = "/api/rooms",
    tag = "rooms",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<RoomBody>), (status = 401, body = ErrorBody))
)]
#[get("/api/rooms")]
pub(crate) async fn list(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<HttpResponse, ApiError> {
    let memberships = state.store.rooms_for(user.id).await?;
    let mut bodies: Vec<RoomBody> = state
        .store
        .public_rooms()
        .await?
        .iter()
        .map(|room| room_body(room, memberships.iter().find(|m| m.room.id == room.id)))
        .collect();
    bodies.extend(
        memberships
            .iter()
            .filter(|m| m.room.kind == RoomKind::Direct)
            .map(|m| room_body(&m.room, Some(m))),
    );
    Ok(HttpResponse::Ok().json(bodies))
}

/// Creates a public room; the caller becomes its first member.
#[utoipa::path(
    post,
    path = "/api/rooms",
    tag = "rooms",
    request_body = CreateRoomRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, body = RoomBody),
        (status = 409, description = "a room of that name exists", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[post("/api/rooms")]
pub(crate) async fn create(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    body: web::Json<CreateRoomRequest>,
) -> Result<HttpResponse, ApiError> {
    let name = RoomName::public(&body.name).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let room = state.store.create_room(&name, user.id).await?;
    Ok(HttpResponse::Created().json(body_for(&state, &room, user.id).await?))
}

/// Joins a public room.
#[utoipa::path(
    post,
    path = "/api/rooms/{name}/join",
    tag = "rooms",
    params(("name" = String, Path, description = "room name")),
    security(("bearer" = [])),
    responses((status = 200, body = RoomBody), (status = 404, body = ErrorBody))
)]
#[post("/api/rooms/{name}/join")]
pub(crate) async fn join(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let room = find_room(&state, &name).await?;
    ensure_visible(&state, &RoomKey::from(&room), &user).await?;
    state.store.join(room.id, user.id).await?;
    Ok(HttpResponse::Ok().json(body_for(&state, &room, user.id).await?))
}

/// Leaves a room; the caller's open sockets stop receiving it.
#[utoipa::path(
    post,
    path = "/api/rooms/{name}/leave",
    tag = "rooms",
    params(("name" = String, Path, description = "room name")),
    security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody))
)]
#[post("/api/rooms/{name}/leave")]
pub(crate) async fn leave(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let room = find_room(&state, &name).await?;
    ensure_visible(&state, &RoomKey::from(&room), &user).await?;
    state.store.leave(room.id, user.id).await?;
    let change = state.hub.unsubscribe_user(room.id, user.id);
    presence::announce(
        &state,
        room.id,
        room.name.as_str(),
        user.id,
        &user.username,
        change,
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// Records how far the caller has read a room; its `unread` count follows.
/// The mark never moves backwards, nor past the room's last message.
#[utoipa::path(
    post,
    path = "/api/rooms/{name}/read",
    tag = "rooms",
    params(("name" = String, Path, description = "room name")),
    request_body = MarkReadRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = RoomBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[post("/api/rooms/{name}/read")]
pub(crate) async fn mark_read(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    name: web::Path<String>,
    body: web::Json<MarkReadRequest>,
) -> Result<HttpResponse, ApiError> {
    let seq = Seq::new(body.seq).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let room = find_room(&state, &name).await?;
    ensure_visible(&state, &RoomKey::from(&room), &user).await?;
    state.store.mark_read(room.id, user.id, seq).await?;
    Ok(HttpResponse::Ok().json(body_for(&state, &room, user.id).await?))
}

/// A page of a room's history, by seq: `before=N` gives the newest `limit`
/// messages below N, `after=N` the oldest `limit` above N, neither the
/// newest page. Messages are always in ascending seq.
#[utoipa::path(
    get,
    path = "/api/rooms/{name}/messages",
    tag = "rooms",
    params(("name" = String, Path, description = "room name"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = MessagePage),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[get("/api/rooms/{name}/messages")]
pub(crate) async fn messages(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // A room this node knows already: the session check reads the room's
    // newest seq in the same query, so a newest page held in memory costs
    // one round trip. The room is only looked for in memory before the
    // caller is known, so an anonymous request asks the database nothing.
    let parsed = parse_room(&name);
    let known = parsed
        .as_ref()
        .ok()
        .and_then(|room| state.store.known_room_key(room));
    let (principal, last_seq) = authenticate_reading(
        &state,
        bearer_token(&req),
        known.as_ref().map(|room| room.id),
    )
    .await?;
    let user = principal.user;
    // Read after the token, so that a caller who is not signed in learns
    // nothing else.
    let query =
        web::Query::<PageQuery>::from_query(req.query_string()).map_err(ApiError::invalid_query)?;
    let max = state.config.history_max_limit;
    let limit = query.limit.unwrap_or(50);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::Unprocessable(format!(
            "limit must be between 1 and {max}"
        )));
    }
    let seq = |value: i64| {
        Seq::new(value).map_err(|_| ApiError::Unprocessable("cursors are not negative".to_owned()))
    };
    let cursor = match (query.before, query.after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::Unprocessable(
                "give either before or after, not both".to_owned(),
            ));
        }
        (Some(before), None) => Cursor::Before(seq(before)?),
        (None, Some(after)) => Cursor::After(seq(after)?),
        (None, None) => Cursor::Latest,
    };
    // The room's identity comes from memory after the first page: a page
    // costs the token check and the history query, not a room look-up too.
    let room = match known {
        Some(room) => room,
        None => {
            let room = parsed?;
            state
                .store
                .room_key(&room)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("room '{room}' not found")))?
        }
    };
    ensure_visible(&state, &room, &user).await?;
    let page = match (cursor, last_seq) {
        (Cursor::Latest, Some(last_seq)) => {
            state.store.newest_as_of(room.id, limit, last_seq).await?
        }
        _ => state.store.history(room.id, cursor, limit).await?,
    };
    let room_name = room.name.as_str();
    Ok(HttpResponse::Ok().json(MessagePage {
        room: room_name.to_owned(),
        messages: page
            .messages
            .into_iter()
            .map(|m| frames::room_message(room_name, m))
            .collect(),
        has_more: page.has_more,
    }))
}

/// Opens (or returns) the direct conversation with another user. Both
/// users' open sockets are subscribed to it at once.
#[utoipa::path(
    post,
    path = "/api/dm/{username}",
    tag = "rooms",
    params(("username" = String, Path, description = "the other user")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = RoomBody),
        (status = 404, description = "no such user", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[post("/api/dm/{username}")]
pub(crate) async fn open_direct(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let other_name = Username::parse(username.into_inner())
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    if other_name.same_user(&user.username) {
        return Err(ApiError::Unprocessable(
            "a direct conversation is between two different users".to_owned(),
        ));
    }
    let other = state
        .store
        .user_by_name(&other_name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user '{other_name}' not found")))?;
    let room = state.store.open_direct(&user, &other).await?;
    presence::subscribe_open_connections(&state, &room, user.id).await;
    presence::subscribe_open_connections(&state, &room, other.id).await;
    Ok(HttpResponse::Ok().json(body_for(&state, &room, user.id).await?))
}
