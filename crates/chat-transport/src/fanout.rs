//! How events reach every connection that should see them.
//!
//! Sessions and the writer never talk to sockets directly: they publish
//! [`RoomEvent`]s through a [`Fanout`]. The in-process implementation hands
//! them straight to this node's [`Hub`]; a broker-backed one can carry them
//! to every node without the sessions changing. The end of an auth session
//! travels the same way, so a sign-out closes the session's sockets on
//! every node.

use std::fmt::Debug;

use chat_domain::{RoomId, Seq, SessionId, UserId};
use futures_util::future::BoxFuture;

use crate::hub::{Audience, Frame, Hub, ItemKind, Notice, Outbound};

/// Something that happened in a room, already serialized.
#[derive(Debug, Clone)]
pub struct RoomEvent {
    /// The room.
    pub room: RoomId,
    /// For stored messages, their seq; delivery follows it.
    pub seq: Option<Seq>,
    /// The frame, serialized once for everyone.
    pub frame: Frame,
    /// Who receives it.
    pub audience: Audience,
    /// What a stored item records.
    pub kind: ItemKind,
}

/// Whether the fan-out reaches every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FanoutStatus {
    /// Events reach every node.
    Ok,
    /// Events reach this node's sockets only; other nodes catch up from the
    /// database once the broker is back.
    Degraded(String),
}

/// Where a broker-backed fan-out's link to the other nodes stands, for
/// `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerLink {
    /// Whether this node can publish to the broker.
    pub publishing: bool,
    /// Whether this node hears the other nodes through the broker.
    pub subscribed: bool,
    /// Events waiting to be published.
    pub backlog: usize,
    /// The most events that may wait; more are dropped.
    pub backlog_capacity: usize,
}

/// Publishes room events to every subscribed connection, wherever it is,
/// and answers who is online across all nodes.
pub trait Fanout: Send + Sync + Debug + 'static {
    /// Publishes an event; never waits.
    fn publish(&self, event: RoomEvent);

    /// Applies a membership change to the connections of every node
    /// (subscribing a new member's sockets, or dropping a deleted room);
    /// never waits. It is stored already: a node that misses it finds the
    /// member's change in the room's sequence, or the room gone.
    fn membership(&self, notice: Notice);

    /// Closes every connection of `user`'s auth session `session`, on every
    /// node (1008, "session ended"); never waits. The session is already
    /// revoked in the database, so REST requests with its tokens fail
    /// whether or not this reaches every node.
    fn end_session(&self, user: UserId, session: SessionId);

    /// The names of the users online in a room on any node, sorted.
    fn online(&self, room: RoomId) -> BoxFuture<'_, Vec<String>>;

    /// Whether `user` has a connection to `room` on another node, so that a
    /// change on this node alone changes nothing others would notice.
    fn online_elsewhere<'a>(&'a self, room: RoomId, user: &'a str) -> BoxFuture<'a, bool>;

    /// Whether events currently reach every node.
    fn status(&self) -> FanoutStatus;

    /// The link to the other nodes, for a fan-out through a broker.
    fn broker(&self) -> Option<BrokerLink> {
        None
    }
}

/// Fan-out within one process: events go straight to the local hub.
#[derive(Debug, Clone)]
pub struct LocalFanout {
    hub: Hub,
}

impl LocalFanout {
    /// Delivers into `hub`.
    pub fn new(hub: Hub) -> LocalFanout {
        LocalFanout { hub }
    }
}

impl RoomEvent {
    /// Hands the event to the sockets of this node.
    pub fn deliver_to(self, hub: &Hub) -> usize {
        let item = match self.seq {
            Some(seq) => Outbound::RoomMessage {
                room: self.room,
                seq,
                frame: self.frame,
                kind: self.kind,
            },
            None => Outbound::Frame(self.frame),
        };
        hub.deliver(self.room, &item, self.audience)
    }
}

impl Fanout for LocalFanout {
    fn publish(&self, event: RoomEvent) {
        event.deliver_to(&self.hub);
    }

    fn membership(&self, notice: Notice) {
        self.hub.apply(&notice);
    }

    fn end_session(&self, user: UserId, session: SessionId) {
        self.hub.end_session(user, session);
    }

    fn online(&self, room: RoomId) -> BoxFuture<'_, Vec<String>> {
        let names = self.hub.online(room);
        Box::pin(async move { names })
    }

    fn online_elsewhere<'a>(&'a self, _: RoomId, _: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    fn status(&self) -> FanoutStatus {
        FanoutStatus::Ok
    }
}
