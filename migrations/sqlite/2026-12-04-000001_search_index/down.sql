DROP TABLE search_reindex;
DROP TABLE search_terms;
