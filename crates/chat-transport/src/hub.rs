//! Who is connected, and to which rooms: the node-local registry that the
//! fan-out delivers into.
//!
//! The registry sits behind one `std::sync::Mutex` that is never held across
//! an `.await`. Each room keeps its subscribers as a shared, copy-on-write
//! list, so delivering a frame to a thousand sockets clones one `Arc` under
//! the lock and does the queueing outside it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytestring::ByteString;
use chat_domain::{RoomId, Seq, SessionId, UserId, Username};
use chat_protocol::ws::LeftReason;
use chat_storage::RoomKey;
use tokio::sync::Notify;

/// A serialized frame, shared by every socket it goes to.
pub type Frame = ByteString;

/// Identifies one WebSocket connection on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

/// What waits in a connection's outbound queue.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A frame to send as it is.
    Frame(Frame),
    /// A stored message, membership change or change to a message of a
    /// room, which the session delivers in seq order and exactly once.
    RoomMessage {
        /// The room.
        room: RoomId,
        /// Its position in the room.
        seq: Seq,
        /// The serialized `message`, `member`, `edited` or `deleted` frame.
        frame: Frame,
        /// What it records.
        kind: ItemKind,
    },
    /// Where a room's messages stand: the session reads any it has not
    /// delivered yet. Sent after the fan-out missed events for a while.
    Head {
        /// The room.
        room: RoomId,
        /// Its newest seq.
        seq: Seq,
    },
    /// The hub subscribed the connection to a room on its user's behalf
    /// (they were added to it, joined it elsewhere, or a direct
    /// conversation was opened): delivery starts after `from`.
    Subscribed {
        /// The room.
        room: Box<RoomKey>,
        /// The last seq before delivery starts.
        from: Seq,
    },
    /// The connection no longer receives the room (it was deleted).
    Removed {
        /// The room.
        room: RoomId,
        /// Why.
        reason: LeftReason,
    },
}

/// What a room's stored item records, carried beside its frame so that the
/// session need not parse the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A message; also what an unstored event (presence, typing) carries.
    Message,
    /// A membership change.
    Member(MemberItem),
    /// An edit or a deletion of an earlier message.
    Change,
}

impl ItemKind {
    /// Whether seed clients receive it: they know only `message` frames.
    pub fn seed_sees(self) -> bool {
        self == ItemKind::Message
    }
}

/// Whom a stored membership change concerns, carried beside its frame so
/// that the session need not parse the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberItem {
    /// The member.
    pub user: UserId,
    /// Set when the change removed them from the room.
    pub removal: Option<LeftReason>,
}

/// A membership change every node applies to its own connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `user` is now a member of `room`: their extended connections are
    /// subscribed, receiving what comes after `from`.
    Added {
        /// The user.
        user: UserId,
        /// The room.
        room: RoomKey,
        /// The last seq before their delivery starts.
        from: Seq,
    },
    /// The room was deleted: every connection stops receiving it.
    Deleted {
        /// The room.
        room: RoomId,
    },
}

/// Who receives an event in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Every subscribed connection.
    Everyone,
    /// Every subscribed connection not belonging to this user.
    EveryoneExcept(UserId),
    /// Connections that speak the extended protocol (they have sent a frame
    /// the seed did not have); seed clients never see frame types they do
    /// not know.
    Extended,
    /// Extended connections not belonging to this user.
    ExtendedExcept(UserId),
}

/// Why the server ends a connection on its own initiative, from outside
/// the connection's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Eviction {
    /// Its outbound queue overflowed: the client reads too slowly.
    TooSlow = 1,
    /// Its auth session was ended (signed out, or a refresh token reused),
    /// on this node or another.
    SessionEnded = 2,
}

impl Eviction {
    /// The reason given in the close frame (code 1008).
    pub fn reason(self) -> &'static str {
        match self {
            Eviction::TooSlow => "too slow: outbound queue overflowed",
            Eviction::SessionEnded => "session ended",
        }
    }

    fn from_u8(value: u8) -> Option<Eviction> {
        match value {
            1 => Some(Eviction::TooSlow),
            2 => Some(Eviction::SessionEnded),
            _ => None,
        }
    }
}

/// One WebSocket connection as the hub sees it.
#[derive(Debug)]
pub struct Connection {
    id: ConnId,
    user_id: UserId,
    username: Username,
    /// The auth session of the token the connection was opened with; `None`
    /// for a token of the original backend. Kept inline (16 bytes, no
    /// allocation): every connection has one.
    session: Option<SessionId>,
    outbox: Outbox,
    extended: AtomicBool,
    /// The first [`Eviction`] (as its `u8`), or 0 while there is none.
    evicted: AtomicU8,
    evict: Notify,
}

impl Connection {
    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The user it is authenticated as.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The user's name.
    pub fn username(&self) -> &Username {
        &self.username
    }

    /// The auth session it runs in.
    pub fn session(&self) -> Option<SessionId> {
        self.session
    }

    /// Marks the connection as speaking the extended protocol.
    pub fn mark_extended(&self) {
        self.extended.store(true, Ordering::Relaxed);
    }

    /// Whether it speaks the extended protocol.
    pub fn is_extended(&self) -> bool {
        self.extended.load(Ordering::Relaxed)
    }

    /// Queues a frame without waiting. A full queue means the client reads
    /// too slowly: it is told to go (`Eviction::TooSlow`) and the frame is
    /// dropped, so one slow reader never holds up anyone else.
    pub fn push(&self, item: Outbound) -> bool {
        if self.outbox.closed.load(Ordering::Acquire) {
            return false;
        }
        let mut items = self.outbox.items();
        if items.len() >= self.outbox.capacity {
            drop(items);
            crate::metrics::frames_dropped(crate::metrics::Dropped::SlowConsumer, 1);
            self.evict(Eviction::TooSlow);
            return false;
        }
        items.push_back(item);
        drop(items);
        self.outbox.ready.notify_one();
        true
    }

    /// Tells the connection's task to close it. The first reason given is
    /// the one the client sees.
    pub fn evict(&self, why: Eviction) {
        let first =
            self.evicted
                .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire);
        if first.is_ok() {
            crate::metrics::evicted(why);
        }
        self.evict.notify_one();
    }

    /// Resolves once the connection was evicted, with the reason. Only its
    /// own task waits here.
    pub async fn evicted(&self) -> Eviction {
        self.evict.notified().await;
        Eviction::from_u8(self.evicted.load(Ordering::Acquire)).unwrap_or(Eviction::TooSlow)
    }

    fn accepts(&self, audience: Audience) -> bool {
        match audience {
            Audience::Everyone => true,
            Audience::EveryoneExcept(user) => self.user_id != user,
            Audience::Extended => self.is_extended(),
            Audience::ExtendedExcept(user) => self.is_extended() && self.user_id != user,
        }
    }
}

/// A connection's outbound queue: bounded, and holding memory only while
/// it holds frames.
///
/// An idle connection is the common case, so the queue lives inside the
/// [`Connection`] and allocates nothing until something is queued; once
/// drained after a burst it lets its buffer go. (A Tokio channel would
/// allocate a block of 32 slots and its shared state up front, about 2.3 KiB
/// per connection, idle or not.)
#[derive(Debug)]
struct Outbox {
    items: Mutex<VecDeque<Outbound>>,
    /// Signalled on every push; the connection's task waits here.
    ready: Notify,
    capacity: usize,
    /// Set when the task stopped receiving: pushes are refused.
    closed: AtomicBool,
}

impl Outbox {
    /// Buffers up to this many slots are kept after draining.
    const KEEP: usize = 32;

    fn new(capacity: usize) -> Outbox {
        Outbox {
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            capacity: capacity.max(1),
            closed: AtomicBool::new(false),
        }
    }

    fn items(&self) -> MutexGuard<'_, VecDeque<Outbound>> {
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The receiving end of a connection's outbound queue, held by the
/// connection's task. Dropping it closes the queue.
#[derive(Debug)]
pub struct Outgoing {
    conn: Arc<Connection>,
}

impl Outgoing {
    /// The next queued item, waiting for one if the queue is empty.
    /// Cancel-safe: an item is taken only when it is returned.
    pub async fn recv(&mut self) -> Outbound {
        loop {
            if let Some(item) = self.try_recv() {
                return item;
            }
            // A push between the check above and this wait leaves a permit,
            // so the wait ends at once and the loop looks again.
            self.conn.outbox.ready.notified().await;
        }
    }

    /// The next queued item, if there is one.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        let mut items = self.conn.outbox.items();
        let item = items.pop_front();
        if items.is_empty() && items.capacity() > Outbox::KEEP {
            *items = VecDeque::new();
        }
        item
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        self.conn.outbox.closed.store(true, Ordering::Release);
        self.conn.outbox.items().clear();
    }
}

/// A change in who is online in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    /// The user's first connection subscribed.
    CameOnline,
    /// The user's last connection left.
    WentOffline,
    /// Nothing others would notice.
    Unchanged,
}

#[derive(Debug, Default)]
struct RoomEntry {
    subscribers: Arc<Vec<Arc<Connection>>>,
    online: HashMap<UserId, (Username, usize)>,
}

impl RoomEntry {
    fn add(&mut self, conn: &Arc<Connection>) -> PresenceChange {
        if self.subscribers.iter().any(|c| c.id == conn.id) {
            return PresenceChange::Unchanged;
        }
        // Copied only when a delivery holds the current list right now;
        // otherwise changed in place, so a room of N sockets is not copied
        // N times as they connect.
        Arc::make_mut(&mut self.subscribers).push(Arc::clone(conn));
        let count = &mut self
            .online
            .entry(conn.user_id)
            .or_insert_with(|| (conn.username.clone(), 0))
            .1;
        *count += 1;
        if *count == 1 {
            PresenceChange::CameOnline
        } else {
            PresenceChange::Unchanged
        }
    }

    fn remove(&mut self, conn: ConnId, user: UserId) -> PresenceChange {
        if !self.subscribers.iter().any(|c| c.id == conn) {
            return PresenceChange::Unchanged;
        }
        let list = Arc::make_mut(&mut self.subscribers);
        list.retain(|c| c.id != conn);
        if list.capacity() > 4 * list.len().max(8) {
            list.shrink_to_fit();
        }
        match self.online.get_mut(&user) {
            Some((_, count)) if *count > 1 => {
                *count -= 1;
                PresenceChange::Unchanged
            }
            Some(_) => {
                self.online.remove(&user);
                PresenceChange::WentOffline
            }
            None => PresenceChange::Unchanged,
        }
    }
}

#[derive(Debug, Default)]
struct Registry {
    rooms: HashMap<RoomId, RoomEntry>,
    connections: HashMap<ConnId, (Arc<Connection>, HashSet<RoomId>)>,
    by_user: HashMap<UserId, HashSet<ConnId>>,
}

/// The node-local registry of connections and room subscriptions.
#[derive(Debug, Clone, Default)]
pub struct Hub {
    registry: Arc<Mutex<Registry>>,
    next_id: Arc<AtomicU64>,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Hub {
        Hub::default()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the registry half
        // updated in a way that matters more than losing every socket, so
        // keep serving with whatever state is there.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new connection of `session` and returns it with the
    /// receiving end of its outbound queue.
    pub fn connect(
        &self,
        user_id: UserId,
        username: Username,
        session: Option<SessionId>,
        queue: usize,
    ) -> (Arc<Connection>, Outgoing) {
        let conn = Arc::new(Connection {
            id: ConnId(self.next_id.fetch_add(1, Ordering::Relaxed)),
            user_id,
            username,
            session,
            outbox: Outbox::new(queue),
            extended: AtomicBool::new(false),
            evicted: AtomicU8::new(0),
            evict: Notify::new(),
        });
        let mut registry = self.lock();
        registry
            .connections
            .insert(conn.id, (Arc::clone(&conn), HashSet::new()));
        registry.by_user.entry(user_id).or_default().insert(conn.id);
        let outgoing = Outgoing {
            conn: Arc::clone(&conn),
        };
        (conn, outgoing)
    }

    /// Removes a connection from every room; returns the rooms in which its
    /// user is now offline.
    pub fn disconnect(&self, conn: &Connection) -> Vec<RoomId> {
        let mut registry = self.lock();
        let Some((_, rooms)) = registry.connections.remove(&conn.id) else {
            return Vec::new();
        };
        if let Some(ids) = registry.by_user.get_mut(&conn.user_id) {
            ids.remove(&conn.id);
            if ids.is_empty() {
                registry.by_user.remove(&conn.user_id);
            }
        }
        let mut offline = Vec::new();
        for room in rooms {
            if let Some(entry) = registry.rooms.get_mut(&room) {
                if entry.remove(conn.id, conn.user_id) == PresenceChange::WentOffline {
                    offline.push(room);
                }
                if entry.subscribers.is_empty() {
                    registry.rooms.remove(&room);
                }
            }
        }
        offline
    }

    /// Subscribes a connection to a room's events.
    pub fn subscribe(&self, room: RoomId, conn: &Arc<Connection>) -> PresenceChange {
        let mut registry = self.lock();
        match registry.connections.get_mut(&conn.id) {
            Some((_, rooms)) => {
                rooms.insert(room);
            }
            // A connection that already went away cannot subscribe.
            None => return PresenceChange::Unchanged,
        }
        registry.rooms.entry(room).or_default().add(conn)
    }

    /// Unsubscribes one connection from a room (it applied its removal).
    pub fn unsubscribe(&self, room: RoomId, conn: &Connection) -> PresenceChange {
        let mut registry = self.lock();
        if let Some((_, rooms)) = registry.connections.get_mut(&conn.id) {
            rooms.remove(&room);
        }
        let change = registry
            .rooms
            .get_mut(&room)
            .map_or(PresenceChange::Unchanged, |entry| {
                entry.remove(conn.id, conn.user_id)
            });
        if registry
            .rooms
            .get(&room)
            .is_some_and(|entry| entry.subscribers.is_empty())
        {
            registry.rooms.remove(&room);
        }
        change
    }

    /// Applies a membership change to this node's connections; returns the
    /// connections it subscribed.
    pub fn apply(&self, notice: &Notice) -> Vec<Arc<Connection>> {
        match notice {
            Notice::Added { user, room, from } => {
                let mut added = Vec::new();
                for conn in self.connections_of(*user) {
                    if !conn.is_extended() || self.is_subscribed(room.id, conn.id) {
                        continue;
                    }
                    // The starting point goes first, so the session delivers
                    // everything after it and nothing before.
                    conn.push(Outbound::Subscribed {
                        room: Box::new(room.clone()),
                        from: *from,
                    });
                    self.subscribe(room.id, &conn);
                    added.push(conn);
                }
                added
            }
            Notice::Deleted { room } => {
                let mut registry = self.lock();
                let Some(entry) = registry.rooms.remove(room) else {
                    return Vec::new();
                };
                for conn in entry.subscribers.iter() {
                    if let Some((_, rooms)) = registry.connections.get_mut(&conn.id) {
                        rooms.remove(room);
                    }
                    conn.push(Outbound::Removed {
                        room: *room,
                        reason: LeftReason::RoomDeleted,
                    });
                }
                Vec::new()
            }
        }
    }

    /// Whether a connection receives a room's events.
    pub fn is_subscribed(&self, room: RoomId, conn: ConnId) -> bool {
        self.lock()
            .connections
            .get(&conn)
            .is_some_and(|(_, rooms)| rooms.contains(&room))
    }

    /// The connections of a user on this node.
    pub fn connections_of(&self, user: UserId) -> Vec<Arc<Connection>> {
        let registry = self.lock();
        registry
            .by_user
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| registry.connections.get(id).map(|(c, _)| Arc::clone(c)))
            .collect()
    }

    /// Closes every connection of `session` on this node (1008, "session
    /// ended"); returns how many there were.
    ///
    /// A session belongs to one user, so its connections are found through
    /// the per-user index, which holds at most
    /// `max_connections_per_user` entries, and each connection's own
    /// session id. That is the session-to-sockets registry: it needs no map
    /// of its own, so a connection costs no extra allocation for it, and
    /// its entry goes when the connection disconnects.
    pub fn end_session(&self, user: UserId, session: SessionId) -> usize {
        let ended: Vec<Arc<Connection>> = self
            .connections_of(user)
            .into_iter()
            .filter(|conn| conn.session == Some(session))
            .collect();
        for conn in &ended {
            conn.evict(Eviction::SessionEnded);
        }
        ended.len()
    }

    /// The auth sessions of this node's connections, each once, with their
    /// users.
    pub fn sessions(&self) -> Vec<(UserId, SessionId)> {
        let mut sessions: Vec<(UserId, SessionId)> = self
            .lock()
            .connections
            .values()
            .filter_map(|(conn, _)| conn.session.map(|session| (conn.user_id, session)))
            .collect();
        sessions.sort_unstable();
        sessions.dedup();
        sessions
    }

    /// Every connection on this node.
    pub fn all_connections(&self) -> Vec<Arc<Connection>> {
        self.lock()
            .connections
            .values()
            .map(|(c, _)| Arc::clone(c))
            .collect()
    }

    /// How many connections there are on this node, and how many users
    /// they belong to.
    pub fn counts(&self) -> (usize, usize) {
        let registry = self.lock();
        (registry.connections.len(), registry.by_user.len())
    }

    /// The rooms with at least one subscriber on this node.
    pub fn rooms(&self) -> Vec<RoomId> {
        self.lock().rooms.keys().copied().collect()
    }

    /// Names of the users online in a room, sorted.
    pub fn online(&self, room: RoomId) -> Vec<String> {
        let registry = self.lock();
        let mut names: Vec<String> = registry
            .rooms
            .get(&room)
            .map(|entry| {
                entry
                    .online
                    .values()
                    .map(|(name, _)| name.as_str().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort_unstable_by_key(|name| name.to_ascii_lowercase());
        names
    }

    /// Queues an event for every local subscriber of `room` in `audience`.
    /// Returns how many connections it was queued for.
    pub fn deliver(&self, room: RoomId, item: &Outbound, audience: Audience) -> usize {
        let subscribers = match self.lock().rooms.get(&room) {
            Some(entry) => Arc::clone(&entry.subscribers),
            None => return 0,
        };
        subscribers
            .iter()
            .filter(|conn| conn.accepts(audience))
            .filter(|conn| conn.push(item.clone()))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> Username {
        Username::parse(n).expect("valid")
    }

    fn frame(text: &'static str) -> Outbound {
        Outbound::Frame(ByteString::from_static(text))
    }

    #[test]
    fn a_user_with_two_connections_is_online_once() {
        let hub = Hub::new();
        let room = RoomId(1);
        let (first, _rx1) = hub.connect(UserId(1), name("alice"), None, 8);
        let (second, _rx2) = hub.connect(UserId(1), name("alice"), None, 8);
        assert_eq!(hub.subscribe(room, &first), PresenceChange::CameOnline);
        assert_eq!(hub.subscribe(room, &second), PresenceChange::Unchanged);
        assert_eq!(hub.online(room), vec!["alice".to_owned()]);
        assert!(hub.disconnect(&first).is_empty());
        assert_eq!(hub.disconnect(&second), vec![room]);
        assert!(hub.online(room).is_empty());
    }

    #[test]
    fn delivery_respects_the_audience() {
        let hub = Hub::new();
        let room = RoomId(1);
        let (alice, mut alice_rx) = hub.connect(UserId(1), name("alice"), None, 8);
        let (bob, mut bob_rx) = hub.connect(UserId(2), name("bob"), None, 8);
        hub.subscribe(room, &alice);
        hub.subscribe(room, &bob);
        bob.mark_extended();
        assert_eq!(hub.deliver(room, &frame("a"), Audience::Extended), 1);
        assert_eq!(
            hub.deliver(room, &frame("b"), Audience::EveryoneExcept(UserId(2))),
            1
        );
        assert!(matches!(bob_rx.try_recv(), Some(Outbound::Frame(f)) if f == "a"));
        assert!(matches!(alice_rx.try_recv(), Some(Outbound::Frame(f)) if f == "b"));
        assert!(alice_rx.try_recv().is_none());
    }

    #[test]
    fn a_full_queue_drops_the_frame_and_flags_the_connection() {
        let hub = Hub::new();
        let room = RoomId(1);
        let (slow, _rx) = hub.connect(UserId(1), name("slow"), None, 1);
        hub.subscribe(room, &slow);
        assert_eq!(hub.deliver(room, &frame("1"), Audience::Everyone), 1);
        assert_eq!(hub.deliver(room, &frame("2"), Audience::Everyone), 0);
        // The overflow left a permit behind, so this resolves at once.
        let flagged = futures_util::FutureExt::now_or_never(slow.evicted());
        assert_eq!(flagged, Some(Eviction::TooSlow));
    }

    #[test]
    fn a_user_goes_offline_in_a_room_when_their_last_connection_leaves_it() {
        let hub = Hub::new();
        let room = RoomId(3);
        let (one, _a) = hub.connect(UserId(1), name("alice"), None, 8);
        let (two, _b) = hub.connect(UserId(1), name("alice"), None, 8);
        hub.subscribe(room, &one);
        hub.subscribe(room, &two);
        assert_eq!(hub.unsubscribe(room, &one), PresenceChange::Unchanged);
        assert!(!hub.is_subscribed(room, one.id()));
        assert_eq!(hub.deliver(room, &frame("x"), Audience::Everyone), 1);
        assert_eq!(hub.unsubscribe(room, &two), PresenceChange::WentOffline);
        assert_eq!(hub.deliver(room, &frame("y"), Audience::Everyone), 0);
    }

    #[test]
    fn an_added_user_s_extended_connections_are_subscribed_and_a_deleted_room_dropped() {
        let hub = Hub::new();
        let key = RoomKey {
            id: RoomId(4),
            name: chat_domain::RoomName::parse("lobby").expect("valid"),
            kind: chat_domain::RoomKind::Public,
            encrypted: false,
        };
        let (seed, mut seed_rx) = hub.connect(UserId(1), name("alice"), None, 8);
        let (extended, mut extended_rx) = hub.connect(UserId(1), name("alice"), None, 8);
        extended.mark_extended();
        let added = hub.apply(&Notice::Added {
            user: UserId(1),
            room: key.clone(),
            from: Seq::ZERO,
        });
        assert_eq!(added.len(), 1, "seed clients stay in general only");
        assert!(hub.is_subscribed(key.id, extended.id()) && !hub.is_subscribed(key.id, seed.id()));
        assert!(matches!(
            extended_rx.try_recv(),
            Some(Outbound::Subscribed { .. })
        ));
        assert!(seed_rx.try_recv().is_none());
        hub.apply(&Notice::Deleted { room: key.id });
        assert!(!hub.is_subscribed(key.id, extended.id()));
        assert!(matches!(
            extended_rx.try_recv(),
            Some(Outbound::Removed {
                reason: LeftReason::RoomDeleted,
                ..
            })
        ));
    }

    fn session(bits: u128) -> Option<SessionId> {
        SessionId::from_bits(bits)
    }

    #[test]
    fn ending_a_session_evicts_its_connections_only() {
        let hub = Hub::new();
        let (first, _a) = hub.connect(UserId(1), name("alice"), session(1), 8);
        let (second, _b) = hub.connect(UserId(1), name("alice"), session(1), 8);
        let (other, _c) = hub.connect(UserId(1), name("alice"), session(2), 8);
        let (bob, _d) = hub.connect(UserId(2), name("bob"), session(1), 8);
        let ended = SessionId::from_bits(1).expect("not zero");
        assert_eq!(hub.end_session(UserId(1), ended), 2);
        for conn in [&first, &second] {
            let evicted = futures_util::FutureExt::now_or_never(conn.evicted());
            assert_eq!(evicted, Some(Eviction::SessionEnded));
        }
        for conn in [&other, &bob] {
            assert_eq!(futures_util::FutureExt::now_or_never(conn.evicted()), None);
        }
        let other_session = SessionId::from_bits(2).expect("not zero");
        assert_eq!(
            hub.sessions(),
            [
                (UserId(1), ended),
                (UserId(1), other_session),
                (UserId(2), ended)
            ]
        );
        // A connection that went away is not found any more.
        hub.disconnect(&first);
        hub.disconnect(&second);
        assert_eq!(hub.end_session(UserId(1), ended), 0);
        hub.disconnect(&bob);
        assert_eq!(hub.sessions(), [(UserId(1), other_session)]);
    }

    #[test]
    fn the_first_eviction_reason_is_the_one_given() {
        let hub = Hub::new();
        let (conn, _rx) = hub.connect(UserId(1), name("alice"), session(1), 1);
        conn.evict(Eviction::SessionEnded);
        conn.evict(Eviction::TooSlow);
        let evicted = futures_util::FutureExt::now_or_never(conn.evicted());
        assert_eq!(evicted, Some(Eviction::SessionEnded));
    }

    #[test]
    fn a_drained_queue_gives_its_buffer_back() {
        let hub = Hub::new();
        let (conn, mut rx) = hub.connect(UserId(1), name("alice"), None, 4096);
        assert_eq!(
            conn.outbox.items().capacity(),
            0,
            "an idle queue holds no buffer"
        );
        for _ in 0..1000 {
            assert!(conn.push(frame("burst")));
        }
        assert!(conn.outbox.items().capacity() >= 1000);
        let mut received = 0;
        while rx.try_recv().is_some() {
            received += 1;
        }
        assert_eq!(received, 1000);
        assert!(conn.outbox.items().capacity() <= Outbox::KEEP);
    }

    #[test]
    fn nothing_is_queued_once_the_receiver_is_gone() {
        let hub = Hub::new();
        let (conn, rx) = hub.connect(UserId(1), name("alice"), None, 8);
        assert!(conn.push(frame("kept")));
        drop(rx);
        assert!(!conn.push(frame("refused")));
        assert!(conn.outbox.items().is_empty());
        // Refusing a frame for a closed queue is not an eviction.
        assert_eq!(futures_util::FutureExt::now_or_never(conn.evicted()), None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_push_from_another_task() {
        let hub = Hub::new();
        let (conn, mut rx) = hub.connect(UserId(1), name("alice"), None, 8);
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            (first, second)
        });
        tokio::task::yield_now().await;
        assert!(conn.push(frame("one")));
        assert!(conn.push(frame("two")));
        let (first, second) = waiting.await.expect("receiver task");
        assert!(matches!(first, Outbound::Frame(f) if f == "one"));
        assert!(matches!(second, Outbound::Frame(f) if f == "two"));
    }

    #[test]
    fn a_delivery_in_progress_keeps_the_list_it_started_with() {
        let hub = Hub::new();
        let room = RoomId(1);
        let (alice, _a) = hub.connect(UserId(1), name("alice"), None, 8);
        let (bob, _b) = hub.connect(UserId(2), name("bob"), None, 8);
        hub.subscribe(room, &alice);
        // What a delivery holds while it queues, outside the lock.
        let snapshot = Arc::clone(&hub.lock().rooms[&room].subscribers);
        hub.subscribe(room, &bob);
        hub.unsubscribe(room, &alice);
        let ids = |list: &[Arc<Connection>]| list.iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(ids(&snapshot), [alice.id]);
        assert_eq!(ids(&hub.lock().rooms[&room].subscribers), [bob.id]);
    }
}
