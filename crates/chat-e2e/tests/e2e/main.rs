//! End-to-end behaviour of devices in encrypted rooms, all in-process: the
//! server is stood in for by [`support::Relay`], which numbers a room's
//! messages and accepts one commit per epoch, as the real one will.

mod concurrency;
mod groups;
mod key_packages;
mod persistence;
mod safety;
mod support;
