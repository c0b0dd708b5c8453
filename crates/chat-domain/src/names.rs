use std::fmt;

use crate::DomainError;

/// The characters allowed in user and room names.
///
/// Names are ASCII on purpose: look-alike letters from other scripts
/// ("аdmin" with a Cyrillic "а") cannot impersonate anyone, and the
/// lower-case form is the same in Rust, PostgreSQL and SQLite (whose
/// `lower()` only folds ASCII), so case-insensitive uniqueness holds on
/// every backend.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// A user's name as they typed it: 3 to 50 ASCII letters, digits, `_` or
/// `-`. Two names that differ only in case belong to the same user; compare
/// [`Username::normalized`] forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    /// Fewest characters in a username.
    pub const MIN_CHARS: usize = 3;
    /// Most characters in a username.
    pub const MAX_CHARS: usize = 50;

    /// Checks length and characters; keeps the case the user chose.
    pub fn parse(value: impl Into<String>) -> Result<Username, DomainError> {
        let value = value.into();
        let length = value.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&length) {
            return Err(DomainError::UsernameLength {
                min: Self::MIN_CHARS,
                max: Self::MAX_CHARS,
            });
        }
        if !value.chars().all(is_name_char) {
            return Err(DomainError::UsernameCharacters);
        }
        Ok(Username(value))
    }

    /// The name as the user chose it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as the user chose it, by value.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The form used for uniqueness and look-ups: lower case.
    pub fn normalized(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// Whether two names belong to the same user.
    pub fn same_user(&self, other: &Username) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }

    /// The valid name closest to `raw`, a name chosen under other rules
    /// (the original backend accepted any text up to 50 characters):
    ///
    /// 1. every character other than an ASCII letter, digit, `_` or `-`
    ///    becomes `_` (`émile dupont` → `_mile_dupont`);
    /// 2. the result is cut to [`Username::MAX_CHARS`] characters;
    /// 3. if no ASCII letter or digit is left (`李雷` → `__`), `fallback`
    ///    is used instead;
    /// 4. a name shorter than [`Username::MIN_CHARS`] is padded with `_`
    ///    (`jo` → `jo_`).
    ///
    /// A valid name comes back unchanged.
    pub fn conform(raw: &str, fallback: &Username) -> Username {
        let mut name: String = raw
            .chars()
            .map(|c| if is_name_char(c) { c } else { '_' })
            .take(Self::MAX_CHARS)
            .collect();
        if !name.chars().any(|c| c.is_ascii_alphanumeric()) {
            return fallback.clone();
        }
        while name.len() < Self::MIN_CHARS {
            name.push('_');
        }
        Username(name)
    }

    /// This name with `-<n>` appended, cut first if needed so that the whole
    /// stays within [`Username::MAX_CHARS`]: `bob` → `bob-2`. Used to tell
    /// apart names that would otherwise belong to the same user.
    pub fn with_suffix(&self, n: u32) -> Username {
        let suffix = format!("-{n}");
        // The name is ASCII, so characters and bytes are the same here.
        let keep = Self::MAX_CHARS
            .saturating_sub(suffix.len())
            .min(self.0.len());
        Username(format!("{}{suffix}", &self.0[..keep]))
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Whether a room is open to anyone who joins it, or a private conversation
/// between two users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomKind {
    /// Anyone may join.
    Public,
    /// Exactly two members, created with [`RoomName::direct`].
    Direct,
}

impl RoomKind {
    /// The stable text form used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Public => "public",
            RoomKind::Direct => "direct",
        }
    }

    /// The inverse of [`RoomKind::as_str`].
    pub fn from_str_opt(value: &str) -> Option<RoomKind> {
        match value {
            "public" => Some(RoomKind::Public),
            "direct" => Some(RoomKind::Direct),
            _ => None,
        }
    }
}

/// A room's name, always in lower case so `General` and `general` are one
/// room.
///
/// Public rooms have 1 to 64 ASCII letters, digits, `_` or `-`. A direct
/// conversation is named `dm:<a>:<b>` after its two members' normalized
/// names in sorted order; the `:` cannot appear in a public name, so the two
/// kinds never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

impl RoomName {
    /// Fewest characters in a public room name.
    pub const MIN_CHARS: usize = 1;
    /// Most characters in a public room name.
    pub const MAX_CHARS: usize = 64;
    /// The room every seed client talks in.
    pub const GENERAL: &'static str = "general";
    const DIRECT_PREFIX: &'static str = "dm:";

    /// Parses either a public room name or a direct conversation's name.
    pub fn parse(value: &str) -> Result<RoomName, DomainError> {
        if let Some(rest) = value.strip_prefix(Self::DIRECT_PREFIX) {
            let (a, b) = rest
                .split_once(':')
                .ok_or(DomainError::RoomNameCharacters)?;
            let a = Username::parse(a).map_err(|_| DomainError::RoomNameCharacters)?;
            let b = Username::parse(b).map_err(|_| DomainError::RoomNameCharacters)?;
            return RoomName::direct(&a, &b);
        }
        RoomName::public(value)
    }

    /// Parses a public room name only: what a user may create.
    pub fn public(value: &str) -> Result<RoomName, DomainError> {
        let length = value.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&length) {
            return Err(DomainError::RoomNameLength {
                min: Self::MIN_CHARS,
                max: Self::MAX_CHARS,
            });
        }
        if !value.chars().all(is_name_char) {
            return Err(DomainError::RoomNameCharacters);
        }
        Ok(RoomName(value.to_ascii_lowercase()))
    }

    /// The `general` room.
    pub fn general() -> RoomName {
        RoomName(Self::GENERAL.to_owned())
    }

    /// The name of the direct conversation between two users; the same
    /// whichever of them asks.
    pub fn direct(a: &Username, b: &Username) -> Result<RoomName, DomainError> {
        let (a, b) = (a.normalized(), b.normalized());
        if a == b {
            return Err(DomainError::DirectRoomWithSelf);
        }
        let (first, second) = if a < b { (a, b) } else { (b, a) };
        Ok(RoomName(format!("{}{first}:{second}", Self::DIRECT_PREFIX)))
    }

    /// Which kind of room this name denotes.
    pub fn kind(&self) -> RoomKind {
        if self.0.starts_with(Self::DIRECT_PREFIX) {
            RoomKind::Direct
        } else {
            RoomKind::Public
        }
    }

    /// For a direct conversation, the normalized names of its two members.
    pub fn direct_members(&self) -> Option<(&str, &str)> {
        self.0.strip_prefix(Self::DIRECT_PREFIX)?.split_once(':')
    }

    /// The name as stored and sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RoomName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).expect("valid username")
    }

    #[test]
    fn usernames_of_3_to_50_characters_are_accepted() {
        assert!(Username::parse("bob").is_ok());
        assert!(Username::parse("a".repeat(50)).is_ok());
        assert!(Username::parse("Alice_Smith-2").is_ok());
    }

    #[test]
    fn usernames_outside_3_to_50_characters_are_rejected() {
        let error = DomainError::UsernameLength { min: 3, max: 50 };
        assert_eq!(Username::parse("ab"), Err(error.clone()));
        assert_eq!(Username::parse(""), Err(error.clone()));
        assert_eq!(Username::parse("a".repeat(51)), Err(error));
    }

    #[test]
    fn usernames_with_other_characters_are_rejected() {
        for name in [
            "bob smith",
            "bob.smith",
            "bob@example",
            "bob\n",
            "bob\0x",
            "<script>",
        ] {
            assert_eq!(
                Username::parse(name),
                Err(DomainError::UsernameCharacters),
                "{name:?}"
            );
        }
    }

    #[test]
    fn usernames_reject_non_ascii_letters_and_look_alikes() {
        // Accented letters, a Cyrillic "а" that looks like "a", full-width
        // digits, a zero-width joiner and an emoji.
        for name in ["josé", "аdmin", "user１２", "ad\u{200d}min", "bob😀"] {
            assert_eq!(
                Username::parse(name),
                Err(DomainError::UsernameCharacters),
                "{name:?}"
            );
        }
    }

    #[test]
    fn username_length_counts_characters_not_bytes() {
        // Two characters of four bytes each are too short, and rejected for
        // their length before their characters.
        assert!(matches!(
            Username::parse("😀😀"),
            Err(DomainError::UsernameLength { .. })
        ));
    }

    #[test]
    fn usernames_keep_their_case_and_normalize_to_lower_case() {
        let name = user("Alice");
        assert_eq!(name.as_str(), "Alice");
        assert_eq!(name.normalized(), "alice");
        assert!(name.same_user(&user("aLICE")));
        assert!(!name.same_user(&user("alicia")));
    }

    #[test]
    fn a_valid_name_conforms_to_itself() {
        let fallback = user("user-1");
        assert_eq!(
            Username::conform("Alice_Smith-2", &fallback),
            user("Alice_Smith-2")
        );
    }

    #[test]
    fn conforming_replaces_other_characters_with_underscores() {
        let fallback = user("user-1");
        assert_eq!(
            Username::conform("émile dupont", &fallback).as_str(),
            "_mile_dupont"
        );
        assert_eq!(
            Username::conform("bob.smith@x", &fallback).as_str(),
            "bob_smith_x"
        );
    }

    #[test]
    fn conforming_cuts_long_names_to_fifty_characters() {
        let fallback = user("user-1");
        let long = format!("{}tail", "a".repeat(50));
        assert_eq!(Username::conform(&long, &fallback).as_str(), "a".repeat(50));
        // Characters, not bytes: fifty-one accented letters become fifty `_`
        // and then the fallback, since nothing alphanumeric is left.
        assert_eq!(Username::conform(&"é".repeat(51), &fallback), fallback);
    }

    #[test]
    fn conforming_a_name_without_letters_or_digits_gives_the_fallback() {
        let fallback = user("user-6");
        assert_eq!(Username::conform("李雷", &fallback), fallback);
        assert_eq!(Username::conform("", &fallback), fallback);
        assert_eq!(Username::conform("--", &fallback), fallback);
    }

    #[test]
    fn conforming_pads_short_names_with_underscores() {
        let fallback = user("user-1");
        assert_eq!(Username::conform("jo", &fallback).as_str(), "jo_");
        assert_eq!(Username::conform("x", &fallback).as_str(), "x__");
        assert_eq!(Username::conform("é1", &fallback).as_str(), "_1_");
    }

    #[test]
    fn a_suffix_is_appended_within_fifty_characters() {
        assert_eq!(user("bob").with_suffix(2).as_str(), "bob-2");
        let long = user(&"b".repeat(50));
        let suffixed = long.with_suffix(12);
        assert_eq!(suffixed.as_str(), format!("{}-12", "b".repeat(47)));
        assert!(Username::parse(suffixed.as_str()).is_ok());
    }

    #[test]
    fn room_names_are_lower_cased() {
        assert_eq!(
            RoomName::public("General").expect("valid").as_str(),
            "general"
        );
        assert_eq!(RoomName::general().as_str(), RoomName::GENERAL);
    }

    #[test]
    fn room_names_of_1_to_64_characters_are_accepted() {
        assert!(RoomName::public("x").is_ok());
        assert!(RoomName::public(&"r".repeat(64)).is_ok());
        assert_eq!(
            RoomName::public(&"r".repeat(65)),
            Err(DomainError::RoomNameLength { min: 1, max: 64 })
        );
        assert_eq!(
            RoomName::public(""),
            Err(DomainError::RoomNameLength { min: 1, max: 64 })
        );
    }

    #[test]
    fn room_names_reject_other_characters() {
        for name in ["a b", "café", "room#1", "dm:x", "ﬁ"] {
            assert_eq!(
                RoomName::public(name),
                Err(DomainError::RoomNameCharacters),
                "{name:?}"
            );
        }
    }

    #[test]
    fn direct_room_names_are_the_same_for_both_members() {
        let one = RoomName::direct(&user("Bob"), &user("alice")).expect("two users");
        let other = RoomName::direct(&user("alice"), &user("BOB")).expect("two users");
        assert_eq!(one, other);
        assert_eq!(one.as_str(), "dm:alice:bob");
        assert_eq!(one.kind(), RoomKind::Direct);
        assert_eq!(one.direct_members(), Some(("alice", "bob")));
    }

    #[test]
    fn a_direct_room_needs_two_different_users() {
        assert_eq!(
            RoomName::direct(&user("alice"), &user("ALICE")),
            Err(DomainError::DirectRoomWithSelf)
        );
    }

    #[test]
    fn parse_accepts_both_kinds_and_canonicalizes_direct_names() {
        assert_eq!(
            RoomName::parse("Lobby").expect("public").kind(),
            RoomKind::Public
        );
        let direct = RoomName::parse("dm:Bob:alice").expect("direct");
        assert_eq!(direct.as_str(), "dm:alice:bob");
        assert!(RoomName::parse("dm:alice").is_err());
        assert!(RoomName::parse("dm:alice:al").is_err());
        assert!(RoomName::public("dm:alice:bob").is_err());
    }

    #[test]
    fn room_kinds_round_trip_through_text() {
        for kind in [RoomKind::Public, RoomKind::Direct] {
            assert_eq!(RoomKind::from_str_opt(kind.as_str()), Some(kind));
        }
        assert_eq!(RoomKind::from_str_opt("secret"), None);
    }
}
