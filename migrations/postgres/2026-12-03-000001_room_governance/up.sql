-- Rooms people can govern: visibility, a topic, roles, mutes and bans, and
-- membership changes recorded in each room's sequence.
--
-- Rooms that exist before this step keep working as they were: public,
-- without a topic, and without an owner (their creators stay members; an
-- operator makes someone owner with `chat-server admin room set-role`).

ALTER TABLE rooms ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public';
ALTER TABLE rooms ADD COLUMN topic TEXT;
-- A direct conversation is seen by its two members only.
UPDATE rooms SET visibility = 'private' WHERE kind = 'direct';
ALTER TABLE rooms ADD CONSTRAINT rooms_visibility_check
    CHECK (visibility IN ('public', 'private'));

ALTER TABLE room_members ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
-- While in the future, the member may read but not post.
ALTER TABLE room_members ADD COLUMN muted_until TIMESTAMP;
ALTER TABLE room_members ADD CONSTRAINT room_members_role_check
    CHECK (role IN ('owner', 'moderator', 'member'));

CREATE TABLE room_bans (
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    banned_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    -- A Fernet token of the moderator's reason (empty text when none).
    reason TEXT NOT NULL,
    key_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    -- The ban holds until then; NULL for good.
    until TIMESTAMP,
    PRIMARY KEY (room_id, user_id)
);

-- A membership change is a row of `messages` with `event` set: `user_id`
-- is the member it concerns, `body` encrypts who made the change and why,
-- and `event_role` / `event_until` carry a new role or a mute's or ban's
-- end. Plain messages leave all three NULL.
ALTER TABLE messages ADD COLUMN event TEXT;
ALTER TABLE messages ADD COLUMN event_role TEXT;
ALTER TABLE messages ADD COLUMN event_until TIMESTAMP;
ALTER TABLE messages ADD CONSTRAINT messages_event_check CHECK (
    event IS NULL OR event IN (
        'joined', 'left', 'added', 'kicked', 'banned', 'unbanned', 'muted', 'unmuted', 'role'
    )
);
