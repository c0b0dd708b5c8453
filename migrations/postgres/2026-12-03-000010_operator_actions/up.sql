-- What `chat-server admin` does to accounts: disable one (it may not sign
-- in, every session ended) and delete one (the row stays so that the name
-- stays reserved and its messages keep their author, but it is gone for
-- every other purpose).
--
-- When a deletion erases an account's messages, their rooms are recorded in
-- `message_erasures`: each node reads the new rows (by id) every few
-- seconds and drops those rooms' newest pages from memory, so no node keeps
-- serving an erased text.

ALTER TABLE users ADD COLUMN disabled_at TIMESTAMP;
ALTER TABLE users ADD COLUMN deleted_at TIMESTAMP;

CREATE TABLE message_erasures (
    id BIGSERIAL PRIMARY KEY,
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    erased_at TIMESTAMP NOT NULL
);
