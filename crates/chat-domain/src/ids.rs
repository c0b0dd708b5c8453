use std::fmt;

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
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
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
}
