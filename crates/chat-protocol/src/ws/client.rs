use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::ws::ErrorCode;

/// A frame from client to server.
///
/// Fields the server does not know are ignored, so a newer client can talk
/// to an older server. A room that is absent means `general`, the room every
/// seed client talks in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Send a message. The seed's clients send only `content`.
    Message {
        /// The text, sent as typed.
        content: String,
        /// The room to send to; `general` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// An id the client picked, so a resend after a lost ack is
        /// recognised and not stored twice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// The seq of the message of the same room this one answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<i64>,
        /// `"application"` in an end-to-end encrypted room: `content` is
        /// the base64 of an MLS application message (ciphertext). Without
        /// it, such a room refuses the message (`encryption_required`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mls: Option<crate::mls::MlsKindBody>,
    },
    /// Replace the text of one's own message.
    Edit {
        /// The room.
        room: String,
        /// The message's seq.
        seq: i64,
        /// The new text, under the same rules as a message's.
        content: String,
        /// Makes a resend idempotent, as for messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// Delete a message: one's own, or anyone's for the room's owner and
    /// moderators.
    Delete {
        /// The room.
        room: String,
        /// The message's seq.
        seq: i64,
        /// Makes a resend idempotent, as for messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// React to a message (any member, any message); a reaction one has
    /// already made is not made twice.
    React {
        /// The room.
        room: String,
        /// The message's seq.
        seq: i64,
        /// The reaction: an emoji or another short string.
        emoji: String,
        /// Makes a resend idempotent, as for messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// Take back one's own reaction to a message.
    Unreact {
        /// The room.
        room: String,
        /// The message's seq.
        seq: i64,
        /// The reaction to take back.
        emoji: String,
        /// Makes a resend idempotent, as for messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// Mark a room read up to `seq`: the room's other members' clients are
    /// told (`read`), in rooms that are not too large.
    Read {
        /// The room.
        room: String,
        /// The newest seq read.
        seq: i64,
    },
    /// Become a member of a room and receive its messages.
    Join {
        /// The room to join.
        room: String,
    },
    /// Stop being a member of a room.
    Leave {
        /// The room to leave.
        room: String,
    },
    /// Catch up on a room after a reconnect: the server replays every
    /// message after `last_seq`, then continues live.
    Resume {
        /// The room to catch up on.
        room: String,
        /// The newest `seq` the client has seen in that room; 0 for none.
        last_seq: i64,
    },
    /// The user is typing.
    Typing {
        /// The room they are typing in; `general` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// Ask who is online.
    Who {
        /// The room to ask about; `general` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// Ask for a `pong`.
    Ping,
    /// Remove a member from a room (owner or moderator); they may join a
    /// public room again.
    Kick {
        /// The room.
        room: String,
        /// The member to remove.
        username: String,
        /// Why, shown to the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Remove a user from a room and bar their return (owner or moderator).
    Ban {
        /// The room.
        room: String,
        /// The user to ban.
        username: String,
        /// Why, shown to the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When the ban ends; absent for good.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::timestamp::option"
        )]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Stop a member from posting until `until` (owner or moderator).
    Mute {
        /// The room.
        room: String,
        /// The member to mute.
        username: String,
        /// When they may post again.
        #[serde(with = "crate::timestamp")]
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
        until: chrono::DateTime<chrono::Utc>,
    },
    /// Set a room's topic (owner or moderator); an empty one clears it.
    Topic {
        /// The room.
        room: String,
        /// The new topic.
        topic: String,
    },
}

impl ClientFrame {
    /// The `type` of every client frame.
    pub const TYPES: [&'static str; 16] = [
        "message", "join", "leave", "resume", "typing", "who", "ping", "kick", "ban", "mute",
        "topic", "edit", "delete", "react", "unreact", "read",
    ];

    /// Parses one text frame, saying precisely what is wrong with a bad one.
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        let (kind, value) = read(text, &Self::TYPES)?;
        from_value(kind, value)
    }

    /// This frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientFrame::Message { .. } => "message",
            ClientFrame::Join { .. } => "join",
            ClientFrame::Leave { .. } => "leave",
            ClientFrame::Resume { .. } => "resume",
            ClientFrame::Typing { .. } => "typing",
            ClientFrame::Who { .. } => "who",
            ClientFrame::Ping => "ping",
            ClientFrame::Kick { .. } => "kick",
            ClientFrame::Ban { .. } => "ban",
            ClientFrame::Mute { .. } => "mute",
            ClientFrame::Topic { .. } => "topic",
            ClientFrame::Edit { .. } => "edit",
            ClientFrame::Delete { .. } => "delete",
            ClientFrame::React { .. } => "react",
            ClientFrame::Unreact { .. } => "unreact",
            ClientFrame::Read { .. } => "read",
        }
    }
}

/// Renews the access token a connection runs on:
/// `{"type":"auth","token":"<JWT>"}`.
///
/// A connection is closed when its token expires; a client that refreshed
/// its token over REST sends the new one in this frame, for the same user
/// and the same session, and the connection stays open until the new
/// token's expiry. The server answers `authenticated`, or an `error` frame
/// with code `invalid_token` and keeps the old token.
///
/// It is not a [`ClientFrame`]: it concerns the connection rather than the
/// chat, so clients that handle every chat frame need not know it, and it
/// carries a credential, so its `Debug` shows none of it. [`Inbound`] reads
/// both kinds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename = "auth")]
pub struct AuthFrame {
    /// The new access token.
    pub token: String,
}

impl fmt::Debug for AuthFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFrame")
            .field("token", &format_args!("<redacted>"))
            .finish()
    }
}

/// Any frame a client may send: a chat frame or an `auth` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A frame about the chat.
    Chat(ClientFrame),
    /// A new access token for the connection.
    Auth(AuthFrame),
}

impl Inbound {
    /// The `type` of every frame a client may send.
    pub const TYPES: [&'static str; 17] = [
        "message", "join", "leave", "resume", "typing", "who", "ping", "kick", "ban", "mute",
        "topic", "edit", "delete", "react", "unreact", "read", "auth",
    ];

    /// Parses one text frame, as [`ClientFrame::parse`] does, also knowing
    /// `auth`.
    pub fn parse(text: &str) -> Result<Inbound, FrameError> {
        let (kind, value) = read(text, &Self::TYPES)?;
        if kind == "auth" {
            from_value(kind, value).map(Inbound::Auth)
        } else {
            from_value(kind, value).map(Inbound::Chat)
        }
    }
}

/// Reads a JSON object whose `type` is one of `types`; returns that type.
fn read(text: &str, types: &[&'static str]) -> Result<(&'static str, Value), FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|_| FrameError::NotJson)?;
    let Value::Object(object) = &value else {
        return Err(FrameError::NotJson);
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind,
        Some(other) => return Err(FrameError::unknown_type(&other.to_string())),
        None => return Err(FrameError::UnknownType(String::new())),
    };
    let Some(kind) = types.iter().copied().find(|known| known == kind) else {
        return Err(FrameError::unknown_type(kind));
    };
    Ok((kind, value))
}

fn from_value<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    value: Value,
) -> Result<T, FrameError> {
    serde_json::from_value(value).map_err(|error| FrameError::Invalid {
        kind,
        reason: error.to_string(),
    })
}

/// Why a text frame is not a valid [`ClientFrame`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The text is not JSON, or not a JSON object.
    #[error("frame is not a JSON object")]
    NotJson,
    /// The `type` is missing (empty string), not a string (its JSON text),
    /// or not a known type (its first 64 characters).
    #[error("{}", describe_unknown_type(.0))]
    UnknownType(String),
    /// A known type with missing or ill-typed fields.
    #[error("invalid {kind} frame: {reason}")]
    Invalid {
        /// The frame's `type`.
        kind: &'static str,
        /// What is wrong, e.g. "missing field `content`".
        reason: String,
    },
}

impl FrameError {
    /// The longest part of an unknown `type` echoed back: the text comes
    /// from the client and may be arbitrarily long.
    const MAX_ECHOED_CHARS: usize = 64;

    fn unknown_type(kind: &str) -> FrameError {
        FrameError::UnknownType(kind.chars().take(Self::MAX_ECHOED_CHARS).collect())
    }

    /// The code of the `error` frame that answers this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::NotJson => ErrorCode::InvalidJson,
            FrameError::UnknownType(_) => ErrorCode::UnknownType,
            FrameError::Invalid { .. } => ErrorCode::InvalidFrame,
        }
    }
}

fn describe_unknown_type(kind: &str) -> String {
    if kind.is_empty() {
        "frame has no \"type\"".to_owned()
    } else {
        format!("unknown frame type {kind:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<ClientFrame> {
        vec![
            ClientFrame::Message {
                mls: None,
                content: "hello".to_owned(),
                room: Some("lobby".to_owned()),
                client_id: Some("c-1".to_owned()),
                reply_to: None,
            },
            ClientFrame::Message {
                mls: None,
                content: "hi".to_owned(),
                room: None,
                client_id: None,
                reply_to: None,
            },
            ClientFrame::Join {
                room: "lobby".to_owned(),
            },
            ClientFrame::Leave {
                room: "lobby".to_owned(),
            },
            ClientFrame::Resume {
                room: "lobby".to_owned(),
                last_seq: 41,
            },
            ClientFrame::Typing {
                room: Some("lobby".to_owned()),
            },
            ClientFrame::Typing { room: None },
            ClientFrame::Who { room: None },
            ClientFrame::Who {
                room: Some("lobby".to_owned()),
            },
            ClientFrame::Ping,
            ClientFrame::Kick {
                room: "lobby".to_owned(),
                username: "bob".to_owned(),
                reason: Some("spam".to_owned()),
            },
            ClientFrame::Ban {
                room: "lobby".to_owned(),
                username: "bob".to_owned(),
                reason: None,
                until: Some(crate::timestamp::parse("2030-01-01T00:00:00+00:00").expect("valid")),
            },
            ClientFrame::Mute {
                room: "lobby".to_owned(),
                username: "bob".to_owned(),
                until: crate::timestamp::parse("2030-01-01T00:00:00+00:00").expect("valid"),
            },
            ClientFrame::Topic {
                room: "lobby".to_owned(),
                topic: "plans".to_owned(),
            },
            ClientFrame::Edit {
                room: "lobby".to_owned(),
                seq: 4,
                content: "hello, again".to_owned(),
                client_id: Some("e-1".to_owned()),
            },
            ClientFrame::Delete {
                room: "lobby".to_owned(),
                seq: 4,
                client_id: None,
            },
            ClientFrame::React {
                room: "lobby".to_owned(),
                seq: 4,
                emoji: "👍".to_owned(),
                client_id: Some("r-1".to_owned()),
            },
            ClientFrame::Unreact {
                room: "lobby".to_owned(),
                seq: 4,
                emoji: "👍".to_owned(),
                client_id: None,
            },
            ClientFrame::Read {
                room: "lobby".to_owned(),
                seq: 5,
            },
        ]
    }

    fn to_json(frame: &ClientFrame) -> String {
        serde_json::to_string(frame).expect("client frames serialize")
    }

    #[test]
    fn every_client_frame_round_trips_through_parse() {
        for frame in samples() {
            assert_eq!(
                ClientFrame::parse(&to_json(&frame)),
                Ok(frame.clone()),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn every_frame_kind_is_a_known_type_and_its_json_tag() {
        for frame in samples() {
            assert!(ClientFrame::TYPES.contains(&frame.kind()), "{frame:?}");
            let value: Value = serde_json::from_str(&to_json(&frame)).expect("valid JSON");
            assert_eq!(value["type"], frame.kind());
        }
        let kinds: Vec<&str> = samples().iter().map(ClientFrame::kind).collect();
        for known in ClientFrame::TYPES {
            assert!(kinds.contains(&known), "no sample of {known}");
        }
    }

    #[test]
    fn client_frames_serialize_to_the_documented_json() {
        let golden = [
            (
                &samples()[0],
                r#"{"type":"message","content":"hello","room":"lobby","client_id":"c-1"}"#,
            ),
            (&samples()[1], r#"{"type":"message","content":"hi"}"#),
            (&samples()[2], r#"{"type":"join","room":"lobby"}"#),
            (&samples()[3], r#"{"type":"leave","room":"lobby"}"#),
            (
                &samples()[4],
                r#"{"type":"resume","room":"lobby","last_seq":41}"#,
            ),
            (&samples()[5], r#"{"type":"typing","room":"lobby"}"#),
            (&samples()[7], r#"{"type":"who"}"#),
            (&samples()[9], r#"{"type":"ping"}"#),
            (
                &samples()[10],
                r#"{"type":"kick","room":"lobby","username":"bob","reason":"spam"}"#,
            ),
            (
                &samples()[11],
                r#"{"type":"ban","room":"lobby","username":"bob","until":"2030-01-01T00:00:00.000000+00:00"}"#,
            ),
            (
                &samples()[12],
                r#"{"type":"mute","room":"lobby","username":"bob","until":"2030-01-01T00:00:00.000000+00:00"}"#,
            ),
            (
                &samples()[13],
                r#"{"type":"topic","room":"lobby","topic":"plans"}"#,
            ),
        ];
        for (frame, json) in golden {
            assert_eq!(to_json(frame), json);
        }
    }

    #[test]
    fn the_seed_message_frame_parses_with_no_room_and_no_client_id() {
        assert_eq!(
            ClientFrame::parse(r#"{"type": "message", "content": "Hello, world!"}"#),
            Ok(ClientFrame::Message {
                mls: None,
                content: "Hello, world!".to_owned(),
                room: None,
                client_id: None,
                reply_to: None,
            })
        );
    }

    #[test]
    fn an_mls_message_frame_says_what_its_content_is() {
        let frame = ClientFrame::Message {
            mls: Some(crate::mls::MlsKindBody::Application),
            content: "AAE=".to_owned(),
            room: Some("vault".to_owned()),
            client_id: Some("c1".to_owned()),
            reply_to: None,
        };
        let json = r#"{"type":"message","content":"AAE=","room":"vault","client_id":"c1","mls":"application"}"#;
        assert_eq!(to_json(&frame), json);
        assert_eq!(ClientFrame::parse(json), Ok(frame));
    }

    #[test]
    fn a_bare_ping_parses() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping)
        );
    }

    #[test]
    fn unknown_extra_fields_are_ignored() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"message","content":"hi","mood":"happy","n":[1]}"#),
            Ok(ClientFrame::Message {
                mls: None,
                content: "hi".to_owned(),
                room: None,
                client_id: None,
                reply_to: None,
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping","sent_at":12}"#),
            Ok(ClientFrame::Ping)
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"join","room":"lobby","extra":null}"#),
            Ok(ClientFrame::Join {
                room: "lobby".to_owned()
            })
        );
    }

    #[test]
    fn text_that_is_not_a_json_object_is_not_json() {
        for text in [
            "not json",
            "[1,2]",
            "\"message\"",
            "42",
            "null",
            "",
            "{\"type\":",
        ] {
            let error = ClientFrame::parse(text).expect_err(text);
            assert_eq!(error, FrameError::NotJson, "{text:?}");
            assert_eq!(error.code(), ErrorCode::InvalidJson);
        }
    }

    #[test]
    fn an_unknown_type_is_reported_by_name() {
        let error = ClientFrame::parse(r#"{"type":"shout","content":"HI"}"#).expect_err("unknown");
        assert_eq!(error, FrameError::UnknownType("shout".to_owned()));
        assert_eq!(error.code(), ErrorCode::UnknownType);
        assert_eq!(error.to_string(), r#"unknown frame type "shout""#);
    }

    #[test]
    fn a_missing_or_non_string_type_is_an_unknown_type() {
        let missing = ClientFrame::parse(r#"{"content":"hi"}"#).expect_err("no type");
        assert_eq!(missing, FrameError::UnknownType(String::new()));
        assert_eq!(missing.to_string(), r#"frame has no "type""#);
        assert_eq!(
            ClientFrame::parse(r#"{"type":7}"#),
            Err(FrameError::UnknownType("7".to_owned()))
        );
        // Type names are case-sensitive.
        assert_eq!(
            ClientFrame::parse(r#"{"type":"Message","content":"hi"}"#),
            Err(FrameError::UnknownType("Message".to_owned()))
        );
    }

    #[test]
    fn a_long_unknown_type_is_echoed_only_in_part() {
        let text = format!(r#"{{"type":"{}"}}"#, "x".repeat(10_000));
        assert_eq!(
            ClientFrame::parse(&text),
            Err(FrameError::UnknownType("x".repeat(64)))
        );
    }

    #[test]
    fn a_message_without_content_is_an_invalid_message_frame() {
        let error = ClientFrame::parse(r#"{"type":"message"}"#).expect_err("no content");
        assert_eq!(
            error,
            FrameError::Invalid {
                kind: "message",
                reason: "missing field `content`".to_owned(),
            }
        );
        assert_eq!(error.code(), ErrorCode::InvalidFrame);
        assert_eq!(
            error.to_string(),
            "invalid message frame: missing field `content`"
        );
    }

    #[test]
    fn fields_of_the_wrong_type_make_an_invalid_frame() {
        for (text, kind) in [
            (r#"{"type":"message","content":5}"#, "message"),
            (r#"{"type":"message","content":null}"#, "message"),
            (
                r#"{"type":"resume","room":"lobby","last_seq":"7"}"#,
                "resume",
            ),
            (r#"{"type":"resume","room":"lobby"}"#, "resume"),
            (r#"{"type":"join"}"#, "join"),
            (r#"{"type":"typing","room":3}"#, "typing"),
        ] {
            match ClientFrame::parse(text) {
                Err(FrameError::Invalid { kind: got, .. }) => assert_eq!(got, kind, "{text}"),
                other => panic!("{text}: expected an invalid frame, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_auth_frame_parses_as_inbound_and_serializes_to_the_documented_json() {
        let frame = AuthFrame {
            token: "eyJ.payload.sig".to_owned(),
        };
        let json = serde_json::to_string(&frame).expect("serializes");
        assert_eq!(json, r#"{"type":"auth","token":"eyJ.payload.sig"}"#);
        assert_eq!(Inbound::parse(&json), Ok(Inbound::Auth(frame)));
    }

    #[test]
    fn every_chat_frame_parses_as_inbound_too() {
        for frame in samples() {
            assert_eq!(
                Inbound::parse(&to_json(&frame)),
                Ok(Inbound::Chat(frame.clone())),
                "{frame:?}"
            );
        }
        for known in ClientFrame::TYPES {
            assert!(Inbound::TYPES.contains(&known), "{known}");
        }
    }

    #[test]
    fn an_auth_frame_is_not_a_chat_frame() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"auth","token":"t"}"#),
            Err(FrameError::UnknownType("auth".to_owned()))
        );
    }

    #[test]
    fn an_auth_frame_without_a_string_token_is_invalid() {
        for text in [r#"{"type":"auth"}"#, r#"{"type":"auth","token":7}"#] {
            match Inbound::parse(text) {
                Err(FrameError::Invalid { kind: "auth", .. }) => {}
                other => panic!("{text}: expected an invalid auth frame, got {other:?}"),
            }
        }
        assert_eq!(
            Inbound::parse(r#"{"type":"shout"}"#),
            Err(FrameError::UnknownType("shout".to_owned()))
        );
        assert_eq!(Inbound::parse("nope"), Err(FrameError::NotJson));
    }

    #[test]
    fn auth_frame_debug_hides_the_token() {
        let frame = Inbound::Auth(AuthFrame {
            token: "eyJ.payload.sig".to_owned(),
        });
        let debug = format!("{frame:?}");
        assert!(!debug.contains("eyJ"), "{debug}");
    }
}
