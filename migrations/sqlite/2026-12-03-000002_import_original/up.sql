-- What `chat-server import-original` brought over from the original Python
-- backend's database. The same step as
-- migrations/postgres/2026-12-03-000002_import_original, in SQLite's dialect.

CREATE TABLE imported_users (
    original_id BIGINT PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    original_username TEXT NOT NULL,
    CONSTRAINT imported_users_user_id_key UNIQUE (user_id)
);

CREATE TABLE imported_messages (
    original_id BIGINT PRIMARY KEY NOT NULL,
    message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    CONSTRAINT imported_messages_message_id_key UNIQUE (message_id)
);
