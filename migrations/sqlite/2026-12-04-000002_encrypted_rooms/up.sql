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

CREATE TABLE mls_package_refs (
    ref BLOB PRIMARY KEY NOT NULL,
    device BIGINT NOT NULL REFERENCES mls_devices (id) ON DELETE CASCADE
);

CREATE TABLE mls_groups (
    room_id BIGINT PRIMARY KEY NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    group_id BLOB NOT NULL,
    epoch BIGINT NOT NULL,
    group_info BLOB NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE mls_welcomes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device BIGINT NOT NULL REFERENCES mls_devices (id) ON DELETE CASCADE,
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    welcome BLOB NOT NULL,
    group_info BLOB,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX mls_welcomes_by_device ON mls_welcomes (device, id);

ALTER TABLE messages ADD COLUMN mls TEXT
    CHECK (mls IS NULL OR mls IN ('application', 'commit'));
