-- End-to-end encrypted rooms (MLS, RFC 9420): the flag on a room, and the
-- directory of devices and their KeyPackages that lets one member's client
-- add another user's devices to a group.
--
-- The server stores and hands out public MLS objects only: credentials,
-- signature public keys and KeyPackages. Private keys never leave the
-- clients.

-- Set when the room is created and never changed: its messages are MLS
-- ciphertext the server cannot read, and plaintext is refused.
ALTER TABLE rooms ADD COLUMN encrypted BOOLEAN NOT NULL DEFAULT FALSE;

-- A device: one installation of a client holding a user's MLS keys.
-- `credential` is the TLS encoding of its MLS credential (a basic credential
-- naming the user); `signature_key` its signature public key.
CREATE TABLE mls_devices (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    credential BYTEA NOT NULL,
    signature_key BYTEA NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (user_id, device_id)
);

-- KeyPackages waiting to be claimed, oldest first. A claim takes (deletes)
-- one ordinary package of a device; when none is left it hands out the
-- device's last-resort package, which stays. `not_after` is the end of the
-- package's lifetime: an expired package is never handed out.
CREATE TABLE mls_key_packages (
    id BIGSERIAL PRIMARY KEY,
    device BIGINT NOT NULL REFERENCES mls_devices (id) ON DELETE CASCADE,
    key_package BYTEA NOT NULL,
    last_resort BOOLEAN NOT NULL,
    not_after TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX mls_key_packages_claim ON mls_key_packages (device, last_resort, id);
CREATE UNIQUE INDEX mls_key_packages_one_last_resort ON mls_key_packages (device)
    WHERE last_resort;

-- Every uploaded KeyPackage's reference (its hash, RFC 9420 section 5.2),
-- kept after the package is claimed: a Welcome names the packages it was
-- made for by reference, which tells the server whose device to hand it to.
CREATE TABLE mls_package_refs (
    ref BYTEA PRIMARY KEY,
    device BIGINT NOT NULL REFERENCES mls_devices (id) ON DELETE CASCADE
);

-- Where each encrypted room's group stands: the epoch the next commit must
-- build on, and the GroupInfo (public: the members' credentials and keys)
-- of the last commit accepted. Absent until the first commit (epoch 0).
CREATE TABLE mls_groups (
    room_id BIGINT PRIMARY KEY REFERENCES rooms (id) ON DELETE CASCADE,
    group_id BYTEA NOT NULL,
    epoch BIGINT NOT NULL,
    group_info BYTEA NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Welcomes waiting for the devices a commit added, until the device
-- acknowledges them.
CREATE TABLE mls_welcomes (
    id BIGSERIAL PRIMARY KEY,
    device BIGINT NOT NULL REFERENCES mls_devices (id) ON DELETE CASCADE,
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    welcome BYTEA NOT NULL,
    group_info BYTEA,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX mls_welcomes_by_device ON mls_welcomes (device, id);

-- In an encrypted room, `body` encrypts the base64 of an MLS message:
-- 'application' for a member's message (MLS ciphertext), 'commit' for a
-- change to the group (an MLS public message). NULL for plaintext.
ALTER TABLE messages ADD COLUMN mls TEXT;
ALTER TABLE messages ADD CONSTRAINT messages_mls_check
    CHECK (mls IS NULL OR mls IN ('application', 'commit'));
