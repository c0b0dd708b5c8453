//! `reference`: a bare actix-ws broadcast server, the ceiling the real
//! server is measured against.
//!
//! It speaks the same frames as the real server (`chat-protocol` types) and
//! answers the REST calls the scenarios make, but it has no
//! authentication, no database and no cryptography: a token is just the
//! user's id and name, a room is a counter and a list of queues, and the
//! history is the newest `--keep` messages of each room held in memory. A
//! `message` frame is serialized once and its bytes are shared by every
//! recipient's queue. A recipient whose queue is full is disconnected with
//! 1008, as the real server does.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use anyhow::Context;
use bytestring::ByteString;
use chat_protocol::rest::{
    CreateRoomRequest, Credentials, ErrorBody, HistoryQuery, MessagePage, PageQuery, RoomBody,
    RoomKindBody, RoomMessage, TokenBody, UserBody, VisibilityBody,
};
use chat_protocol::ws::{ClientFrame, ErrorCode, ServerFrame};
use chrono::Utc;
use clap::Args;
use futures_util::StreamExt;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc};

/// The room a message without one goes to.
const GENERAL: &str = "general";

/// The largest frame a client may send, as on the real server.
const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Options of the reference server.
#[derive(Debug, Clone, Args)]
pub(crate) struct ReferenceArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub(crate) bind: String,
    /// HTTP worker threads; one per core by default.
    #[arg(long)]
    pub(crate) workers: Option<usize>,
    /// Frames that may wait for a slow client before it is disconnected;
    /// the chat server's default (`CHAT_WS_QUEUE`), so that both cut off
    /// a load generator that falls behind at the same depth.
    #[arg(long, default_value_t = 8192)]
    pub(crate) queue: usize,
    /// Messages per room kept for history pages.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) keep: usize,
    /// Fault injection for testing the bench itself: withhold every Nth
    /// message (by seq) from the first member of its room.
    #[arg(long, hide = true)]
    pub(crate) drop_every: Option<i64>,
}

/// Runs the reference server until it is killed.
pub(crate) fn run(args: ReferenceArgs) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(serve(args))
}

async fn serve(args: ReferenceArgs) -> anyhow::Result<()> {
    let mut hub = Hub::new(args.queue.max(1), args.keep);
    hub.drop_every = args.drop_every.filter(|every| *every > 0);
    let hub = web::Data::new(hub);
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(hub.clone())
            .route("/api/auth/register", web::post().to(register))
            .route("/api/auth/login", web::post().to(login))
            .route("/api/rooms", web::post().to(create_room))
            .route("/api/rooms/{name}/messages", web::get().to(messages))
            .route("/ws/chat", web::get().to(chat))
    })
    .workers(workers.max(1))
    // Without this, a frame written right after another waits for the
    // client's delayed ACK (Nagle): 40 ms on Linux.
    .tcp_nodelay(true)
    .backlog(4_096)
    .max_connections(1_000_000)
    .bind(&args.bind)
    .with_context(|| format!("could not bind {}", args.bind))?;
    for address in server.addrs() {
        eprintln!(
            "reference server listening on http://{address} (pid {}, {workers} workers)",
            std::process::id()
        );
    }
    server.run().await.context("the reference server failed")
}

/// Everything the reference server knows.
#[derive(Debug)]
struct Hub {
    rooms: Mutex<HashMap<String, Arc<Mutex<Room>>>>,
    users: Mutex<HashMap<String, i64>>,
    next_user: AtomicI64,
    next_message: AtomicI64,
    next_connection: AtomicU64,
    queue: usize,
    keep: usize,
    drop_every: Option<i64>,
}

#[derive(Debug)]
struct Room {
    seq: i64,
    members: Vec<Member>,
    recent: VecDeque<RoomMessage>,
}

#[derive(Debug)]
struct Member {
    connection: u64,
    queue: mpsc::Sender<ByteString>,
    kick: Arc<Notify>,
}

/// A lock that a panic elsewhere does not poison for good: the data are
/// counters and queues, still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    fn new(queue: usize, keep: usize) -> Hub {
        Hub {
            rooms: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            next_user: AtomicI64::new(1),
            next_message: AtomicI64::new(1),
            next_connection: AtomicU64::new(1),
            queue,
            keep,
            drop_every: None,
        }
    }

    fn room(&self, name: &str) -> Option<Arc<Mutex<Room>>> {
        lock(&self.rooms).get(name).cloned()
    }

    /// The room, created if missing, and whether it was created.
    fn room_or_new(&self, name: &str) -> (Arc<Mutex<Room>>, bool) {
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get(name) {
            return (Arc::clone(room), false);
        }
        let room = Arc::new(Mutex::new(Room {
            seq: 0,
            members: Vec::new(),
            recent: VecDeque::new(),
        }));
        rooms.insert(name.to_owned(), Arc::clone(&room));
        (room, true)
    }

    /// The id of a user, given one if new.
    fn user_id(&self, username: &str) -> i64 {
        *lock(&self.users)
            .entry(username.to_owned())
            .or_insert_with(|| self.next_user.fetch_add(1, Ordering::Relaxed))
    }

    /// Adds a member to a room (created if missing) and returns the room's
    /// seq: every later message reaches the member.
    fn join(&self, name: &str, member: Member) -> i64 {
        let (room, _) = self.room_or_new(name);
        let mut room = lock(&room);
        if !room
            .members
            .iter()
            .any(|m| m.connection == member.connection)
        {
            room.members.push(member);
        }
        room.seq
    }

    fn leave(&self, name: &str, connection: u64) {
        if let Some(room) = self.room(name) {
            lock(&room).members.retain(|m| m.connection != connection);
        }
    }

    /// Stores a message in memory and queues its frame, serialized once,
    /// for every member. Returns the ack, or `None` if the room is unknown.
    fn publish(
        &self,
        name: &str,
        user: &User,
        content: String,
        client_id: Option<String>,
    ) -> Option<ServerFrame> {
        let room = self.room(name)?;
        let mut room = lock(&room);
        room.seq += 1;
        let seq = room.seq;
        let id = self.next_message.fetch_add(1, Ordering::Relaxed);
        let timestamp = Utc::now();
        let frame = ByteString::from(
            ServerFrame::Message {
                mls: None,
                username: user.name.clone(),
                content: content.clone(),
                timestamp,
                id,
                room: name.to_owned(),
                seq,
                client_id: client_id.clone(),
                reply_to: None,
                edited_at: None,
                deleted: false,
            }
            .to_json(),
        );
        let mut withhold = self.drop_every.is_some_and(|every| seq % every == 0);
        room.members.retain(|member| {
            if std::mem::take(&mut withhold) {
                return true;
            }
            match member.queue.try_send(frame.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    member.kick.notify_one();
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        if self.keep > 0 {
            if room.recent.len() >= self.keep {
                room.recent.pop_front();
            }
            room.recent.push_back(RoomMessage {
                mls: None,
                id,
                room: name.to_owned(),
                seq,
                user_id: user.id,
                username: user.name.clone(),
                content: Some(content),
                client_id: client_id.clone(),
                created_at: timestamp,
                event: None,
                change: None,
                edited_at: None,
                deleted: false,
                deleted_by: None,
                deleted_at: None,
                reply_to: None,
                reply: None,
                reactions: Vec::new(),
            });
        }
        Some(ServerFrame::Ack {
            client_id,
            id,
            room: name.to_owned(),
            seq,
            timestamp,
            duplicate: false,
        })
    }

    /// A page of a room's kept messages, by the real server's rules.
    fn page(&self, name: &str, query: &PageQuery) -> Option<MessagePage> {
        let room = self.room(name)?;
        let room = lock(&room);
        let limit = usize::try_from(query.limit()).unwrap_or(1);
        let kept = room.recent.len();
        let first_seq = room.recent.front().map_or(room.seq + 1, |m| m.seq);
        // Index of the first kept message with a seq >= `seq`.
        let index_of = |seq: i64| usize::try_from(seq - first_seq).unwrap_or(0).min(kept);
        let (start, end, has_more) = match (query.before, query.after) {
            (_, Some(after)) => {
                let start = index_of(after + 1);
                let end = (start + limit).min(kept);
                (start, end, end < kept)
            }
            (Some(before), None) => {
                let end = index_of(before);
                let start = end.saturating_sub(limit);
                (start, end, start > 0)
            }
            (None, None) => (kept.saturating_sub(limit), kept, kept > limit),
        };
        Some(MessagePage {
            room: name.to_owned(),
            messages: room.recent.range(start..end).cloned().collect(),
            has_more,
        })
    }
}

/// Who a connection belongs to, read from the dummy token.
#[derive(Debug, Clone)]
struct User {
    id: i64,
    name: String,
}

/// The dummy token of a user: `ref.<id>.<name>`. No secret, no signature.
fn token_for(id: i64, name: &str) -> String {
    format!("ref.{id}.{name}")
}

fn user_of(token: Option<&str>) -> User {
    token
        .and_then(|token| token.strip_prefix("ref."))
        .and_then(|rest| rest.split_once('.'))
        .and_then(|(id, name)| {
            Some(User {
                id: id.parse().ok()?,
                name: name.to_owned(),
            })
        })
        .unwrap_or_else(|| User {
            id: 0,
            name: "anonymous".to_owned(),
        })
}

async fn register(hub: web::Data<Hub>, body: web::Json<Credentials>) -> HttpResponse {
    let mut users = lock(&hub.users);
    if users.contains_key(&body.username) {
        return HttpResponse::Conflict().json(ErrorBody::new("Username already registered"));
    }
    let id = hub.next_user.fetch_add(1, Ordering::Relaxed);
    users.insert(body.username.clone(), id);
    HttpResponse::Created().json(UserBody {
        id,
        username: body.username.clone(),
        created_at: Utc::now(),
    })
}

async fn login(hub: web::Data<Hub>, body: web::Json<Credentials>) -> HttpResponse {
    let id = hub.user_id(&body.username);
    HttpResponse::Ok().json(TokenBody::bearer(token_for(id, &body.username)))
}

async fn create_room(hub: web::Data<Hub>, body: web::Json<CreateRoomRequest>) -> HttpResponse {
    let name = body.name.to_lowercase();
    let (_, created) = hub.room_or_new(&name);
    if !created {
        return HttpResponse::Conflict().json(ErrorBody::new(format!("room '{name}' exists")));
    }
    HttpResponse::Created().json(RoomBody {
        name,
        kind: RoomKindBody::Public,
        last_seq: 0,
        last_read_seq: 0,
        unread: 0,
        member: true,
        visibility: VisibilityBody::Public,
        topic: None,
        role: None,
        encrypted: false,
    })
}

async fn messages(
    hub: web::Data<Hub>,
    name: web::Path<String>,
    query: web::Query<PageQuery>,
) -> HttpResponse {
    if query.before.is_some() && query.after.is_some() {
        return HttpResponse::BadRequest().json(ErrorBody::new("give before or after, not both"));
    }
    match hub.page(&name, &query) {
        Some(page) => HttpResponse::Ok().json(page),
        None => HttpResponse::NotFound().json(ErrorBody::new(format!("room '{name}' not found"))),
    }
}

async fn chat(
    req: HttpRequest,
    body: web::Payload,
    hub: web::Data<Hub>,
    query: web::Query<HistoryQuery>,
) -> actix_web::Result<HttpResponse> {
    let user = user_of(query.token.as_deref());
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    let (queue, outbound) = mpsc::channel(hub.queue);
    let connection = Connection {
        id: hub.next_connection.fetch_add(1, Ordering::Relaxed),
        hub: hub.into_inner(),
        user,
        session,
        queue,
        kick: Arc::new(Notify::new()),
        rooms: Vec::new(),
    };
    actix_web::rt::spawn(connection.run(stream, outbound));
    Ok(response)
}

/// One WebSocket of the reference server.
struct Connection {
    id: u64,
    hub: Arc<Hub>,
    user: User,
    session: Session,
    queue: mpsc::Sender<ByteString>,
    kick: Arc<Notify>,
    rooms: Vec<String>,
}

/// The socket is gone.
struct Gone;

impl Connection {
    async fn run(
        mut self,
        mut stream: AggregatedMessageStream,
        mut outbound: mpsc::Receiver<ByteString>,
    ) {
        let greeting = ServerFrame::connected_as(&self.user.name);
        let mut reason = None;
        if self.send(&greeting).await.is_ok() {
            let kick = Arc::clone(&self.kick);
            loop {
                tokio::select! {
                    biased;
                    () = kick.notified() => {
                        reason = Some(CloseReason {
                            code: CloseCode::Policy,
                            description: Some("too slow: outbound queue overflowed".to_owned()),
                        });
                        break;
                    }
                    item = stream.next() => {
                        let handled = match item {
                            Some(Ok(AggregatedMessage::Text(text))) => self.on_text(&text).await,
                            Some(Ok(AggregatedMessage::Binary(_))) => {
                                self.send(&ServerFrame::error(ErrorCode::InvalidJson, "send JSON text")).await
                            }
                            Some(Ok(AggregatedMessage::Ping(bytes))) => {
                                self.session.pong(&bytes).await.map_err(|_| Gone)
                            }
                            Some(Ok(AggregatedMessage::Pong(_))) => Ok(()),
                            Some(Ok(AggregatedMessage::Close(_)) | Err(_)) | None => Err(Gone),
                        };
                        if handled.is_err() {
                            break;
                        }
                    }
                    frame = outbound.recv() => {
                        let Some(frame) = frame else { break };
                        if self.session.text(frame).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        for room in &self.rooms {
            self.hub.leave(room, self.id);
        }
        let _ = self.session.close(reason).await;
    }

    async fn send(&mut self, frame: &ServerFrame) -> Result<(), Gone> {
        self.session.text(frame.to_json()).await.map_err(|_| Gone)
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Gone> {
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(error) => {
                return self
                    .send(&ServerFrame::error(error.code(), error.to_string()))
                    .await;
            }
        };
        match frame {
            ClientFrame::Ping => self.send(&ServerFrame::Pong).await,
            ClientFrame::Join { room } | ClientFrame::Resume { room, .. } => {
                let member = Member {
                    connection: self.id,
                    queue: self.queue.clone(),
                    kick: Arc::clone(&self.kick),
                };
                let last_seq = self.hub.join(&room, member);
                if !self.rooms.contains(&room) {
                    self.rooms.push(room.clone());
                }
                self.send(&ServerFrame::Joined {
                    room,
                    kind: RoomKindBody::Public,
                    last_seq,
                    encrypted: false,
                })
                .await
            }
            ClientFrame::Leave { room } => {
                self.hub.leave(&room, self.id);
                self.rooms.retain(|joined| *joined != room);
                self.send(&ServerFrame::Left { room, reason: None }).await
            }
            ClientFrame::Message {
                content,
                room,
                client_id,
                ..
            } => {
                let room = room.unwrap_or_else(|| GENERAL.to_owned());
                if content.trim().is_empty() {
                    return self
                        .refuse(ErrorCode::BlankMessage, "message is blank", client_id, room)
                        .await;
                }
                match self
                    .hub
                    .publish(&room, &self.user, content, client_id.clone())
                {
                    Some(ack) => self.send(&ack).await,
                    None => {
                        let message = format!("room '{room}' not found");
                        self.refuse(ErrorCode::RoomNotFound, &message, client_id, room)
                            .await
                    }
                }
            }
            ClientFrame::Who { room } => {
                self.send(&ServerFrame::Who {
                    room: room.unwrap_or_else(|| GENERAL.to_owned()),
                    online: Vec::new(),
                })
                .await
            }
            ClientFrame::Typing { .. } | ClientFrame::Read { .. } => Ok(()),
            // The reference server has no roles to govern and keeps no
            // message to change.
            ClientFrame::Kick { room, .. }
            | ClientFrame::Ban { room, .. }
            | ClientFrame::Mute { room, .. }
            | ClientFrame::Topic { room, .. }
            | ClientFrame::Edit { room, .. }
            | ClientFrame::Delete { room, .. }
            | ClientFrame::React { room, .. }
            | ClientFrame::Unreact { room, .. } => {
                self.refuse(ErrorCode::Forbidden, "not supported here", None, room)
                    .await
            }
        }
    }

    async fn refuse(
        &mut self,
        code: ErrorCode,
        message: &str,
        client_id: Option<String>,
        room: String,
    ) -> Result<(), Gone> {
        self.send(&ServerFrame::Error {
            code,
            message: message.to_owned(),
            client_id,
            room: Some(room),
            until: None,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(connection: u64) -> (Member, mpsc::Receiver<ByteString>) {
        let (queue, outbound) = mpsc::channel(4);
        let member = Member {
            connection,
            queue,
            kick: Arc::new(Notify::new()),
        };
        (member, outbound)
    }

    fn alice() -> User {
        User {
            id: 7,
            name: "alice".to_owned(),
        }
    }

    #[test]
    fn tokens_name_their_user() {
        let user = user_of(Some(&token_for(7, "alice_1")));
        assert_eq!((user.id, user.name.as_str()), (7, "alice_1"));
        assert_eq!(user_of(Some("garbage")).name, "anonymous");
        assert_eq!(user_of(None).id, 0);
    }

    #[test]
    fn a_message_reaches_every_member_once_with_the_next_seq() {
        let hub = Hub::new(4, 10);
        let (first, mut first_out) = member(1);
        let (second, mut second_out) = member(2);
        assert_eq!(hub.join("lobby", first), 0);
        assert_eq!(hub.join("lobby", second), 0);
        let ack = hub
            .publish("lobby", &alice(), "hi".to_owned(), Some("c-1".to_owned()))
            .expect("the room exists");
        let ServerFrame::Ack { seq, client_id, .. } = ack else {
            panic!("not an ack: {ack:?}");
        };
        assert_eq!((seq, client_id.as_deref()), (1, Some("c-1")));
        let frame = first_out.try_recv().expect("a frame for the first member");
        assert_eq!(
            second_out.try_recv().expect("a frame for the second"),
            frame
        );
        let parsed: ServerFrame = serde_json::from_str(&frame).expect("a server frame");
        assert!(
            matches!(parsed, ServerFrame::Message { seq: 1, ref username, .. } if username == "alice")
        );
        assert!(first_out.try_recv().is_err());
        assert!(
            hub.publish("nowhere", &alice(), "hi".to_owned(), None)
                .is_none()
        );
    }

    #[test]
    fn a_member_whose_queue_is_full_is_kicked_out_of_the_room() {
        let hub = Hub::new(1, 0);
        let (slow, _slow_out) = member(1);
        let kick = Arc::clone(&slow.kick);
        hub.join("lobby", slow);
        for _ in 0..5 {
            hub.publish("lobby", &alice(), "hi".to_owned(), None);
        }
        let room = hub.room("lobby").expect("the room");
        assert!(lock(&room).members.is_empty());
        // The kick is stored as a permit, so the connection sees it.
        let notified = kick.notified();
        futures_util::pin_mut!(notified);
        assert!(
            futures_util::FutureExt::now_or_never(notified).is_some(),
            "the slow member was told"
        );
    }

    #[test]
    fn pages_follow_the_cursor_rules() {
        let hub = Hub::new(1_000, 100);
        let (reader, _out) = member(1);
        hub.join("lobby", reader);
        for index in 0..150 {
            hub.publish("lobby", &alice(), format!("m{index}"), None);
        }
        let seqs = |page: MessagePage| -> (Vec<i64>, bool) {
            (page.messages.iter().map(|m| m.seq).collect(), page.has_more)
        };
        let page = |before, after, limit| {
            hub.page(
                "lobby",
                &PageQuery {
                    before,
                    after,
                    limit,
                },
            )
            .expect("the room")
        };
        // Only the newest 100 (51..=150) are kept.
        let (newest, more) = seqs(page(None, None, Some(3)));
        assert_eq!((newest, more), (vec![148, 149, 150], true));
        let (before, more) = seqs(page(Some(53), None, Some(5)));
        assert_eq!((before, more), (vec![51, 52], false));
        let (after, more) = seqs(page(None, Some(147), Some(5)));
        assert_eq!((after, more), (vec![148, 149, 150], false));
        let (after, more) = seqs(page(None, Some(10), Some(2)));
        assert_eq!((after, more), (vec![51, 52], true));
    }
}
