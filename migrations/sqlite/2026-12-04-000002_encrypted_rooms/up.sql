-- End-to-end encrypted rooms and the MLS device directory. The same step as
-- migrations/postgres/2026-12-04-000002_encrypted_rooms, in SQLite's dialect.

ALTER TABLE rooms ADD COLUMN encrypted BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE mls_devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    credential BLOB NOT NULL,
    signature_key BLOB NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (user_id, device_id)
);

CREATE TABLE mls_key_packages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device BIGINT NOT NULL REFERENCES mls_devices (id) ON DELETE CASCADE,
    key_package BLOB NOT NULL,
    last_resort BOOLEAN NOT NULL,
    not_after TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX mls_key_packages_claim ON mls_key_packages (device, last_resort, id);
CREATE UNIQUE INDEX mls_key_packages_one_last_resort ON mls_key_packages (device)
    WHERE last_resort;
