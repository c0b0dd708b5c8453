//! How events reach every connection that should see them.
//!
//! Sessions and the writer never talk to sockets directly: they publish
//! [`RoomEvent`]s through a [`Fanout`]. The in-process implementation hands
//! them straight to this node's [`Hub`]; a broker-backed one can carry them
//! to every node without the sessions changing.

use std::fmt::Debug;

use chat_domain::{RoomId, Seq};

use crate::hub::{Audience, Frame, Hub, Outbound};

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
}

/// Publishes room events to every subscribed connection, wherever it is.
pub trait Fanout: Send + Sync + Debug + 'static {
    /// Publishes an event; never waits.
    fn publish(&self, event: RoomEvent);
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

impl Fanout for LocalFanout {
    fn publish(&self, event: RoomEvent) {
        let item = match event.seq {
            Some(seq) => Outbound::RoomMessage {
                room: event.room,
                seq,
                frame: event.frame,
            },
            None => Outbound::Frame(event.frame),
        };
        self.hub.deliver(event.room, &item, event.audience);
    }
}
