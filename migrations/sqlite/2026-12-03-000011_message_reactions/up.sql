-- Reactions to messages (the same step as the PostgreSQL one): who reacted to which message with what. Each
-- reaction added or taken back is also a change in the room's sequence (a
-- row of `messages` with `change` 'reacted' or 'unreacted', its body the
-- reaction, encrypted like every body); this table holds the reactions as
-- they are now, for history pages to count. A reaction is kept readable
-- here, as a short string picked to react (docs/SECURITY.md says so).
CREATE TABLE message_reactions (
    room_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    emoji TEXT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The seq of the change that added it.
    added_seq BIGINT NOT NULL,
    PRIMARY KEY (room_id, seq, emoji, user_id),
    FOREIGN KEY (room_id, seq) REFERENCES messages (room_id, seq) ON DELETE CASCADE
);

-- How many reactions each message has now (every kind, every member), kept
-- by the transaction of each reaction: a history page reads the reactions
-- of only the messages that have some.
ALTER TABLE messages ADD COLUMN reactions BIGINT NOT NULL DEFAULT 0;
