-- Auth sessions and their refresh tokens. The same step as
-- migrations/postgres/2026-11-25-000000_auth_sessions, in SQLite's dialect.
--
-- A sign-in opens a session; every access token names it (the `sid` claim)
-- and is refused once the session is revoked or expired. A session's refresh
-- tokens form a chain: each works once and is replaced by the next. Only a
-- token's SHA-256 is stored, never the token.

CREATE TABLE auth_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP,
    CONSTRAINT auth_sessions_id_check CHECK (length(id) = 32)
);

CREATE INDEX auth_sessions_user_id_idx ON auth_sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP,
    CONSTRAINT refresh_tokens_token_hash_check CHECK (length(token_hash) = 64)
);

CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);
