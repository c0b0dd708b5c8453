use std::fmt;

use crate::DomainError;

/// A password that meets the policy. Its `Debug` output never shows it.
///
/// The upper bound is in bytes because bcrypt reads at most 72 bytes and
/// silently ignores the rest: a longer password is refused rather than
/// truncated, so two passwords that share their first 72 bytes can never
/// both log in.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The fewest characters a password may have.
    pub const MIN_CHARS: usize = 8;
    /// The most bytes bcrypt takes into account.
    pub const MAX_BYTES: usize = 72;

    /// Checks the policy: at least 8 characters, at most 72 bytes.
    pub fn parse(value: impl Into<String>) -> Result<Password, DomainError> {
        let value = value.into();
        if value.chars().count() < Self::MIN_CHARS {
            return Err(DomainError::PasswordTooShort {
                min: Self::MIN_CHARS,
            });
        }
        if value.len() > Self::MAX_BYTES {
            return Err(DomainError::PasswordTooLong {
                max_bytes: Self::MAX_BYTES,
            });
        }
        Ok(Password(value))
    }

    /// The password itself, for the hasher.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_characters_are_enough() {
        assert!(Password::parse("12345678").is_ok());
    }

    #[test]
    fn seven_characters_are_too_few() {
        assert_eq!(
            Password::parse("1234567"),
            Err(DomainError::PasswordTooShort { min: 8 })
        );
    }

    #[test]
    fn the_minimum_counts_characters_not_bytes() {
        // Seven two-byte characters are 14 bytes but still only seven characters.
        assert!(Password::parse("ééééééé").is_err());
        assert!(Password::parse("éééééééé").is_ok());
    }

    #[test]
    fn sixty_four_ascii_characters_are_accepted() {
        assert!(Password::parse("a".repeat(64)).is_ok());
        assert!(Password::parse("a".repeat(72)).is_ok());
    }

    #[test]
    fn more_than_72_bytes_is_rejected_not_truncated() {
        assert_eq!(
            Password::parse("a".repeat(73)),
            Err(DomainError::PasswordTooLong { max_bytes: 72 })
        );
        // 37 characters of two bytes each: 74 bytes.
        assert!(Password::parse("é".repeat(37)).is_err());
        // 18 emoji of four bytes each: exactly 72 bytes.
        assert!(Password::parse("😀".repeat(18)).is_ok());
        assert!(Password::parse("😀".repeat(19)).is_err());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let password = Password::parse("correct horse").expect("valid");
        assert!(!format!("{password:?}").contains("horse"));
    }
}
