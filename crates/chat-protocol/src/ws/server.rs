use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::rest::{MemberChangeBody, RoleBody, RoomKindBody};
use crate::ws::ErrorCode;

/// A frame from server to client.
///
/// Optional fields are left out when empty, so the seed's frames keep their
/// exact original shape. Field order is part of the contract: serde writes
/// fields in declaration order, after `"type"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// A notice for people, e.g. `Connected as alice`. The seed's clients
    /// print these.
    System {
        /// The notice.
        message: String,
        /// The room it concerns; absent for the seed's notices.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// A stored message, sent to every member of its room, the sender
    /// included. The first four keys are the seed's.
    Message {
        /// The sender's name.
        username: String,
        /// The text.
        content: String,
        /// When it was stored.
        #[serde(with = "crate::timestamp")]
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
        timestamp: DateTime<Utc>,
        /// The message's global primary key.
        id: i64,
        /// The room it was sent to.
        room: String,
        /// Its position in the room.
        seq: i64,
        /// The id the sender's client gave it, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// The seq of the message of the same room it answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<i64>,
        /// When it was last edited: a message replayed after an edit comes
        /// in its current text (the `edited` frame follows in the sequence).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::timestamp::option"
        )]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
        edited_at: Option<DateTime<Utc>>,
        /// Set on a message replayed after it was deleted: a tombstone with
        /// empty `content` (the `deleted` frame follows in the sequence).
        /// Seed clients never receive tombstones.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        deleted: bool,
        /// In an end-to-end encrypted room: `content` is the base64 of an
        /// MLS `application` message or `commit`. Absent for plaintext.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mls: Option<crate::mls::MlsKindBody>,
    },
    /// A message's text was edited: recorded at its own `seq` in the room,
    /// sent to the room's members and replayed by `resume` and history in
    /// order. Seed clients never receive it.
    Edited {
        /// The room.
        room: String,
        /// The edit's position in the room.
        seq: i64,
        /// The seq of the message edited.
        target: i64,
        /// Its new text; empty once the message was deleted (a `deleted`
        /// frame for it follows in the sequence).
        content: String,
        /// When it was edited.
        #[serde(with = "crate::timestamp")]
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
        edited_at: DateTime<Utc>,
        /// Its author, who edited it.
        username: String,
    },
    /// A message was deleted, leaving a tombstone: recorded at its own
    /// `seq` like an edit. Seed clients never receive it.
    Deleted {
        /// The room.
        room: String,
        /// The deletion's position in the room.
        seq: i64,
        /// The seq of the message deleted.
        target: i64,
        /// Who deleted it: its author, the room's owner or a moderator.
        by: String,
    },
    /// A member added or took back a reaction to a message: recorded at its
    /// own `seq` like an edit. Seed clients never receive it.
    Reaction {
        /// The room.
        room: String,
        /// The change's position in the room.
        seq: i64,
        /// The seq of the message reacted to.
        target: i64,
        /// The reaction.
        emoji: String,
        /// Who reacted.
        username: String,
        /// `true` when the reaction was added, `false` when taken back.
        added: bool,
    },
    /// A member read the room up to `seq` (a read receipt). Sent to the
    /// room's other members' connections, except in rooms with more members
    /// than the server's limit; not stored in the sequence and not
    /// replayed. Seed clients never receive it.
    Read {
        /// The room.
        room: String,
        /// Who read.
        username: String,
        /// The newest seq they have read.
        seq: i64,
    },
    /// Sent to the sender only, once the message (or the edit, deletion or
    /// reaction) is committed. A reaction the sender had made already is
    /// acknowledged with `duplicate: true` and the seq that added it.
    Ack {
        /// The sender's `client_id`, if it gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// The stored message's global primary key.
        id: i64,
        /// The room it was stored in.
        room: String,
        /// Its position in the room.
        seq: i64,
        /// When it was stored.
        #[serde(with = "crate::timestamp")]
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
        timestamp: DateTime<Utc>,
        /// Whether this `client_id` had already been stored: the ack then
        /// carries the original message's `id`, `seq` and `timestamp`.
        duplicate: bool,
    },
    /// A frame was refused; nothing it asked for happened.
    Error {
        /// A stable code to match on.
        code: ErrorCode,
        /// What went wrong, for people.
        message: String,
        /// The refused message's `client_id`, if it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// The room the refused frame named, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// For `muted` and `banned`: when it ends (absent for a ban for
        /// good).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::timestamp::option"
        )]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
        until: Option<DateTime<Utc>>,
    },
    /// A membership change, stored in the room's sequence: sent to the
    /// room's members (the member it concerns included) and replayed by
    /// `resume` and history in order. Seed clients never receive it.
    Member {
        /// The room.
        room: String,
        /// Its position in the room.
        seq: i64,
        /// The member it concerns.
        username: String,
        /// What happened.
        change: MemberChangeBody,
        /// Who did it: the member themselves for `joined` and `left`;
        /// `null` for the server's operator.
        by: Option<String>,
        /// The member's role after a `role` change or an `added`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<RoleBody>,
        /// When a `muted` or `banned` ends (absent: a ban for good).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::timestamp::option"
        )]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
        until: Option<DateTime<Utc>>,
        /// The moderator's reason for a `kicked` or `banned`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When it happened.
        #[serde(with = "crate::timestamp")]
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
        timestamp: DateTime<Utc>,
    },
    /// A room's topic changed.
    Topic {
        /// The room.
        room: String,
        /// The new topic; `null` when it was cleared.
        topic: Option<String>,
        /// Who changed it.
        by: String,
    },
    /// A user came online or went offline in a room.
    Presence {
        /// The room.
        room: String,
        /// The user.
        username: String,
        /// `true` when they came online, `false` when they left.
        online: bool,
    },
    /// Who is online in a room, the answer to a `who` frame.
    Who {
        /// The room.
        room: String,
        /// The names of the users online, each once.
        online: Vec<String>,
    },
    /// A user is typing in a room.
    Typing {
        /// The room.
        room: String,
        /// The user.
        username: String,
    },
    /// The connection now receives a room's messages: the answer to `join`,
    /// and the end of a `resume` replay.
    Joined {
        /// The room.
        room: String,
        /// Public room or direct conversation.
        kind: RoomKindBody,
        /// The `seq` of the room's newest message when the frame was sent.
        last_seq: i64,
        /// End-to-end encrypted (MLS): the room takes ciphertext only. Fixed
        /// when the room is created.
        encrypted: bool,
    },
    /// The connection no longer receives a room's messages.
    Left {
        /// The room.
        room: String,
        /// Why: `left` (the user left), `kicked`, `banned` or
        /// `room_deleted`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<LeftReason>,
    },
    /// The answer to `ping`.
    Pong,
    /// The answer to an `auth` frame: the connection now runs on the new
    /// token and stays open until it expires.
    Authenticated {
        /// When the new token expires; the server closes the connection
        /// then (1008, "token expired") unless another `auth` frame came.
        #[serde(with = "crate::timestamp")]
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
        expires_at: DateTime<Utc>,
    },
}

/// Why a connection stopped receiving a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    /// The user left.
    Left,
    /// The owner or a moderator removed the user.
    Kicked,
    /// The owner or a moderator banned the user.
    Banned,
    /// The owner deleted the room.
    RoomDeleted,
}

impl LeftReason {
    /// The reason as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            LeftReason::Left => "left",
            LeftReason::Kicked => "kicked",
            LeftReason::Banned => "banned",
            LeftReason::RoomDeleted => "room_deleted",
        }
    }

    /// The inverse of [`LeftReason::as_str`].
    pub fn from_str_opt(value: &str) -> Option<LeftReason> {
        [
            LeftReason::Left,
            LeftReason::Kicked,
            LeftReason::Banned,
            LeftReason::RoomDeleted,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == value)
    }

    /// Why a member who underwent `change` no longer receives the room, if
    /// the change removed them.
    pub fn of(change: chat_domain::MemberChange) -> Option<LeftReason> {
        use chat_domain::MemberChange;
        match change {
            MemberChange::Left => Some(LeftReason::Left),
            MemberChange::Kicked => Some(LeftReason::Kicked),
            MemberChange::Banned => Some(LeftReason::Banned),
            _ => None,
        }
    }
}

/// The buffer a frame is serialized into: a message frame of a short chat
/// line is about 250 bytes.
const FRAME_CAPACITY: usize = 320;

/// What [`ServerFrame::to_json`] sends if serialization ever failed: a valid
/// `internal` error frame.
const INTERNAL_ERROR_JSON: &str =
    r#"{"type":"error","code":"internal","message":"internal error"}"#;

impl ServerFrame {
    /// A system notice that concerns no particular room.
    pub fn system(message: impl Into<String>) -> ServerFrame {
        ServerFrame::System {
            message: message.into(),
            room: None,
        }
    }

    /// The seed's greeting: `Connected as <username>`.
    pub fn connected_as(username: &str) -> ServerFrame {
        ServerFrame::system(format!("Connected as {username}"))
    }

    /// The seed's notice to everyone else: `<username> joined the chat`.
    pub fn joined_the_chat(username: &str) -> ServerFrame {
        ServerFrame::system(format!("{username} joined the chat"))
    }

    /// The seed's notice on disconnect: `<username> left the chat`.
    pub fn left_the_chat(username: &str) -> ServerFrame {
        ServerFrame::system(format!("{username} left the chat"))
    }

    /// An error frame that concerns no particular message or room.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerFrame {
        ServerFrame::Error {
            code,
            message: message.into(),
            client_id: None,
            room: None,
            until: None,
        }
    }

    /// The frame as the text of a WebSocket message.
    ///
    /// Serializing a frame cannot fail: every field is a string, an integer,
    /// a boolean, a list of strings or a timestamp written with a fixed,
    /// valid pattern, and there are no maps with non-string keys, which are
    /// the only ways `serde_json::to_string` errs. Should that ever change,
    /// the client gets an `internal` error frame rather than the server
    /// panicking.
    pub fn to_json(&self) -> String {
        // Sized for a chat message frame with its timestamp, so that the
        // usual frame is written without growing the buffer on the way
        // (`serde_json::to_string` starts at 128 bytes).
        let mut json = Vec::with_capacity(FRAME_CAPACITY);
        if serde_json::to_writer(&mut json, self).is_err() {
            return INTERNAL_ERROR_JSON.to_owned();
        }
        String::from_utf8(json).unwrap_or_else(|_| INTERNAL_ERROR_JSON.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use serde_json::Value;

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0)
            .single()
            .expect("a valid date")
            + Duration::microseconds(123_456)
    }

    /// One of each frame, with every optional field both set and unset,
    /// beside the exact JSON it must produce.
    fn golden() -> Vec<(ServerFrame, &'static str)> {
        vec![
            (
                ServerFrame::connected_as("alice"),
                r#"{"type":"system","message":"Connected as alice"}"#,
            ),
            (
                ServerFrame::System {
                    message: "topic changed".to_owned(),
                    room: Some("lobby".to_owned()),
                },
                r#"{"type":"system","message":"topic changed","room":"lobby"}"#,
            ),
            (
                ServerFrame::Message {
                    mls: None,
                    username: "alice".to_owned(),
                    content: "Hello, world!".to_owned(),
                    timestamp: at(),
                    id: 7,
                    room: "general".to_owned(),
                    seq: 3,
                    client_id: None,
                    reply_to: None,
                    edited_at: None,
                    deleted: false,
                },
                r#"{"type":"message","username":"alice","content":"Hello, world!","timestamp":"2024-01-01T12:00:00.123456+00:00","id":7,"room":"general","seq":3}"#,
            ),
            (
                ServerFrame::Message {
                    mls: None,
                    username: "alice".to_owned(),
                    content: "hi".to_owned(),
                    timestamp: at(),
                    id: 8,
                    room: "lobby".to_owned(),
                    seq: 1,
                    client_id: Some("c-1".to_owned()),
                    reply_to: None,
                    edited_at: None,
                    deleted: false,
                },
                r#"{"type":"message","username":"alice","content":"hi","timestamp":"2024-01-01T12:00:00.123456+00:00","id":8,"room":"lobby","seq":1,"client_id":"c-1"}"#,
            ),
            (
                ServerFrame::Ack {
                    client_id: Some("c-1".to_owned()),
                    id: 8,
                    room: "lobby".to_owned(),
                    seq: 1,
                    timestamp: at(),
                    duplicate: false,
                },
                r#"{"type":"ack","client_id":"c-1","id":8,"room":"lobby","seq":1,"timestamp":"2024-01-01T12:00:00.123456+00:00","duplicate":false}"#,
            ),
            (
                ServerFrame::Ack {
                    client_id: None,
                    id: 9,
                    room: "general".to_owned(),
                    seq: 4,
                    timestamp: at(),
                    duplicate: true,
                },
                r#"{"type":"ack","id":9,"room":"general","seq":4,"timestamp":"2024-01-01T12:00:00.123456+00:00","duplicate":true}"#,
            ),
            (
                ServerFrame::error(ErrorCode::InvalidJson, "frame is not a JSON object"),
                r#"{"type":"error","code":"invalid_json","message":"frame is not a JSON object"}"#,
            ),
            (
                ServerFrame::Error {
                    code: ErrorCode::Unavailable,
                    message: "storage unavailable, message not stored".to_owned(),
                    client_id: Some("c-2".to_owned()),
                    room: Some("lobby".to_owned()),
                    until: None,
                },
                r#"{"type":"error","code":"unavailable","message":"storage unavailable, message not stored","client_id":"c-2","room":"lobby"}"#,
            ),
            (
                ServerFrame::Error {
                    code: ErrorCode::Muted,
                    message: "you are muted".to_owned(),
                    client_id: Some("c-3".to_owned()),
                    room: Some("lobby".to_owned()),
                    until: Some(at()),
                },
                r#"{"type":"error","code":"muted","message":"you are muted","client_id":"c-3","room":"lobby","until":"2024-01-01T12:00:00.123456+00:00"}"#,
            ),
            (
                ServerFrame::Member {
                    room: "lobby".to_owned(),
                    seq: 7,
                    username: "bob".to_owned(),
                    change: MemberChangeBody::Kicked,
                    by: Some("alice".to_owned()),
                    role: None,
                    until: None,
                    reason: Some("spam".to_owned()),
                    timestamp: at(),
                },
                r#"{"type":"member","room":"lobby","seq":7,"username":"bob","change":"kicked","by":"alice","reason":"spam","timestamp":"2024-01-01T12:00:00.123456+00:00"}"#,
            ),
            (
                ServerFrame::Member {
                    room: "lobby".to_owned(),
                    seq: 8,
                    username: "carol".to_owned(),
                    change: MemberChangeBody::Role,
                    by: None,
                    role: Some(RoleBody::Moderator),
                    until: None,
                    reason: None,
                    timestamp: at(),
                },
                r#"{"type":"member","room":"lobby","seq":8,"username":"carol","change":"role","by":null,"role":"moderator","timestamp":"2024-01-01T12:00:00.123456+00:00"}"#,
            ),
            (
                ServerFrame::Topic {
                    room: "lobby".to_owned(),
                    topic: Some("plans".to_owned()),
                    by: "alice".to_owned(),
                },
                r#"{"type":"topic","room":"lobby","topic":"plans","by":"alice"}"#,
            ),
            (
                ServerFrame::Presence {
                    room: "general".to_owned(),
                    username: "bob".to_owned(),
                    online: true,
                },
                r#"{"type":"presence","room":"general","username":"bob","online":true}"#,
            ),
            (
                ServerFrame::Who {
                    room: "general".to_owned(),
                    online: vec!["alice".to_owned(), "bob".to_owned()],
                },
                r#"{"type":"who","room":"general","online":["alice","bob"]}"#,
            ),
            (
                ServerFrame::Typing {
                    room: "general".to_owned(),
                    username: "bob".to_owned(),
                },
                r#"{"type":"typing","room":"general","username":"bob"}"#,
            ),
            (
                ServerFrame::Joined {
                    room: "dm:alice:bob".to_owned(),
                    kind: RoomKindBody::Direct,
                    last_seq: 12,
                    encrypted: true,
                },
                r#"{"type":"joined","room":"dm:alice:bob","kind":"direct","last_seq":12,"encrypted":true}"#,
            ),
            (
                ServerFrame::Left {
                    room: "lobby".to_owned(),
                    reason: None,
                },
                r#"{"type":"left","room":"lobby"}"#,
            ),
            (
                ServerFrame::Left {
                    room: "lobby".to_owned(),
                    reason: Some(LeftReason::RoomDeleted),
                },
                r#"{"type":"left","room":"lobby","reason":"room_deleted"}"#,
            ),
            (ServerFrame::Pong, r#"{"type":"pong"}"#),
            (
                ServerFrame::Authenticated { expires_at: at() },
                r#"{"type":"authenticated","expires_at":"2024-01-01T12:00:00.123456+00:00"}"#,
            ),
        ]
    }

    #[test]
    fn every_server_frame_serializes_to_its_golden_json() {
        for (frame, json) in golden() {
            assert_eq!(frame.to_json(), json);
        }
    }

    #[test]
    fn every_server_frame_round_trips() {
        for (frame, json) in golden() {
            let back: ServerFrame = serde_json::from_str(json).expect(json);
            assert_eq!(back, frame);
        }
    }

    #[test]
    fn seed_system_frames_serialize_byte_for_byte() {
        assert_eq!(
            ServerFrame::connected_as("alice").to_json(),
            r#"{"type":"system","message":"Connected as alice"}"#
        );
        assert_eq!(
            ServerFrame::joined_the_chat("bob").to_json(),
            r#"{"type":"system","message":"bob joined the chat"}"#
        );
        assert_eq!(
            ServerFrame::left_the_chat("bob").to_json(),
            r#"{"type":"system","message":"bob left the chat"}"#
        );
    }

    #[test]
    fn the_message_frame_starts_with_the_seed_keys_in_order() {
        let (frame, _) = golden().swap_remove(3);
        let json = frame.to_json();
        let positions: Vec<usize> = ["\"type\"", "\"username\"", "\"content\"", "\"timestamp\""]
            .iter()
            .map(|key| json.find(key).expect(key))
            .collect();
        assert!(positions.is_sorted(), "{json}");
        assert!(
            json.starts_with(r#"{"type":"message","username":"#),
            "{json}"
        );
        let after_timestamp = &json[positions[3]..];
        assert!(
            after_timestamp.starts_with(r#""timestamp":"2024-01-01T12:00:00.123456+00:00","id":"#)
        );
    }

    #[test]
    fn a_seed_client_reads_the_message_frame_fields_it_knows() {
        let (frame, _) = golden().swap_remove(2);
        let value: Value = serde_json::from_str(&frame.to_json()).expect("valid JSON");
        assert_eq!(value["type"], "message");
        assert_eq!(value["username"], "alice");
        assert_eq!(value["content"], "Hello, world!");
        assert_eq!(value["timestamp"], "2024-01-01T12:00:00.123456+00:00");
    }

    #[test]
    fn a_server_frame_with_a_naive_timestamp_is_read_as_utc() {
        let json = r#"{"type":"message","username":"john","content":"Hello, world!","timestamp":"2024-01-01T12:00:00","id":1,"room":"general","seq":1}"#;
        let frame: ServerFrame = serde_json::from_str(json).expect("parses");
        let ServerFrame::Message { timestamp, .. } = frame else {
            panic!("expected a message frame, got {frame:?}");
        };
        assert_eq!(timestamp, at() - Duration::microseconds(123_456));
    }

    #[test]
    fn the_serialization_fallback_is_a_valid_internal_error_frame() {
        let frame: ServerFrame = serde_json::from_str(INTERNAL_ERROR_JSON).expect("parses");
        assert_eq!(
            frame,
            ServerFrame::error(ErrorCode::Internal, "internal error")
        );
    }
}
