//! One bench WebSocket client: connecting and joining, the reader that
//! checks every delivery, and the sender loop.
//!
//! A message's content carries its send time (`bench <sender> <counter>
//! <unix_nanos>`), and its `client_id` does too (`<sender>.<counter>.<unix_nanos>`),
//! so a receiver computes delivery latency and a sender computes ack latency
//! without any shared state. A sender may mix in edits of its newest
//! message (content as a message's, `client_id` `<sender>.<counter>.e.<unix_nanos>`)
//! and reactions to it, added and taken back in turn
//! (`<sender>.<counter>.r.<unix_nanos>`).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chat_protocol::mls::MlsKindBody;
use chat_protocol::ws::{ClientFrame, ServerFrame};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::time::{MissedTickBehavior, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

/// The fields of a server frame that the reader checks, borrowed from the
/// frame's text where JSON allows. Every frame is read, so this is the load
/// generator's busiest parse: a whole [`ServerFrame`], an internally tagged
/// enum, is buffered field by field and copies every string; that and its
/// allocations were the largest part of the load generator's own CPU in a
/// profile of the `rooms` scenario.
#[derive(Debug, serde::Deserialize)]
struct Seen<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    room: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<i64>,
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    client_id: Option<Cow<'a, str>>,
}

/// A client WebSocket.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// The writing half of a client WebSocket.
pub(crate) type Sink = SplitSink<Ws, Message>;

/// How long opening a socket, its greeting and its joins may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// A small read buffer: thousands of sockets live in one bench process.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// The reaction a mixed sender adds and takes back.
const REACTION: &str = "👍";

/// How long a send may stay blocked after the sending period ended, e.g.
/// behind a server that stopped reading.
const SEND_GRACE: Duration = Duration::from_secs(5);

/// Counters every client of a run updates, so the driver can tell when the
/// stragglers have arrived.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Frames written to a socket that ask for a stored item: messages,
    /// edits and reactions.
    pub(crate) sent: AtomicU64,
    /// Of those, edits.
    pub(crate) sent_edits: AtomicU64,
    /// Of those, reactions added or taken back.
    pub(crate) sent_reactions: AtomicU64,
    /// `ack` frames received.
    pub(crate) acks: AtomicU64,
    /// `error` frames received for a message (one with a `client_id`).
    pub(crate) refusals: AtomicU64,
    /// `message` frames received in a bench room.
    pub(crate) deliveries: AtomicU64,
    /// The highest acknowledged seq per bench room.
    pub(crate) acked_seq: Vec<AtomicI64>,
    stop: watch::Sender<bool>,
}

impl Shared {
    /// Counters for a run over `rooms` bench rooms.
    pub(crate) fn new(rooms: usize) -> Shared {
        Shared {
            sent: AtomicU64::new(0),
            sent_edits: AtomicU64::new(0),
            sent_reactions: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            acked_seq: (0..rooms).map(|_| AtomicI64::new(0)).collect(),
            stop: watch::Sender::new(false),
        }
    }

    /// Tells every reader to stop and hand in its report.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Whether the run has been told to stop.
    pub(crate) fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Messages that got an answer, an `ack` or an `error`.
    pub(crate) fn answered(&self) -> u64 {
        self.acks.load(Ordering::Relaxed) + self.refusals.load(Ordering::Relaxed)
    }
}

/// Opens a socket, waits for the greeting, joins `rooms` and returns the
/// socket with each room's `last_seq` at the time of joining.
pub(crate) async fn connect(url: &str, rooms: &[String]) -> anyhow::Result<(Ws, Vec<i64>)> {
    timeout(CONNECT_TIMEOUT, connect_and_join(url, rooms))
        .await
        .context("timed out opening the socket and joining")?
}

/// Opens a socket again after the previous one ended, waits for the
/// greeting and sends `resume` for each room (name, the last seq the client
/// has). The replay that follows is left on the socket for the client's
/// reader, which checks it like any delivery.
pub(crate) async fn reconnect(url: &str, rooms: &[(String, i64)]) -> anyhow::Result<Ws> {
    timeout(CONNECT_TIMEOUT, async {
        let mut ws = greeted(url).await?;
        for (room, last_seq) in rooms {
            let frame = ClientFrame::Resume {
                room: room.clone(),
                last_seq: *last_seq,
            };
            ws.send(encode(&frame)?)
                .await
                .context("could not send resume")?;
        }
        anyhow::Ok(ws)
    })
    .await
    .context("timed out opening the socket again")?
}

/// Opens a socket and waits for the server's greeting.
async fn greeted(url: &str) -> anyhow::Result<Ws> {
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0);
    let (mut ws, _) = connect_async_with_config(url, Some(config), true)
        .await
        .context("WebSocket handshake failed")?;
    loop {
        if let ServerFrame::System { .. } = next_frame(&mut ws).await? {
            return Ok(ws);
        }
    }
}

async fn connect_and_join(url: &str, rooms: &[String]) -> anyhow::Result<(Ws, Vec<i64>)> {
    let mut ws = greeted(url).await?;
    for room in rooms {
        ws.send(encode(&ClientFrame::Join { room: room.clone() })?)
            .await
            .context("could not send join")?;
    }
    let mut last_seqs: Vec<Option<i64>> = vec![None; rooms.len()];
    while last_seqs.iter().any(Option::is_none) {
        match next_frame(&mut ws).await? {
            ServerFrame::Joined { room, last_seq, .. } => {
                if let Some(index) = rooms.iter().position(|name| *name == room) {
                    last_seqs[index] = Some(last_seq);
                }
            }
            ServerFrame::Error { code, message, .. } => {
                bail!("the server refused a join: {code:?}: {message}")
            }
            _ => {}
        }
    }
    Ok((ws, last_seqs.into_iter().flatten().collect()))
}

/// The next server frame, skipping control frames.
pub(crate) async fn next_frame(ws: &mut Ws) -> anyhow::Result<ServerFrame> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text)
                    .with_context(|| format!("not a server frame: {}", text.as_str()));
            }
            Some(Ok(Message::Close(frame))) => bail!("the server closed the socket: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error).context("WebSocket error"),
            None => bail!("the socket closed"),
        }
    }
}

/// A client frame as a WebSocket text message.
pub(crate) fn encode(frame: &ClientFrame) -> anyhow::Result<Message> {
    Ok(Message::text(serde_json::to_string(frame)?))
}

/// Nanoseconds since the Unix epoch, the clock both ends of a delivery
/// share.
pub(crate) fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// Microseconds from `sent_nanos` until now, saturated to fit a `u32`
/// (71 minutes).
fn micros_since(sent_nanos: u64) -> u32 {
    u32::try_from(unix_nanos().saturating_sub(sent_nanos) / 1_000).unwrap_or(u32::MAX)
}

/// The content of a bench message.
pub(crate) fn content(sender: usize, counter: u64, nanos: u64, pad: &str) -> String {
    format!("bench {sender} {counter} {nanos}{pad}")
}

/// The send time inside a bench message's content.
fn content_nanos(content: &str) -> Option<u64> {
    let mut words = content.split(' ');
    if words.next() != Some("bench") {
        return None;
    }
    words.nth(2)?.parse().ok()
}

/// The send time inside a bench message's `client_id`.
fn client_id_nanos(client_id: &str) -> Option<u64> {
    client_id.rsplit('.').next()?.parse().ok()
}

/// What a sender's frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Message,
    /// An edit of the sender's newest message.
    Edit,
    /// A reaction to the sender's newest message, added or taken back.
    Reaction,
}

/// The kind a bench `client_id` names.
fn client_id_kind(client_id: &str) -> Kind {
    match client_id.split('.').nth(2) {
        Some("e") => Kind::Edit,
        Some("r") => Kind::Reaction,
        _ => Kind::Message,
    }
}

/// How much of a sender's traffic changes messages rather than sends them,
/// in percent of its frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Mix {
    pub(crate) edits: u8,
    pub(crate) reactions: u8,
}

impl Mix {
    /// The kind of a sender's frame number `counter`: the percentages are
    /// spread evenly over every hundred frames.
    pub(crate) fn kind(self, counter: u64) -> Kind {
        // 37 is prime to 100: a hundred frames visit every slot once.
        let slot = (counter * 37 % 100) as u8;
        if slot < self.edits {
            Kind::Edit
        } else if slot < self.edits.saturating_add(self.reactions) {
            Kind::Reaction
        } else {
            Kind::Message
        }
    }
}

/// What one client saw of one bench room.
#[derive(Debug, Clone)]
pub(crate) struct Tracked {
    /// Index of the room in the run's room list.
    pub(crate) room: usize,
    /// The room's `last_seq` when this client joined: it expects every seq
    /// after it.
    pub(crate) base: i64,
    /// The highest seq received.
    pub(crate) last: i64,
    /// The highest seq received with every seq before it (after `base`).
    pub(crate) contiguous: i64,
    /// One bit per seq after `base`: received or not.
    seen: Vec<u64>,
    /// `message` frames received.
    pub(crate) deliveries: u64,
    /// Frames whose seq had been received before.
    pub(crate) duplicates: u64,
    /// Frames whose seq was lower than one already received, or not after
    /// `base`.
    pub(crate) out_of_order: u64,
}

/// The most seqs one client tracks per room: a guard against a corrupt seq
/// allocating gigabytes.
const MAX_TRACKED_SEQS: i64 = 1 << 32;

impl Tracked {
    /// A room joined at `base`.
    pub(crate) fn new(room: usize, base: i64) -> Tracked {
        Tracked {
            room,
            base,
            last: base,
            contiguous: base,
            seen: Vec::new(),
            deliveries: 0,
            duplicates: 0,
            out_of_order: 0,
        }
    }

    /// Records one delivery of `seq`.
    fn record(&mut self, seq: i64) {
        self.deliveries += 1;
        let offset = seq - self.base - 1;
        if !(0..MAX_TRACKED_SEQS).contains(&offset) {
            self.out_of_order += 1;
            return;
        }
        let (word, bit) = ((offset / 64) as usize, offset % 64);
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= 1 << bit;
        if seq < self.last {
            self.out_of_order += 1;
        }
        self.last = self.last.max(seq);
        while self.contiguous < self.last && self.has(self.contiguous + 1) {
            self.contiguous += 1;
        }
    }

    /// Whether `seq` (after `base`) has been received.
    fn has(&self, seq: i64) -> bool {
        let offset = seq - self.base - 1;
        offset >= 0
            && self
                .seen
                .get((offset / 64) as usize)
                .is_some_and(|word| word & (1 << (offset % 64)) != 0)
    }

    /// How many seqs in `base + 1 ..= final_seq` never arrived.
    pub(crate) fn missing(&self, final_seq: i64) -> u64 {
        let expected = (final_seq - self.base).max(0);
        let full_words = (expected / 64) as usize;
        let mut received: u64 = self
            .seen
            .iter()
            .take(full_words)
            .map(|word| u64::from(word.count_ones()))
            .sum();
        let rest = expected % 64;
        if rest > 0 {
            let word = self.seen.get(full_words).copied().unwrap_or(0);
            received += u64::from((word & ((1u64 << rest) - 1)).count_ones());
        }
        expected.unsigned_abs() - received
    }
}

/// Everything one client's reader saw, handed in when the run stops.
#[derive(Debug, Default)]
pub(crate) struct ClientReport {
    /// Per bench room this client joined.
    pub(crate) rooms: Vec<Tracked>,
    /// Delivery latencies, microseconds.
    pub(crate) latencies: Vec<u32>,
    /// Ack latencies of this client's own messages, microseconds.
    pub(crate) ack_latencies: Vec<u32>,
    /// Ack latencies of its edits, microseconds.
    pub(crate) edit_ack_latencies: Vec<u32>,
    /// Ack latencies of its reactions, microseconds.
    pub(crate) reaction_ack_latencies: Vec<u32>,
    /// `ack` frames received.
    pub(crate) acks: u64,
    /// `error` frames received.
    pub(crate) errors: u64,
    /// The first error frame's code and text.
    pub(crate) first_error: Option<String>,
    /// Why the socket ended before the run did, if it did.
    pub(crate) closed: Option<String>,
    /// When the last bench message arrived.
    pub(crate) last_delivery: Option<Instant>,
    /// When the last ack arrived.
    pub(crate) last_ack: Option<Instant>,
}

/// Reads one socket until the run stops: checks every delivery, records
/// latencies, and returns flow-control credit to the sender on each answer.
#[derive(Debug)]
pub(crate) struct Reader {
    stream: SplitStream<Ws>,
    names: Arc<[String]>,
    shared: Arc<Shared>,
    window: Option<Arc<Semaphore>>,
    newest: Arc<AtomicI64>,
    stop: watch::Receiver<bool>,
    report: ClientReport,
    progress: Option<Arc<AtomicI64>>,
}

impl Reader {
    /// A reader of `stream`, which joined `rooms` (index, `last_seq`) of
    /// the run's `names`.
    pub(crate) fn new(
        stream: SplitStream<Ws>,
        rooms: impl IntoIterator<Item = (usize, i64)>,
        names: Arc<[String]>,
        shared: Arc<Shared>,
        window: Option<Arc<Semaphore>>,
        newest: Arc<AtomicI64>,
    ) -> Reader {
        let report = ClientReport {
            rooms: rooms
                .into_iter()
                .map(|(room, base)| Tracked::new(room, base))
                .collect(),
            ..ClientReport::default()
        };
        Reader::resumed(stream, report, names, shared, window, newest)
    }

    /// A reader of a socket opened again, which carries on with the report
    /// of the client's previous socket: what was received before counts,
    /// so a replay of it is a duplicate.
    pub(crate) fn resumed(
        stream: SplitStream<Ws>,
        report: ClientReport,
        names: Arc<[String]>,
        shared: Arc<Shared>,
        window: Option<Arc<Semaphore>>,
        newest: Arc<AtomicI64>,
    ) -> Reader {
        let stop = shared.stop.subscribe();
        Reader {
            stream,
            names,
            shared,
            window,
            newest,
            stop,
            report,
            progress: None,
        }
    }

    /// Keeps `progress` at the [`Tracked::contiguous`] seq of the first
    /// room, for a driver that waits for clients to catch up.
    pub(crate) fn with_progress(mut self, progress: Arc<AtomicI64>) -> Reader {
        if let Some(tracked) = self.report.rooms.first() {
            progress.store(tracked.contiguous, Ordering::Relaxed);
        }
        self.progress = Some(progress);
        self
    }

    /// Runs until the run stops or the socket ends.
    pub(crate) async fn run(mut self) -> ClientReport {
        if *self.stop.borrow() {
            return self.report;
        }
        loop {
            tokio::select! {
                biased;
                _ = self.stop.changed() => return self.report,
                item = self.stream.next() => match item {
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()),
                    Some(Ok(Message::Close(frame))) => {
                        self.report.closed = Some(match frame {
                            Some(frame) => format!("closed by the server: {} {}", frame.code, frame.reason),
                            None => "closed by the server".to_owned(),
                        });
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        self.report.closed = Some(format!("WebSocket error: {error}"));
                        break;
                    }
                    None => {
                        self.report.closed = Some("the connection ended".to_owned());
                        break;
                    }
                },
            }
        }
        // Keep the frames the sender waits on flowing: a closed socket will
        // never answer, and its sender must not wait for credit forever.
        if let Some(window) = &self.window {
            window.close();
        }
        self.report
    }

    fn on_text(&mut self, text: &str) {
        let seen = match serde_json::from_str::<Seen<'_>>(text) {
            Ok(seen) => seen,
            Err(error) => {
                self.note_error(format!("unreadable frame ({error}): {text}"));
                return;
            }
        };
        match (seen.kind.as_ref(), seen.room, seen.seq) {
            // A membership change (a client joining) and a change to a
            // message take their seq in the room like a message, and are
            // delivered like one.
            ("message" | "member" | "edited" | "deleted" | "reaction", Some(room), Some(seq)) => {
                let names = &self.names;
                let Some(tracked) = self
                    .report
                    .rooms
                    .iter_mut()
                    .find(|tracked| names[tracked.room] == room)
                else {
                    return;
                };
                tracked.record(seq);
                if let (Some(progress), Some(first)) = (&self.progress, self.report.rooms.first()) {
                    progress.store(first.contiguous, Ordering::Relaxed);
                }
                // Ciphertext hides the time in the text; the client id
                // carries it too.
                let sent = seen.content.as_deref().and_then(content_nanos).or_else(|| {
                    (seen.kind == "message")
                        .then_some(seen.client_id.as_deref())
                        .flatten()
                        .and_then(client_id_nanos)
                });
                if let Some(sent) = sent {
                    self.report.latencies.push(micros_since(sent));
                }
                self.report.last_delivery = Some(Instant::now());
                self.shared.deliveries.fetch_add(1, Ordering::Relaxed);
            }
            ("ack", Some(room), Some(seq)) => {
                self.report.acks += 1;
                self.report.last_ack = Some(Instant::now());
                if let Some(client_id) = seen.client_id.as_deref() {
                    let latencies = match client_id_kind(client_id) {
                        Kind::Message => {
                            self.newest.fetch_max(seq, Ordering::Relaxed);
                            &mut self.report.ack_latencies
                        }
                        Kind::Edit => &mut self.report.edit_ack_latencies,
                        Kind::Reaction => &mut self.report.reaction_ack_latencies,
                    };
                    if let Some(sent) = client_id_nanos(client_id) {
                        latencies.push(micros_since(sent));
                    }
                }
                if let Some(index) = self.names.iter().position(|name| *name == room) {
                    self.shared.acked_seq[index].fetch_max(seq, Ordering::Relaxed);
                }
                self.shared.acks.fetch_add(1, Ordering::Relaxed);
                self.credit();
            }
            ("message" | "ack", _, _) => {
                self.note_error(format!("a {} frame without room or seq: {text}", seen.kind));
            }
            ("error", _, _) => {
                // Rare: worth the full frame, for its code and text.
                match serde_json::from_str::<ServerFrame>(text) {
                    Ok(ServerFrame::Error { code, message, .. }) => {
                        self.note_error(format!("{code:?}: {message}"));
                    }
                    _ => self.note_error(format!("unreadable error frame: {text}")),
                }
                if seen.client_id.is_some() {
                    self.shared.refusals.fetch_add(1, Ordering::Relaxed);
                    self.credit();
                }
            }
            _ => {}
        }
    }

    fn note_error(&mut self, text: String) {
        self.report.errors += 1;
        if self.report.first_error.is_none() {
            self.report.first_error = Some(text);
        }
    }

    fn credit(&self) {
        if let Some(window) = &self.window {
            window.add_permits(1);
        }
    }
}

/// How one sender sends.
#[derive(Debug, Clone)]
pub(crate) struct SendPlan {
    /// The room to send to.
    pub(crate) room: String,
    /// Messages per second for this sender; `None` sends as fast as the
    /// window allows.
    pub(crate) rate: Option<f64>,
    /// Delay before the first message, to spread senders over a period.
    pub(crate) offset: Duration,
    /// The most messages to send.
    pub(crate) limit: Option<u64>,
    /// When to stop sending.
    pub(crate) until: Instant,
    /// Unacknowledged messages allowed; the reader returns credit.
    pub(crate) window: Option<Arc<Semaphore>>,
    /// Extra text appended to each message.
    pub(crate) pad: crate::words::Pad,
    /// Edits and reactions mixed in.
    pub(crate) mix: Mix,
    /// The seq of the sender's newest acknowledged message (0 before the
    /// first), which its reader keeps: what edits and reactions target.
    pub(crate) newest: Arc<AtomicI64>,
    /// Encrypts each message for an end-to-end encrypted room.
    pub(crate) seal: Option<crate::e2e::Sealer>,
}

/// What a sender did, and its socket back.
#[derive(Debug)]
pub(crate) struct SenderReport {
    /// The writing half, to close politely.
    pub(crate) sink: Sink,
    /// Messages written.
    pub(crate) sent: u64,
    /// Why sending stopped early, if it did.
    pub(crate) failed: Option<String>,
}

/// Sends bench messages on `sink` as `plan` says.
pub(crate) async fn send_loop(
    sender: usize,
    mut sink: Sink,
    plan: SendPlan,
    shared: Arc<Shared>,
) -> SenderReport {
    let mut sent = 0;
    let mut failed = None;
    let mut reacted: Option<i64> = None;
    let mut ticker = plan.rate.map(|rate| {
        let period = Duration::from_secs_f64(1.0 / rate.max(1e-6));
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + plan.offset, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        ticker
    });
    let until = tokio::time::Instant::from_std(plan.until);
    while plan.limit.is_none_or(|limit| sent < limit) {
        if let Some(ticker) = ticker.as_mut() {
            tokio::select! {
                _ = ticker.tick() => {}
                () = tokio::time::sleep_until(until) => break,
            }
        }
        if let Some(window) = &plan.window {
            tokio::select! {
                permit = window.acquire() => match permit {
                    Ok(permit) => permit.forget(),
                    // The reader closed the window: the socket is gone.
                    Err(_) => {
                        failed = Some("the socket closed".to_owned());
                        break;
                    }
                },
                () = tokio::time::sleep_until(until) => break,
            }
        }
        if Instant::now() >= plan.until {
            break;
        }
        let nanos = unix_nanos();
        let newest = plan.newest.load(Ordering::Relaxed);
        let kind = match plan.mix.kind(sent) {
            // Nothing of its own to change yet.
            _ if newest == 0 => Kind::Message,
            kind => kind,
        };
        let room = plan.room.clone();
        let frame = match kind {
            Kind::Message => {
                let text = content(sender, sent, nanos, &plan.pad.text(sender, sent));
                // In an encrypted room the text goes as MLS ciphertext;
                // readers time it by its client id.
                let (content, mls) = match &plan.seal {
                    None => (text, None),
                    Some(sealer) => match sealer.seal(&text) {
                        Ok(sealed) => (sealed, Some(MlsKindBody::Application)),
                        Err(error) => {
                            failed = Some(format!("could not encrypt: {error:#}"));
                            break;
                        }
                    },
                };
                ClientFrame::Message {
                    mls,
                    content,
                    room: Some(room),
                    client_id: Some(format!("{sender}.{sent}.{nanos}")),
                    reply_to: None,
                }
            }
            Kind::Edit => {
                shared.sent_edits.fetch_add(1, Ordering::Relaxed);
                ClientFrame::Edit {
                    room,
                    seq: newest,
                    content: content(sender, sent, nanos, &plan.pad.text(sender, sent)),
                    client_id: Some(format!("{sender}.{sent}.e.{nanos}")),
                }
            }
            Kind::Reaction => {
                shared.sent_reactions.fetch_add(1, Ordering::Relaxed);
                let client_id = Some(format!("{sender}.{sent}.r.{nanos}"));
                let emoji = REACTION.to_owned();
                // Added, then taken back from the same message, in turn:
                // each one is a change.
                match reacted.take() {
                    Some(seq) => ClientFrame::Unreact {
                        room,
                        seq,
                        emoji,
                        client_id,
                    },
                    None => {
                        reacted = Some(newest);
                        ClientFrame::React {
                            room,
                            seq: newest,
                            emoji,
                            client_id,
                        }
                    }
                }
            }
        };
        let message = match encode(&frame) {
            Ok(message) => message,
            Err(error) => {
                failed = Some(format!("could not encode a frame: {error}"));
                break;
            }
        };
        match timeout_at(until + SEND_GRACE, sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                failed = Some(format!("send failed: {error}"));
                break;
            }
            Err(_) => {
                failed = Some("a send blocked past the end of the run".to_owned());
                break;
            }
        }
        sent += 1;
        shared.sent.fetch_add(1, Ordering::Relaxed);
    }
    SenderReport { sink, sent, failed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_time_is_read_back_from_content_and_client_id() {
        let text = content(3, 41, 1_700_000_000_123_456_789, " xxxx");
        assert_eq!(content_nanos(&text), Some(1_700_000_000_123_456_789));
        assert_eq!(content_nanos("hello there"), None);
        assert_eq!(
            client_id_nanos("3.41.1700000000123456789"),
            Some(1_700_000_000_123_456_789)
        );
    }

    #[test]
    fn a_mix_spreads_its_percentages_over_every_hundred_frames() {
        let mix = Mix {
            edits: 10,
            reactions: 25,
        };
        let kinds: Vec<Kind> = (0..100).map(|counter| mix.kind(counter)).collect();
        let count = |kind: Kind| kinds.iter().filter(|k| **k == kind).count();
        assert_eq!(
            (
                count(Kind::Edit),
                count(Kind::Reaction),
                count(Kind::Message)
            ),
            (10, 25, 65)
        );
        // Not in runs: no ten edits in a row.
        assert!(kinds.windows(3).all(|w| w.contains(&Kind::Message)));
        assert_eq!(Mix::default().kind(7), Kind::Message);
        assert_eq!(client_id_kind("3.41.e.1700"), Kind::Edit);
        assert_eq!(client_id_kind("3.41.r.1700"), Kind::Reaction);
        assert_eq!(client_id_kind("3.41.1700"), Kind::Message);
        assert_eq!(client_id_nanos("3.41.r.1700"), Some(1700));
    }

    #[test]
    fn in_order_deliveries_leave_nothing_missing() {
        let mut tracked = Tracked::new(0, 10);
        for seq in 11..=200 {
            tracked.record(seq);
        }
        assert_eq!(tracked.deliveries, 190);
        assert_eq!(tracked.duplicates, 0);
        assert_eq!(tracked.out_of_order, 0);
        assert_eq!(tracked.missing(200), 0);
        assert_eq!(tracked.missing(202), 2);
    }

    #[test]
    fn the_contiguous_seq_stops_at_the_first_gap_until_it_is_filled() {
        let mut tracked = Tracked::new(0, 40);
        for seq in [41, 42, 44, 45] {
            tracked.record(seq);
        }
        assert_eq!(tracked.contiguous, 42);
        assert_eq!(tracked.last, 45);
        // A replay fills the gap: everything up to the newest is there.
        tracked.record(43);
        assert_eq!(tracked.contiguous, 45);
        tracked.record(43);
        assert_eq!((tracked.contiguous, tracked.duplicates), (45, 1));
    }

    #[test]
    fn duplicates_gaps_and_reordering_are_told_apart() {
        let mut tracked = Tracked::new(0, 0);
        for seq in [1, 2, 2, 5, 4, 0] {
            tracked.record(seq);
        }
        assert_eq!(tracked.duplicates, 1);
        // 4 after 5, and 0 which is not after the join.
        assert_eq!(tracked.out_of_order, 2);
        assert_eq!(tracked.missing(5), 1);
        assert_eq!(tracked.missing(64), 60);
        assert_eq!(tracked.missing(130), 126);
    }
}
