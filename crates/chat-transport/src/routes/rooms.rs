//! Rooms: listing, creating, reading, changing and deleting them, joining
//! and leaving, history, read marks and direct conversations. Membership
//! changes go through [`crate::membership`]; who may see and read a room
//! is [`crate::access`]'s to say.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chat_domain::{
    Action, Refusal, RoomId, RoomKind, RoomName, Seq, UserId, Username, Visibility, authorize_in,
    parse_topic,
};
use chat_protocol::rest::{
    CreateRoomRequest, ErrorBody, MarkReadRequest, MessagePage, OpenDirectRequest, PageQuery,
    RoomBody, RoomDetail, UpdateRoomRequest,
};
use chat_storage::{Actor, Cursor, Membership, MembershipOp, Message, Room, StorageError, User};

use crate::access::{self, Access};
use crate::auth::{CurrentUser, authenticate_reading, bearer_token};
use crate::error::ApiError;
use crate::frames::{self, PageContext};
use crate::membership;
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
        visibility: room.visibility.into(),
        topic: room.topic.clone(),
        role: membership.map(|m| m.role.into()),
        encrypted: room.encrypted,
    }
}

/// A room as `user` sees it now: membership, last read seq, unread count.
async fn body_for(state: &AppState, name: &RoomName, user: UserId) -> Result<RoomBody, ApiError> {
    let found = access::find_for_route(state, name, user).await?;
    Ok(room_body(&found.0.room, found.0.membership.as_ref()))
}

/// A room in full as `user` sees it.
async fn detail_for(state: &AppState, found: &Access) -> Result<RoomDetail, ApiError> {
    let room = &found.0.room;
    let (owner, member_count) = state.store.room_summary(room.id).await?;
    Ok(RoomDetail {
        name: room.name.as_str().to_owned(),
        kind: room.kind.into(),
        visibility: room.visibility.into(),
        topic: room.topic.clone(),
        owner: owner.map(Username::into_string),
        role: found.role().map(Into::into),
        member_count,
        last_seq: room.last_seq.get(),
        encrypted: room.encrypted,
    })
}

pub(crate) fn parse_room(name: &str) -> Result<RoomName, ApiError> {
    RoomName::parse(name).map_err(ApiError::invalid)
}

/// The caller as the author of a membership change.
pub(crate) fn actor(user: &User) -> Actor {
    Actor::User {
        id: user.id,
        username: user.username.clone(),
    }
}

/// A storage error of a change to room `name` as a REST error.
pub(crate) fn change_error(name: &RoomName, error: StorageError) -> ApiError {
    match error {
        StorageError::Refused(refusal) => access::for_route(name, refusal),
        other => ApiError::from(other),
    }
}

/// Every listed room, and the private rooms and direct conversations of
/// the caller, with unread counts for the rooms the caller is in.
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
            .filter(|m| m.room.kind == RoomKind::Direct || m.room.visibility == Visibility::Private)
            .map(|m| room_body(&m.room, Some(m))),
    );
    Ok(HttpResponse::Ok().json(bodies))
}

/// Creates a room, public unless `visibility` says `private`; the caller
/// becomes its owner and first member.
#[utoipa::path(
    post,
    path = "/api/rooms",
    tag = "rooms",
    request_body = CreateRoomRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, body = RoomBody),
        (status = 401, body = ErrorBody),
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
    let name = RoomName::public(&body.name).map_err(ApiError::invalid)?;
    let topic = body
        .topic
        .as_deref()
        .map(parse_topic)
        .transpose()
        .map_err(ApiError::invalid)?
        .flatten();
    let visibility = body.visibility.map_or(Visibility::Public, Into::into);
    state
        .store
        .create_room(&name, user.id, visibility, topic.as_deref(), body.encrypted)
        .await?;
    Ok(HttpResponse::Created().json(body_for(&state, &name, user.id).await?))
}

/// One room: its kind, visibility, topic, owner, the caller's role and
/// its member count. A private room is 404 to anyone but its members.
#[utoipa::path(
    get,
    path = "/api/rooms/{name}",
    tag = "rooms",
    params(("name" = String, Path, description = "room name")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = RoomDetail),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[get("/api/rooms/{name}")]
pub(crate) async fn show(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_room(&name)?;
    let found = access::find_for_route(&state, &name, user.id).await?;
    Ok(HttpResponse::Ok().json(detail_for(&state, &found).await?))
}

/// Changes a room's topic (owner or moderator) or visibility (owner).
#[utoipa::path(
    patch,
    path = "/api/rooms/{name}",
    tag = "rooms",
    params(("name" = String, Path, description = "room name")),
    request_body = UpdateRoomRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = RoomDetail),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller's role does not allow it", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[patch("/api/rooms/{name}")]
pub(crate) async fn update(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    name: web::Path<String>,
    body: web::Json<UpdateRoomRequest>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_room(&name)?;
    let topic = body
        .topic
        .as_deref()
        .map(parse_topic)
        .transpose()
        .map_err(ApiError::invalid)?;
    let visibility = body.visibility.map(Visibility::from);
    let found = access::find_for_route(&state, &name, user.id).await?;
    membership::update_room(&state, &found, &user.username, topic, visibility)
        .await
        .map_err(|error| change_error(&name, error))?;
    let found = access::find_for_route(&state, &name, user.id).await?;
    Ok(HttpResponse::Ok().json(detail_for(&state, &found).await?))
}

/// Deletes a room (owner only) with its messages; every member's sockets
/// get `left` with reason `room_deleted`.
#[utoipa::path(
    delete,
    path = "/api/rooms/{name}",
    tag = "rooms",
    params(("name" = String, Path, description = "room name")),
    security(("bearer" = [])),
    responses(
        (status = 204),
        (status = 401, body = ErrorBody),
        (status = 403, description = "only the owner may delete a room", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[delete("/api/rooms/{name}")]
pub(crate) async fn remove(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_room(&name)?;
    let found = access::find_for_route(&state, &name, user.id).await?;
    authorize_in(found.0.room.kind, Action::DeleteRoom, found.role(), None)
        .map_err(|refusal| access::for_route(&name, refusal))?;
    membership::delete_room(&state, &found.key()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Joins a public room. A private room is 404; a ban is 403.
#[utoipa::path(
    post,
    path = "/api/rooms/{name}/join",
    tag = "rooms",
    params(("name" = String, Path, description = "room name")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = RoomBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller is banned", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[post("/api/rooms/{name}/join")]
pub(crate) async fn join(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_room(&name)?;
    let found = access::find_for_route(&state, &name, user.id).await?;
    membership::change(
        &state,
        &found.key(),
        &actor(&user),
        user.id,
        MembershipOp::Join,
    )
    .await
    .map_err(|error| change_error(&name, error))?;
    Ok(HttpResponse::Ok().json(body_for(&state, &name, user.id).await?))
}

/// Leaves a room; the caller's open sockets, on every node, get `left` and
/// stop receiving it.
#[utoipa::path(
    post,
    path = "/api/rooms/{name}/leave",
    tag = "rooms",
    params(("name" = String, Path, description = "room name")),
    security(("bearer" = [])),
    responses(
        (status = 204),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[post("/api/rooms/{name}/leave")]
pub(crate) async fn leave(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_room(&name)?;
    let found = access::find_for_route(&state, &name, user.id).await?;
    membership::change(
        &state,
        &found.key(),
        &actor(&user),
        user.id,
        MembershipOp::Leave,
    )
    .await
    .map_err(|error| change_error(&name, error))?;
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
        (status = 401, body = ErrorBody),
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
    let seq = Seq::new(body.seq).map_err(|error| ApiError::invalid_value(error.to_string()))?;
    let name = parse_room(&name)?;
    let found = access::find_for_route(&state, &name, user.id).await?;
    crate::receipts::mark_read(
        &state,
        found.0.room.id,
        name.as_str(),
        user.id,
        &user.username,
        seq,
    )
    .await?;
    Ok(HttpResponse::Ok().json(body_for(&state, &name, user.id).await?))
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
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller is banned from the room", body = ErrorBody),
        (status = 404, description = "no such room, or a private one the caller is not in", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[get("/api/rooms/{name}/messages")]
pub(crate) async fn messages(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let _timer = crate::metrics::history_timer("/api/rooms/{name}/messages");
    // A room this node knows already: the session check reads the room's
    // newest seq in the same query, so a newest page held in memory costs
    // one round trip. The room is only looked for in memory before the
    // caller is known, so an anonymous request asks the database nothing.
    let parsed = parse_room(&name);
    let known = parsed
        .as_ref()
        .ok()
        .and_then(|room| state.store.known_room_key(room));
    let (principal, reading) = authenticate_reading(
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
    // The room's identity comes from memory after the first page, and the
    // session check read whether the caller may read it: a page costs the
    // token check and the history query, not a room look-up too.
    let (room, last_seq) = match (known, reading) {
        (Some(room), Some(reading)) if reading.exists => {
            let readable = reading.member || (reading.listed && !reading.banned);
            if !readable {
                let refusal = if reading.listed {
                    Refusal::Banned { until: None }
                } else {
                    Refusal::RoomNotFound
                };
                return Err(access::for_route(&room.name, refusal));
            }
            (room, Some(reading.last_seq))
        }
        _ => {
            let name = parsed?;
            let found = access::find_for_route(&state, &name, user.id).await?;
            found
                .readable()
                .map_err(|refusal| access::for_route(&name, refusal))?;
            let room = state
                .store
                .room_key(&name)
                .await?
                .ok_or_else(|| access::for_route(&name, Refusal::RoomNotFound))?;
            (room, None)
        }
    };
    let page = match (cursor, last_seq) {
        (Cursor::Latest, Some(last_seq)) => {
            state.store.newest_as_of(room.id, limit, last_seq).await?
        }
        _ => state.store.history(room.id, cursor, limit).await?,
    };
    let room_name = room.name.as_str();
    let context = page_context(&state, room.id, &page.messages, user.id).await?;
    Ok(HttpResponse::Ok().json(MessagePage {
        room: room_name.to_owned(),
        messages: page
            .messages
            .into_iter()
            .map(|m| frames::room_message(room_name, m, &context))
            .collect(),
        has_more: page.has_more,
    }))
}

/// What a page's messages refer to: the names of those who deleted some,
/// and the messages its replies answer (read only when not on the page).
pub(crate) async fn page_context(
    state: &AppState,
    room: RoomId,
    page: &[Message],
    viewer: UserId,
) -> Result<PageContext, ApiError> {
    let mut context = PageContext::default();
    // Only messages that have reactions are looked up: most pages have
    // none, and cost no query for them.
    let reactable: Vec<Seq> = page
        .iter()
        .filter(|m| m.reactions > 0)
        .map(|m| m.seq)
        .collect();
    context.reactions = state
        .store
        .reactions(room, &reactable, viewer)
        .await?
        .into_iter()
        .collect();
    let mut deleters: Vec<UserId> = page.iter().filter_map(|m| m.deleted_by).collect();
    deleters.sort_unstable();
    deleters.dedup();
    for (id, name) in state.store.names_of(&deleters).await? {
        context.names.insert(id, name.into_string());
    }
    let mut elsewhere = Vec::new();
    for target in page.iter().filter_map(|m| m.reply_to) {
        match page.iter().find(|m| m.seq == target) {
            Some(answered) => {
                context.answered.insert(target, answered.clone());
            }
            None => elsewhere.push(target),
        }
    }
    elsewhere.sort_unstable();
    elsewhere.dedup();
    for answered in state.store.messages_at(room, &elsewhere).await? {
        context.answered.insert(answered.seq, answered);
    }
    Ok(context)
}

/// Opens (or returns) the direct conversation with another user, end-to-end
/// encrypted when the optional body says `"encrypted": true`. Both users'
/// open sockets, on every node, receive it at once.
#[utoipa::path(
    post,
    path = "/api/dm/{username}",
    tag = "rooms",
    params(("username" = String, Path, description = "the other user")),
    request_body(content = Option<OpenDirectRequest>, description = "optional; without it the conversation is taken as it is"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = RoomBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody),
        (status = 409, description = "the conversation exists and is not of the kind asked for (encrypted or plaintext)", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[post("/api/dm/{username}")]
pub(crate) async fn open_direct(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    username: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // The seed's clients send no body; a body, when there is one, is JSON.
    let request: OpenDirectRequest = if body.iter().all(u8::is_ascii_whitespace) {
        OpenDirectRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|error| ApiError::Unprocessable(format!("invalid body: {error}")))?
    };
    let other_name = Username::parse(username.into_inner()).map_err(ApiError::invalid)?;
    if other_name.same_user(&user.username) {
        return Err(ApiError::Unprocessable(
            "a direct conversation is between two different users".to_owned(),
        ));
    }
    let other = access::user_named(&state, &other_name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user '{other_name}' not found")))?;
    let room = membership::open_direct(&state, &user, &other, request.encrypted).await?;
    Ok(HttpResponse::Ok().json(body_for(&state, &room.name, user.id).await?))
}
