//! Integration tests of the HTTP and WebSocket transport: the real server on
//! port 0, real HTTP and real WebSockets, on SQLite always and on PostgreSQL
//! whenever `CHAT_TEST_DATABASE_URL` is set.

mod helpers;

mod cluster;
mod contract;
mod docs;
mod embedding;
mod encryption;
mod faults;
mod governance;
mod lifecycle;
mod limits;
mod metrics;
mod reactions;
mod rooms;
mod search;
mod tokens;
mod websocket;
