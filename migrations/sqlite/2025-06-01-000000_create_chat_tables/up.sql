-- The chat schema: users, rooms, memberships and encrypted messages.
-- The same step as migrations/postgres/2025-06-01-000000_create_chat_tables,
-- in SQLite's dialect.
--
-- Timestamps are TIMESTAMP columns holding UTC text, which diesel reads as
-- `Timestamp`; ids are INTEGER PRIMARY KEY (the rowid), which diesel reads as
-- `BigInt`. AUTOINCREMENT keeps ids from being reused, like a sequence.

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- Two names that differ only in case belong to the same user. SQLite's
-- lower() folds ASCII only, which is all a username may contain.
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));

CREATE TABLE rooms (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_seq BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT rooms_name_key UNIQUE (name),
    CONSTRAINT rooms_kind_check CHECK (kind IN ('public', 'direct')),
    CONSTRAINT rooms_last_seq_check CHECK (last_seq >= 0)
);

CREATE TABLE room_members (
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_read_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id),
    CONSTRAINT room_members_last_read_seq_check CHECK (last_read_seq >= 0)
);

CREATE INDEX room_members_user_id_idx ON room_members (user_id);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id),
    body TEXT NOT NULL,
    key_id TEXT NOT NULL,
    client_id TEXT,
    created_at TIMESTAMP NOT NULL,
    edited_at TIMESTAMP,
    deleted_at TIMESTAMP,
    CONSTRAINT messages_room_id_seq_key UNIQUE (room_id, seq),
    CONSTRAINT messages_seq_check CHECK (seq > 0)
);

CREATE UNIQUE INDEX messages_user_id_client_id_key
    ON messages (user_id, client_id)
    WHERE client_id IS NOT NULL;

INSERT INTO rooms (name, kind, created_by) VALUES ('general', 'public', NULL);
