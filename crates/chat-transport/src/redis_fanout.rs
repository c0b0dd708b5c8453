//! Fan-out across several server nodes through Redis pub/sub.
//!
//! Every node delivers what its own writer committed to its own sockets at
//! once, and publishes it on one Redis channel; every other node delivers
//! what it hears there to its sockets. Redis carries the frame as it was
//! serialized, so no node serializes it again.
//!
//! Redis pub/sub may lose messages (a restart, a dropped connection) and two
//! nodes' messages for one room may arrive out of order. Neither breaks
//! delivery, because sessions deliver stored messages by seq: a message that
//! arrives ahead of its predecessors makes the session read the missing ones
//! from the database first, and one that arrives late is dropped as a
//! duplicate. After the subscription is re-established, each room with local
//! subscribers is told its current head, so a room that went quiet meanwhile
//! catches up too.
//!
//! What waits to be published is bounded ([`PublishBacklog`]): while Redis
//! is unreachable a node drops what it cannot publish, counts it, and
//! reconnects with backoff; once it is back, it first tells every other node
//! to catch up from the database (a `resync` event, which they treat as a
//! re-established subscription), so a long outage costs neither memory nor
//! a burst of stale frames.
//!
//! The end of an auth session (a sign-out, a reused refresh token) travels
//! on the same channel, so every node closes that session's sockets. A node
//! whose subscription broke checks the sessions of its sockets in the
//! database once it is back, so a notice lost that way is made up for. One
//! lost otherwise leaves a socket on another node open until its token
//! expires (`CHAT_TOKEN_TTL_MINUTES` at most), while every REST request and
//! every `auth` frame with the session's tokens is refused, since those
//! check the database.
//!
//! Presence is kept in Redis as well: each node writes who is online on it,
//! per room, under a key that expires unless the node refreshes it, so a
//! node that dies stops counting within [`NODE_TTL`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytestring::ByteString;
use chat_domain::{RoomId, RoomKind, RoomName, Seq, SessionId, UserId};
use chat_protocol::ws::LeftReason;
use chat_storage::{RoomKey, Store};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::fanout::{BrokerLink, Fanout, FanoutStatus, RoomEvent};
use crate::hub::{Audience, Hub, ItemKind, MemberItem, Notice, Outbound};
use crate::publish_backlog::PublishBacklog;

/// How often a node refreshes its presence.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a node counts as alive after its last heartbeat.
pub const NODE_TTL: Duration = Duration::from_secs(15);
/// Longest wait for Redis on any one call.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// The first wait before connecting again after a failure; it doubles up
/// to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two attempts to reach Redis.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Most events published in one round trip.
const PUBLISH_BATCH: usize = 256;
/// How often the subscriber sends itself a probe through Redis.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long the subscription may stay silent, probes included, before it
/// is taken for dead and opened again. A connection whose network path was
/// cut without a reset stays open, silently, until TCP gives up, which can
/// take many minutes; meanwhile no other node's event would arrive.
const PROBE_TIMEOUT: Duration = Duration::from_secs(6);

/// Why the broker could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("Redis at REDIS_URL cannot be used")]
pub struct BrokerError(#[source] redis::RedisError);

/// A [`Fanout`] over Redis pub/sub, for several nodes on one database.
#[derive(Debug, Clone)]
pub struct RedisFanout {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Prefix of every key and channel, so deployments can share a Redis.
    namespace: String,
    node: String,
    hub: Hub,
    client: redis::Client,
    /// What waits for the publisher.
    backlog: PublishBacklog,
    subscribed: AtomicBool,
    /// The connection presence is read and written on.
    presence: SharedConnection,
    presence_dirty: Notify,
}

impl Inner {
    /// The channel every node publishes on and listens to.
    fn channel(&self) -> String {
        channel(&self.namespace)
    }

    /// The sorted set of nodes, scored by their last heartbeat (Unix
    /// seconds).
    fn nodes(&self) -> String {
        format!("{}:nodes", self.namespace)
    }

    /// Who is online on `node`, per room.
    fn presence_key(&self, node: &str) -> String {
        format!("{}:presence:{node}", self.namespace)
    }

    /// The channel only this node listens to, for its own probes.
    fn probe_channel(&self) -> String {
        format!("{}:probe:{}", self.namespace, self.node)
    }
}

/// Publishes a probe on this node's probe channel, in the background: the
/// subscriber hears it if Redis and the path both ways still work.
fn send_probe(inner: &Arc<Inner>) {
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        let channel = inner.probe_channel();
        let _ = tokio::time::timeout(
            REDIS_TIMEOUT,
            inner.presence.with(&inner.client, async |conn| {
                conn.publish::<_, _, ()>(&channel, "").await
            }),
        )
        .await;
    });
}

/// The channel every node of `namespace` publishes on and listens to.
fn channel(namespace: &str) -> String {
    format!("{namespace}:events")
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl RedisFanout {
    /// Connects to Redis at `url` and starts the publishing, subscribing
    /// and presence tasks on the current Tokio runtime. They stop when
    /// `stop` is cancelled. A Redis that is down is not an error: the node
    /// serves its own sockets and keeps trying. At most `backlog` events
    /// wait to be published; see `PublishBacklog` (`publish_backlog.rs`).
    pub fn start(
        url: &str,
        namespace: &str,
        backlog: usize,
        hub: Hub,
        store: Store,
        stop: CancellationToken,
    ) -> Result<RedisFanout, BrokerError> {
        let client = redis::Client::open(url).map_err(BrokerError)?;
        let node = format!("{:016x}", rand_node_id());
        let inner = Arc::new(Inner {
            namespace: namespace.to_owned(),
            node,
            hub,
            client,
            backlog: PublishBacklog::new(backlog),
            subscribed: AtomicBool::new(false),
            presence: SharedConnection::default(),
            presence_dirty: Notify::new(),
        });
        tokio::spawn(publish_loop(Arc::clone(&inner), stop.clone()));
        tokio::spawn(subscribe_loop(Arc::clone(&inner), store, stop.clone()));
        tokio::spawn(presence_loop(Arc::clone(&inner), stop));
        tracing::info!(node = %inner.node, "fan-out through Redis");
        Ok(RedisFanout { inner })
    }

    /// This node's id in Redis.
    pub fn node_id(&self) -> &str {
        &self.inner.node
    }
}

fn rand_node_id() -> u64 {
    // Process id and start time are unique enough among the nodes of one
    // deployment, and need no random number generator.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (u64::from(std::process::id()) << 40) ^ (nanos as u64)
}

impl Fanout for RedisFanout {
    fn publish(&self, event: RoomEvent) {
        let payload = encode(&self.inner.node, &event);
        event.deliver_to(&self.inner.hub);
        // Dropped (and counted) when it cannot be published soon: the
        // other nodes then catch up from the database.
        self.inner.backlog.push(payload);
    }

    fn membership(&self, notice: Notice) {
        let payload = encode_notice(&self.inner.node, &notice);
        self.inner.hub.apply(&notice);
        self.inner.backlog.push(payload);
    }

    fn end_session(&self, user: UserId, session: SessionId) {
        self.inner.hub.end_session(user, session);
        self.inner
            .backlog
            .push(encode_session_end(&self.inner.node, user, session));
    }

    fn online(&self, room: RoomId) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            let mut names: BTreeSet<String> = self.inner.hub.online(room).into_iter().collect();
            match remote_online(&self.inner, room).await {
                Ok(remote) => names.extend(remote),
                Err(error) => tracing::debug!(%error, "presence from other nodes unavailable"),
            }
            let mut names: Vec<String> = names.into_iter().collect();
            names.sort_unstable_by_key(|name| name.to_ascii_lowercase());
            names.dedup();
            names
        })
    }

    fn online_elsewhere<'a>(&'a self, room: RoomId, user: &'a str) -> BoxFuture<'a, bool> {
        // Presence just changed here: let the other nodes know soon.
        self.inner.presence_dirty.notify_one();
        Box::pin(async move {
            match remote_online(&self.inner, room).await {
                Ok(remote) => remote.iter().any(|name| name.eq_ignore_ascii_case(user)),
                Err(_) => false,
            }
        })
    }

    fn status(&self) -> FanoutStatus {
        let subscribed = self.inner.subscribed.load(Ordering::Relaxed);
        let publishing = self.inner.backlog.is_linked();
        if subscribed && publishing {
            FanoutStatus::Ok
        } else {
            FanoutStatus::Degraded(
                "Redis is unreachable; serving this node's sockets only".to_owned(),
            )
        }
    }

    fn broker(&self) -> Option<BrokerLink> {
        Some(BrokerLink {
            publishing: self.inner.backlog.is_linked(),
            subscribed: self.inner.subscribed.load(Ordering::Relaxed),
            backlog: self.inner.backlog.len(),
            backlog_capacity: self.inner.backlog.capacity(),
        })
    }
}

/// `node \t room \t seq|- \t audience \t kind \n frame`, where `kind`
/// is `-` for a message, `c` for a change to a message, or `m<user id>`
/// for a membership change, with `:<reason>` when it removed them.
fn encode(node: &str, event: &RoomEvent) -> Vec<u8> {
    let seq = event
        .seq
        .map_or_else(|| "-".to_owned(), |s| s.get().to_string());
    let audience = match event.audience {
        Audience::Everyone => "e".to_owned(),
        Audience::EveryoneExcept(user) => format!("e{}", user.get()),
        Audience::Extended => "x".to_owned(),
        Audience::ExtendedExcept(user) => format!("x{}", user.get()),
    };
    let member = match event.kind {
        ItemKind::Message => "-".to_owned(),
        ItemKind::Change => "c".to_owned(),
        ItemKind::Member(MemberItem {
            user,
            removal: None,
        }) => format!("m{}", user.get()),
        ItemKind::Member(MemberItem {
            user,
            removal: Some(reason),
        }) => format!("m{}:{}", user.get(), reason.as_str()),
    };
    let mut payload = format!(
        "{node}\t{}\t{seq}\t{audience}\t{member}\n",
        event.room.get()
    )
    .into_bytes();
    payload.extend_from_slice(event.frame.as_bytes());
    payload
}

/// `node \t session \t user \t sid \n`: a room id is a number, so the word
/// `session` in its place cannot be mistaken for one.
fn encode_session_end(node: &str, user: UserId, session: SessionId) -> Vec<u8> {
    format!("{node}\t{SESSION_ENDED}\t{}\t{session}\n", user.get()).into_bytes()
}

/// The second field of a session's end.
const SESSION_ENDED: &str = "session";

/// The second field of a membership notice.
const MEMBERSHIP: &str = "membership";

/// The second field of a node's request that every other node catch up
/// from the database, after it could not publish everything.
const RESYNC: &str = "resync";

/// `node \t resync \n`.
fn encode_resync(node: &str) -> Vec<u8> {
    format!("{node}\t{RESYNC}\n").into_bytes()
}

/// `node \t membership \t added \t user \t room \t from \t kind \t name \n`
/// (with `\t e2e` before the line feed for an end-to-end encrypted room, so
/// a plaintext room's notice reads as before to any node) or
/// `node \t membership \t deleted \t room \n`.
fn encode_notice(node: &str, notice: &Notice) -> Vec<u8> {
    match notice {
        Notice::Added { user, room, from } => format!(
            "{node}\t{MEMBERSHIP}\tadded\t{}\t{}\t{}\t{}\t{}{}\n",
            user.get(),
            room.id.get(),
            from.get(),
            room.kind.as_str(),
            room.name,
            if room.encrypted { "\te2e" } else { "" }
        ),
        Notice::Deleted { room } => format!("{node}\t{MEMBERSHIP}\tdeleted\t{}\n", room.get()),
    }
    .into_bytes()
}

fn decode_notice<'a>(mut fields: impl Iterator<Item = &'a str>) -> Option<Notice> {
    let notice = match fields.next()? {
        "added" => {
            let user = UserId(fields.next()?.parse().ok()?);
            let id = RoomId(fields.next()?.parse().ok()?);
            let from = Seq::new(fields.next()?.parse().ok()?).ok()?;
            let kind = RoomKind::from_str_opt(fields.next()?)?;
            let name = RoomName::parse(fields.next()?).ok()?;
            let encrypted = match fields.next() {
                None => false,
                Some("e2e") => true,
                Some(_) => return None,
            };
            Notice::Added {
                user,
                room: RoomKey {
                    id,
                    name,
                    kind,
                    encrypted,
                },
                from,
            }
        }
        "deleted" => Notice::Deleted {
            room: RoomId(fields.next()?.parse().ok()?),
        },
        _ => return None,
    };
    fields.next().is_none().then_some(notice)
}

/// What one payload on the channel carries.
#[derive(Debug)]
enum Event {
    /// Something for a room's subscribers.
    Room(RoomEvent),
    /// An auth session ended: close its sockets.
    SessionEnded { user: UserId, session: SessionId },
    /// A membership change to apply to this node's sockets.
    Membership(Notice),
    /// The sender dropped events it could not publish: read from the
    /// database whatever they carried.
    Resync,
}

/// The sending node and the event, or `None` for a payload that is not ours.
fn decode(payload: &[u8]) -> Option<(String, Event)> {
    let newline = payload.iter().position(|b| *b == b'\n')?;
    let header = std::str::from_utf8(&payload[..newline]).ok()?;
    let frame = std::str::from_utf8(&payload[newline + 1..]).ok()?;
    let mut fields = header.split('\t');
    let node = fields.next()?.to_owned();
    let room = fields.next()?;
    if room == SESSION_ENDED {
        let user = UserId(fields.next()?.parse().ok()?);
        let session = SessionId::parse(fields.next()?).ok()?;
        if fields.next().is_some() || !frame.is_empty() {
            return None;
        }
        return Some((node, Event::SessionEnded { user, session }));
    }
    if room == MEMBERSHIP {
        if !frame.is_empty() {
            return None;
        }
        return Some((node, Event::Membership(decode_notice(fields)?)));
    }
    if room == RESYNC {
        if fields.next().is_some() || !frame.is_empty() {
            return None;
        }
        return Some((node, Event::Resync));
    }
    let room = RoomId(room.parse().ok()?);
    let seq = match fields.next()? {
        "-" => None,
        value => Some(Seq::new(value.parse().ok()?).ok()?),
    };
    let audience = fields.next()?;
    let except = |rest: &str| -> Option<Option<UserId>> {
        if rest.is_empty() {
            Some(None)
        } else {
            rest.parse().ok().map(|id| Some(UserId(id)))
        }
    };
    let audience = match audience.split_at_checked(1)? {
        ("e", rest) => except(rest)?.map_or(Audience::Everyone, Audience::EveryoneExcept),
        ("x", rest) => except(rest)?.map_or(Audience::Extended, Audience::ExtendedExcept),
        _ => return None,
    };
    // A node of the previous release sends no member field.
    let kind = match fields.next() {
        None | Some("-") => ItemKind::Message,
        Some("c") => ItemKind::Change,
        Some(value) => {
            let value = value.strip_prefix('m')?;
            let (user, removal) = match value.split_once(':') {
                Some((user, reason)) => (user, Some(LeftReason::from_str_opt(reason)?)),
                None => (value, None),
            };
            ItemKind::Member(MemberItem {
                user: UserId(user.parse().ok()?),
                removal,
            })
        }
    };
    Some((
        node,
        Event::Room(RoomEvent {
            room,
            seq,
            frame: ByteString::from(frame.to_owned()),
            audience,
            kind,
        }),
    ))
}

/// Events encoded for the channel by a process that is not a node (the
/// operator's command line), to be sent in one go.
#[derive(Debug)]
pub(crate) struct Payloads {
    /// Who sends them: not any node's id, so every node acts on them.
    node: String,
    payloads: Vec<Vec<u8>>,
}

impl Default for Payloads {
    fn default() -> Payloads {
        Payloads {
            node: format!("operator-{:016x}", rand_node_id()),
            payloads: Vec::new(),
        }
    }
}

impl Payloads {
    pub(crate) fn len(&self) -> usize {
        self.payloads.len()
    }

    pub(crate) fn room(&mut self, event: &RoomEvent) {
        self.payloads.push(encode(&self.node, event));
    }

    pub(crate) fn membership(&mut self, notice: &Notice) {
        self.payloads.push(encode_notice(&self.node, notice));
    }

    pub(crate) fn session_ended(&mut self, user: UserId, session: SessionId) {
        self.payloads
            .push(encode_session_end(&self.node, user, session));
    }

    /// Publishes every payload, in order, on `namespace`'s channel.
    pub(crate) async fn send(self, url: &str, namespace: &str) -> Result<usize, BrokerError> {
        if self.payloads.is_empty() {
            return Ok(0);
        }
        let client = redis::Client::open(url).map_err(BrokerError)?;
        let channel = channel(namespace);
        let mut conn =
            tokio::time::timeout(REDIS_TIMEOUT, client.get_multiplexed_async_connection())
                .await
                .map_err(|_| {
                    BrokerError(redis::RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::TimedOut,
                    )))
                })?
                .map_err(BrokerError)?;
        let count = self.payloads.len();
        for payload in self.payloads {
            conn.publish::<_, _, i64>(&channel, payload)
                .await
                .map_err(BrokerError)?;
        }
        Ok(count)
    }
}

/// Opens a connection to Redis, within [`REDIS_TIMEOUT`].
async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Waits `backoff` (or until `stop`), and returns the next wait. `false`
/// when stopped.
async fn back_off(backoff: &mut Duration, stop: &CancellationToken) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(RETRY_MAX);
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = stop.cancelled() => false,
    }
}

/// Publishes what waits in the backlog, a batch per round trip, in order.
/// Without a connection it tries again with backoff, while the backlog
/// drops what comes; once connected again it first asks the other nodes to
/// catch up if anything was dropped.
async fn publish_loop(inner: Arc<Inner>, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut backoff = RETRY_FIRST;
    let mut warned = false;
    loop {
        let connected = tokio::select! {
            connected = connect(&inner.client) => connected,
            () = stop.cancelled() => return,
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(error) => {
                if !warned {
                    warned = true;
                    tracing::warn!(%error, "cannot publish to Redis; other nodes will catch up from the database");
                }
                if !back_off(&mut backoff, &stop).await {
                    return;
                }
                continue;
            }
        };
        if inner.backlog.link_up() {
            let resync: redis::RedisResult<i64> = conn
                .publish(inner.channel(), encode_resync(&inner.node))
                .await;
            if let Err(error) = resync {
                inner.backlog.link_down(0);
                tracing::debug!(%error, "could not ask the other nodes to catch up");
                if !back_off(&mut backoff, &stop).await {
                    return;
                }
                continue;
            }
            inner.backlog.caught_up();
        }
        if std::mem::take(&mut warned) {
            tracing::info!("publishing to Redis again");
        }
        backoff = RETRY_FIRST;
        loop {
            tokio::select! {
                () = inner.backlog.take(PUBLISH_BATCH, &mut batch) => {}
                () = stop.cancelled() => return,
            }
            let count = batch.len();
            let mut pipe = redis::pipe();
            for payload in batch.drain(..) {
                pipe.publish(inner.channel(), payload).ignore();
            }
            if let Err(error) = pipe.query_async::<()>(&mut conn).await {
                inner.backlog.link_down(count);
                warned = true;
                tracing::warn!(%error, "lost the connection Redis publishes on; other nodes will catch up from the database");
                break;
            }
        }
    }
}

async fn subscribe_loop(inner: Arc<Inner>, store: Store, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscription = async {
            let mut pubsub = tokio::time::timeout(REDIS_TIMEOUT, inner.client.get_async_pubsub())
                .await
                .map_err(|_| {
                    redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
                })??;
            pubsub.subscribe(inner.channel()).await?;
            pubsub.subscribe(inner.probe_channel()).await?;
            redis::RedisResult::Ok(pubsub)
        };
        let pubsub = tokio::select! {
            result = subscription => result,
            () = stop.cancelled() => return,
        };
        match pubsub {
            Ok(pubsub) => {
                backoff = Duration::from_millis(100);
                inner.subscribed.store(true, Ordering::Relaxed);
                tracing::info!("subscribed to Redis");
                // Anything published while this node was not listening is
                // in the database: tell every local room its head.
                catch_up(&inner, &store).await;
                let mut messages = pubsub.into_on_message();
                let probe_channel = inner.probe_channel();
                let mut heard = tokio::time::Instant::now();
                let mut probe = tokio::time::interval(PROBE_EVERY);
                probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    let message = tokio::select! {
                        message = messages.next() => message,
                        _ = probe.tick() => {
                            if heard.elapsed() > PROBE_TIMEOUT {
                                tracing::warn!(
                                    silent_secs = heard.elapsed().as_secs(),
                                    "the Redis subscription went silent, probes included"
                                );
                                break;
                            }
                            send_probe(&inner);
                            continue;
                        }
                        () = stop.cancelled() => return,
                    };
                    let Some(message) = message else { break };
                    heard = tokio::time::Instant::now();
                    if message.get_channel_name() == probe_channel {
                        continue;
                    }
                    match decode(message.get_payload_bytes()) {
                        Some((node, _)) if node == inner.node => {}
                        Some((_, Event::Room(event))) => {
                            event.deliver_to(&inner.hub);
                        }
                        Some((_, Event::SessionEnded { user, session })) => {
                            inner.hub.end_session(user, session);
                        }
                        Some((_, Event::Membership(notice))) => {
                            inner.hub.apply(&notice);
                        }
                        Some((_, Event::Resync)) => catch_up(&inner, &store).await,
                        None => tracing::warn!("ignored a malformed event from Redis"),
                    }
                }
                inner.subscribed.store(false, Ordering::Relaxed);
                tracing::warn!("lost the Redis subscription; reconnecting");
            }
            Err(error) => {
                if inner.subscribed.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, "cannot subscribe to Redis");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Tells the local subscribers of every room where its messages stand, so
/// sessions read whatever they missed, and closes the sockets of sessions
/// that were ended while this node was not listening.
async fn catch_up(inner: &Inner, store: &Store) {
    crate::recheck::close_ended_sessions(store, &inner.hub).await;
    catch_up_rooms(inner, store).await;
}

/// Tells the local subscribers of every room where its messages stand.
async fn catch_up_rooms(inner: &Inner, store: &Store) {
    for room in inner.hub.rooms() {
        match store.room_by_id(room).await {
            Ok(Some(stored)) => {
                inner.hub.deliver(
                    room,
                    &Outbound::Head {
                        room,
                        seq: stored.last_seq,
                    },
                    Audience::Everyone,
                );
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(error = %crate::error::Chain(&error), "could not catch up a room");
            }
        }
    }
}

/// One connection to Redis shared by every presence read and write,
/// opened on first use and again after a failure, but not more often than
/// every [`RETRY_FIRST`], so that a Redis that is down costs a presence
/// change no wait.
#[derive(Debug, Default)]
struct SharedConnection {
    state: std::sync::Mutex<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    conn: Option<MultiplexedConnection>,
    /// No new attempt before this, after a failed one.
    retry_at: Option<tokio::time::Instant>,
}

impl SharedConnection {
    fn state(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connection, opened if there is none.
    async fn get(&self, client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
        {
            let state = self.state();
            if let Some(conn) = &state.conn {
                return Ok(conn.clone());
            }
            if state
                .retry_at
                .is_some_and(|at| tokio::time::Instant::now() < at)
            {
                return Err(redis::RedisError::from(std::io::Error::from(
                    std::io::ErrorKind::NotConnected,
                )));
            }
        }
        let connected = connect(client).await;
        let mut state = self.state();
        match &connected {
            Ok(conn) => {
                state.conn = Some(conn.clone());
                state.retry_at = None;
            }
            Err(_) => state.retry_at = Some(tokio::time::Instant::now() + RETRY_FIRST),
        }
        connected
    }

    /// The connection failed: the next use opens another.
    fn failed(&self) {
        self.state().conn = None;
    }

    /// Runs `op` on the connection; a failure closes it.
    async fn with<T, F>(&self, client: &redis::Client, op: F) -> redis::RedisResult<T>
    where
        F: AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    {
        let mut conn = self.get(client).await?;
        let result = op(&mut conn).await;
        if result.is_err() {
            self.failed();
        }
        result
    }
}

/// Writes who is online on this node, per room, every heartbeat or when
/// presence changed; removes the node's entry on shutdown.
async fn presence_loop(inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        let _ = inner
            .presence
            .with(&inner.client, async |conn| {
                write_presence(&inner, conn).await
            })
            .await;
        tokio::select! {
            () = tokio::time::sleep(HEARTBEAT) => {}
            () = inner.presence_dirty.notified() => {}
            () = stop.cancelled() => {
                let key = inner.presence_key(&inner.node);
                let _ = inner
                    .presence
                    .with(&inner.client, async |conn| {
                        redis::pipe()
                            .del(&key)
                            .zrem(inner.nodes(), &inner.node)
                            .query_async::<()>(conn)
                            .await
                    })
                    .await;
                return;
            }
        }
    }
}

async fn write_presence(inner: &Inner, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let key = inner.presence_key(&inner.node);
    let mut pipe = redis::pipe();
    pipe.atomic().del(&key);
    for room in inner.hub.rooms() {
        let names = inner.hub.online(room);
        if !names.is_empty() {
            pipe.hset(&key, room.get(), names.join("\n"));
        }
    }
    pipe.expire(&key, NODE_TTL.as_secs() as i64)
        .zadd(inner.nodes(), &inner.node, unix_now());
    pipe.query_async(conn).await
}

/// The users online in `room` on the other live nodes: the live nodes,
/// then each one's list for the room, in one round trip each.
async fn remote_online(inner: &Inner, room: RoomId) -> redis::RedisResult<Vec<String>> {
    inner
        .presence
        .with(&inner.client, async |conn| {
            let since = unix_now() - NODE_TTL.as_secs() as i64;
            let nodes: Vec<String> = conn.zrangebyscore(inner.nodes(), since, "+inf").await?;
            let mut pipe = redis::pipe();
            for node in nodes.iter().filter(|node| **node != inner.node) {
                pipe.hget(inner.presence_key(node), room.get());
            }
            if pipe.is_empty() {
                return Ok(Vec::new());
            }
            let lists: Vec<Option<String>> = pipe.query_async(conn).await?;
            Ok(lists
                .iter()
                .flatten()
                .flat_map(|list| list.lines().map(str::to_owned))
                .collect())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_the_trip_through_redis() {
        let event = RoomEvent {
            room: RoomId(7),
            seq: Some(Seq::new(42).expect("valid")),
            frame: ByteString::from_static("{\"type\":\"message\",\"content\":\"a\\nb\"}"),
            audience: Audience::EveryoneExcept(UserId(3)),
            kind: ItemKind::Member(MemberItem {
                user: UserId(5),
                removal: Some(LeftReason::Kicked),
            }),
        };
        let (node, decoded) = decode(&encode("n1", &event)).expect("decodes");
        assert_eq!(node, "n1");
        let Event::Room(decoded) = decoded else {
            panic!("expected a room event, got {decoded:?}");
        };
        assert_eq!(decoded.room, event.room);
        assert_eq!(decoded.seq, event.seq);
        assert_eq!(decoded.frame, event.frame);
        assert_eq!(decoded.audience, event.audience);
        assert_eq!(decoded.kind, event.kind);

        let ephemeral = RoomEvent {
            seq: None,
            audience: Audience::Extended,
            kind: ItemKind::Change,
            ..event
        };
        let (_, decoded) = decode(&encode("n2", &ephemeral)).expect("decodes");
        let Event::Room(decoded) = decoded else {
            panic!("expected a room event, got {decoded:?}");
        };
        assert_eq!(decoded.seq, None);
        assert_eq!(decoded.audience, Audience::Extended);
        assert_eq!(decoded.kind, ItemKind::Change);
    }

    #[test]
    fn membership_notices_survive_the_trip_through_redis() {
        let added = |encrypted| Notice::Added {
            user: UserId(4),
            room: RoomKey {
                id: RoomId(9),
                name: RoomName::parse("dm:alice:bob").expect("valid"),
                kind: RoomKind::Direct,
                encrypted,
            },
            from: Seq::new(17).expect("valid"),
        };
        let deleted = Notice::Deleted { room: RoomId(9) };
        for notice in [added(false), added(true), deleted] {
            let (node, decoded) = decode(&encode_notice("n4", &notice)).expect("decodes");
            assert_eq!(node, "n4");
            let Event::Membership(decoded) = decoded else {
                panic!("expected a membership notice, got {decoded:?}");
            };
            assert_eq!(decoded, notice);
        }
    }

    #[test]
    fn the_end_of_a_session_survives_the_trip_through_redis() {
        let session = SessionId::parse("0123456789abcdef0123456789abcdef").expect("valid");
        let payload = encode_session_end("n3", UserId(12), session);
        let (node, decoded) = decode(&payload).expect("decodes");
        assert_eq!(node, "n3");
        let Event::SessionEnded {
            user,
            session: ended,
        } = decoded
        else {
            panic!("expected the end of a session, got {decoded:?}");
        };
        assert_eq!((user, ended), (UserId(12), session));
    }

    #[test]
    fn a_request_to_catch_up_survives_the_trip_through_redis() {
        let (node, decoded) = decode(&encode_resync("n5")).expect("decodes");
        assert_eq!(node, "n5");
        assert!(matches!(decoded, Event::Resync), "{decoded:?}");
    }

    #[test]
    fn malformed_payloads_are_rejected() {
        for payload in [
            &b""[..],
            b"no newline",
            b"n\t1\t-\tq\n{}",
            b"n\tx\t-\te\n{}",
            b"n\tsession\t1\tnot-a-session-id\n",
            b"n\tsession\tx\t0123456789abcdef0123456789abcdef\n",
            b"n\tsession\t1\n",
            b"n\t1\t-\te\tx5\n{}",
            b"n\tmembership\tadded\t1\t2\n",
            b"n\tmembership\tdeleted\tx\n",
            b"n\tresync\t1\n",
            b"n\tresync\n{}",
        ] {
            assert!(decode(payload).is_none(), "{payload:?}");
        }
    }
}
