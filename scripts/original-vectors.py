#!/usr/bin/env python3
"""Rows as the original Python backend wrote them, for `chat-server import-original`.

The original hashed passwords with passlib's bcrypt and encrypted messages
with `cryptography`'s Fernet, under the key
`urlsafe_b64encode(sha256(ENCRYPTION_KEY.encode()).digest())`. This script
makes rows the same way, so the import is tested against what the original
really stored rather than against our own idea of it.

Two uses:

    # The test vectors, committed (CI never runs Python):
    scripts/original-vectors.py vectors \
        > crates/chat-server/tests/server/fixtures/original.json

    # A large database for the benchmark in docs/BENCHMARKS.md:
    scripts/original-vectors.py bench --messages 100000 --dialect sqlite \
        | python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).executescript(sys.stdin.read())' /tmp/original.db
    scripts/original-vectors.py bench --messages 100000 --dialect postgres \
        | psql -q postgres://postgres@127.0.0.1:5432/original

Needs `pip install passlib 'bcrypt==4.0.1' cryptography` (passlib 1.7.4,
the last release, fails with bcrypt 4.1 and later).
"""

import argparse
import base64
import datetime
import hashlib
import json
import sys

from cryptography.fernet import Fernet
from passlib.context import CryptContext

# The example ENCRYPTION_KEY of the original's README.
PASSPHRASE = "your-encryption-key-change-this-in-production"
# A key the original never had: a token made with it cannot be decrypted.
OTHER_PASSPHRASE = "some other deployment's key"

# The original's `pwd_context`.
PASSWORDS = CryptContext(schemes=["bcrypt"], deprecated="auto")


def fernet_key(passphrase):
    """The original's `get_encryption_key()`."""
    return base64.urlsafe_b64encode(hashlib.sha256(passphrase.encode()).digest())


def stamp(text):
    """A naive UTC datetime, as `datetime.utcnow()` gave the original."""
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")


def as_stored(moment):
    """The text SQLAlchemy stores for a DateTime column on SQLite."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def seal(key, text, moment):
    """The original's `encrypt_message()`, with the token's time set to the
    message's own time, as it was when the original wrote it."""
    epoch = int(moment.replace(tzinfo=datetime.timezone.utc).timestamp())
    return Fernet(key).encrypt_at_time(text.encode("utf-8"), epoch).decode()


def vectors():
    key = fernet_key(PASSPHRASE)
    other = fernet_key(OTHER_PASSPHRASE)
    # (id, username, password, created_at). Usernames the original accepted
    # but our rules refuse are here on purpose; see the test that reads them.
    users = [
        (1, "alice", "secret123", "2024-03-01 08:00:00.000000"),
        (2, "Bob", "hunter2-bob", "2024-03-01 08:01:00.500000"),
        (3, "bob", "lowercase-bob", "2024-03-01 08:02:00.000001"),
        (4, "jo", "short-name", "2024-03-01 08:03:00.000000"),
        (5, "émile dupont", "accents-and-space", "2024-03-01 08:04:00.000000"),
        (6, "李雷", "no-ascii-at-all", "2024-03-01 08:05:00.000000"),
        (7, "dots.and spaces, fifty characters in all: 01234567", "fifty-characters", "2024-03-01 08:06:00.000000"),
        (8, "bob-2", "a-valid-name", "2024-03-01 08:07:00.000000"),
    ]
    # (id, user id, text or None for a token under another key, created_at).
    # Ids are not in time order, and two messages share a time: the import
    # orders by (created_at, id).
    messages = [
        (1, 1, "Hello everyone!", "2024-03-01 09:00:00.000000"),
        (2, 2, "Héllo, wörld — ça va ?", "2024-03-01 09:00:05.250000"),
        (3, 3, "日本語のメッセージ 🎌", "2024-03-01 09:01:00.000001"),
        (4, 4, None, "2024-03-01 09:02:00.000000"),
        (5, 1, "RTL: שלום עולם", "2024-03-01 09:00:30.500000"),
        (6, 5, "emoji 👩‍💻, a tab\tand\na new line", "2024-03-01 09:03:00.000000"),
        (7, 6, "same time, lower id", "2024-03-01 09:04:00.000000"),
        (8, 7, "same time, higher id", "2024-03-01 09:04:00.000000"),
        (9, 8, "from bob-2, whose name was valid", "2024-03-01 09:04:30.000000"),
        (10, 1, "Goodbye", "2024-03-01 09:05:00.123456"),
        (11, 2, "  indented, kept as sent", "2024-03-01 09:06:00.000000"),
    ]
    return {
        "generated_by": "scripts/original-vectors.py vectors",
        "passphrase": PASSPHRASE,
        "fernet_key": key.decode(),
        "users": [
            {
                "id": id,
                "username": name,
                "password": password,
                "hashed_password": PASSWORDS.hash(password),
                "created_at": as_stored(stamp(created)),
            }
            for id, name, password, created in users
        ],
        "messages": [
            {
                "id": id,
                "user_id": user_id,
                "text": text,
                "content": seal(key if text is not None else other, text or "not for us", stamp(created)),
                "created_at": as_stored(stamp(created)),
            }
            for id, user_id, text, created in messages
        ],
    }


SCHEMA = {
    # What SQLAlchemy's `create_all` made, per dialect.
    "postgres": """
CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    username VARCHAR(50) NOT NULL,
    hashed_password VARCHAR(255) NOT NULL,
    created_at TIMESTAMP WITHOUT TIME ZONE
);
CREATE UNIQUE INDEX ix_users_username ON users (username);
CREATE INDEX ix_users_id ON users (id);
CREATE TABLE messages (
    id SERIAL PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    content TEXT NOT NULL,
    created_at TIMESTAMP WITHOUT TIME ZONE
);
CREATE INDEX ix_messages_id ON messages (id);
""",
    "sqlite": """
CREATE TABLE users (
    id INTEGER NOT NULL PRIMARY KEY,
    username VARCHAR(50) NOT NULL,
    hashed_password VARCHAR(255) NOT NULL,
    created_at DATETIME
);
CREATE UNIQUE INDEX ix_users_username ON users (username);
CREATE INDEX ix_users_id ON users (id);
CREATE TABLE messages (
    id INTEGER NOT NULL PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    content TEXT NOT NULL,
    created_at DATETIME
);
CREATE INDEX ix_messages_id ON messages (id);
""",
}


def bench(count, user_count, dialect, out):
    key = fernet_key(PASSPHRASE)
    fernet = Fernet(key)
    # One bcrypt hash for everyone: hashing is not what is measured.
    hashed = PASSWORDS.hash("secret123")
    start = datetime.datetime(2024, 1, 1)
    out.write("BEGIN;\n")
    out.write(SCHEMA[dialect])
    for id in range(1, user_count + 1):
        out.write(
            f"INSERT INTO users (id, username, hashed_password, created_at) VALUES "
            f"({id}, 'user{id}', '{hashed}', '{as_stored(start)}');\n"
        )
    rows = []
    for id in range(1, count + 1):
        moment = start + datetime.timedelta(seconds=id // 3, microseconds=(id * 7919) % 1_000_000)
        text = f"message {id}: héllo wörld, the quick brown fox jumps over the lazy dog"
        epoch = int(moment.replace(tzinfo=datetime.timezone.utc).timestamp())
        token = fernet.encrypt_at_time(text.encode("utf-8"), epoch).decode()
        rows.append(f"({id}, {id % user_count + 1}, '{token}', '{as_stored(moment)}')")
        if len(rows) == 1000:
            out.write("INSERT INTO messages (id, user_id, content, created_at) VALUES " + ", ".join(rows) + ";\n")
            rows = []
    if rows:
        out.write("INSERT INTO messages (id, user_id, content, created_at) VALUES " + ", ".join(rows) + ";\n")
    if dialect == "postgres":
        out.write("SELECT setval('users_id_seq', (SELECT max(id) FROM users));\n")
        out.write("SELECT setval('messages_id_seq', (SELECT max(id) FROM messages));\n")
    out.write("COMMIT;\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("vectors", help="print the test vectors as JSON")
    bench_parser = commands.add_parser("bench", help="print SQL that builds a large original database")
    bench_parser.add_argument("--messages", type=int, default=100_000)
    bench_parser.add_argument("--users", type=int, default=50)
    bench_parser.add_argument("--dialect", choices=sorted(SCHEMA), default="sqlite")
    args = parser.parse_args()
    if args.command == "vectors":
        json.dump(vectors(), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        bench(args.messages, args.users, args.dialect, sys.stdout)


if __name__ == "__main__":
    main()
