//! The storage conformance suite. Every test in `conformance` runs twice
//! from one body: against a temporary SQLite file and against a fresh
//! PostgreSQL database (see `support`).

mod conformance;
mod outage;
mod redaction;
mod support;
