-- The search index: for every message, each distinct word and each
-- indexed prefix of its words, as a keyed hash (HMAC-SHA256 under the
-- search key, first 8 bytes). No word is stored readably. `generation`
-- names the key and rules that built the entry, so an index built with
-- another key can sit beside the one that answers while it is rebuilt.
-- The key leads with the generation and the term: a search reads one
-- term's entries, per room, newest message first.
CREATE TABLE search_terms (
    generation INTEGER NOT NULL,
    term BIGINT NOT NULL,
    room_id BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (generation, term, room_id, message_id)
);

-- Progress of `chat-server reindex`, per generation: every message with an
-- id below `next_message_id` has been indexed; `finished_at` is set when
-- the walk reached the newest message.
CREATE TABLE search_reindex (
    generation INTEGER PRIMARY KEY,
    next_message_id BIGINT NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);
