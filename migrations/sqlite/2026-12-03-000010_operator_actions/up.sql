-- What `chat-server admin` does to accounts. The same step as
-- migrations/postgres/2026-12-03-000010_operator_actions, in SQLite's
-- dialect.

ALTER TABLE users ADD COLUMN disabled_at TIMESTAMP;
ALTER TABLE users ADD COLUMN deleted_at TIMESTAMP;

CREATE TABLE message_erasures (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    erased_at TIMESTAMP NOT NULL
);
