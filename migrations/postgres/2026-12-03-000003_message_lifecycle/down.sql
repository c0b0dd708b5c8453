-- Changes leave the sequence; the messages they changed keep their
-- current state.
DELETE FROM messages WHERE change IS NOT NULL;
DROP TABLE message_versions;
DROP INDEX messages_room_id_target_seq;
ALTER TABLE messages DROP CONSTRAINT messages_change_check;
ALTER TABLE messages DROP COLUMN target_seq;
ALTER TABLE messages DROP COLUMN change;
ALTER TABLE messages DROP COLUMN deleted_by;
ALTER TABLE messages DROP COLUMN reply_to;
