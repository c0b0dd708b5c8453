DROP TABLE mls_key_packages;
DROP TABLE mls_devices;
ALTER TABLE rooms DROP COLUMN encrypted;
