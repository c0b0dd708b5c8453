//! Every node re-checks, in the database, what another process may have
//! changed under its open sockets without it hearing: sessions ended (a
//! sign-out on another node whose notice was lost, or the operator's
//! `chat-server admin` on a deployment without Redis), accounts disabled,
//! rooms deleted, and messages erased (whose rooms it must drop from the
//! store's memory of newest pages).
//!
//! It costs one query per few hundred open sessions, one per few hundred
//! rooms and one for the erasures, every `TransportConfig::recheck_interval`
//! (5 s by default); REST requests and WebSocket upgrades check their
//! session on every call regardless, so this bounds only how long an open
//! socket outlives its session when no notice reaches its node.

use std::time::Duration;

use chat_storage::Store;
use tokio_util::sync::CancellationToken;

use crate::hub::{Hub, Notice};

/// Starts the re-checks on the current runtime; they stop with `stop`.
pub(crate) fn spawn(store: Store, hub: Hub, every: Duration, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut erasures = match store.erasures_after(None).await {
            Ok((_, newest)) => Some(newest.unwrap_or(0)),
            Err(error) => {
                tracing::warn!(error = %crate::error::Chain(&error), "could not read the erasures");
                None
            }
        };
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            erasures = recheck(&store, &hub, erasures).await;
        }
    });
}

/// Closes this node's sockets whose sessions are no longer open.
pub(crate) async fn close_ended_sessions(store: &Store, hub: &Hub) {
    let sessions = hub.sessions();
    if sessions.is_empty() {
        return;
    }
    let ids: Vec<_> = sessions.iter().map(|(_, session)| *session).collect();
    match store.ended_sessions(&ids).await {
        Ok(ended) => {
            for (user, session) in sessions {
                if ended.contains(&session) {
                    hub.end_session(user, session);
                }
            }
        }
        Err(error) => {
            tracing::warn!(error = %crate::error::Chain(&error), "could not check the sessions of open sockets");
        }
    }
}

/// One round; returns where the erasures stand now.
async fn recheck(store: &Store, hub: &Hub, erasures: Option<i64>) -> Option<i64> {
    close_ended_sessions(store, hub).await;
    let rooms = hub.rooms();
    if !rooms.is_empty() {
        match store.existing_rooms(&rooms).await {
            Ok(existing) => {
                for room in rooms.into_iter().filter(|room| !existing.contains(room)) {
                    hub.apply(&Notice::Deleted { room });
                }
            }
            Err(error) => {
                tracing::warn!(error = %crate::error::Chain(&error), "could not re-check the rooms of open sockets");
            }
        }
    }
    match store.erasures_after(Some(erasures.unwrap_or(0))).await {
        Ok((rooms, newest)) => {
            for room in rooms {
                store.forget_recent(room);
            }
            newest.or(erasures)
        }
        Err(error) => {
            tracing::warn!(error = %crate::error::Chain(&error), "could not read the erasures");
            erasures
        }
    }
}
