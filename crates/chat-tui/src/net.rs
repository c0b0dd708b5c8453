//! The WebSocket, on a background thread: connects, reads server frames
//! and hands them to a callback, writes the frames the UI sends, and
//! reconnects with backoff when the connection drops.
//!
//! The thread keeps no chat state. It connects with the last seq of
//! `general` that the UI has (see [`GeneralPosition`]), so the server
//! replays what was missed there before any live message. On every
//! (re)connection it reports [`NetEvent::Connected`], and the UI answers
//! with the frames that resume the other rooms and re-send what is
//! unacknowledged. Frames the UI sends while
//! the connection is down are dropped here; the UI still holds the
//! messages among them as pending and sends them again then.
//!
//! The server closes a socket when its access token expires. The thread
//! renews the token before then (see [`Api::renew_if_due`]) and hands every
//! new one to the open socket in an `auth` frame; a socket refused at the
//! handshake is retried once with a refreshed token.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use chat_protocol::ws::{AuthFrame, ClientFrame, ServerFrame};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

use crate::api::{Api, ApiError, Token};
use crate::backoff::Backoff;

/// How long a read waits before the thread looks at its outgoing queue.
const POLL: Duration = Duration::from_millis(50);
/// A `ping` goes out after this much silence from our side.
const PING_EVERY: Duration = Duration::from_secs(15);
/// A server silent for this long is taken to be gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(40);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the connection reports to the UI.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NetEvent {
    /// A connection is up; resume rooms and re-send pending messages now.
    Connected,
    /// A frame from the server.
    Frame(ServerFrame),
    /// The connection dropped or could not be made; the next attempt is in
    /// `retry_in`.
    Disconnected {
        reason: String,
        retry_in: Duration,
        attempt: u32,
    },
    /// The server refused the token (expired or bad). The thread stops.
    Rejected(String),
}

enum NetCommand {
    Send(ClientFrame),
    Shutdown,
}

/// The UI's handle on the connection thread. Dropping it stops the thread
/// (within one poll interval; it is not joined, so closing the socket
/// politely never holds up the UI).
#[derive(Debug)]
pub(crate) struct NetHandle {
    commands: Sender<NetCommand>,
}

impl NetHandle {
    /// Queues a frame for the server.
    pub(crate) fn send(&self, frame: ClientFrame) {
        // A send fails only once the thread has stopped (token refused),
        // and then the UI is already going back to the login screen.
        let _ = self.commands.send(NetCommand::Send(frame));
    }
}

impl Drop for NetHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(NetCommand::Shutdown);
    }
}

impl std::fmt::Debug for NetCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetCommand::Send(frame) => write!(f, "Send({})", frame.kind()),
            NetCommand::Shutdown => f.write_str("Shutdown"),
        }
    }
}

/// The last seq of `general` the UI has without a gap, shared with the
/// connection thread. Every connect carries it (`?last_seq=`): the server
/// then replays what came after it before any live message of `general`.
/// A `resume` frame could not do that, because the connection is in
/// `general` from its first moment and live messages could overtake it.
#[derive(Debug, Clone, Default)]
pub(crate) struct GeneralPosition(Arc<AtomicI64>);

impl GeneralPosition {
    pub(crate) fn set(&self, seq: i64) {
        self.0.store(seq, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Starts the connection thread for `url` (`ws://host/ws/chat`) with the
/// tokens of `api`, which must be logged in; every connect resumes
/// `general` from `general`. Every event goes to `on_event`, from that
/// thread.
pub(crate) fn spawn(
    url: String,
    api: Api,
    general: GeneralPosition,
    on_event: impl Fn(NetEvent) + Send + 'static,
) -> NetHandle {
    let (commands, receiver) = mpsc::channel();
    thread::spawn(move || run(&url, &api, &general, &receiver, &on_event));
    NetHandle { commands }
}

enum Failure {
    /// The server refused the token; do not try again.
    Rejected(String),
    /// Anything else; try again later.
    Lost(String),
}

enum Stop {
    Shutdown,
    Lost(String),
    /// The session is over: its tokens can no longer be renewed.
    Rejected(String),
}

fn run(
    url: &str,
    api: &Api,
    general: &GeneralPosition,
    commands: &Receiver<NetCommand>,
    on_event: &dyn Fn(NetEvent),
) {
    let mut backoff = Backoff::reconnect();
    let mut refreshed_after_refusal = false;
    loop {
        let Some((token, generation)) = api.current() else {
            on_event(NetEvent::Rejected("not logged in".to_owned()));
            return;
        };
        let reason = match connect(&resume_url(url, general.get()), &token) {
            Ok(mut socket) => {
                backoff.reset();
                refreshed_after_refusal = false;
                if shutdown_requested(commands) {
                    let _ = socket.close(None);
                    return;
                }
                on_event(NetEvent::Connected);
                match serve(&mut socket, api, generation, commands, on_event) {
                    Stop::Shutdown => {
                        let _ = socket.close(None);
                        let _ = socket.flush();
                        return;
                    }
                    Stop::Lost(reason) => reason,
                    Stop::Rejected(reason) => {
                        let _ = socket.close(None);
                        let _ = socket.flush();
                        on_event(NetEvent::Rejected(reason));
                        return;
                    }
                }
            }
            // The token may just have expired (a laptop that slept through
            // its renewal): refresh once and try again at once.
            Err(Failure::Rejected(reason)) if !refreshed_after_refusal => {
                refreshed_after_refusal = true;
                match api.refresh_after(generation) {
                    Ok(_) => continue,
                    Err(ApiError::Unauthorized(_)) => {
                        on_event(NetEvent::Rejected(reason));
                        return;
                    }
                    Err(error) => error.to_string(),
                }
            }
            Err(Failure::Rejected(reason)) => {
                on_event(NetEvent::Rejected(reason));
                return;
            }
            Err(Failure::Lost(reason)) => reason,
        };
        let (retry_in, attempt) = backoff.next_delay();
        on_event(NetEvent::Disconnected {
            reason,
            retry_in,
            attempt,
        });
        if wait_or_shutdown(commands, retry_in) {
            return;
        }
    }
}

/// Drops frames queued while there was no connection (the UI re-sends
/// what matters once it hears [`NetEvent::Connected`]); says whether the
/// UI asked the thread to stop meanwhile.
fn shutdown_requested(commands: &Receiver<NetCommand>) -> bool {
    loop {
        match commands.try_recv() {
            Ok(NetCommand::Send(_)) => {}
            Ok(NetCommand::Shutdown) | Err(TryRecvError::Disconnected) => return true,
            Err(TryRecvError::Empty) => return false,
        }
    }
}

/// Waits `delay` before the next attempt, dropping frames meanwhile; says
/// whether the UI asked the thread to stop.
fn wait_or_shutdown(commands: &Receiver<NetCommand>, delay: Duration) -> bool {
    let deadline = Instant::now() + delay;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match commands.recv_timeout(left) {
            Ok(NetCommand::Send(_)) => {}
            Ok(NetCommand::Shutdown) | Err(RecvTimeoutError::Disconnected) => return true,
            Err(RecvTimeoutError::Timeout) => return false,
        }
    }
}

/// `url` asking the server to start `general` after `last_seq`.
fn resume_url(url: &str, last_seq: i64) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}last_seq={}", last_seq.max(0))
}

fn connect(url: &str, token: &Token) -> Result<WebSocket<TcpStream>, Failure> {
    let mut request = url
        .into_client_request()
        .map_err(|error| Failure::Lost(format!("bad server URL: {error}")))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| Failure::Rejected("the token is not valid text".to_owned()))?;
    request.headers_mut().insert("Authorization", bearer);
    let host = request.uri().host().unwrap_or("localhost").to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    let address = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|error| Failure::Lost(format!("cannot resolve {host}: {error}")))?
        .next()
        .ok_or_else(|| Failure::Lost(format!("cannot resolve {host}")))?;
    let stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)
        .map_err(|error| Failure::Lost(format!("cannot connect to {address}: {error}")))?;
    stream
        .set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(|error| Failure::Lost(error.to_string()))?;
    let (socket, _response) =
        tungstenite::client(request, stream).map_err(|error| match error {
            HandshakeError::Failure(tungstenite::Error::Http(response))
                if matches!(response.status().as_u16(), 401 | 403) =>
            {
                Failure::Rejected(format!(
                    "the server refused the session ({})",
                    response.status()
                ))
            }
            HandshakeError::Failure(error) => Failure::Lost(error.to_string()),
            HandshakeError::Interrupted(_) => Failure::Lost("the handshake timed out".to_owned()),
        })?;
    socket
        .get_ref()
        .set_read_timeout(Some(POLL))
        .map_err(|error| Failure::Lost(error.to_string()))?;
    Ok(socket)
}

fn serve(
    socket: &mut WebSocket<TcpStream>,
    api: &Api,
    mut socket_generation: u64,
    commands: &Receiver<NetCommand>,
    on_event: &dyn Fn(NetEvent),
) -> Stop {
    let mut last_heard = Instant::now();
    let mut last_ping = Instant::now();
    loop {
        // Any other failure (the server unreachable) is tried again shortly.
        if let Err(ApiError::Unauthorized(reason)) = api.renew_if_due() {
            return Stop::Rejected(reason);
        }
        // A token renewed here or by a REST call goes to the socket, which
        // would otherwise be closed when its first token expires.
        if let Some((current, generation)) = api.current()
            && generation != socket_generation
        {
            let frame = AuthFrame {
                token: current.expose().to_owned(),
            };
            let Ok(text) = serde_json::to_string(&frame) else {
                return Stop::Lost("could not encode the auth frame".to_owned());
            };
            if let Err(error) = socket.send(Message::text(text)) {
                return Stop::Lost(error.to_string());
            }
            socket_generation = generation;
        }
        loop {
            match commands.try_recv() {
                Ok(NetCommand::Send(frame)) => {
                    let Ok(text) = serde_json::to_string(&frame) else {
                        continue;
                    };
                    if let Err(error) = socket.send(Message::text(text)) {
                        return Stop::Lost(error.to_string());
                    }
                    last_ping = Instant::now();
                }
                Ok(NetCommand::Shutdown) | Err(TryRecvError::Disconnected) => {
                    return Stop::Shutdown;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        match socket.read() {
            Ok(Message::Text(text)) => {
                last_heard = Instant::now();
                // Frames of a type this client does not know are skipped,
                // as the protocol asks.
                if let Ok(frame) = serde_json::from_str::<ServerFrame>(text.as_str()) {
                    on_event(NetEvent::Frame(frame));
                }
            }
            Ok(Message::Close(frame)) => {
                let reason = match frame {
                    Some(frame) if !frame.reason.is_empty() => {
                        format!("the server closed the connection: {}", frame.reason)
                    }
                    Some(frame) => format!("the server closed the connection ({})", frame.code),
                    None => "the server closed the connection".to_owned(),
                };
                return Stop::Lost(reason);
            }
            Ok(_) => last_heard = Instant::now(),
            Err(tungstenite::Error::Io(error))
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(error) => return Stop::Lost(error.to_string()),
        }
        if last_ping.elapsed() >= PING_EVERY {
            if let Err(error) = socket.send(Message::text(r#"{"type":"ping"}"#)) {
                return Stop::Lost(error.to_string());
            }
            last_ping = Instant::now();
        }
        if last_heard.elapsed() >= SILENCE_LIMIT {
            return Stop::Lost("no answer from the server".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::TestServer;

    const WAIT: Duration = Duration::from_secs(20);

    fn start(api: &Api) -> (NetHandle, Receiver<NetEvent>) {
        start_at(api, &GeneralPosition::default())
    }

    fn start_at(api: &Api, general: &GeneralPosition) -> (NetHandle, Receiver<NetEvent>) {
        let (events, received) = mpsc::channel();
        let handle = spawn(api.ws_url(), api.clone(), general.clone(), move |event| {
            let _ = events.send(event);
        });
        (handle, received)
    }

    /// The first event `wanted` accepts; fails on a refusal or after WAIT.
    fn wait_for(events: &Receiver<NetEvent>, wanted: impl Fn(&NetEvent) -> bool) -> NetEvent {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = events.recv_timeout(left).expect("an event in time");
            assert!(
                !matches!(event, NetEvent::Rejected(_)),
                "refused: {event:?}"
            );
            if wanted(&event) {
                return event;
            }
        }
    }

    #[test]
    fn a_renewed_token_is_handed_to_the_open_socket() {
        let server = TestServer::start();
        let api = server.signed_in("alice");
        let (net, events) = start(&api);
        wait_for(&events, |event| *event == NetEvent::Connected);
        api.make_renewal_due();
        wait_for(&events, |event| {
            matches!(event, NetEvent::Frame(ServerFrame::Authenticated { .. }))
        });
        // Still the same connection, still served.
        net.send(ClientFrame::Ping);
        wait_for(&events, |event| {
            matches!(event, NetEvent::Frame(ServerFrame::Pong))
        });
    }

    #[test]
    fn a_connect_replays_general_after_the_shared_position() {
        let server = TestServer::start();
        let alice = server.signed_in("alice");
        let (sender, sent) = start(&alice);
        wait_for(&sent, |event| *event == NetEvent::Connected);
        for (i, content) in ["one", "two", "three"].into_iter().enumerate() {
            sender.send(ClientFrame::Message {
                mls: None,
                content: content.to_owned(),
                room: None,
                client_id: Some(format!("c{i}")),
                reply_to: None,
            });
            wait_for(&sent, |event| {
                matches!(event, NetEvent::Frame(ServerFrame::Ack { .. }))
            });
        }
        let bob = server.signed_in("bob");
        let general = GeneralPosition::default();
        general.set(1);
        let (_reader, events) = start_at(&bob, &general);
        wait_for(&events, |event| *event == NetEvent::Connected);
        let mut replayed = Vec::new();
        let joined = loop {
            match wait_for(&events, |event| matches!(event, NetEvent::Frame(_))) {
                NetEvent::Frame(ServerFrame::Message { seq, content, .. }) => {
                    replayed.push((seq, content));
                }
                NetEvent::Frame(ServerFrame::Joined { room, last_seq, .. }) => {
                    break (room, last_seq);
                }
                _ => {}
            }
        };
        assert_eq!(replayed, [(2, "two".to_owned()), (3, "three".to_owned())]);
        assert_eq!(joined, ("general".to_owned(), 3));
    }

    #[test]
    fn the_resume_position_is_added_to_the_url() {
        assert_eq!(
            resume_url("ws://127.0.0.1:8000/ws/chat", 41),
            "ws://127.0.0.1:8000/ws/chat?last_seq=41"
        );
        assert_eq!(
            resume_url("wss://chat.example/ws/chat?x=1", 0),
            "wss://chat.example/ws/chat?x=1&last_seq=0"
        );
    }

    #[test]
    fn a_socket_refused_at_the_handshake_is_retried_after_a_refresh() {
        let server = TestServer::start();
        let api = server.signed_in("alice");
        api.set_access_token("expired-or-damaged");
        let (_net, events) = start(&api);
        wait_for(&events, |event| *event == NetEvent::Connected);
        assert_ne!(
            api.token()
                .map(|token| token.expose().to_owned())
                .as_deref(),
            Some("expired-or-damaged")
        );
    }
}
