//! Users and tokens of the original Python backend keep working.
//!
//! The vectors below were made with Python 3.11, `bcrypt` 5.0.0 and
//! `python-jose` 3.5.0:
//!
//! ```python
//! import bcrypt
//! from jose import jwt
//! bcrypt.hashpw(b"secret123", bcrypt.gensalt(12))
//! bcrypt.hashpw(b"secret123", bcrypt.gensalt(10))
//! jwt.encode({"sub": "alice", "exp": 4102444800},
//!            "your-secret-key-change-this-in-production", algorithm="HS256")
//! ```
//!
//! The secret is the example `SECRET_KEY` from the original's README; the
//! token expires in 2100. It has no `iss`, `aud` or `sid`, so it is refused
//! unless `CHAT_ACCEPT_LEGACY_TOKENS` (here `accepting_legacy_tokens`) is on
//! for the cut-over from the original server.

use std::time::Duration;

use chat_auth::{AuthError, PasswordHasher, TokenKeys};
use secrecy::SecretString;

const PASSWORD: &str = "secret123";
const HASH_COST_12: &str = "$2b$12$UDgi06aM.s9qHqpZGyyGr.woRo46y3Uh2gDst6w7yux2MQplWywlO";
const HASH_COST_10: &str = "$2b$10$NX5CoR8GgKklV52iN.f8yuvazJZFBsYMUIm32cP49PmKgoLueIOPK";

const SECRET: &str = "your-secret-key-change-this-in-production";
const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.pb6_VVhmOcPsVxZPXmBEceSLJFTQRa3g-OLcpLAEEpE";

fn hasher() -> PasswordHasher {
    PasswordHasher::new(PasswordHasher::MIN_COST).expect("valid cost")
}

fn keys(secret: &str) -> TokenKeys {
    TokenKeys::new(&SecretString::from(secret), Duration::from_secs(1_800)).expect("valid")
}

#[tokio::test]
async fn a_hash_made_by_python_bcrypt_verifies() {
    let hasher = hasher();
    assert_eq!(hasher.verify(PASSWORD, Some(HASH_COST_12)).await, Ok(true));
    assert_eq!(
        hasher.verify("secret124", Some(HASH_COST_12)).await,
        Ok(false)
    );
}

#[tokio::test]
async fn two_a_and_two_y_hashes_verify() {
    // For passwords without the 8-bit bug that `$2a$` once had, the three
    // prefixes name the same algorithm; other implementations wrote them.
    let hasher = hasher();
    for prefix in ["$2a$", "$2y$"] {
        let hash = HASH_COST_10.replacen("$2b$", prefix, 1);
        assert_eq!(
            hasher.verify(PASSWORD, Some(&hash)).await,
            Ok(true),
            "{hash}"
        );
        assert_eq!(
            hasher.verify("secret124", Some(&hash)).await,
            Ok(false),
            "{hash}"
        );
    }
}

#[test]
fn a_token_minted_by_the_original_backend_is_refused_by_default() {
    assert_eq!(keys(SECRET).verify(TOKEN), Err(AuthError::InvalidToken));
}

#[test]
fn a_token_minted_by_the_original_backend_is_accepted_by_the_legacy_switch() {
    let claims = keys(SECRET)
        .accepting_legacy_tokens(true)
        .verify(TOKEN)
        .expect("verifies");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.exp, 4_102_444_800);
    assert_eq!(claims.iat, None);
    // It belongs to no session: signing out cannot end it before its `exp`.
    assert_eq!(claims.sid, None);
}

#[test]
fn a_token_minted_by_the_original_backend_is_accepted_under_the_previous_secret() {
    let rotated = TokenKeys::with_previous(
        &SecretString::from("a-new-secret-of-at-least-32-bytes-long!"),
        Some(&SecretString::from(SECRET)),
        Duration::from_secs(1_800),
    )
    .expect("valid")
    .accepting_legacy_tokens(true);
    assert_eq!(
        rotated.verify(TOKEN).map(|claims| claims.sub),
        Ok("alice".to_owned())
    );
}

#[test]
fn a_token_minted_by_the_original_backend_needs_the_same_secret() {
    let other = keys("a-different-secret-of-at-least-32-bytes").accepting_legacy_tokens(true);
    assert_eq!(other.verify(TOKEN), Err(AuthError::InvalidToken));
}
