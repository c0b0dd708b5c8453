-- Auth sessions and their refresh tokens.
--
-- A sign-in opens a session; every access token names it (the `sid` claim)
-- and is refused once the session is revoked or expired. A session's refresh
-- tokens form a chain: each works once and is replaced by the next. Only a
-- token's SHA-256 is stored, never the token.

CREATE TABLE auth_sessions (
    -- 128 random bits as 32 lowercase hex digits.
    id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    -- Moves forward on every refresh: a session ends after the refresh
    -- lifetime without one.
    expires_at TIMESTAMP NOT NULL,
    -- Set by a sign-out, or when a used refresh token is presented again.
    revoked_at TIMESTAMP,
    CONSTRAINT auth_sessions_id_check CHECK (length(id) = 32)
);

-- Old sessions of a user are cleared at each of their sign-ins.
CREATE INDEX auth_sessions_user_id_idx ON auth_sessions (user_id);

CREATE TABLE refresh_tokens (
    -- The SHA-256 of the token as 64 lowercase hex digits.
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    -- Set when the token was exchanged for the next one. Presenting it
    -- again means it was copied: the whole session is revoked.
    used_at TIMESTAMP,
    CONSTRAINT refresh_tokens_token_hash_check CHECK (length(token_hash) = 64)
);

CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);
