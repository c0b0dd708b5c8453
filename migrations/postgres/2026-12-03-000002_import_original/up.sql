-- What `chat-server import-original` brought over from the original Python
-- backend's database, by the original's ids. A row is written in the same
-- transaction as the user or message it records, so an import that stops
-- anywhere and runs again brings nothing over twice: the primary keys on the
-- original ids refuse a second copy.

CREATE TABLE imported_users (
    original_id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The name it had there, which may differ from ours (see OPERATIONS.md).
    original_username TEXT NOT NULL,
    CONSTRAINT imported_users_user_id_key UNIQUE (user_id)
);

CREATE TABLE imported_messages (
    original_id BIGINT PRIMARY KEY,
    message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    -- Also finds the newest imported message, where an import resumes.
    CONSTRAINT imported_messages_message_id_key UNIQUE (message_id)
);
