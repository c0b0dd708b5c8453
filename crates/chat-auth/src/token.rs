use std::fmt;
use std::time::Duration;

use chat_domain::{SessionId, Username};
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::AuthError;

/// The keys that sign and check access tokens: HS256 JWTs whose `sub` is the
/// username, with `iat`, `exp`, `iss`, `aud` and `sid` (the auth session the
/// token belongs to).
///
/// Only HS256 is accepted on verification, whatever the token's header
/// claims, so a token cannot pick a weaker or different algorithm (`none`,
/// or RS256 with the secret posing as a public key). `iss` and `aud` must
/// name this deployment ([`TokenKeys::with_issuer_and_audience`]), so a
/// token minted for another service that shares the secret is refused. The
/// `Debug` output shows the lifetime and claims only, never the secret.
///
/// Tokens minted by the original Python backend carry only `sub` and `exp`.
/// They are refused unless [`TokenKeys::accepting_legacy_tokens`] is on, a
/// switch for the cut-over window when this server replaces that one: such
/// a token belongs to no session, so signing out cannot end it; it stays
/// valid until its own `exp` (30 minutes after it was issued there).
///
/// To rotate the secret without signing everyone out, keep the old one as
/// the previous secret ([`TokenKeys::with_previous`]): tokens are issued
/// with the new secret only, and tokens the old one signed are accepted
/// until their own `exp`.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    /// The current secret, then the previous one when there is one.
    decoding: Vec<DecodingKey>,
    ttl: TimeDelta,
    issuer: String,
    audience: String,
    accept_legacy: bool,
    validation: Validation,
}

/// A freshly issued access token. Its `Debug` output shows only the start of
/// the token.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The JWT to hand to the client.
    pub token: String,
    /// When the token stops being accepted (its `exp`, to the second).
    pub expires_at: DateTime<Utc>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The username, as it was given when the token was issued.
    pub sub: String,
    /// When the token was issued, in seconds since the Unix epoch. Tokens
    /// minted by the original Python backend carry no `iat`.
    pub iat: Option<i64>,
    /// When the token expires, in seconds since the Unix epoch.
    pub exp: i64,
    /// The auth session the token belongs to. `None` only for a token of
    /// the original backend, accepted while
    /// [`TokenKeys::accepting_legacy_tokens`] is on.
    pub sid: Option<SessionId>,
}

/// The claims as they are encoded in the token.
#[derive(Serialize, Deserialize)]
struct WireClaims {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

impl TokenKeys {
    /// The fewest bytes a signing secret may have: HS256 keys shorter than
    /// its 32-byte output are easier to guess than the hash is to break.
    pub const MIN_SECRET_BYTES: usize = 32;
    /// How many seconds past `exp` a token is still accepted, to absorb
    /// clock differences between servers.
    pub const LEEWAY_SECS: u64 = 5;
    /// How many seconds in the future an `iat` may lie before the token is
    /// refused: a token issued "later" than now was not issued by us.
    pub const MAX_IAT_SKEW_SECS: i64 = 60;
    /// The `iss` of issued tokens unless configured otherwise.
    pub const DEFAULT_ISSUER: &'static str = "chat-server";
    /// The `aud` of issued tokens unless configured otherwise.
    pub const DEFAULT_AUDIENCE: &'static str = "chat";

    /// Keys for `secret` (at least [`Self::MIN_SECRET_BYTES`] bytes), issuing
    /// tokens valid for `ttl` (at least one second), with the default
    /// issuer and audience, refusing tokens of the original backend.
    pub fn new(secret: &SecretString, ttl: Duration) -> Result<TokenKeys, AuthError> {
        Self::with_previous(secret, None, ttl)
    }

    /// Keys that issue tokens with `secret`, as [`TokenKeys::new`] does, and
    /// also accept tokens signed with `previous` (at least
    /// [`Self::MIN_SECRET_BYTES`] bytes too), for rotating the secret.
    ///
    /// A token signed with the previous secret passes every check a current
    /// one does (HS256 only, `sub`, `exp`, `iss`, `aud` and `sid` required,
    /// not expired, `iat` not in the future), so its own `exp` bounds how
    /// long it stays usable: once the longest-lived of them has expired, the
    /// previous secret can be removed.
    pub fn with_previous(
        secret: &SecretString,
        previous: Option<&SecretString>,
        ttl: Duration,
    ) -> Result<TokenKeys, AuthError> {
        let secret = secret.expose_secret().as_bytes();
        if secret.len() < Self::MIN_SECRET_BYTES {
            return Err(AuthError::WeakSecret {
                min_bytes: Self::MIN_SECRET_BYTES,
            });
        }
        let previous = previous.map(|previous| previous.expose_secret().as_bytes());
        if previous.is_some_and(|previous| previous.len() < Self::MIN_SECRET_BYTES) {
            return Err(AuthError::WeakPreviousSecret {
                min_bytes: Self::MIN_SECRET_BYTES,
            });
        }
        if ttl.as_secs() == 0 {
            return Err(AuthError::InvalidTtl {
                reason: "must be at least one second".to_owned(),
            });
        }
        let ttl = TimeDelta::from_std(ttl).map_err(|_| AuthError::InvalidTtl {
            reason: format!("of {} seconds is too large", ttl.as_secs()),
        })?;

        let mut decoding = vec![DecodingKey::from_secret(secret)];
        // The same secret given twice would only check every bad token twice.
        if let Some(previous) = previous.filter(|previous| *previous != secret) {
            decoding.push(DecodingKey::from_secret(previous));
        }

        let mut keys = TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding,
            ttl,
            issuer: Self::DEFAULT_ISSUER.to_owned(),
            audience: Self::DEFAULT_AUDIENCE.to_owned(),
            accept_legacy: false,
            validation: Validation::new(Algorithm::HS256),
        };
        keys.validation = keys.build_validation();
        Ok(keys)
    }

    /// The same keys issuing and requiring another `iss` and `aud`. Every
    /// node of a deployment must use the same two.
    pub fn with_issuer_and_audience(
        mut self,
        issuer: &str,
        audience: &str,
    ) -> Result<TokenKeys, AuthError> {
        for (claim, value) in [("issuer", issuer), ("audience", audience)] {
            if value.trim().is_empty() {
                return Err(AuthError::EmptyClaim { claim });
            }
        }
        self.issuer = issuer.to_owned();
        self.audience = audience.to_owned();
        self.validation = self.build_validation();
        Ok(self)
    }

    /// The same keys, also accepting (when `accept`) well-signed, unexpired
    /// tokens without `iss`, `aud` and `sid`: those the original Python
    /// backend minted. Meant for the cut-over window only; see the type's
    /// documentation.
    pub fn accepting_legacy_tokens(mut self, accept: bool) -> TokenKeys {
        self.accept_legacy = accept;
        self.validation = self.build_validation();
        self
    }

    /// Whether tokens of the original backend are accepted.
    pub fn accepts_legacy_tokens(&self) -> bool {
        self.accept_legacy
    }

    fn build_validation(&self) -> Validation {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = Self::LEEWAY_SECS;
        validation.validate_exp = true;
        // `iss` and `aud` are compared whenever present; whether they must
        // be present depends on the legacy switch (see `verify`).
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        if self.accept_legacy {
            validation.set_required_spec_claims(&["exp", "sub"]);
        } else {
            validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        }
        validation
    }

    /// How long issued tokens are valid.
    pub fn ttl(&self) -> Duration {
        // A `TimeDelta` built from a positive `Duration` converts back.
        self.ttl.to_std().unwrap_or_default()
    }

    /// Issues a token for `username` in `session`, valid from now for the
    /// configured TTL.
    pub fn issue(&self, username: &Username, session: SessionId) -> Result<IssuedToken, AuthError> {
        let now = Utc::now();
        let expires_at = now
            .checked_add_signed(self.ttl)
            .and_then(|exp| DateTime::from_timestamp(exp.timestamp(), 0))
            .ok_or_else(|| AuthError::SigningFailed {
                reason: "the expiry time is out of range".to_owned(),
            })?;
        let claims = WireClaims {
            sub: username.as_str().to_owned(),
            iat: Some(now.timestamp()),
            exp: expires_at.timestamp(),
            iss: Some(self.issuer.clone()),
            aud: Some(self.audience.clone()),
            sid: Some(session.to_string()),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|error| AuthError::SigningFailed {
            reason: error.to_string(),
        })?;
        Ok(IssuedToken { token, expires_at })
    }

    /// Checks a token and returns its claims.
    ///
    /// The token must be an HS256 JWT signed with the current secret or the
    /// previous one, carry `sub`, `exp`, `iss`, `aud` and `sid`, name this
    /// deployment's issuer and audience, and not have expired (up to
    /// [`Self::LEEWAY_SECS`] of grace). `iat` is optional, since the original
    /// backend did not set it, but when present it must not lie more than
    /// [`Self::MAX_IAT_SKEW_SECS`] in the future. With
    /// [`Self::accepting_legacy_tokens`] on, a token with none of `iss`,
    /// `aud` and `sid` passes too (a token with only some of them never
    /// does). A well-signed token past its `exp` is
    /// [`AuthError::ExpiredToken`]; anything else wrong is
    /// [`AuthError::InvalidToken`].
    ///
    /// Whether the session is still open is the caller's question: it
    /// lives in the database.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let WireClaims {
            sub,
            iat,
            exp,
            iss,
            aud,
            sid,
        } = self.decode(token)?;
        if let Some(iat) = iat
            && iat
                > Utc::now()
                    .timestamp()
                    .saturating_add(Self::MAX_IAT_SKEW_SECS)
        {
            return Err(AuthError::InvalidToken);
        }
        let sid = match (iss, aud, sid) {
            // `iss` and `aud` were compared with ours by the validation.
            (Some(_), Some(_), Some(sid)) => {
                Some(SessionId::parse(&sid).map_err(|_| AuthError::InvalidToken)?)
            }
            (None, None, None) if self.accept_legacy => None,
            _ => return Err(AuthError::InvalidToken),
        };
        Ok(Claims { sub, iat, exp, sid })
    }

    /// Checks the signature with each secret in turn, then the claims.
    ///
    /// The signature is checked before the claims, so only a bad signature
    /// moves on to the next secret. Every other failure (not a JWT, another
    /// algorithm, a missing claim, expired) does not depend on the secret
    /// and is final.
    fn decode(&self, token: &str) -> Result<WireClaims, AuthError> {
        for key in &self.decoding {
            match jsonwebtoken::decode::<WireClaims>(token, key, &self.validation) {
                Ok(data) => return Ok(data.claims),
                Err(error) => match error.kind() {
                    ErrorKind::InvalidSignature => continue,
                    ErrorKind::ExpiredSignature => return Err(AuthError::ExpiredToken),
                    _ => return Err(AuthError::InvalidToken),
                },
            }
        }
        Err(AuthError::InvalidToken)
    }
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("algorithm", &Algorithm::HS256)
            .field("ttl_secs", &self.ttl.num_seconds())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("accept_legacy", &self.accept_legacy)
            .field("secret", &"<redacted>")
            .field(
                "previous_secret",
                &(self.decoding.len() > 1).then_some("<redacted>"),
            )
            .finish()
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &redact(&self.token))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Claims {
    /// When the token expires, or `None` if `exp` is beyond what a date can
    /// hold.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.exp, 0)
    }
}

/// Shortens a token for logs: its first six characters and an ellipsis.
///
/// Six characters of a JWT are part of its standard header, enough to tell a
/// JWT from garbage and never enough to replay it.
pub fn redact(token: &str) -> String {
    let mut shown: String = token.chars().take(6).collect();
    shown.push('…');
    shown
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;

    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!";

    fn keys() -> TokenKeys {
        TokenKeys::new(&SecretString::from(SECRET), Duration::from_secs(1_800)).expect("valid")
    }

    fn alice() -> Username {
        Username::parse("Alice").expect("valid username")
    }

    const SID: &str = "0123456789abcdef0123456789abcdef";

    fn sid() -> SessionId {
        SessionId::parse(SID).expect("valid session id")
    }

    /// `claims` with the `iss`, `aud` and `sid` every current token has.
    fn full(mut claims: serde_json::Value) -> serde_json::Value {
        let object = claims.as_object_mut().expect("an object");
        object.insert("iss".to_owned(), json!(TokenKeys::DEFAULT_ISSUER));
        object.insert("aud".to_owned(), json!(TokenKeys::DEFAULT_AUDIENCE));
        object.insert("sid".to_owned(), json!(SID));
        claims
    }

    fn now() -> i64 {
        Utc::now().timestamp()
    }

    /// Signs arbitrary claims with arbitrary settings, as an attacker or
    /// another implementation would.
    fn sign(algorithm: Algorithm, secret: &str, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(algorithm),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("signs")
    }

    fn b64(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims() {
        let keys = keys();
        let before = now();
        let issued = keys.issue(&alice(), sid()).expect("issues");
        let claims = keys.verify(&issued.token).expect("verifies");
        assert_eq!(claims.sub, "Alice");
        let iat = claims.iat.expect("iat is set");
        assert!((before..=now()).contains(&iat), "{iat}");
        assert_eq!(claims.exp, iat + 1_800);
        assert_eq!(claims.expires_at(), Some(issued.expires_at));
        assert_eq!(claims.sid, Some(sid()));
    }

    #[test]
    fn an_issued_token_is_hs256() {
        let issued = keys().issue(&alice(), sid()).expect("issues");
        let header = jsonwebtoken::decode_header(&issued.token).expect("a JWT");
        assert_eq!(header.alg, Algorithm::HS256);
    }

    #[test]
    fn an_expired_token_is_rejected_as_expired() {
        let token = sign(
            Algorithm::HS256,
            SECRET,
            &full(json!({"sub": "alice", "iat": now() - 3_600, "exp": now() - 60})),
        );
        assert_eq!(keys().verify(&token), Err(AuthError::ExpiredToken));
    }

    #[test]
    fn a_token_just_past_its_expiry_is_still_accepted_within_the_leeway() {
        let token = sign(
            Algorithm::HS256,
            SECRET,
            &full(json!({"sub": "alice", "exp": now() - 1})),
        );
        assert!(keys().verify(&token).is_ok());
    }

    #[test]
    fn an_expired_token_with_a_bad_signature_is_invalid_not_expired() {
        let token = sign(
            Algorithm::HS256,
            "another-secret-of-at-least-32-bytes!!",
            &full(json!({"sub": "alice", "exp": now() - 3_600})),
        );
        assert_eq!(keys().verify(&token), Err(AuthError::InvalidToken));
    }

    #[test]
    fn a_token_with_a_tampered_signature_is_rejected() {
        let keys = keys();
        let token = keys.issue(&alice(), sid()).expect("issues").token;
        let (unsigned, signature) = token.rsplit_once('.').expect("three parts");
        let mut signature: Vec<char> = signature.chars().collect();
        signature[10] = if signature[10] == 'A' { 'B' } else { 'A' };
        let tampered = format!("{unsigned}.{}", signature.into_iter().collect::<String>());
        assert_ne!(tampered, token);
        assert_eq!(keys.verify(&tampered), Err(AuthError::InvalidToken));
    }

    #[test]
    fn a_token_with_a_tampered_payload_is_rejected() {
        let keys = keys();
        let token = keys.issue(&alice(), sid()).expect("issues").token;
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(&full(json!({"sub": "admin", "exp": now() + 3_600})));
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(keys.verify(&tampered), Err(AuthError::InvalidToken));
    }

    #[test]
    fn an_unsigned_alg_none_token_is_rejected() {
        let header = b64(&json!({"alg": "none", "typ": "JWT"}));
        let payload = b64(&full(json!({"sub": "alice", "exp": now() + 3_600})));
        let token = format!("{header}.{payload}.");
        assert_eq!(keys().verify(&token), Err(AuthError::InvalidToken));
    }

    #[test]
    fn a_token_signed_with_hs384_or_hs512_and_the_same_secret_is_rejected() {
        let claims = full(json!({"sub": "alice", "exp": now() + 3_600}));
        for algorithm in [Algorithm::HS384, Algorithm::HS512] {
            let token = sign(algorithm, SECRET, &claims);
            assert_eq!(
                keys().verify(&token),
                Err(AuthError::InvalidToken),
                "{algorithm:?}"
            );
        }
    }

    #[test]
    fn a_token_claiming_rs256_is_rejected() {
        // The HS256 signature under an RS256 header: the classic confusion
        // where a verifier treats the HMAC secret as a public key.
        let claims = full(json!({"sub": "alice", "exp": now() + 3_600}));
        let genuine = sign(Algorithm::HS256, SECRET, &claims);
        let (_, rest) = genuine.split_once('.').expect("three parts");
        let header = b64(&json!({"alg": "RS256", "typ": "JWT"}));
        let token = format!("{header}.{rest}");
        assert_eq!(keys().verify(&token), Err(AuthError::InvalidToken));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_rejected() {
        let token = sign(
            Algorithm::HS256,
            "another-secret-of-at-least-32-bytes!!",
            &json!({"sub": "alice", "exp": now() + 3_600}),
        );
        assert_eq!(keys().verify(&token), Err(AuthError::InvalidToken));
    }

    #[test]
    fn a_token_with_only_sub_and_exp_is_refused_by_default() {
        let token = sign(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "alice", "exp": now() + 3_600}),
        );
        assert!(!keys().accepts_legacy_tokens());
        assert_eq!(keys().verify(&token), Err(AuthError::InvalidToken));
    }

    #[test]
    fn a_token_with_only_sub_and_exp_is_accepted_without_a_session_by_the_legacy_switch() {
        let token = sign(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "alice", "exp": now() + 3_600}),
        );
        let keys = keys().accepting_legacy_tokens(true);
        let claims = keys.verify(&token).expect("verifies");
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.iat, None);
        assert_eq!(claims.sid, None);
        // Current tokens keep working beside them.
        let issued = keys.issue(&alice(), sid()).expect("issues");
        assert_eq!(
            keys.verify(&issued.token).expect("verifies").sid,
            Some(sid())
        );
    }

    #[test]
    fn the_legacy_switch_does_not_relax_expiry_or_the_signature() {
        let keys = keys().accepting_legacy_tokens(true);
        let expired = sign(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "alice", "exp": now() - 3_600}),
        );
        assert_eq!(keys.verify(&expired), Err(AuthError::ExpiredToken));
        let forged = sign(
            Algorithm::HS256,
            "another-secret-of-at-least-32-bytes!!",
            &json!({"sub": "alice", "exp": now() + 3_600}),
        );
        assert_eq!(keys.verify(&forged), Err(AuthError::InvalidToken));
    }

    #[test]
    fn a_token_with_only_some_of_iss_aud_and_sid_is_refused_even_by_the_legacy_switch() {
        let keys = keys().accepting_legacy_tokens(true);
        for drop in ["iss", "aud", "sid"] {
            let mut claims = full(json!({"sub": "alice", "exp": now() + 3_600}));
            claims.as_object_mut().expect("an object").remove(drop);
            let token = sign(Algorithm::HS256, SECRET, &claims);
            assert_eq!(keys.verify(&token), Err(AuthError::InvalidToken), "{drop}");
            assert_eq!(
                self::keys().verify(&token),
                Err(AuthError::InvalidToken),
                "{drop}"
            );
        }
        let only_sid = sign(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "alice", "exp": now() + 3_600, "sid": SID}),
        );
        assert_eq!(keys.verify(&only_sid), Err(AuthError::InvalidToken));
    }

    #[test]
    fn a_token_for_another_issuer_or_audience_is_refused() {
        for (claim, value) in [
            ("iss", json!("someone-else")),
            ("aud", json!("another-service")),
            ("aud", json!(["another-service"])),
        ] {
            let mut claims = full(json!({"sub": "alice", "exp": now() + 3_600}));
            claims
                .as_object_mut()
                .expect("an object")
                .insert(claim.to_owned(), value.clone());
            let token = sign(Algorithm::HS256, SECRET, &claims);
            assert_eq!(
                keys().verify(&token),
                Err(AuthError::InvalidToken),
                "{claim}: {value}"
            );
            // The legacy switch compares them too when they are present.
            assert_eq!(
                keys().accepting_legacy_tokens(true).verify(&token),
                Err(AuthError::InvalidToken),
                "{claim}: {value}"
            );
        }
    }

    #[test]
    fn a_token_with_a_malformed_session_id_is_refused() {
        for bad in ["", "xyz", "0123456789ABCDEF0123456789ABCDEF"] {
            let mut claims = full(json!({"sub": "alice", "exp": now() + 3_600}));
            claims
                .as_object_mut()
                .expect("an object")
                .insert("sid".to_owned(), json!(bad));
            let token = sign(Algorithm::HS256, SECRET, &claims);
            assert_eq!(
                keys().verify(&token),
                Err(AuthError::InvalidToken),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_configured_issuer_and_audience_are_issued_and_required() {
        let ours = keys()
            .with_issuer_and_audience("chat.example.com", "chat-clients")
            .expect("valid");
        let issued = ours.issue(&alice(), sid()).expect("issues");
        let payload = issued.token.split('.').nth(1).expect("three parts");
        let payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64"))
                .expect("JSON");
        assert_eq!(payload["iss"], "chat.example.com");
        assert_eq!(payload["aud"], "chat-clients");
        assert_eq!(payload["sid"], SID);
        assert!(ours.verify(&issued.token).is_ok());
        // The default deployment refuses it, and the other way round.
        assert_eq!(keys().verify(&issued.token), Err(AuthError::InvalidToken));
        let default = keys().issue(&alice(), sid()).expect("issues");
        assert_eq!(ours.verify(&default.token), Err(AuthError::InvalidToken));
    }

    #[test]
    fn an_empty_issuer_or_audience_is_a_configuration_error() {
        assert_eq!(
            keys().with_issuer_and_audience(" ", "chat").map(|_| ()),
            Err(AuthError::EmptyClaim { claim: "issuer" })
        );
        assert_eq!(
            keys()
                .with_issuer_and_audience("chat-server", "")
                .map(|_| ()),
            Err(AuthError::EmptyClaim { claim: "audience" })
        );
    }

    #[test]
    fn a_token_without_exp_is_rejected() {
        let token = sign(
            Algorithm::HS256,
            SECRET,
            &full(json!({"sub": "alice", "iat": now()})),
        );
        assert_eq!(keys().verify(&token), Err(AuthError::InvalidToken));
    }

    #[test]
    fn a_token_without_sub_is_rejected() {
        let token = sign(
            Algorithm::HS256,
            SECRET,
            &full(json!({"exp": now() + 3_600})),
        );
        assert_eq!(keys().verify(&token), Err(AuthError::InvalidToken));
    }

    #[test]
    fn a_token_issued_in_the_future_is_rejected() {
        let token = sign(
            Algorithm::HS256,
            SECRET,
            &full(json!({"sub": "alice", "iat": now() + 600, "exp": now() + 3_600})),
        );
        assert_eq!(keys().verify(&token), Err(AuthError::InvalidToken));
    }

    #[test]
    fn a_token_issued_a_few_seconds_ahead_is_accepted() {
        let token = sign(
            Algorithm::HS256,
            SECRET,
            &full(json!({"sub": "alice", "iat": now() + 10, "exp": now() + 3_600})),
        );
        assert!(keys().verify(&token).is_ok());
    }

    #[test]
    fn text_that_is_not_a_jwt_is_rejected() {
        for junk in ["", "abc", "a.b.c", "...", "ééé.ééé.ééé"] {
            assert_eq!(
                keys().verify(junk),
                Err(AuthError::InvalidToken),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn a_secret_shorter_than_32_bytes_is_rejected() {
        let short = SecretString::from("x".repeat(31));
        assert_eq!(
            TokenKeys::new(&short, Duration::from_secs(60)).map(|_| ()),
            Err(AuthError::WeakSecret { min_bytes: 32 })
        );
        let enough = SecretString::from("x".repeat(32));
        assert!(TokenKeys::new(&enough, Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn a_ttl_under_one_second_is_rejected() {
        let secret = SecretString::from(SECRET);
        let result = TokenKeys::new(&secret, Duration::from_millis(500));
        assert!(matches!(result, Err(AuthError::InvalidTtl { .. })));
    }

    #[test]
    fn the_ttl_sets_the_expiry() {
        let secret = SecretString::from(SECRET);
        let keys = TokenKeys::new(&secret, Duration::from_secs(60)).expect("valid");
        assert_eq!(keys.ttl(), Duration::from_secs(60));
        let issued = keys.issue(&alice(), sid()).expect("issues");
        let left = issued.expires_at - Utc::now();
        assert!(
            left <= TimeDelta::seconds(60) && left > TimeDelta::seconds(55),
            "{left}"
        );
    }

    #[test]
    fn debug_output_never_shows_the_secret_or_the_token() {
        let keys = keys();
        let debug = format!("{keys:?}");
        assert!(!debug.contains("a-test-secret"), "{debug}");
        // DecodingKey's own Debug prints the secret's bytes; ours must not.
        assert!(!debug.contains("97, 45, 116"), "{debug}");

        let issued = keys.issue(&alice(), sid()).expect("issues");
        let debug = format!("{issued:?}");
        let signature = issued.token.rsplit('.').next().expect("three parts");
        assert!(!debug.contains(signature), "{debug}");
        assert!(!debug.contains(&issued.token), "{debug}");
    }

    const PREVIOUS: &str = "the-previous-secret-of-32-bytes-or-more";

    /// Keys after a rotation: `SECRET` is current, `PREVIOUS` was.
    fn rotated_keys() -> TokenKeys {
        TokenKeys::with_previous(
            &SecretString::from(SECRET),
            Some(&SecretString::from(PREVIOUS)),
            Duration::from_secs(1_800),
        )
        .expect("valid")
    }

    fn keys_for(secret: &str) -> TokenKeys {
        TokenKeys::new(&SecretString::from(secret), Duration::from_secs(1_800)).expect("valid")
    }

    #[test]
    fn a_token_signed_with_the_previous_secret_is_accepted_after_a_rotation() {
        let before_rotation = keys_for(PREVIOUS).issue(&alice(), sid()).expect("issues");
        let claims = rotated_keys()
            .verify(&before_rotation.token)
            .expect("verifies");
        assert_eq!(claims.sub, "Alice");
        assert_eq!(claims.expires_at(), Some(before_rotation.expires_at));
        // Without the previous secret it is refused: the grace comes from
        // the setting, not from anything else.
        assert_eq!(
            keys().verify(&before_rotation.token),
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn a_token_signed_with_the_previous_secret_expires_at_its_own_exp() {
        let token = sign(
            Algorithm::HS256,
            PREVIOUS,
            &full(json!({"sub": "alice", "iat": now() - 3_600, "exp": now() - 60})),
        );
        assert_eq!(rotated_keys().verify(&token), Err(AuthError::ExpiredToken));
    }

    #[test]
    fn a_token_from_an_unknown_secret_is_rejected_after_a_rotation() {
        let token = sign(
            Algorithm::HS256,
            "another-secret-of-at-least-32-bytes!!",
            &full(json!({"sub": "alice", "exp": now() + 3_600})),
        );
        assert_eq!(rotated_keys().verify(&token), Err(AuthError::InvalidToken));
    }

    #[test]
    fn the_previous_secret_is_held_to_every_check_of_the_current_one() {
        let claims = full(json!({"sub": "alice", "exp": now() + 3_600}));
        for algorithm in [Algorithm::HS384, Algorithm::HS512] {
            let token = sign(algorithm, PREVIOUS, &claims);
            assert_eq!(
                rotated_keys().verify(&token),
                Err(AuthError::InvalidToken),
                "{algorithm:?}"
            );
        }
        let without_exp = sign(Algorithm::HS256, PREVIOUS, &full(json!({"sub": "alice"})));
        assert_eq!(
            rotated_keys().verify(&without_exp),
            Err(AuthError::InvalidToken)
        );
        let from_the_future = sign(
            Algorithm::HS256,
            PREVIOUS,
            &full(json!({"sub": "alice", "iat": now() + 600, "exp": now() + 3_600})),
        );
        assert_eq!(
            rotated_keys().verify(&from_the_future),
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn new_tokens_are_signed_with_the_new_secret_only() {
        let issued = rotated_keys().issue(&alice(), sid()).expect("issues");
        assert!(keys_for(SECRET).verify(&issued.token).is_ok());
        assert_eq!(
            keys_for(PREVIOUS).verify(&issued.token),
            Err(AuthError::InvalidToken)
        );
        let header = jsonwebtoken::decode_header(&issued.token).expect("a JWT");
        assert_eq!(header.alg, Algorithm::HS256);
    }

    #[test]
    fn a_previous_secret_shorter_than_32_bytes_is_rejected() {
        let result = TokenKeys::with_previous(
            &SecretString::from(SECRET),
            Some(&SecretString::from("x".repeat(31))),
            Duration::from_secs(60),
        );
        assert_eq!(
            result.map(|_| ()),
            Err(AuthError::WeakPreviousSecret { min_bytes: 32 })
        );
    }

    #[test]
    fn debug_output_never_shows_the_previous_secret() {
        let debug = format!("{:?}", rotated_keys());
        assert!(!debug.contains("the-previous"), "{debug}");
        assert!(debug.contains("previous_secret: Some"), "{debug}");
        assert!(format!("{:?}", keys()).contains("previous_secret: None"));
    }

    #[test]
    fn redact_keeps_only_a_short_prefix() {
        let token = keys().issue(&alice(), sid()).expect("issues").token;
        assert_eq!(redact(&token), format!("{}…", &token[..6]));
        assert_eq!(redact("abc"), "abc…");
        assert_eq!(redact("ééééééééé"), "éééééé…");
    }
}
