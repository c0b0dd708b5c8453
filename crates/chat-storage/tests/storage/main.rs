//! The storage conformance suite. Every test in `conformance` runs twice
//! from one body: against a temporary SQLite file and against a fresh
//! PostgreSQL database (see `support`).

// `conformance` defines `conformance_suite!`, which `import`, `rotation`
// and `sessions` use too.
#[macro_use]
mod conformance;
mod encryption;
mod import;
mod lifecycle;
mod outage;
mod planner;
mod redaction;
mod rotation;
mod search;
mod sessions;
mod shards;
mod support;
