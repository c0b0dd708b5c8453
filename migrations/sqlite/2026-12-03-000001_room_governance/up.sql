-- Rooms people can govern. The same step as
-- migrations/postgres/2026-12-03-000001_room_governance, in SQLite's
-- dialect (a column added with ALTER TABLE carries its CHECK inline).

ALTER TABLE rooms ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public'
    CHECK (visibility IN ('public', 'private'));
ALTER TABLE rooms ADD COLUMN topic TEXT;
-- A direct conversation is seen by its two members only.
UPDATE rooms SET visibility = 'private' WHERE kind = 'direct';

ALTER TABLE room_members ADD COLUMN role TEXT NOT NULL DEFAULT 'member'
    CHECK (role IN ('owner', 'moderator', 'member'));
ALTER TABLE room_members ADD COLUMN muted_until TIMESTAMP;

CREATE TABLE room_bans (
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    banned_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    reason TEXT NOT NULL,
    key_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    until TIMESTAMP,
    PRIMARY KEY (room_id, user_id)
);

ALTER TABLE messages ADD COLUMN event TEXT CHECK (
    event IS NULL OR event IN (
        'joined', 'left', 'added', 'kicked', 'banned', 'unbanned', 'muted', 'unmuted', 'role'
    )
);
ALTER TABLE messages ADD COLUMN event_role TEXT;
ALTER TABLE messages ADD COLUMN event_until TIMESTAMP;
