DROP TABLE search_documents;
DELETE FROM search_reindex;

CREATE TABLE search_terms (
    generation INTEGER NOT NULL,
    term BIGINT NOT NULL,
    room_id BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (generation, term, room_id, message_id)
);
