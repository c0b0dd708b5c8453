-- The chat schema: users, rooms, memberships and encrypted messages.
--
-- Timestamps are `timestamp` (without time zone) holding UTC, so the same
-- diesel schema serves PostgreSQL and SQLite.

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);

-- Two names that differ only in case belong to the same user.
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));

CREATE TABLE rooms (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    -- The seq of the newest message. Writers lock this row to number
    -- messages, which keeps each room's seqs gapless and in commit order.
    last_seq BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT rooms_name_key UNIQUE (name),
    CONSTRAINT rooms_kind_check CHECK (kind IN ('public', 'direct')),
    CONSTRAINT rooms_last_seq_check CHECK (last_seq >= 0)
);

CREATE TABLE room_members (
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    last_read_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id),
    CONSTRAINT room_members_last_read_seq_check CHECK (last_read_seq >= 0)
);

-- "Which rooms is this user in" is asked at every connect.
CREATE INDEX room_members_user_id_idx ON room_members (user_id);

CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY,
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id),
    -- A Fernet token: the plaintext never reaches the database.
    body TEXT NOT NULL,
    -- Which key of the ring encrypted `body`.
    key_id TEXT NOT NULL,
    client_id TEXT,
    created_at TIMESTAMP NOT NULL,
    edited_at TIMESTAMP,
    deleted_at TIMESTAMP,
    -- Also the index that serves history pages.
    CONSTRAINT messages_room_id_seq_key UNIQUE (room_id, seq),
    CONSTRAINT messages_seq_check CHECK (seq > 0)
);

-- A resent message (same user, same client id) is recognised, not stored twice.
CREATE UNIQUE INDEX messages_user_id_client_id_key
    ON messages (user_id, client_id)
    WHERE client_id IS NOT NULL;

INSERT INTO rooms (name, kind, created_by) VALUES ('general', 'public', NULL);
