//! A server on port 0, a puppet terminal running the client, and a plain
//! WebSocket client for the other person in the room.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use chat_protocol::rest::{CreateRoomRequest, Credentials, HistoryItem, RoomBody, TokenBody};
use chat_protocol::ws::{ClientFrame, ServerFrame};
use cursive::backends::puppet;
use cursive::backends::puppet::observed::{ObservedPieceInterface, ObservedScreen};
use cursive::event::{Event, Key};
use cursive::{Cursive, CursiveRunner, Vec2};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

/// How long any wait in these tests lasts before it fails.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) const PASSWORD: &str = "correct horse battery";

/// A directory under the system's temporary directory, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> Result<TempDir> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        let path =
            std::env::temp_dir().join(format!("chat-tui-test-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real server, on its own thread with its own runtime.
pub(crate) struct TestServer {
    pub(crate) address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: Option<mpsc::Receiver<()>>,
}

impl TestServer {
    /// Starts a server on `bind` ("127.0.0.1:0" for a free port) with its
    /// database and secrets in `data_dir`.
    pub(crate) fn start(bind: &str, data_dir: &TempDir) -> Result<TestServer> {
        let mut settings = chat_server::Settings::defaults();
        settings.bind = bind.to_owned();
        settings.data_dir = data_dir.0.clone();
        settings.database_url = None;
        settings.bcrypt_cost = 10;
        settings.workers = Some(1);
        settings.shutdown_grace_secs = 1;
        let (ready, address) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (finished, stopped_thread) = mpsc::channel::<()>();
        thread::spawn(move || {
            // Dropped when this thread ends, however it ends.
            let _finished = finished;
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = ready.send(Err(anyhow!(error)));
                    return;
                }
            };
            runtime.block_on(async move {
                let app = match chat_server::build(&settings).await {
                    Ok(app) => app,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let _ = ready.send(Ok(app.address()));
                let _ = app
                    .run_until_stopped(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let address = address
            .recv_timeout(WAIT)
            .context("the server did not start")??;
        Ok(TestServer {
            address,
            stop: Some(stop),
            stopped: Some(stopped_thread),
        })
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops the server and waits until it is down (at most [`WAIT`], so
    /// a server that cannot stop fails the test instead of hanging it).
    pub(crate) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.recv_timeout(WAIT);
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(WAIT))
        .build()
        .into()
}

/// Registers a user over REST and returns a token.
pub(crate) fn register_and_login(server: &str, username: &str) -> Result<String> {
    let credentials = Credentials {
        username: username.to_owned(),
        password: PASSWORD.to_owned(),
    };
    let agent = agent();
    agent
        .post(format!("{server}/api/auth/register"))
        .send_json(&credentials)?;
    let token: TokenBody = agent
        .post(format!("{server}/api/auth/login"))
        .send_json(&credentials)?
        .body_mut()
        .read_json()?;
    Ok(token.access_token)
}

/// Creates a room as the user of `token`, who becomes its owner.
pub(crate) fn create_room(server: &str, token: &str, name: &str) -> Result<()> {
    agent()
        .post(format!("{server}/api/rooms"))
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(&CreateRoomRequest {
            name: name.to_owned(),
            visibility: None,
            topic: None,
            encrypted: false,
        })?;
    Ok(())
}

/// Removes `username` from `room` as the user of `token` (the owner or a
/// moderator).
pub(crate) fn kick(server: &str, token: &str, room: &str, username: &str) -> Result<()> {
    agent()
        .delete(format!("{server}/api/rooms/{room}/members/{username}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()?;
    Ok(())
}

/// The seed's history endpoint: the newest messages of `general`.
pub(crate) fn general_history(server: &str, token: &str) -> Result<Vec<HistoryItem>> {
    Ok(agent()
        .get(format!("{server}/api/chat/messages"))
        .query("token", token)
        .query("limit", "200")
        .call()?
        .body_mut()
        .read_json()?)
}

/// The rooms as the user of `token` sees them, with their read marks.
pub(crate) fn rooms(server: &str, token: &str) -> Result<Vec<RoomBody>> {
    Ok(agent()
        .get(format!("{server}/api/rooms"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()?
        .body_mut()
        .read_json()?)
}

/// Another person, on a plain WebSocket.
pub(crate) struct Peer {
    socket: WebSocket<TcpStream>,
}

impl Peer {
    pub(crate) fn connect(address: SocketAddr, token: &str) -> Result<Peer> {
        let mut request = format!("ws://{address}/ws/chat").into_client_request()?;
        request.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
        let stream = TcpStream::connect(address)?;
        stream.set_read_timeout(Some(WAIT))?;
        let (socket, _) = tungstenite::client(request, stream).map_err(|e| anyhow!("{e}"))?;
        let mut peer = Peer { socket };
        // A non-seed frame makes the server treat this as a full client.
        peer.send(&ClientFrame::Ping)?;
        Ok(peer)
    }

    pub(crate) fn send(&mut self, frame: &ClientFrame) -> Result<()> {
        self.socket
            .send(Message::text(serde_json::to_string(frame)?))?;
        Ok(())
    }

    /// Reads frames until one matches; fails after [`WAIT`].
    pub(crate) fn wait_for(
        &mut self,
        wanted: impl Fn(&ServerFrame) -> bool,
    ) -> Result<ServerFrame> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Message::Text(text) = self.socket.read()? {
                let frame: ServerFrame = serde_json::from_str(text.as_str())?;
                if wanted(&frame) {
                    return Ok(frame);
                }
            }
        }
        bail!("no matching frame within {WAIT:?}")
    }

    /// Reads frames until the message with this text arrives; its seq.
    pub(crate) fn wait_for_message(&mut self, text: &str) -> Result<i64> {
        match self.wait_for(
            |frame| matches!(frame, ServerFrame::Message { content, .. } if content == text),
        )? {
            ServerFrame::Message { seq, .. } => Ok(seq),
            other => bail!("expected a message, got {other:?}"),
        }
    }

    /// Sends a message to `room` and returns its seq once it is stored.
    pub(crate) fn say(&mut self, room: &str, text: &str) -> Result<i64> {
        self.send(&ClientFrame::Message {
            mls: None,
            content: text.to_owned(),
            room: Some(room.to_owned()),
            client_id: None,
            reply_to: None,
        })?;
        self.wait_for_message(text)
    }
}

/// The cast of most tests: a server, the client logged in as one user, and
/// another user on a plain WebSocket. Dropped in that order of fields: the
/// client, the other user, the server, then its data.
pub(crate) struct Scene {
    pub(crate) terminal: Terminal,
    pub(crate) peer: Peer,
    /// The token of the client's user, for REST calls made as them.
    pub(crate) token: String,
    pub(crate) peer_token: String,
    pub(crate) server: TestServer,
    _data: TempDir,
}

impl Scene {
    /// Registers `me` and `other`, connects `other`, and logs the client
    /// in as `me`.
    pub(crate) fn start(me: &str, other: &str) -> Result<Scene> {
        let data = TempDir::new()?;
        let server = TestServer::start("127.0.0.1:0", &data)?;
        let token = register_and_login(&server.url(), me)?;
        let peer_token = register_and_login(&server.url(), other)?;
        let peer = Peer::connect(server.address, &peer_token)?;
        let mut terminal = Terminal::start(&server.url());
        terminal.log_in(me, PASSWORD)?;
        Ok(Scene {
            terminal,
            peer,
            token,
            peer_token,
            server,
            _data: data,
        })
    }
}

/// The client's UI on a puppet terminal: keys go in, screens come out.
pub(crate) struct Terminal {
    runner: CursiveRunner<Cursive>,
    input: crossbeam_sender::Sender,
    frames: crossbeam_sender::Receiver,
    screen: Option<ObservedScreen>,
    /// The login screen asks for a device passphrase.
    asks_passphrase: bool,
}

/// The channel types of the puppet backend, named once.
mod crossbeam_sender {
    use cursive::backends::puppet::observed::ObservedScreen;
    use cursive::event::Event;

    pub(crate) type Sender = cursive::reexports::crossbeam_channel::Sender<Option<Event>>;
    pub(crate) type Receiver = cursive::reexports::crossbeam_channel::Receiver<ObservedScreen>;
}

impl Terminal {
    /// Starts the client against `server` on a 120x32 puppet terminal.
    pub(crate) fn start(server: &str) -> Terminal {
        let mut siv = Cursive::new();
        chat_tui::install(&mut siv, server);
        Terminal::run(siv, true)
    }

    /// Starts the client with its device state in `state_dir`, the
    /// passphrase asked for on the login screen.
    pub(crate) fn start_asking_passphrase(server: &str, state_dir: &TempDir) -> Terminal {
        let mut siv = Cursive::new();
        chat_tui::install_with(&mut siv, device_options(server, state_dir, None));
        Terminal::run(siv, true)
    }

    /// Starts the client with its device state in `state_dir`, opened with
    /// `passphrase` (as `CHAT_E2E_PASSPHRASE` gives it), at a cheap key
    /// derivation cost.
    pub(crate) fn start_with_device(
        server: &str,
        state_dir: &TempDir,
        passphrase: &str,
    ) -> Terminal {
        let mut siv = Cursive::new();
        let options = device_options(server, state_dir, Some(passphrase));
        chat_tui::install_with(&mut siv, options);
        Terminal::run(siv, false)
    }

    fn run(siv: Cursive, asks_passphrase: bool) -> Terminal {
        let backend = puppet::Backend::init(Some(Vec2::new(120, 32)));
        let input = backend.input();
        let frames = backend.stream();
        let mut runner = siv.into_runner(backend);
        runner.refresh();
        Terminal {
            runner,
            input,
            frames,
            screen: None,
            asks_passphrase,
        }
    }

    /// Lets the client handle what has arrived, and keeps its last screen.
    pub(crate) fn step(&mut self) {
        self.runner.step();
        while let Ok(screen) = self.frames.try_recv() {
            self.screen = Some(screen);
        }
    }

    /// Runs this client and `other` until this one's screen shows `text`.
    pub(crate) fn wait_for_beside(&mut self, other: &mut Terminal, text: &str) -> Result<()> {
        self.wait_until_beside(other, &format!("{text:?}"), |screen| screen.contains(text))
    }

    /// Runs this client and `other` until this one's screen passes `test`.
    pub(crate) fn wait_until_beside(
        &mut self,
        other: &mut Terminal,
        what: &str,
        test: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            other.step();
            self.step();
            if test(&self.text()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the screen never showed {what}; it shows:\n{}", self.text());
            }
        }
    }

    /// Types text, character by character.
    pub(crate) fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            self.event(Event::Char(c));
        }
    }

    /// Types a line and presses Enter.
    pub(crate) fn submit(&mut self, line: &str) {
        self.type_text(line);
        self.press(Key::Enter);
    }

    pub(crate) fn press(&mut self, key: Key) {
        self.event(Event::Key(key));
    }

    pub(crate) fn event(&mut self, event: Event) {
        let _ = self.input.send(Some(event));
        self.runner.step();
    }

    /// The last screen drawn, as lines of text.
    pub(crate) fn text(&self) -> String {
        self.screen
            .as_ref()
            .map(|screen| screen.as_strings().join("\n"))
            .unwrap_or_default()
    }

    /// Runs the UI until the screen shows something that passes `test`.
    pub(crate) fn wait_until(&mut self, what: &str, test: impl Fn(&str) -> bool) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.runner.step();
            while let Ok(screen) = self.frames.try_recv() {
                self.screen = Some(screen);
            }
            if test(&self.text()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the screen never showed {what}; it shows:\n{}", self.text());
            }
        }
    }

    /// Runs the UI until `done` says so, asking it every 50 ms: for what
    /// the client does in the background, seen from outside (the server).
    pub(crate) fn run_until(
        &mut self,
        what: &str,
        mut done: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        while !done()? {
            if Instant::now() >= deadline {
                bail!("{what} did not happen within {WAIT:?}");
            }
            let step_until = Instant::now() + Duration::from_millis(50);
            while Instant::now() < step_until {
                self.runner.step();
            }
        }
        Ok(())
    }

    /// Runs the UI until the screen shows `text`.
    pub(crate) fn wait_for(&mut self, text: &str) -> Result<()> {
        self.wait_until(&format!("{text:?}"), |screen| screen.contains(text))
    }

    /// Types a username and password on the login screen and submits.
    pub(crate) fn log_in_without_waiting(&mut self, username: &str, password: &str) {
        self.log_in_with_passphrase_without_waiting(username, password, "");
    }

    /// Types a username, a password and (when the login screen asks for
    /// it) a device passphrase, and submits.
    pub(crate) fn log_in_with_passphrase_without_waiting(
        &mut self,
        username: &str,
        password: &str,
        passphrase: &str,
    ) {
        self.type_text(username);
        self.press(Key::Enter);
        self.type_text(password);
        self.press(Key::Enter);
        if self.asks_passphrase {
            self.type_text(passphrase);
            self.press(Key::Enter);
        }
    }

    /// Logs in from the login screen and waits for the live connection.
    pub(crate) fn log_in(&mut self, username: &str, password: &str) -> Result<()> {
        self.wait_for("Username")?;
        self.log_in_without_waiting(username, password);
        self.wait_until("the connected chat screen", |screen| {
            screen.contains("connected") && !screen.contains("connecting")
        })
    }
}

/// Client options with the device state in `state_dir` and a cheap key
/// derivation; `passphrase` as `CHAT_E2E_PASSPHRASE` would give it.
fn device_options(
    server: &str,
    state_dir: &TempDir,
    passphrase: Option<&str>,
) -> chat_tui::Options {
    let mut options = chat_tui::Options::new(server);
    options.state_dir = state_dir.0.clone();
    options.passphrase = passphrase.map(str::to_owned);
    options.kdf = chat_tui::KdfParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };
    options
}
