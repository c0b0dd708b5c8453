//! One WebSocket connection: the upgrade, then a task that reads the
//! client's frames and writes the frames queued for it.
//!
//! The task holds no database connection while idle: it borrows one from
//! the pool only for the look-ups a frame needs (joining a room, replaying
//! missed messages). Messages it sends go to the writer.
//!
//! Each room the connection receives has a cursor: the last seq delivered.
//! A stored message at or below the cursor is a duplicate and is dropped;
//! one more than a step ahead means messages are missing, and they are read
//! from the database before it is delivered. Resume is that same mechanism
//! started from the client's last seen seq, so replay and live delivery can
//! overlap without a gap or a duplicate. Membership changes travel in the
//! same sequence: when the connection delivers one that removed its own
//! user, it stops receiving the room there (see [`delivery`]).
//!
//! A connection lives as long as its access token: at the token's `exp` it
//! is closed with 1008 "token expired", unless the client sent a fresher
//! token of the same session in an `auth` frame. It is closed with 1008
//! "session ended" when its session is ended, on any node.
//!
//! The code is split by what it does: [`connect`] (the upgrade),
//! [`commands`] (the chat frames), [`moderation`] (the frames that govern a
//! room), [`delivery`] (the queue, replay and gap filling) and [`tracked`]
//! (the cursor list).

mod changes;
mod commands;
mod connect;
mod delivery;
mod moderation;
mod tracked;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_http::ws::{CloseCode, CloseReason};
use bytestring::ByteString;
use chat_domain::{Refusal, Seq};
use chat_protocol::ws::{ErrorCode, ServerFrame};
use chat_storage::{Actor, MembershipOp, RoomKey, StorageError};

pub(crate) use connect::{__path_upgrade, upgrade};
use tracked::Tracked;

use crate::frames;
use crate::hub::{Connection, Eviction, Outgoing};
use crate::limits::Bucket;
use crate::membership;
use crate::presence;
use crate::state::AppState;
use crate::wire::{self, Incoming, Violation};

/// Messages read per query while filling a gap.
const FILL_PAGE: i64 = 200;

/// The close reason when the connection's token has expired.
const TOKEN_EXPIRED: &str = "token expired";

/// Why the loop ended, and what to tell the client.
enum End {
    /// The client closed, or the connection broke; nothing more to send.
    Gone,
    /// Close the socket with this code and reason.
    Close(CloseCode, &'static str),
}

pub(crate) struct Session {
    state: Arc<AppState>,
    /// Also who the connection is authenticated as (`user_id`, `username`).
    conn: Arc<Connection>,
    socket: wire::Sender,
    /// What the client sends.
    stream: wire::Receiver,
    /// What waits to be sent to the client.
    outbound: Outgoing,
    /// Where delivery stands in each room this connection receives.
    rooms: Tracked,
    /// Set when a write was abandoned because the connection was evicted
    /// (the client stopped reading, or its session ended).
    evicted: Option<Eviction>,
    /// When the token the connection runs on expires; an `auth` frame moves
    /// it.
    deadline: tokio::time::Instant,
    /// Frames the client may still send now, when limits are on.
    bucket: Option<Bucket>,
    /// Frames refused in a row.
    strikes: u32,
}

/// The client is gone; stop.
struct Gone;

/// What the rate limit says about a frame.
enum Admission {
    Admitted,
    /// Dropped, with an error frame.
    Refused,
    /// Refused too many times in a row: the connection is closed.
    Abusive,
}

impl Session {
    /// Serves the connection until it ends. `resume_general` is where the
    /// client stands in `general` (the `last_seq` of the connect URL).
    async fn run(&mut self, resume_general: Option<Seq>) -> End {
        // Branches are boxed: a task's future is as large as its largest
        // state, and this one is held by every idle connection. Handling a
        // frame (`on_text`, `deliver`) is boxed on every frame, so the
        // database look-ups those reach only now and then are boxed again
        // inside them: moving a future into its box copies all of it, and
        // with the look-ups inline each frame cost a 3 KiB allocation and
        // copy.
        if let Err(end) = Box::pin(self.start(resume_general)).await {
            return end;
        }
        let config = Arc::clone(&self.state.config);
        let shutdown = self.state.shutdown.clone();
        let mut last_heard = Instant::now();
        // One timer for the connection's life, for both the next heartbeat
        // and the token's expiry, whichever is sooner (an `auth` frame moves
        // the expiry). Every idle socket holds it, so one, not two.
        let mut next_ping = tokio::time::Instant::now() + config.heartbeat_interval;
        let timer = tokio::time::sleep_until(next_ping.min(self.deadline));
        tokio::pin!(timer);
        loop {
            let due = next_ping.min(self.deadline);
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    return End::Close(CloseCode::Away, "server shutting down");
                }
                why = self.conn.evicted() => {
                    return End::Close(CloseCode::Policy, why.reason());
                }
                () = &mut timer => {
                    let now = tokio::time::Instant::now();
                    if now >= self.deadline {
                        return End::Close(CloseCode::Policy, TOKEN_EXPIRED);
                    }
                    if now >= next_ping {
                        next_ping = now + config.heartbeat_interval;
                        if last_heard.elapsed() > config.idle_timeout {
                            return End::Close(CloseCode::Normal, "idle timeout");
                        }
                        if Box::pin(self.socket.ping()).await.is_err() {
                            return End::Gone;
                        }
                    }
                }
                item = self.stream.recv() => {
                    last_heard = Instant::now();
                    match item {
                        Some(Ok(Incoming::Text(text))) => {
                            match self.admit() {
                                Admission::Admitted => {
                                    if Box::pin(self.on_text(&text)).await.is_err() {
                                        return self.gone();
                                    }
                                }
                                Admission::Refused => {
                                    let refused = Box::pin(self.send_error(
                                        ErrorCode::RateLimited,
                                        "too many frames; slow down (this one was dropped)",
                                        None,
                                        None,
                                    ))
                                    .await;
                                    if refused.is_err() {
                                        return self.gone();
                                    }
                                }
                                Admission::Abusive => {
                                    return End::Close(CloseCode::Policy, "rate limit exceeded");
                                }
                            }
                        }
                        Some(Ok(Incoming::Binary)) => {
                            let frame = frames::error(
                                ErrorCode::InvalidJson,
                                "binary frames are not supported; send JSON text",
                                None,
                                None,
                            );
                            if Box::pin(self.send(&frame)).await.is_err() {
                                return self.gone();
                            }
                        }
                        Some(Ok(Incoming::Ping(bytes))) => {
                            if Box::pin(self.socket.pong(bytes)).await.is_err() {
                                return End::Gone;
                            }
                        }
                        Some(Ok(Incoming::Pong)) => {}
                        Some(Ok(Incoming::Close)) | None => return End::Gone,
                        Some(Err(Violation::TooLarge)) => {
                            return End::Close(CloseCode::Size, "frame too large");
                        }
                        Some(Err(Violation::NotUtf8)) => {
                            return End::Close(CloseCode::Invalid, "text frames must be UTF-8");
                        }
                        Some(Err(Violation::Protocol(error))) => {
                            tracing::debug!(%error, "WebSocket protocol error");
                            return End::Close(CloseCode::Protocol, "protocol error");
                        }
                    }
                }
                item = self.outbound.recv() => {
                    if Box::pin(self.deliver(item)).await.is_err() {
                        return self.gone();
                    }
                }
            }
        }
    }

    /// Counts a frame against the connection's rate limit.
    fn admit(&mut self) -> Admission {
        let (Some(bucket), Some(limits)) = (self.bucket.as_mut(), self.state.config.rate_limits)
        else {
            return Admission::Admitted;
        };
        match bucket.take(limits.ws_frames, Instant::now()) {
            Ok(()) => {
                self.strikes = 0;
                Admission::Admitted
            }
            Err(_) => {
                crate::metrics::rate_limited(crate::metrics::Limit::WsFrames);
                self.strikes += 1;
                if self.strikes >= limits.ws_strikes {
                    Admission::Abusive
                } else {
                    Admission::Refused
                }
            }
        }
    }

    /// How to end after a failed write: an evicted client is told why, if
    /// it ever reads again.
    fn gone(&self) -> End {
        match self.evicted {
            Some(why) => End::Close(CloseCode::Policy, why.reason()),
            None => End::Gone,
        }
    }

    /// Puts the client in `general`, as the seed did, then greets it. The
    /// subscription comes first so that nothing sent after the greeting can
    /// be missed; queued frames wait until the greeting is out.
    ///
    /// With `resume` (the client's last seq of `general`), delivery starts
    /// after it instead of at the room's newest message: the greeting, then
    /// what the client missed, then `joined`. No live message can overtake
    /// the replay, because none is delivered before this returns.
    ///
    /// A user banned from `general` is greeted but receives nothing of it.
    async fn start(&mut self, resume: Option<Seq>) -> Result<(), End> {
        if resume.is_some() {
            self.conn.mark_extended();
        }
        // A plain seed client lands in `general` even if its user left it,
        // through the one membership path. Where the room stands is read
        // after that, before subscribing: everything after it reaches this
        // connection, live or read back from the database.
        let key = RoomKey::from(self.state.general.as_ref());
        let joined = match self.ensure_general(&key).await {
            Ok(joined) => joined,
            Err(error) => {
                tracing::warn!(error = %crate::error::Chain(&error), "could not join general");
                return Err(End::Close(CloseCode::Again, "database unavailable"));
            }
        };
        let head = match self.state.store.room_by_id(key.id).await {
            Ok(Some(general)) => general.last_seq,
            Ok(None) => self.state.general.last_seq,
            Err(error) => {
                tracing::warn!(error = %crate::error::Chain(&error), "could not read general");
                return Err(End::Close(CloseCode::Again, "database unavailable"));
            }
        };
        if joined {
            // A client cannot have seen more than the room holds.
            let from = resume.map_or(head, |seq| seq.min(head));
            self.subscribe(key.clone(), from).await;
        }
        let greeting = frames::system(format!("Connected as {}", self.conn.username()));
        self.send(&greeting).await.map_err(|Gone| End::Gone)?;
        if joined && resume.is_some() {
            let from = self.rooms.cursor(key.id).unwrap_or(head);
            // A long replay can outrun the queue: an evicted client is told
            // why.
            let replayed = Box::pin(self.replay(key, head, from)).await;
            replayed.map_err(|Gone| self.gone())?;
        }
        Ok(())
    }

    /// Makes the user a member of `general` unless they are, or are banned
    /// from it; returns whether they are a member now.
    async fn ensure_general(&self, key: &RoomKey) -> Result<bool, StorageError> {
        let access = self
            .state
            .store
            .room_access(&key.name, self.conn.user_id())
            .await?;
        let Some(access) = access else {
            return Ok(false);
        };
        if access.membership.is_some() {
            return Ok(true);
        }
        if access.banned.is_some() {
            return Ok(false);
        }
        match membership::change(
            &self.state,
            key,
            &self.actor(),
            self.conn.user_id(),
            MembershipOp::Join,
        )
        .await
        {
            Ok(_) => Ok(true),
            Err(StorageError::Refused(_)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The connection's user as the author of a membership change.
    fn actor(&self) -> Actor {
        Actor::User {
            id: self.conn.user_id(),
            username: self.conn.username().clone(),
        }
    }

    async fn send(&mut self, frame: &ServerFrame) -> Result<(), Gone> {
        self.send_raw(frames::encode(frame)).await
    }

    async fn send_raw(&mut self, frame: ByteString) -> Result<(), Gone> {
        // A client that stops reading blocks this write; the overflow of its
        // queue then ends the session instead of leaving it hanging.
        tokio::select! {
            sent = self.socket.text(frame) => {
                sent.map(|()| crate::metrics::frame_delivered()).map_err(|_| Gone)
            }
            why = self.conn.evicted() => {
                self.evicted = Some(why);
                Err(Gone)
            }
        }
    }

    async fn send_error(
        &mut self,
        code: ErrorCode,
        message: impl Into<String>,
        client_id: Option<String>,
        room: Option<String>,
    ) -> Result<(), Gone> {
        // Encoded before the await, so that the frame is not held in this
        // future (nor in those of its many callers) while it is written.
        let frame = frames::encode(&frames::error(code, message, client_id, room));
        self.send_raw(frame).await
    }

    async fn storage_error(
        &mut self,
        error: &StorageError,
        client_id: Option<String>,
        room: Option<String>,
    ) -> Result<(), Gone> {
        tracing::warn!(error = %crate::error::Chain(error), "storage error in a WebSocket session");
        let (code, text) = match error {
            StorageError::Unavailable(_) => (
                ErrorCode::Unavailable,
                "the database is unavailable; try again",
            ),
            _ => (ErrorCode::Internal, "internal error"),
        };
        self.send_error(code, text, client_id, room).await
    }

    /// Tells the client that a room's rules refused its frame.
    async fn send_refusal(
        &mut self,
        refusal: &Refusal,
        room: &str,
        client_id: Option<String>,
    ) -> Result<(), Gone> {
        let frame = frames::encode(&frames::refusal(refusal, room, client_id));
        self.send_raw(frame).await
    }

    /// Leaves every room, announces the user's departure where they are
    /// now offline, and closes the socket if it is still open.
    async fn finish(mut self, end: End) {
        for room in self.state.hub.disconnect(&self.conn) {
            let name = self
                .room_name_of(room)
                .unwrap_or_else(|| chat_domain::RoomName::GENERAL.to_owned());
            presence::announce(
                &self.state,
                room,
                &name,
                self.conn.user_id(),
                self.conn.username(),
                crate::hub::PresenceChange::WentOffline,
            )
            .await;
        }
        let reason = match end {
            End::Gone => None,
            End::Close(code, description) => Some(CloseReason {
                code,
                description: Some(description.to_owned()),
            }),
        };
        // A client that stopped reading may never take the close frame;
        // give up after a moment.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.close(reason)).await;
    }
}
