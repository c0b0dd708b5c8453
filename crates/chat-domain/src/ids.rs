use std::fmt;
use std::num::NonZeroU128;

use crate::DomainError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub i64);

        impl $name {
            /// The raw database value.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<i64> for $name {
            fn from(value: i64) -> Self {
                Self(value)
            }
        }
    };
}

id_type!(
    /// A user's primary key.
    UserId
);
id_type!(
    /// A room's primary key.
    RoomId
);
id_type!(
    /// A message's global primary key: the `id` the seed's history exposes.
    MessageId
);

/// A message's position in its room: 1, 2, 3... with no gaps, in commit
/// order. `Seq::ZERO` means "before the first message" and is what a client
/// that has seen nothing resumes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(i64);

impl Seq {
    /// The position before the first message of a room.
    pub const ZERO: Seq = Seq(0);

    /// Accepts any non-negative value.
    pub fn new(value: i64) -> Result<Seq, DomainError> {
        if value < 0 {
            return Err(DomainError::NegativeSeq);
        }
        Ok(Seq(value))
    }

    /// The raw value.
    pub fn get(self) -> i64 {
        self.0
    }

    /// The position that follows this one.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }

    /// The seq before this one; [`Seq::ZERO`] stays where it is.
    pub fn prev(self) -> Seq {
        Seq(self.0.saturating_sub(1).max(0))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An auth session: one sign-in and every token refreshed from it.
///
/// 128 bits the server draws at random, written as 32 lowercase hex digits
/// in tokens (the `sid` claim) and in the database. Knowing one grants
/// nothing by itself: a token must still be signed by the server. The value
/// is never zero, which keeps `Option<SessionId>` as small as the id, since
/// every WebSocket connection holds one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(NonZeroU128);

impl SessionId {
    /// The length of the written form.
    pub const HEX_LEN: usize = 32;

    /// The id with these bits, or `None` for zero.
    pub fn from_bits(bits: u128) -> Option<SessionId> {
        NonZeroU128::new(bits).map(SessionId)
    }

    /// Reads the written form: exactly 32 lowercase hex digits, not all zero.
    pub fn parse(text: &str) -> Result<SessionId, DomainError> {
        let well_formed = text.len() == Self::HEX_LEN
            && text
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        if !well_formed {
            return Err(DomainError::SessionIdInvalid);
        }
        u128::from_str_radix(text, 16)
            .ok()
            .and_then(SessionId::from_bits)
            .ok_or(DomainError::SessionIdInvalid)
    }

    /// The raw bits.
    pub fn bits(self) -> u128 {
        self.0.get()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0.get())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_rejects_negative_values() {
        assert_eq!(Seq::new(-1), Err(DomainError::NegativeSeq));
    }

    #[test]
    fn seq_counts_up_from_zero() {
        assert_eq!(Seq::ZERO.next(), Seq::new(1).expect("1 is valid"));
        assert!(Seq::ZERO < Seq::ZERO.next());
    }

    #[test]
    fn ids_display_their_raw_value() {
        assert_eq!(UserId(42).to_string(), "42");
        assert_eq!(MessageId::from(7).get(), 7);
    }

    #[test]
    fn a_session_id_reads_back_what_it_writes() {
        let id = SessionId::from_bits(0x0123_4567_89ab_cdef_0000_0000_0000_002a).expect("not zero");
        let text = id.to_string();
        assert_eq!(text, "0123456789abcdef000000000000002a");
        assert_eq!(SessionId::parse(&text), Ok(id));
        assert_eq!(id.bits(), 0x0123_4567_89ab_cdef_0000_0000_0000_002a);
    }

    #[test]
    fn a_session_id_must_be_32_lowercase_hex_digits_and_not_zero() {
        for bad in [
            "",
            "0123456789abcdef",
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcdeg",
            "+123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef0",
            "00000000000000000000000000000000",
        ] {
            assert_eq!(
                SessionId::parse(bad),
                Err(DomainError::SessionIdInvalid),
                "{bad:?}"
            );
        }
        assert_eq!(SessionId::from_bits(0), None);
    }

    #[test]
    fn an_optional_session_id_is_no_larger_than_the_id() {
        assert_eq!(
            std::mem::size_of::<Option<SessionId>>(),
            std::mem::size_of::<u128>()
        );
    }
}
