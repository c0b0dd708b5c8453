//! Building the server's frames from stored data, in one place, so the live
//! path, the replay path and the REST history agree on every field.

use std::collections::HashMap;

use bytestring::ByteString;
use chat_domain::e2e::MlsKind;
use chat_domain::{ClientId, Seq, UserId};
use chat_protocol::mls::MlsKindBody;
use chat_protocol::rest::{
    HistoryItem, MemberEventBody, MessageChangeBody, MessageChangeKind, REPLY_EXCERPT_CHARS,
    ReactionCount, ReplyExcerpt, RoomMessage,
};
use chat_protocol::ws::{ErrorCode, ServerFrame};
use chat_storage::{MemberEvent, Message, MessageChange, Reaction, RoomKey};

/// What a client is shown for a stored message that cannot be decrypted
/// (its key is no longer configured). The row is logged by the storage.
pub(crate) const UNREADABLE: &str = "[this message could not be decrypted]";

/// The `message` frame for a stored message.
pub(crate) fn message(room: &str, message: &Message) -> ServerFrame {
    ServerFrame::Message {
        mls: message.mls.map(mls_kind),
        username: message.username.as_str().to_owned(),
        content: match &message.content {
            Some(content) => content.clone(),
            None if message.deleted_at.is_some() => String::new(),
            None => UNREADABLE.to_owned(),
        },
        timestamp: message.created_at,
        id: message.id.get(),
        room: room.to_owned(),
        seq: message.seq.get(),
        client_id: message.client_id.as_ref().map(|id| id.as_str().to_owned()),
        reply_to: message.reply_to.map(Seq::get),
        edited_at: message.edited_at,
        deleted: message.deleted_at.is_some(),
    }
}

/// The `joined` frame: the connection now receives `room`, and has its
/// items up to `last_seq`.
pub(crate) fn joined(room: &RoomKey, last_seq: Seq) -> ServerFrame {
    ServerFrame::Joined {
        room: room.name.as_str().to_owned(),
        kind: room.kind.into(),
        last_seq: last_seq.get(),
        encrypted: room.encrypted,
    }
}

/// The `edited` or `deleted` frame for a stored change to a message, or
/// `None` when `stored` is not one.
pub(crate) fn change(room: &str, stored: &Message) -> Option<ServerFrame> {
    let frame = match stored.change? {
        MessageChange::Edited { target } => ServerFrame::Edited {
            room: room.to_owned(),
            seq: stored.seq.get(),
            target: target.get(),
            // Erased with the message it edited.
            content: stored.content.clone().unwrap_or_default(),
            edited_at: stored.created_at,
            username: stored.username.as_str().to_owned(),
        },
        MessageChange::Deleted { target } => ServerFrame::Deleted {
            room: room.to_owned(),
            seq: stored.seq.get(),
            target: target.get(),
            by: stored.username.as_str().to_owned(),
        },
        MessageChange::Reacted { target } | MessageChange::Unreacted { target } => {
            ServerFrame::Reaction {
                room: room.to_owned(),
                seq: stored.seq.get(),
                target: target.get(),
                // Erased when its author's messages are.
                emoji: stored.content.clone().unwrap_or_default(),
                username: stored.username.as_str().to_owned(),
                added: matches!(stored.change, Some(MessageChange::Reacted { .. })),
            }
        }
    };
    Some(frame)
}

/// The `member` frame for a stored membership change (`stored` is its row,
/// `event` what it records).
pub(crate) fn member(room: &str, stored: &Message, event: &MemberEvent) -> ServerFrame {
    let body = event_body(event);
    ServerFrame::Member {
        room: room.to_owned(),
        seq: stored.seq.get(),
        username: stored.username.as_str().to_owned(),
        change: body.change,
        by: body.by,
        role: body.role,
        until: body.until,
        reason: body.reason,
        timestamp: stored.created_at,
    }
}

fn event_body(event: &MemberEvent) -> MemberEventBody {
    MemberEventBody {
        change: event.change.into(),
        by: event.by.as_ref().map(|name| name.as_str().to_owned()),
        role: event.role.map(Into::into),
        until: event.until,
        reason: event.reason.clone(),
    }
}

/// The `ack` frame the sender of a stored message gets.
pub(crate) fn ack(room: &str, message: &Message, duplicate: bool) -> ServerFrame {
    ServerFrame::Ack {
        client_id: message.client_id.as_ref().map(|id| id.as_str().to_owned()),
        id: message.id.get(),
        room: room.to_owned(),
        seq: message.seq.get(),
        timestamp: message.created_at,
        duplicate,
    }
}

/// An `error` frame.
pub(crate) fn error(
    code: ErrorCode,
    message: impl Into<String>,
    client_id: Option<String>,
    room: Option<String>,
) -> ServerFrame {
    ServerFrame::Error {
        code,
        message: message.into(),
        client_id,
        room,
        until: None,
    }
}

/// The `error` frame for a refusal by a room's rules.
pub(crate) fn refusal(
    refusal: &chat_domain::Refusal,
    room: &str,
    client_id: Option<String>,
) -> ServerFrame {
    ServerFrame::Error {
        code: ErrorCode::from(refusal),
        message: crate::access::describe(room, refusal),
        client_id,
        room: Some(room.to_owned()),
        until: crate::access::until_of(refusal),
    }
}

/// A `system` frame, as the seed sent them.
pub(crate) fn system(message: String) -> ServerFrame {
    ServerFrame::System {
        message,
        room: None,
    }
}

/// The wire name of what an MLS message is.
pub(crate) fn mls_kind(kind: MlsKind) -> MlsKindBody {
    match kind {
        MlsKind::Application => MlsKindBody::Application,
        MlsKind::Commit => MlsKindBody::Commit,
    }
}

/// Serializes a frame once, into shareable bytes.
pub(crate) fn encode(frame: &ServerFrame) -> ByteString {
    ByteString::from(frame.to_json())
}

/// A stored message as the seed's history endpoint lists it.
pub(crate) fn history_item(message: Message) -> HistoryItem {
    HistoryItem {
        id: message.id.get(),
        user_id: message.user_id.get(),
        username: message.username.into_string(),
        content: message.content.unwrap_or_else(|| UNREADABLE.to_owned()),
        created_at: message.created_at,
    }
}

/// What a page of the rooms API shows beside its messages: the names of
/// those who deleted some, the messages its replies answer, and the
/// reactions to its messages as the caller sees them.
#[derive(Debug, Default)]
pub(crate) struct PageContext {
    pub(crate) names: HashMap<UserId, String>,
    pub(crate) answered: HashMap<Seq, Message>,
    pub(crate) reactions: HashMap<Seq, Vec<Reaction>>,
}

/// A stored message as the rooms API lists it.
pub(crate) fn room_message(room: &str, message: Message, context: &PageContext) -> RoomMessage {
    let change = message.change.map(|change| MessageChangeBody {
        kind: match change {
            MessageChange::Edited { .. } => MessageChangeKind::Edited,
            MessageChange::Deleted { .. } => MessageChangeKind::Deleted,
            MessageChange::Reacted { .. } => MessageChangeKind::Reacted,
            MessageChange::Unreacted { .. } => MessageChangeKind::Unreacted,
        },
        target: change.target().get(),
    });
    let content = match (&change, message.content) {
        // An edit whose message was deleted since: its text is erased.
        (
            Some(MessageChangeBody {
                kind: MessageChangeKind::Edited,
                ..
            }),
            None,
        ) => Some(String::new()),
        (_, content) => content,
    };
    let reply = message
        .reply_to
        .and_then(|target| context.answered.get(&target))
        .map(|answered| ReplyExcerpt {
            username: answered.username.as_str().to_owned(),
            // The start of MLS ciphertext is no excerpt: the reader's
            // client shows the answered message from its own copy.
            excerpt: answered
                .content
                .as_deref()
                .filter(|_| answered.mls.is_none())
                .map(|text| text.chars().take(REPLY_EXCERPT_CHARS).collect()),
            deleted: answered.deleted_at.is_some(),
        });
    RoomMessage {
        mls: message.mls.map(mls_kind),
        id: message.id.get(),
        room: room.to_owned(),
        seq: message.seq.get(),
        user_id: message.user_id.get(),
        username: message.username.into_string(),
        content,
        client_id: message.client_id.map(ClientId::into_string),
        created_at: message.created_at,
        event: message.event.as_ref().map(event_body),
        change,
        edited_at: message.edited_at,
        deleted: message.deleted_at.is_some(),
        deleted_by: message
            .deleted_by
            .and_then(|id| context.names.get(&id).cloned()),
        deleted_at: message.deleted_at,
        reply_to: message.reply_to.map(Seq::get),
        reply,
        reactions: context
            .reactions
            .get(&message.seq)
            .map(|reactions| reactions.iter().map(reaction_count).collect())
            .unwrap_or_default(),
    }
}

/// One kind of reaction as the rooms API lists it.
pub(crate) fn reaction_count(reaction: &Reaction) -> ReactionCount {
    ReactionCount {
        emoji: reaction.emoji.clone(),
        count: reaction.count,
        me: reaction.me,
    }
}
