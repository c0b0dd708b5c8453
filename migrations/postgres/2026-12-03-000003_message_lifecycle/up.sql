-- Messages people can change: replies, edits and deletions, each change
-- recorded in the room's sequence like a membership change.
--
-- A change is a row of `messages` with `change` set and `target_seq` the
-- seq of the message it changes; `user_id` is who made it. An edit's `body`
-- is the new text (encrypted like every body); a deletion's is empty.
-- The changed message itself holds its current state: the newest text and
-- `edited_at`, or, once deleted, an empty body, `deleted_at` and
-- `deleted_by` (a tombstone). Earlier texts are kept in `message_versions`
-- until the message is deleted, when they are erased with it.
ALTER TABLE messages ADD COLUMN reply_to BIGINT;
ALTER TABLE messages ADD COLUMN deleted_by BIGINT REFERENCES users (id) ON DELETE SET NULL;
ALTER TABLE messages ADD COLUMN change TEXT;
ALTER TABLE messages ADD COLUMN target_seq BIGINT;
ALTER TABLE messages ADD CONSTRAINT messages_change_check CHECK (
    (change IS NULL AND target_seq IS NULL)
    OR (change IN ('edited', 'deleted', 'reacted', 'unreacted') AND target_seq IS NOT NULL)
);
-- The changes of one message, to erase an edit's text with the message.
CREATE INDEX messages_room_id_target_seq ON messages (room_id, target_seq)
    WHERE target_seq IS NOT NULL;

CREATE TABLE message_versions (
    room_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    -- The seq of the edit that replaced this text.
    replaced_by BIGINT NOT NULL,
    body TEXT NOT NULL,
    key_id TEXT NOT NULL,
    -- When this text was written (sent, or the earlier edit's time).
    written_at TIMESTAMP NOT NULL,
    PRIMARY KEY (room_id, seq, replaced_by),
    FOREIGN KEY (room_id, seq) REFERENCES messages (room_id, seq) ON DELETE CASCADE
);
