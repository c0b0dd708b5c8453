use std::fmt;

use unicode_segmentation::UnicodeSegmentation;

use crate::DomainError;

/// The text of a message: not blank, and at most a configurable number of
/// characters (4,000 unless the caller says otherwise).
///
/// The text is kept exactly as sent, indentation and all; only the blank
/// check looks at it trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    /// The default upper bound, in characters.
    pub const DEFAULT_MAX_CHARS: usize = 4_000;

    /// Parses with the default limit.
    pub fn parse(value: impl Into<String>) -> Result<MessageBody, DomainError> {
        Self::parse_with_limit(value, Self::DEFAULT_MAX_CHARS)
    }

    /// Parses with a limit of `max_chars` characters.
    pub fn parse_with_limit(
        value: impl Into<String>,
        max_chars: usize,
    ) -> Result<MessageBody, DomainError> {
        let value = value.into();
        if value.trim().is_empty() {
            return Err(DomainError::MessageBlank);
        }
        // Counting stops one past the limit, so a huge body costs no more
        // than a body just over the limit.
        if value.chars().take(max_chars + 1).count() > max_chars {
            return Err(DomainError::MessageTooLong { max: max_chars });
        }
        Ok(MessageBody(value))
    }

    /// The text as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, by value.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for MessageBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An id the client picks for a message it sends, so a resend after a lost
/// acknowledgement is recognised and not stored twice. Unique per user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);

impl ClientId {
    /// Most characters in a client id (a UUID has 36).
    pub const MAX_CHARS: usize = 64;

    /// Accepts 1 to 64 printable ASCII characters without spaces.
    pub fn parse(value: impl Into<String>) -> Result<ClientId, DomainError> {
        let value = value.into();
        let valid = !value.is_empty()
            && value.len() <= Self::MAX_CHARS
            && value.chars().all(|c| c.is_ascii_graphic());
        if !valid {
            return Err(DomainError::ClientIdInvalid {
                max: Self::MAX_CHARS,
            });
        }
        Ok(ClientId(value))
    }

    /// The id as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id, by value.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reaction to a message: a short Unicode string, usually one emoji
/// ("👍", "🇫🇷", "👩‍👩‍👧") but any short word will do ("+1", "ok").
///
/// At most [`Emoji::MAX_GRAPHEMES`] grapheme clusters (what a reader sees
/// as one character: an emoji with its modifiers and joiners is one) and
/// [`Emoji::MAX_BYTES`] bytes, with no white space or control characters
/// and something visible. Two reactions are the same kind when their bytes
/// are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Emoji(String);

impl Emoji {
    /// Most grapheme clusters in a reaction.
    pub const MAX_GRAPHEMES: usize = 4;
    /// Most bytes in a reaction (a family emoji with skin tones is 41).
    pub const MAX_BYTES: usize = 64;

    /// Accepts a reaction under the rules above.
    pub fn parse(value: impl Into<String>) -> Result<Emoji, DomainError> {
        let value = value.into();
        let invalid = DomainError::EmojiInvalid {
            max_graphemes: Self::MAX_GRAPHEMES,
        };
        if value.is_empty()
            || value.len() > Self::MAX_BYTES
            || value.graphemes(true).count() > Self::MAX_GRAPHEMES
            || value.chars().any(|c| c.is_whitespace() || c.is_control())
            || value.chars().all(invisible)
        {
            return Err(invalid);
        }
        Ok(Emoji(value))
    }

    /// The reaction as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The reaction, by value.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Emoji {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Characters that show nothing by themselves: zero-width spaces and
/// joiners, variation selectors, the byte order mark.
fn invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_are_a_few_visible_characters() {
        for emoji in ["👍", "🇫🇷", "👩‍👩‍👧‍👦", "👍🏽", "❤️", "+1", "ok", "🎉🎉🎉🎉"]
        {
            assert_eq!(
                Emoji::parse(emoji).map(Emoji::into_string),
                Ok(emoji.to_owned()),
                "{emoji:?}"
            );
        }
        for emoji in [
            "",
            " ",
            "👍 ",
            "a b",
            "\n",
            "\u{7}",
            "\u{200D}",
            "\u{FE0F}\u{200B}",
            "🎉🎉🎉🎉🎉",
            "hello",
        ] {
            assert_eq!(
                Emoji::parse(emoji),
                Err(DomainError::EmojiInvalid { max_graphemes: 4 }),
                "{emoji:?}"
            );
        }
    }

    #[test]
    fn a_reaction_may_not_be_longer_than_64_bytes() {
        // Four grapheme clusters, each of many combining marks.
        let heavy = "e\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}".repeat(4);
        assert!(heavy.len() > Emoji::MAX_BYTES);
        assert!(Emoji::parse(heavy).is_err());
    }

    #[test]
    fn blank_messages_are_rejected() {
        for body in ["", " ", "\n\t ", "\u{3000}", "\u{2003}\u{00a0}"] {
            assert_eq!(
                MessageBody::parse(body),
                Err(DomainError::MessageBlank),
                "{body:?}"
            );
        }
    }

    #[test]
    fn messages_keep_their_white_space() {
        let body = MessageBody::parse("  indented\n").expect("valid");
        assert_eq!(body.as_str(), "  indented\n");
    }

    #[test]
    fn the_default_limit_is_4000_characters() {
        assert!(MessageBody::parse("x".repeat(4_000)).is_ok());
        assert_eq!(
            MessageBody::parse("x".repeat(4_001)),
            Err(DomainError::MessageTooLong { max: 4_000 })
        );
    }

    #[test]
    fn the_limit_counts_characters_not_bytes() {
        // 4,000 emoji are 16,000 bytes and still within the limit.
        assert!(MessageBody::parse("😀".repeat(4_000)).is_ok());
        assert!(MessageBody::parse("😀".repeat(4_001)).is_err());
    }

    #[test]
    fn the_limit_is_configurable() {
        assert!(MessageBody::parse_with_limit("hello", 5).is_ok());
        assert_eq!(
            MessageBody::parse_with_limit("hello!", 5),
            Err(DomainError::MessageTooLong { max: 5 })
        );
    }

    #[test]
    fn client_ids_accept_uuids_and_reject_junk() {
        assert!(ClientId::parse("7f9c24e8-3b12-4fef-91e1-2f6a0e0d0b5a").is_ok());
        assert!(ClientId::parse("a").is_ok());
        for junk in ["", "has space", "é", "x\n"] {
            assert!(ClientId::parse(junk).is_err(), "{junk:?}");
        }
        assert!(ClientId::parse("x".repeat(64)).is_ok());
        assert!(ClientId::parse("x".repeat(65)).is_err());
    }
}
