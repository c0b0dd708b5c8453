ALTER TABLE messages DROP COLUMN mls;
DROP TABLE mls_welcomes;
DROP TABLE mls_groups;
DROP TABLE mls_package_refs;
DROP TABLE mls_key_packages;
DROP TABLE mls_devices;
ALTER TABLE rooms DROP COLUMN encrypted;
