-- Reactions leave the sequence with their table.
DELETE FROM messages WHERE change IN ('reacted', 'unreacted');
DROP TABLE message_reactions;
ALTER TABLE messages DROP COLUMN reactions;
