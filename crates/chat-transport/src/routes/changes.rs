//! Changing stored messages over REST: edit, delete, react, and the texts
//! a message had before. Each change goes through [`crate::changes`], as
//! the `edit`, `delete`, `react` and `unreact` frames do, so it is recorded
//! in the room's sequence and reaches every socket of the room on every
//! node.

use actix_web::{HttpResponse, delete, get, patch, put, web};
use chat_domain::{ClientId, Emoji, MessageBody, RoomName, Seq};
use chat_protocol::rest::{
    EditRequest, EditsBody, ErrorBody, ReactionsBody, RoomMessage, VersionBody,
};
use chat_storage::{Changed, MessageOp, NewChange, User};

use super::rooms::{change_error, page_context, parse_room};
use crate::access::{self, Access};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::frames;
use crate::state::AppState;

/// The room and message seq a route names, the room as the caller may see
/// it; a room the caller may not see is 404, as one that does not exist.
async fn room_and_seq(
    state: &AppState,
    caller: &User,
    path: &(String, i64),
) -> Result<(RoomName, Access, Seq), ApiError> {
    let name = parse_room(&path.0)?;
    let found = access::find_for_route(state, &name, caller.id).await?;
    let seq = Seq::new(path.1)
        .ok()
        .filter(|seq| seq.get() > 0)
        .ok_or_else(|| ApiError::invalid_value("seq is the position of a message, 1 or more"))?;
    Ok((name, found, seq))
}

/// Makes a change through the one path the frames use too.
async fn change(
    state: &AppState,
    caller: &User,
    path: &(String, i64),
    op: MessageOp,
    client_id: Option<ClientId>,
) -> Result<(RoomName, chat_storage::RoomKey, Seq, Changed), ApiError> {
    let (name, found, target) = room_and_seq(state, caller, path).await?;
    let key = found.key();
    let change = NewChange {
        room_id: key.id,
        target,
        user_id: caller.id,
        username: caller.username.clone(),
        op,
        client_id,
    };
    let changed = crate::changes::apply(&state.store, state.fanout.as_ref(), name.as_str(), change)
        .await
        .map_err(|error| change_error(&name, error))?;
    Ok((name, key, target, changed))
}

/// Replaces the text of one of the caller's messages. The message keeps
/// its seq; the edit is recorded at the room's next seq and sent to the
/// room as an `edited` frame. Answers the message as it is now.
#[utoipa::path(
    patch,
    path = "/api/rooms/{name}/messages/{seq}",
    tag = "messages",
    params(
        ("name" = String, Path, description = "room name"),
        ("seq" = i64, Path, description = "the message's seq"),
    ),
    request_body = EditRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = RoomMessage),
        (status = 401, body = ErrorBody),
        (status = 403, description = "not the caller's message, or the caller is muted or not a member", body = ErrorBody),
        (status = 404, description = "no such room or message", body = ErrorBody),
        (status = 409, description = "the message was deleted", body = ErrorBody),
        (status = 422, description = "blank or too long, or a bad client id", body = ErrorBody)
    )
)]
#[patch("/api/rooms/{name}/messages/{seq}")]
pub(crate) async fn edit(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    path: web::Path<(String, i64)>,
    body: web::Json<EditRequest>,
) -> Result<HttpResponse, ApiError> {
    let EditRequest { content, client_id } = body.into_inner();
    let content = MessageBody::parse_with_limit(content, state.config.max_message_chars)
        .map_err(ApiError::invalid)?;
    let client_id = client_id
        .map(ClientId::parse)
        .transpose()
        .map_err(ApiError::invalid)?;
    let (name, key, target, _) =
        change(&state, &user, &path, MessageOp::Edit { content }, client_id).await?;
    let message = state
        .store
        .message_at(key.id, target)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no message of '{name}' has that seq")))?;
    let context = page_context(&state, key.id, std::slice::from_ref(&message), user.id).await?;
    Ok(HttpResponse::Ok().json(frames::room_message(name.as_str(), message, &context)))
}

/// Deletes a message: the caller's own, or anyone's for the room's owner
/// and moderators. Its text and every earlier text are erased; a tombstone
/// keeps its seq. The deletion is recorded at the room's next seq and sent
/// to the room as a `deleted` frame.
#[utoipa::path(
    delete,
    path = "/api/rooms/{name}/messages/{seq}",
    tag = "messages",
    params(
        ("name" = String, Path, description = "room name"),
        ("seq" = i64, Path, description = "the message's seq"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "not the caller's message and the caller is not the owner or a moderator", body = ErrorBody),
        (status = 404, description = "no such room or message", body = ErrorBody),
        (status = 409, description = "the message was deleted already", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[delete("/api/rooms/{name}/messages/{seq}")]
pub(crate) async fn remove(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    change(&state, &user, &path, MessageOp::Delete, None).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Adds or takes back the caller's reaction, and answers the message's
/// reactions as they are now.
async fn reaction(
    state: &AppState,
    caller: &User,
    path: (String, i64, String),
    add: bool,
) -> Result<HttpResponse, ApiError> {
    let (room, seq, emoji) = path;
    let emoji = Emoji::parse(emoji).map_err(ApiError::invalid)?;
    let op = if add {
        MessageOp::React { emoji }
    } else {
        MessageOp::Unreact { emoji }
    };
    let (name, key, target, changed) = change(state, caller, &(room, seq), op, None).await?;
    let reactions = state
        .store
        .reactions(key.id, &[target], caller.id)
        .await?
        .pop()
        .map(|(_, reactions)| reactions)
        .unwrap_or_default();
    Ok(HttpResponse::Ok().json(ReactionsBody {
        room: name.as_str().to_owned(),
        seq: target.get(),
        change_seq: changed.change.seq.get(),
        reactions: reactions.iter().map(frames::reaction_count).collect(),
    }))
}

/// Reacts to a message of the room (any member may, once per kind). The
/// reaction is recorded at the room's next seq and sent to the room as a
/// `reaction` frame; a reaction the caller had made already changes
/// nothing and is answered the same way. The reaction is the last path
/// segment, percent-encoded (`%F0%9F%91%8D` for 👍).
#[utoipa::path(
    put,
    path = "/api/rooms/{name}/messages/{seq}/reactions/{emoji}",
    tag = "messages",
    params(
        ("name" = String, Path, description = "room name"),
        ("seq" = i64, Path, description = "the message's seq"),
        ("emoji" = String, Path, description = "the reaction: up to 4 characters (an emoji counts as one), percent-encoded"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the message's reactions now", body = ReactionsBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller is muted or not a member", body = ErrorBody),
        (status = 404, description = "no such room or message", body = ErrorBody),
        (status = 409, description = "the message was deleted, or has 20 kinds of reaction already", body = ErrorBody),
        (status = 422, description = "not a valid reaction", body = ErrorBody)
    )
)]
#[put("/api/rooms/{name}/messages/{seq}/reactions/{emoji}")]
pub(crate) async fn react(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    path: web::Path<(String, i64, String)>,
) -> Result<HttpResponse, ApiError> {
    reaction(&state, &user, path.into_inner(), true).await
}

/// Takes back the caller's reaction to a message. Recorded at the room's
/// next seq and sent to the room as a `reaction` frame with `added: false`.
#[utoipa::path(
    delete,
    path = "/api/rooms/{name}/messages/{seq}/reactions/{emoji}",
    tag = "messages",
    params(
        ("name" = String, Path, description = "room name"),
        ("seq" = i64, Path, description = "the message's seq"),
        ("emoji" = String, Path, description = "the reaction, percent-encoded"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the message's reactions now", body = ReactionsBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller is not a member", body = ErrorBody),
        (status = 404, description = "no such room or message, or the caller has not reacted so", body = ErrorBody),
        (status = 409, description = "the message was deleted", body = ErrorBody),
        (status = 422, description = "not a valid reaction", body = ErrorBody)
    )
)]
#[delete("/api/rooms/{name}/messages/{seq}/reactions/{emoji}")]
pub(crate) async fn unreact(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    path: web::Path<(String, i64, String)>,
) -> Result<HttpResponse, ApiError> {
    reaction(&state, &user, path.into_inner(), false).await
}

/// The texts a message had before its edits, newest first, to the room's
/// members. Empty for a message never edited, and for a deleted one (its
/// texts are erased).
#[utoipa::path(
    get,
    path = "/api/rooms/{name}/messages/{seq}/edits",
    tag = "messages",
    params(
        ("name" = String, Path, description = "room name"),
        ("seq" = i64, Path, description = "the message's seq"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, body = EditsBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller is not a member", body = ErrorBody),
        (status = 404, description = "no such room or message", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[get("/api/rooms/{name}/messages/{seq}/edits")]
pub(crate) async fn edits(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (name, found, target) = room_and_seq(&state, &user, &path).await?;
    found
        .member()
        .map_err(|refusal| access::for_route(&name, refusal))?;
    let versions = state
        .store
        .versions(found.key().id, target)
        .await
        .map_err(|error| change_error(&name, error))?;
    Ok(HttpResponse::Ok().json(EditsBody {
        room: name.as_str().to_owned(),
        seq: target.get(),
        versions: versions
            .into_iter()
            .map(|version| VersionBody {
                content: version.content,
                written_at: version.written_at,
                replaced_by: version.replaced_by.get(),
            })
            .collect(),
    }))
}
