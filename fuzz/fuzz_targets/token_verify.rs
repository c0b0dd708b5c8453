//! `TokenKeys::verify` on arbitrary text: the server runs it on the
//! `Authorization` header of every request and on the WebSocket handshake.
//!
//! The first byte of the input picks what the rest is:
//! - `0`..`85`: the token text itself, as an attacker would send it;
//! - `86`..`170`: a JWT payload (any bytes), signed here with the server's
//!   secret under the standard HS256 header, so the fuzzer reaches the claim
//!   checks behind the signature;
//! - `171`..`255`: a header and a payload separated by the first `\n`, both
//!   signed with the secret, to exercise header parsing (`alg`, `crit`,
//!   `kid`, ...) behind a valid MAC.
//!
//! Whatever the input, `verify` must not panic, and a token it accepts must
//! honour the documented rules: not expired beyond the leeway, `iat` (if
//! any) at most `MAX_IAT_SKEW_SECS` in the future.

#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chat_auth::{TokenKeys, redact};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use sha2::Sha256;

const SECRET: &str = "fuzzing-secret-that-is-at-least-32-bytes-long";

static KEYS: LazyLock<TokenKeys> = LazyLock::new(|| {
    TokenKeys::new(&SecretString::from(SECRET), Duration::from_secs(1_800))
        .expect("a 32+ byte secret and a positive TTL are valid")
});

fn signed(header: &[u8], payload: &[u8]) -> String {
    let unsigned = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("HMAC takes any key");
    mac.update(unsigned.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{unsigned}.{signature}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode {
        0..=85 => match std::str::from_utf8(rest) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        },
        86..=170 => signed(br#"{"alg":"HS256","typ":"JWT"}"#, rest),
        _ => {
            let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let (header, payload) = rest.split_at(split);
            signed(header, payload.get(1..).unwrap_or_default())
        }
    };

    let _ = redact(&token);
    if let Ok(claims) = KEYS.verify(&token) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
            });
        let leeway = i64::try_from(TokenKeys::LEEWAY_SECS).expect("small");
        assert!(
            claims.exp >= now - leeway - 1,
            "accepted an expired token: {claims:?}"
        );
        if let Some(iat) = claims.iat {
            assert!(
                iat <= now + TokenKeys::MAX_IAT_SKEW_SECS + 1,
                "accepted a token issued in the future: {claims:?}"
            );
        }
        let _ = claims.expires_at();
    }
});
