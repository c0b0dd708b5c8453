-- The search index on PostgreSQL: one row per message and search key, its
-- terms as an array under a GIN index, in place of one row per term.
--
-- Each element of `terms` is the keyed hash of a term (HMAC-SHA256 under
-- the search key, first 8 bytes) folded with the message's room, so that
-- the same word in two rooms is two keys and a search of 50 rooms looks up
-- 50 keys; plus one element naming the block of message ids the message
-- falls in, so a search can ask for the newest block first. No word is
-- stored readably. `generation` names the key and rules that built the
-- row, as in `search_terms`, which SQLite keeps.
--
-- Writing one row (and one GIN insertion, which PostgreSQL buffers and
-- merges in bulk) instead of about 25 B-tree rows per message is what
-- makes indexing affordable on the write path.
--
-- The entries of the old layout cannot be converted here (the fold is done
-- by the server), so the index starts empty: `chat-server reindex` builds
-- it for the messages already stored.
DROP TABLE search_terms;
DELETE FROM search_reindex;

CREATE TABLE search_documents (
    message_id BIGINT NOT NULL,
    generation INTEGER NOT NULL,
    room_id BIGINT NOT NULL,
    terms BIGINT[] NOT NULL,
    PRIMARY KEY (message_id, generation)
);

CREATE INDEX search_documents_terms ON search_documents USING gin (terms);
