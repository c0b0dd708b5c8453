//! `ClientFrame::parse` on arbitrary text: the server runs it on every
//! WebSocket text frame a client sends.
//!
//! Besides "never panics", it checks what the protocol promises:
//! - a frame that parses serializes to JSON that parses back to the same
//!   frame, with the same `type`;
//! - an unknown `type` is echoed back in at most 64 characters, whatever its
//!   length, since the error frame goes back to the client;
//! - every error maps to an error code and a non-empty message.

#![no_main]

use chat_protocol::ws::{ClientFrame, FrameError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 by definition; the transport refuses
    // anything else before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientFrame::parse(text) {
        Ok(frame) => {
            let json = serde_json::to_string(&frame).expect("a parsed frame serializes");
            let again = ClientFrame::parse(&json);
            assert_eq!(again.as_ref(), Ok(&frame), "re-parse of {json}");
            assert!(ClientFrame::TYPES.contains(&frame.kind()));
            let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
            assert_eq!(value["type"], frame.kind(), "{json}");
        }
        Err(error) => {
            if let FrameError::UnknownType(kind) = &error {
                assert!(kind.chars().count() <= 64, "echoed type too long");
            }
            let _ = error.code();
            assert!(!error.to_string().is_empty());
        }
    }
});
