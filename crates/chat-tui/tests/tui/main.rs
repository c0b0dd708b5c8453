//! End-to-end tests: the real client UI, on cursive's puppet backend,
//! against the real server started in-process on port 0 with a temporary
//! SQLite database. A second user talks to it over a plain WebSocket.

mod changes;
mod encrypted;
mod governance;
mod helpers;
mod search;
mod session;
