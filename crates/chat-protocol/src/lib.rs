//! The chat server's wire format: the JSON bodies of the REST API and the
//! frames sent both ways over the WebSocket.
//!
//! The server and the terminal client both depend on this crate, so a frame
//! the one writes is a frame the other reads. Field names, field order and
//! the timestamp format are pinned by golden tests: the seed's clients (the
//! Python FastAPI backend's terminal client, scripts, browser pages) must
//! keep working byte for byte.
//!
//! This crate knows serde and nothing about transport: no HTTP framework, no
//! WebSocket library, no database, no cryptography. Validation of names and
//! message bodies lives in `chat-domain`; the types here carry plain strings
//! and numbers, and the server parses them into domain types. OpenAPI schema
//! derives (`utoipa`) are behind the `openapi` feature, which only the server
//! enables.
//!
//! # Using it
//!
//! A client writes [`ws::ClientFrame`]s and reads [`ws::ServerFrame`]s;
//! the server does the opposite, with [`ws::ClientFrame::parse`] naming
//! precisely what is wrong with a bad frame:
//!
//! ```
//! use chat_protocol::ws::{ClientFrame, FrameError, ServerFrame};
//!
//! // A seed client's frame: only `content`, so the room is `general`.
//! let frame = ClientFrame::parse(r#"{"type":"message","content":"hi"}"#)?;
//! assert!(matches!(frame, ClientFrame::Message { ref room, .. } if room.is_none()));
//!
//! let refused = ClientFrame::parse(r#"{"type":"edit","room":"general"}"#).unwrap_err();
//! assert!(matches!(refused, FrameError::Invalid { kind: "edit", .. }));
//!
//! // Server frames are serialized once and sent as text.
//! assert_eq!(ServerFrame::Pong.to_json(), r#"{"type":"pong"}"#);
//! # Ok::<(), FrameError>(())
//! ```
//!
//! The REST bodies in [`rest`] are plain serde structs, read and written
//! with `serde_json` or any HTTP client's JSON support; those of end-to-end
//! encrypted rooms (MLS) are in [`mls`].

pub mod mls;
pub mod rest;
pub mod timestamp;
pub mod ws;

#[cfg(all(test, feature = "openapi"))]
mod openapi_tests {
    use serde_json::Value;
    use utoipa::{IntoParams, PartialSchema};

    use crate::rest::{PageQuery, UserBody};
    use crate::ws::ServerFrame;

    fn schema_of<T: PartialSchema>() -> Value {
        serde_json::to_value(T::schema()).expect("schemas serialize")
    }

    #[test]
    fn timestamps_are_documented_as_date_time_strings() {
        let user = schema_of::<UserBody>();
        assert_eq!(user["properties"]["created_at"]["type"], "string");
        assert_eq!(user["properties"]["created_at"]["format"], "date-time");

        let frames = schema_of::<ServerFrame>();
        let variants = frames["oneOf"].as_array().expect("one schema per frame");
        let message = variants
            .iter()
            .find(|variant| variant["properties"]["type"]["enum"][0] == "message")
            .expect("a message variant");
        assert_eq!(message["properties"]["timestamp"]["format"], "date-time");
    }

    #[test]
    fn every_server_frame_type_is_documented() {
        let frames = schema_of::<ServerFrame>();
        let documented: Vec<&str> = frames["oneOf"]
            .as_array()
            .expect("one schema per frame")
            .iter()
            .filter_map(|variant| variant["properties"]["type"]["enum"][0].as_str())
            .collect();
        assert_eq!(
            documented,
            [
                "system",
                "message",
                "edited",
                "deleted",
                "reaction",
                "read",
                "ack",
                "error",
                "member",
                "topic",
                "presence",
                "who",
                "typing",
                "joined",
                "left",
                "pong",
                "authenticated"
            ]
        );
    }

    #[test]
    fn page_query_parameters_are_optional_query_parameters() {
        let parameters =
            serde_json::to_value(PageQuery::into_params(|| None)).expect("parameters serialize");
        let names: Vec<&str> = parameters
            .as_array()
            .expect("a list of parameters")
            .iter()
            .map(|parameter| {
                assert_eq!(parameter["in"], "query");
                assert_eq!(parameter["required"], false);
                parameter["name"].as_str().expect("a name")
            })
            .collect();
        assert_eq!(names, ["before", "after", "limit"]);
    }
}
