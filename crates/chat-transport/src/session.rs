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
//! overlap without a gap or a duplicate.
//!
//! A connection lives as long as its access token: at the token's `exp` it
//! is closed with 1008 "token expired", unless the client sent a fresher
//! token of the same session in an `auth` frame. It is closed with 1008
//! "session ended" when its session is ended, on any node.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_http::ws::{CloseCode, CloseReason};
use actix_web::{HttpRequest, HttpResponse, get, web};
use bytestring::ByteString;
use chat_domain::{ClientId, MessageBody, RoomId, RoomKind, RoomName, Seq, Username};
use chat_protocol::ws::{AuthFrame, ClientFrame, ErrorCode, Inbound, ServerFrame};
use chat_storage::{Cursor, NewMessage, Room, StorageError};

use crate::auth::{authenticate, bearer_token};
use crate::error::ApiError;
use crate::fanout::RoomEvent;
use crate::frames;
use crate::hub::{Audience, Connection, Eviction, Outbound, Outgoing};
use crate::limits::Bucket;
use crate::presence;
use crate::state::AppState;
use crate::wire::{self, Incoming, Violation};
use crate::writer::WriteRequest;

/// Messages read per query while filling a gap.
const FILL_PAGE: i64 = 200;

/// The close reason when the connection's token has expired.
const TOKEN_EXPIRED: &str = "token expired";

/// The longest a connection's deadline is set ahead. A token always expires
/// sooner (unless it is a far-dated token of the original backend); this
/// only keeps the arithmetic in range.
const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// When a connection running on a token that expires at `exp` (seconds
/// since the Unix epoch) must close.
fn deadline_of(exp: i64) -> tokio::time::Instant {
    let left_ms = exp
        .saturating_mul(1_000)
        .saturating_sub(chrono::Utc::now().timestamp_millis());
    let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)).min(MAX_LIFETIME);
    tokio::time::Instant::now() + left
}

/// Opens a chat socket. A missing or bad token is refused with 403 before
/// the upgrade, as the seed did.
///
/// With `last_seq`, the connection starts in `general` after that seq: the
/// messages it missed come first, then a `joined` frame, then live ones,
/// with no gap. A reconnecting client should resume `general` this way
/// rather than with a `resume` frame, which can only start after the live
/// messages the connection has already received.
#[utoipa::path(
    get,
    path = "/ws/chat",
    tag = "chat",
    params(
        ("token" = Option<String>, Query, description = "access token; or send Authorization: Bearer"),
        ("last_seq" = Option<i64>, Query, minimum = 0, description = "the last seq of `general` the client has; the connection replays what came after it, then a `joined` frame, then continues live")
    ),
    responses(
        (status = 101, description = "switching to the WebSocket protocol; see docs/PROTOCOL.md"),
        (status = 400, description = "`last_seq` is not a whole number of 0 or more", body = chat_protocol::rest::ErrorBody),
        (status = 403, description = "missing, bad or expired token, or a browser origin not allowed", body = chat_protocol::rest::ErrorBody),
        (status = 429, description = "the user holds too many connections", body = chat_protocol::rest::ErrorBody)
    )
)]
#[get("/ws/chat")]
pub(crate) async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_origin(&req, &state.config.cors_origins)?;
    let resume_general = general_position(&req)?;
    let principal = match authenticate(&state, bearer_token(&req)).await {
        Ok(principal) => principal,
        Err(ApiError::Unauthorized(detail)) => return Err(ApiError::Forbidden(detail)),
        Err(other) => return Err(other),
    };
    let deadline = deadline_of(principal.expires_at);
    let auth_session = principal.session;
    let user = principal.user;
    let max = state.config.max_connections_per_user;
    if state.hub.connections_of(user.id).len() >= max {
        return Err(ApiError::TooManyRequests {
            detail: format!("too many connections for this user (at most {max})"),
            retry_after: 5,
        });
    }
    let (response, socket, stream) = wire::upgrade(&req, body, state.config.max_frame_bytes)
        .map_err(|e| ApiError::BadRequest(format!("not a WebSocket upgrade: {e}")))?;
    let state = state.into_inner();
    // Only the id and name stay with the connection (in the hub's entry).
    let (user_id, username) = (user.id, user.username);
    let (conn, outbound) =
        state
            .hub
            .connect(user_id, username, auth_session, state.config.outbound_queue);
    let bucket = state
        .config
        .rate_limits
        .map(|limits| Bucket::full(limits.ws_frames));
    // Built here and moved into the task whole: whatever the task's future
    // captures it keeps for the connection's life, so it captures only this.
    let mut task = Session {
        state,
        conn,
        socket,
        stream,
        outbound,
        rooms: Tracked::default(),
        evicted: None,
        deadline,
        bucket,
        strikes: 0,
    };
    actix_web::rt::spawn(async move {
        let close = task.run(resume_general).await;
        Box::pin(task.finish(close)).await;
    });
    Ok(response)
}

/// Where the client stands in `general`, from the `last_seq` query
/// parameter; `None` when it is not given.
fn general_position(req: &HttpRequest) -> Result<Option<Seq>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Params {
        last_seq: Option<String>,
    }
    let invalid =
        || ApiError::BadRequest("last_seq must be a whole number of 0 or more".to_owned());
    let params = web::Query::<Params>::from_query(req.query_string()).map_err(|_| invalid())?;
    params
        .into_inner()
        .last_seq
        .map(|raw| {
            raw.trim()
                .parse::<i64>()
                .ok()
                .and_then(|value| Seq::new(value).ok())
                .ok_or_else(invalid)
        })
        .transpose()
}

/// Refuses a browser page from an origin that is neither allowed nor this
/// server's own. Clients that send no `Origin` (terminals, scripts) pass.
fn check_origin(req: &HttpRequest, allowed: &[String]) -> Result<(), ApiError> {
    let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
    let same_host = origin.split_once("://").is_some_and(|(_, host)| {
        Some(host) == req.headers().get("host").and_then(|h| h.to_str().ok())
    });
    if same_host
        || allowed
            .iter()
            .any(|a| a == "*" || a.trim_end_matches('/') == origin)
    {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "origin {origin} is not allowed"
        )))
    }
}

/// Why the loop ended, and what to tell the client.
enum End {
    /// The client closed, or the connection broke; nothing more to send.
    Gone,
    /// Close the socket with this code and reason.
    Close(CloseCode, &'static str),
}

struct Session {
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
    async fn start(&mut self, resume: Option<Seq>) -> Result<(), End> {
        if resume.is_some() {
            self.conn.mark_extended();
        }
        let general_id = self.state.general.id;
        // A plain seed client lands in `general` even if its user left it.
        // Where the room stands is read before subscribing: everything after
        // it reaches this connection, live or read back from the database.
        let store = &self.state.store;
        let joined = async {
            if !store.is_member(general_id, self.conn.user_id()).await? {
                store.join(general_id, self.conn.user_id()).await?;
            }
            store.room_by_id(general_id).await
        };
        let general = match joined.await {
            Ok(Some(general)) => general,
            Ok(None) => Room::clone(&self.state.general),
            Err(error) => {
                tracing::warn!(error = %crate::error::Chain(&error), "could not join general");
                return Err(End::Close(CloseCode::Again, "database unavailable"));
            }
        };
        let head = general.last_seq;
        // A client cannot have seen more than the room holds.
        let from = resume.map_or(head, |seq| seq.min(head));
        let replay = resume.is_some().then(|| general.clone());
        self.subscribe(general, from).await;
        let greeting = frames::system(format!("Connected as {}", self.conn.username()));
        self.send(&greeting).await.map_err(|Gone| End::Gone)?;
        if let Some(general) = replay {
            // A long replay can outrun the queue: an evicted client is told
            // why.
            let replayed = Box::pin(self.replay(general, from)).await;
            replayed.map_err(|Gone| self.gone())?;
        }
        Ok(())
    }

    /// Sends the messages of `room` after `from`, up to where `room` stood
    /// when it was read (later ones come through the queue), then `joined`.
    async fn replay(&mut self, mut room: Room, from: Seq) -> Result<(), Gone> {
        if from < room.last_seq {
            let name = room.name.as_str().to_owned();
            self.fill(room.id, Some(&name), from, None).await?;
        }
        // `joined` reports the last seq this connection has, so the next
        // message it receives from the room is the one after it.
        if let Some(delivered) = self.rooms.cursor(room.id) {
            room.last_seq = room.last_seq.max(delivered);
        }
        for frame in presence::joined_frames(&self.state, &room).await {
            self.send(&frame).await?;
        }
        Ok(())
    }

    /// Subscribes to a room and announces the user if they just came
    /// online there. Delivery starts after `cursor`, which must have been
    /// read before subscribing.
    async fn subscribe(&mut self, room: Room, cursor: Seq) {
        // Never back over what this connection has already sent: a resume
        // from an older seq must not send those messages twice.
        let sent = self.rooms.sent(room.id).unwrap_or(Seq::ZERO);
        self.rooms.set_cursor(room.id, cursor.max(sent));
        if self.rooms.named(&room.name).is_none() {
            let change = self.state.hub.subscribe(room.id, &self.conn);
            presence::announce(
                &self.state,
                room.id,
                room.name.as_str(),
                self.conn.user_id(),
                self.conn.username(),
                change,
            )
            .await;
        }
        self.rooms.name(room);
    }

    async fn send(&mut self, frame: &ServerFrame) -> Result<(), Gone> {
        self.send_raw(frames::encode(frame)).await
    }

    async fn send_raw(&mut self, frame: ByteString) -> Result<(), Gone> {
        // A client that stops reading blocks this write; the overflow of its
        // queue then ends the session instead of leaving it hanging.
        tokio::select! {
            sent = self.socket.text(frame) => sent.map_err(|_| Gone),
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

    /// Delivers one queued item, keeping each room in seq order.
    async fn deliver(&mut self, item: Outbound) -> Result<(), Gone> {
        match item {
            Outbound::Frame(frame) => self.send_raw(frame).await,
            Outbound::RoomMessage { room, seq, frame } => {
                match self.rooms.cursor(room) {
                    Some(cursor) if seq <= cursor => return Ok(()),
                    Some(cursor) if seq > cursor.next() => {
                        let name = frame_room_name(&frame);
                        Box::pin(self.fill(room, name.as_deref(), cursor, Some(seq))).await?;
                    }
                    _ => {}
                }
                self.rooms.mark_sent(room, seq);
                self.send_raw(frame).await
            }
            Outbound::Head { room, seq } => match self.rooms.cursor(room) {
                Some(cursor) if seq > cursor => Box::pin(self.fill(room, None, cursor, None)).await,
                Some(_) => Ok(()),
                // A subscription made for this connection (a new direct
                // conversation) starts where the room stood.
                None => {
                    self.rooms.set_cursor(room, seq);
                    Ok(())
                }
            },
        }
    }

    /// Sends the stored messages of a room after `from`, up to (not
    /// including) `until`, or up to the newest one.
    async fn fill(
        &mut self,
        room: RoomId,
        room_name: Option<&str>,
        from: Seq,
        until: Option<Seq>,
    ) -> Result<(), Gone> {
        let Some(room_name) = room_name
            .map(str::to_owned)
            .or_else(|| self.room_name_of(room))
        else {
            return Ok(());
        };
        let mut cursor = from;
        loop {
            let page = match self
                .state
                .store
                .history(room, Cursor::After(cursor), FILL_PAGE)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(error = %crate::error::Chain(&error), "could not replay missed messages");
                    return self
                        .send_error(
                            ErrorCode::Unavailable,
                            "missed messages could not be loaded; resume again later",
                            None,
                            Some(room_name),
                        )
                        .await;
                }
            };
            for message in &page.messages {
                if until.is_some_and(|until| message.seq >= until) {
                    return Ok(());
                }
                cursor = message.seq;
                self.rooms.mark_sent(room, cursor);
                self.send(&frames::message(&room_name, message)).await?;
            }
            if !page.has_more || page.messages.is_empty() {
                return Ok(());
            }
        }
    }

    fn room_name_of(&self, room: RoomId) -> Option<String> {
        self.rooms.room(room).map(|r| r.name.as_str().to_owned())
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Gone> {
        let frame = match Inbound::parse(text) {
            Ok(Inbound::Chat(frame)) => frame,
            Ok(Inbound::Auth(AuthFrame { token })) => {
                self.conn.mark_extended();
                return Box::pin(self.on_auth(&token)).await;
            }
            Err(error) => {
                return self
                    .send_error(error.code(), error.to_string(), None, None)
                    .await;
            }
        };
        if !matches!(
            frame,
            ClientFrame::Message {
                room: None,
                client_id: None,
                ..
            }
        ) {
            self.conn.mark_extended();
        }
        match frame {
            ClientFrame::Message {
                content,
                room,
                client_id,
            } => self.on_message(content, room, client_id).await,
            ClientFrame::Join { room } => Box::pin(self.on_join(&room, None)).await,
            ClientFrame::Resume { room, last_seq } => match Seq::new(last_seq) {
                Ok(seq) => Box::pin(self.on_join(&room, Some(seq))).await,
                Err(error) => {
                    self.send_error(ErrorCode::InvalidFrame, error.to_string(), None, Some(room))
                        .await
                }
            },
            ClientFrame::Leave { room } => Box::pin(self.on_leave(&room)).await,
            ClientFrame::Typing { room } => self.on_typing(room).await,
            ClientFrame::Who { room } => Box::pin(self.on_who(room)).await,
            ClientFrame::Ping => self.send(&ServerFrame::Pong).await,
        }
    }

    /// Moves the connection onto a fresher access token of the same user and
    /// session, so it stays open until that token expires.
    async fn on_auth(&mut self, token: &str) -> Result<(), Gone> {
        let Ok(claims) = self.state.tokens.verify(token) else {
            return self
                .send_error(
                    ErrorCode::InvalidToken,
                    "the token is not valid or has expired; the connection keeps its current one",
                    None,
                    None,
                )
                .await;
        };
        let same_user = Username::parse(claims.sub.as_str())
            .is_ok_and(|name| name.normalized() == self.conn.username().normalized());
        if !same_user || claims.sid != self.conn.session() {
            return self
                .send_error(
                    ErrorCode::InvalidToken,
                    "the token belongs to another user or session; the connection keeps its current one",
                    None,
                    None,
                )
                .await;
        }
        if let Some(session) = claims.sid {
            // The same check as every request's. A session ended on a node
            // whose notice never arrived here is caught now.
            match self
                .state
                .store
                .user_for_session(self.conn.username(), session)
                .await
            {
                Ok(Some(_)) => {}
                Ok(None) => {
                    self.conn.evict(Eviction::SessionEnded);
                    return Ok(());
                }
                Err(error) => return self.storage_error(&error, None, None).await,
            }
        }
        self.deadline = deadline_of(claims.exp);
        let expires_at = claims.expires_at().unwrap_or_else(chrono::Utc::now);
        self.send(&ServerFrame::Authenticated { expires_at }).await
    }

    /// Finds a room this user may use, by name: one this connection already
    /// receives, or one the user is a member of. Errors have been sent to
    /// the client when this returns `Ok(None)`.
    async fn usable_room(
        &mut self,
        name: Option<String>,
        client_id: Option<&str>,
        join_public: bool,
    ) -> Result<Option<Room>, Gone> {
        let raw = name.unwrap_or_else(|| RoomName::GENERAL.to_owned());
        let cid = || client_id.map(str::to_owned);
        let name = match RoomName::parse(&raw) {
            Ok(name) => name,
            Err(error) => {
                // Boxed, like the look-up below: the known room, the usual
                // case, then needs no more than a pointer's room here.
                Box::pin(self.send_error(
                    ErrorCode::InvalidRoom,
                    error.to_string(),
                    cid(),
                    Some(raw),
                ))
                .await?;
                return Ok(None);
            }
        };
        if !join_public && let Some(room) = self.rooms.named(&name) {
            return Ok(Some(room.clone()));
        }
        Box::pin(self.find_room(name, raw, client_id, join_public)).await
    }

    /// The database half of [`Session::usable_room`]: the room by name, and
    /// whether this user may use it.
    async fn find_room(
        &mut self,
        name: RoomName,
        raw: String,
        client_id: Option<&str>,
        join_public: bool,
    ) -> Result<Option<Room>, Gone> {
        let cid = || client_id.map(str::to_owned);
        let found = self.state.store.room_by_name(&name).await;
        let room = match found {
            Ok(Some(room)) => room,
            Ok(None) => {
                self.send_error(
                    ErrorCode::RoomNotFound,
                    format!("room '{name}' does not exist"),
                    cid(),
                    Some(raw),
                )
                .await?;
                return Ok(None);
            }
            Err(error) => {
                self.storage_error(&error, cid(), Some(raw)).await?;
                return Ok(None);
            }
        };
        let allowed = if join_public && room.kind == RoomKind::Public {
            self.state
                .store
                .join(room.id, self.conn.user_id())
                .await
                .map(|()| true)
        } else {
            self.state
                .store
                .is_member(room.id, self.conn.user_id())
                .await
        };
        match allowed {
            Ok(true) => Ok(Some(room)),
            Ok(false) => {
                self.send_error(
                    ErrorCode::NotAMember,
                    format!("you are not a member of '{name}'; join it first"),
                    cid(),
                    Some(raw),
                )
                .await?;
                Ok(None)
            }
            Err(error) => {
                self.storage_error(&error, cid(), Some(raw)).await?;
                Ok(None)
            }
        }
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

    async fn on_message(
        &mut self,
        content: String,
        room: Option<String>,
        client_id: Option<String>,
    ) -> Result<(), Gone> {
        let body = match MessageBody::parse_with_limit(content, self.state.config.max_message_chars)
        {
            Ok(body) => body,
            Err(error) => {
                return self
                    .send_error(error.clone().into(), error.to_string(), client_id, room)
                    .await;
            }
        };
        let client_id = match client_id.map(ClientId::parse).transpose() {
            Ok(id) => id,
            Err(error) => {
                return self
                    .send_error(ErrorCode::InvalidClientId, error.to_string(), None, room)
                    .await;
            }
        };
        let cid = client_id.as_ref().map(|id| id.as_str().to_owned());
        let Some(room) = self.usable_room(room, cid.as_deref(), false).await? else {
            return Ok(());
        };
        if self.rooms.named(&room.name).is_none() {
            // Sending into a room makes this connection receive it too, so
            // the sender sees its own message like everyone else.
            Box::pin(self.subscribe(room.clone(), room.last_seq)).await;
        }
        let request = WriteRequest {
            message: NewMessage {
                room_id: room.id,
                user_id: self.conn.user_id(),
                username: self.conn.username().clone(),
                body,
                client_id,
            },
            room: room.name.clone(),
            sender: Arc::clone(&self.conn),
        };
        if self.state.writer.submit(request).await.is_err() {
            return self
                .send_error(
                    ErrorCode::Unavailable,
                    "the server is shutting down; the message was not stored",
                    cid,
                    Some(room.name.as_str().to_owned()),
                )
                .await;
        }
        Ok(())
    }

    /// Join, or resume from `last_seq`: subscribe first, then read where the
    /// room stands, then replay what the client missed. Messages committed
    /// meanwhile arrive through the queue and the cursor drops any the
    /// replay already sent.
    async fn on_join(&mut self, name: &str, last_seq: Option<Seq>) -> Result<(), Gone> {
        let Some(room) = self.usable_room(Some(name.to_owned()), None, true).await? else {
            return Ok(());
        };
        // A client cannot have seen more than the room holds; trusting a
        // larger number would make it drop the messages still to come.
        let resume_from = last_seq.map_or(room.last_seq, |seq| seq.min(room.last_seq));
        self.subscribe(room.clone(), resume_from).await;
        let current = match self.state.store.room_by_name(&room.name).await {
            Ok(Some(current)) => current,
            Ok(None) => room,
            Err(error) => {
                return self
                    .storage_error(&error, None, Some(room.name.as_str().to_owned()))
                    .await;
            }
        };
        let from = self.rooms.cursor(current.id).unwrap_or(resume_from);
        self.replay(current, from).await
    }

    async fn on_leave(&mut self, name: &str) -> Result<(), Gone> {
        let Some(room) = self.usable_room(Some(name.to_owned()), None, false).await? else {
            return Ok(());
        };
        if let Err(error) = self.state.store.leave(room.id, self.conn.user_id()).await {
            return self
                .storage_error(&error, None, Some(name.to_owned()))
                .await;
        }
        let change = self
            .state
            .hub
            .unsubscribe_user(room.id, self.conn.user_id());
        self.rooms.forget(room.id);
        presence::announce(
            &self.state,
            room.id,
            room.name.as_str(),
            self.conn.user_id(),
            self.conn.username(),
            change,
        )
        .await;
        self.send(&ServerFrame::Left {
            room: room.name.as_str().to_owned(),
        })
        .await
    }

    /// Finds a room this connection receives; tells the client if it does
    /// not.
    async fn subscribed_room(&mut self, name: Option<String>) -> Result<Option<Room>, Gone> {
        let raw = name.unwrap_or_else(|| RoomName::GENERAL.to_owned());
        let room = RoomName::parse(&raw)
            .ok()
            .and_then(|name| self.rooms.named(&name).cloned());
        if room.is_none() {
            self.send_error(
                ErrorCode::NotAMember,
                format!("join '{raw}' first"),
                None,
                Some(raw),
            )
            .await?;
        }
        Ok(room)
    }

    async fn on_typing(&mut self, room: Option<String>) -> Result<(), Gone> {
        let Some(room) = self.subscribed_room(room).await? else {
            return Ok(());
        };
        self.state.fanout.publish(RoomEvent {
            room: room.id,
            seq: None,
            frame: frames::encode(&ServerFrame::Typing {
                room: room.name.as_str().to_owned(),
                username: self.conn.username().as_str().to_owned(),
            }),
            audience: Audience::ExtendedExcept(self.conn.user_id()),
        });
        Ok(())
    }

    async fn on_who(&mut self, room: Option<String>) -> Result<(), Gone> {
        let Some(room) = self.subscribed_room(room).await? else {
            return Ok(());
        };
        let frame = ServerFrame::Who {
            room: room.name.as_str().to_owned(),
            online: self.state.fanout.online(room.id).await,
        };
        self.send(&frame).await
    }

    /// Leaves every room, announces the user's departure where they are
    /// now offline, and closes the socket if it is still open.
    async fn finish(mut self, end: End) {
        for room in self.state.hub.disconnect(&self.conn) {
            let name = self
                .room_name_of(room)
                .unwrap_or_else(|| RoomName::GENERAL.to_owned());
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

/// Where delivery stands in each room a connection receives.
///
/// A connection receives a handful of rooms, so this is a list searched
/// from the front, grown one entry at a time: every idle socket holds one,
/// and three hash maps (each allocating four slots on first use) cost
/// several times as much memory for the usual one or two rooms.
#[derive(Debug, Default)]
struct Tracked(Vec<RoomState>);

#[derive(Debug)]
struct RoomState {
    id: RoomId,
    /// The room, while the connection receives it by name (it joined it or
    /// sent to it); `None` for a subscription the hub made for it (a new
    /// direct conversation) until then.
    room: Option<Room>,
    /// The last seq delivered, or where delivery starts.
    cursor: Option<Seq>,
    /// The newest seq actually sent to the client.
    sent: Option<Seq>,
}

impl Tracked {
    fn get(&self, id: RoomId) -> Option<&RoomState> {
        self.0.iter().find(|state| state.id == id)
    }

    fn entry(&mut self, id: RoomId) -> &mut RoomState {
        let index = match self.0.iter().position(|state| state.id == id) {
            Some(index) => index,
            None => {
                self.0.reserve_exact(1);
                self.0.push(RoomState {
                    id,
                    room: None,
                    cursor: None,
                    sent: None,
                });
                self.0.len() - 1
            }
        };
        &mut self.0[index]
    }

    fn cursor(&self, id: RoomId) -> Option<Seq> {
        self.get(id).and_then(|state| state.cursor)
    }

    fn sent(&self, id: RoomId) -> Option<Seq> {
        self.get(id).and_then(|state| state.sent)
    }

    fn set_cursor(&mut self, id: RoomId, seq: Seq) {
        self.entry(id).cursor = Some(seq);
    }

    /// `seq` went out to the client.
    fn mark_sent(&mut self, id: RoomId, seq: Seq) {
        let state = self.entry(id);
        state.cursor = Some(seq);
        state.sent = Some(seq);
    }

    /// The connection now receives `room` by name.
    fn name(&mut self, room: Room) {
        let id = room.id;
        self.entry(id).room = Some(room);
    }

    fn room(&self, id: RoomId) -> Option<&Room> {
        self.get(id).and_then(|state| state.room.as_ref())
    }

    fn named(&self, name: &RoomName) -> Option<&Room> {
        self.0
            .iter()
            .filter_map(|state| state.room.as_ref())
            .find(|room| &room.name == name)
    }

    /// The connection left the room: nothing of it is kept.
    fn forget(&mut self, id: RoomId) {
        self.0.retain(|state| state.id != id);
    }
}

/// Reads the `room` of a serialized `message` frame, for the rare gap fill
/// of a room the session has no name for.
fn frame_room_name(frame: &ByteString) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct RoomOnly {
        room: String,
    }
    serde_json::from_str::<RoomOnly>(frame).ok().map(|r| r.room)
}

#[cfg(test)]
mod tests {
    use chat_domain::RoomKind;
    use chrono::Utc;

    use super::*;

    fn room(id: i64, name: &str) -> Room {
        Room {
            id: RoomId(id),
            name: RoomName::parse(name).expect("a valid name"),
            kind: RoomKind::Public,
            created_by: None,
            created_at: Utc::now(),
            last_seq: Seq::ZERO,
        }
    }

    fn seq(value: i64) -> Seq {
        Seq::new(value).expect("a valid seq")
    }

    #[test]
    fn tracked_rooms_keep_cursor_sent_and_name_apart_until_forgotten() {
        let mut rooms = Tracked::default();
        // A subscription the hub made: a cursor, no name yet.
        rooms.set_cursor(RoomId(2), seq(5));
        assert_eq!(rooms.cursor(RoomId(2)), Some(seq(5)));
        assert_eq!(rooms.sent(RoomId(2)), None);
        assert!(rooms.room(RoomId(2)).is_none());

        rooms.name(room(1, "general"));
        rooms.mark_sent(RoomId(1), seq(9));
        assert_eq!(rooms.cursor(RoomId(1)), Some(seq(9)));
        assert_eq!(rooms.sent(RoomId(1)), Some(seq(9)));
        let general = RoomName::parse("general").expect("a valid name");
        assert_eq!(rooms.named(&general).map(|r| r.id), Some(RoomId(1)));

        // A cursor moved back (a resume) leaves what was sent alone.
        rooms.set_cursor(RoomId(1), seq(3));
        assert_eq!(rooms.sent(RoomId(1)), Some(seq(9)));

        rooms.forget(RoomId(1));
        assert!(rooms.named(&general).is_none());
        assert_eq!(rooms.cursor(RoomId(1)), None);
        assert_eq!(rooms.cursor(RoomId(2)), Some(seq(5)), "other rooms stay");
    }
}
