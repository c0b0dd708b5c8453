//! Refresh tokens and session ids: the random halves of a sign-in.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chat_domain::SessionId;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A refresh token: 32 random bytes (256 bits), written in URL-safe base64
/// without padding (43 characters).
///
/// The client keeps the token; the server keeps only its
/// [`RefreshToken::digest`], so a copy of the database cannot be used to
/// sign in. The token is opaque: it says nothing about the user or the
/// session, which the server looks up by the digest. The `Debug` output
/// shows none of it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    /// How many random bytes a token holds.
    pub const BYTES: usize = 32;

    /// A fresh token from the operating system's seeded CSPRNG.
    pub fn generate() -> RefreshToken {
        let mut bytes = [0u8; Self::BYTES];
        rand::rng().fill_bytes(&mut bytes);
        RefreshToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The token as a client presented it. Any text is accepted: one that
    /// was never issued simply has a digest nothing is stored under.
    pub fn presented(text: impl Into<String>) -> RefreshToken {
        RefreshToken(text.into())
    }

    /// The token, to hand to the client.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the server stores and looks the token up by: the SHA-256 of the
    /// token's text, as 64 lowercase hex digits.
    ///
    /// A plain hash is enough here, unlike for passwords: the token has 256
    /// random bits, so there is nothing to guess that a slow hash would
    /// protect.
    pub fn digest(&self) -> String {
        let hash = Sha256::digest(self.0.as_bytes());
        let mut hex = String::with_capacity(hash.len() * 2);
        for byte in hash {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        hex
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

/// A fresh auth session id: 128 random bits.
pub fn new_session_id() -> SessionId {
    loop {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        // Zero is the one value that is not an id; drawing it is a
        // 1-in-2^128 event, but the loop costs nothing.
        if let Some(id) = SessionId::from_bits(u128::from_le_bytes(bytes)) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_refresh_token_is_256_url_safe_random_bits() {
        let token = RefreshToken::generate();
        assert_eq!(token.as_str().len(), 43);
        let bytes = URL_SAFE_NO_PAD
            .decode(token.as_str())
            .expect("URL-safe base64");
        assert_eq!(bytes.len(), RefreshToken::BYTES);
        assert!(
            token
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{}",
            token.as_str()
        );
    }

    #[test]
    fn refresh_tokens_and_session_ids_do_not_repeat() {
        let tokens: HashSet<String> = (0..1_000)
            .map(|_| RefreshToken::generate().as_str().to_owned())
            .collect();
        assert_eq!(tokens.len(), 1_000);
        let ids: HashSet<SessionId> = (0..1_000).map(|_| new_session_id()).collect();
        assert_eq!(ids.len(), 1_000);
    }

    #[test]
    fn the_digest_is_the_hex_sha256_of_the_token_text() {
        // SHA-256("abc"), from FIPS 180-2.
        assert_eq!(
            RefreshToken::presented("abc").digest(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let token = RefreshToken::generate();
        assert_eq!(
            token.digest(),
            RefreshToken::presented(token.as_str()).digest()
        );
        assert_ne!(token.digest(), RefreshToken::generate().digest());
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let token = RefreshToken::generate();
        let debug = format!("{token:?}");
        assert!(!debug.contains(token.as_str()), "{debug}");
        assert!(!debug.contains(&token.as_str()[..6]), "{debug}");
    }
}
