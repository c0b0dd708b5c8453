-- The search index on PostgreSQL: one row per message and search key, its
-- terms as an array under a GIN index, in place of one row per term.
--
-- Each element is the keyed hash of a term (HMAC-SHA256 under the search
-- key, first 8 bytes), as in `search_terms`, which SQLite keeps; plus one
-- element naming the message's room and one naming the block of message
-- ids it falls in, so that the GIN index itself intersects terms, rooms
-- and time. No word is stored readably. `generation` names the key and
-- rules that built the row.
--
-- Writing one row (and one GIN insertion, which PostgreSQL buffers and
-- merges in bulk) instead of about 25 B-tree rows per message is what
-- makes indexing affordable on the write path.
--
-- The room and block elements are computed by the server, so the entries
-- of the old layout are not converted here. The index starts empty, and
-- `chat-server reindex` builds it for the messages already stored.
DROP TABLE search_terms;
DELETE FROM search_reindex;

CREATE TABLE search_documents (
    message_id BIGINT NOT NULL,
    generation INTEGER NOT NULL,
    room_id BIGINT NOT NULL,
    terms BIGINT[] NOT NULL,
    PRIMARY KEY (message_id, generation)
);

-- New entries wait in GIN's pending list until it holds 1 MB, then are
-- merged in bulk. Every search reads the whole list, so a smaller one than
-- PostgreSQL's 4 MB keeps searches quick and steady (p99 10 to 24 ms
-- instead of 16 to 77 on 1,000,000 messages) for about 10% less write
-- rate (docs/BENCHMARKS.md).
CREATE INDEX search_documents_terms ON search_documents USING gin (terms)
    WITH (gin_pending_list_limit = 1024);
