DELETE FROM messages WHERE event IS NOT NULL;
ALTER TABLE messages DROP COLUMN event_until;
ALTER TABLE messages DROP COLUMN event_role;
ALTER TABLE messages DROP COLUMN event;
DROP TABLE room_bans;
ALTER TABLE room_members DROP COLUMN muted_until;
ALTER TABLE room_members DROP COLUMN role;
ALTER TABLE rooms DROP COLUMN topic;
ALTER TABLE rooms DROP COLUMN visibility;
