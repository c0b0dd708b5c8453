-- Messages people can change. The same step as
-- migrations/postgres/2026-12-03-000003_message_lifecycle, in SQLite's
-- dialect (a column added with ALTER TABLE carries its CHECK inline;
-- `deleted_by` has no foreign key, so that the step can be reverted: SQLite
-- cannot drop a column that has one).
ALTER TABLE messages ADD COLUMN reply_to BIGINT;
ALTER TABLE messages ADD COLUMN deleted_by BIGINT;
ALTER TABLE messages ADD COLUMN change TEXT
    CHECK (change IS NULL OR change IN ('edited', 'deleted', 'reacted', 'unreacted'));
ALTER TABLE messages ADD COLUMN target_seq BIGINT;
CREATE INDEX messages_room_id_target_seq ON messages (room_id, target_seq)
    WHERE target_seq IS NOT NULL;

CREATE TABLE message_versions (
    room_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    replaced_by BIGINT NOT NULL,
    body TEXT NOT NULL,
    key_id TEXT NOT NULL,
    written_at TIMESTAMP NOT NULL,
    PRIMARY KEY (room_id, seq, replaced_by),
    FOREIGN KEY (room_id, seq) REFERENCES messages (room_id, seq) ON DELETE CASCADE
);
