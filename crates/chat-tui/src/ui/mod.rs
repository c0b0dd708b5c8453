//! The terminal screens. The UI thread owns the [`App`] (as cursive's user
//! data); REST calls run on worker threads and the WebSocket on its own
//! thread, and both come back through cursive's callback sink.

mod chat;
mod e2e;
mod login;
mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::Duration;

use cursive::Cursive;
use cursive::theme::Theme;

use chat_protocol::ws::ServerFrame;

use crate::Options;
use crate::api::{Api, ApiError};
use crate::net::{GeneralPosition, NetHandle};
use crate::secure::Secure;
use crate::state::ChatState;

/// What the UI thread holds.
#[derive(Debug)]
pub(crate) struct App {
    server: String,
    options: Options,
    session: Option<Session>,
    /// Bumped at every login, so late answers for an earlier session are
    /// recognised and dropped.
    generation: u64,
}

/// A logged-in session: the REST client with its token, what the client
/// knows, and the WebSocket thread. Dropping it closes the socket.
#[derive(Debug)]
pub(crate) struct Session {
    api: Api,
    state: ChatState,
    net: NetHandle,
    /// Where `state` stands in `general`, read by the connection thread at
    /// each connect.
    general: GeneralPosition,
    generation: u64,
    last_typing_sent: Option<std::time::Instant>,
    /// Rooms whose members were asked for (for "seen by"), once each.
    members_asked: BTreeSet<String>,
    /// This installation's device for end-to-end encrypted rooms; `None`
    /// when no device passphrase was given at login.
    secure: Option<Secure>,
    /// MLS items of rooms whose group this device has not joined yet,
    /// held while its Welcomes are fetched, then read in order.
    waiting: BTreeMap<String, Vec<ServerFrame>>,
    /// A fetch of this device's Welcomes is under way; `again` when
    /// another was asked for meanwhile.
    welcomes: WelcomeFetch,
    /// The Welcomes this session has used (or failed to use): a fetch
    /// that overtakes the acknowledgement of one lists it again.
    welcomes_taken: BTreeSet<i64>,
    /// Rooms whose group this device created and the server has not yet
    /// accepted a commit of: a stale first commit there means another
    /// member's client set the group up first.
    fresh_groups: BTreeSet<String>,
    /// Rooms whose group is to be compared with the room's members, and
    /// when (see `e2e::schedule_follow`).
    follow: BTreeMap<String, FollowDue>,
}

/// When a room's group is next compared with the room's members, and how
/// late a turn acts then.
#[derive(Debug, Clone, Copy)]
struct FollowDue {
    at: std::time::Instant,
    patience: usize,
    /// Only if this client comes first for the room (a look after
    /// connecting, which one client per room is enough for).
    if_first: bool,
}

/// Whether a fetch of Welcomes is under way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum WelcomeFetch {
    #[default]
    Idle,
    Running,
    RunningAgain,
}

/// Sets up the client on `siv`: the theme, the key bindings and the login
/// screen for the server at `server` (`http://host:port`). Run `siv`
/// afterwards.
pub fn install(siv: &mut Cursive, server: &str) {
    install_with(siv, Options::new(server));
}

/// Sets up the client on `siv` like [`install`], with where the device
/// state of encrypted rooms lives and how it is protected.
pub fn install_with(siv: &mut Cursive, options: Options) {
    siv.set_theme(Theme::terminal_default());
    siv.set_user_data(App {
        server: options.server.trim_end_matches('/').to_owned(),
        options,
        session: None,
        generation: 0,
    });
    siv.add_global_callback(cursive::event::Event::CtrlChar('c'), quit);
    spawn_ticker(siv);
    login::show(siv, None);
}

/// Leaves the client, closing the connection.
fn quit(siv: &mut Cursive) {
    if let Some(app) = siv.user_data::<App>() {
        if let Some(secure) = app.session.as_mut().and_then(|s| s.secure.as_mut()) {
            // Nothing left to show an error on; the last save stands.
            let _ = secure.save_if_dirty();
        }
        app.session = None;
    }
    siv.quit();
}

/// Runs [`chat::tick`] once a second. The thread ends when the UI is gone.
fn spawn_ticker(siv: &Cursive) {
    let sink = siv.cb_sink().clone();
    thread::spawn(move || {
        loop {
            thread::sleep(Duration::from_secs(1));
            if sink.send(Box::new(chat::tick)).is_err() {
                return;
            }
        }
    });
}

fn session_mut(siv: &mut Cursive) -> Option<&mut Session> {
    siv.user_data::<App>()?.session.as_mut()
}

fn current_generation(siv: &mut Cursive) -> Option<u64> {
    session_mut(siv).map(|session| session.generation)
}

/// Ends the session and shows the login screen with `message`.
fn back_to_login(siv: &mut Cursive, message: String) {
    if let Some(app) = siv.user_data::<App>() {
        app.session = None;
    }
    login::show(siv, Some(message));
}

/// Runs a REST call on a worker thread, then `done` on the UI thread with
/// its result. An expired token sends the user back to login; any other
/// failure is shown in the room on screen.
fn background<T, W, D>(siv: &mut Cursive, work: W, done: D)
where
    T: Send + 'static,
    W: FnOnce(&Api) -> Result<T, ApiError> + Send + 'static,
    D: FnOnce(&mut Cursive, T) + Send + 'static,
{
    let Some(session) = session_mut(siv) else {
        return;
    };
    let api = session.api.clone();
    let generation = session.generation;
    let sink = siv.cb_sink().clone();
    thread::spawn(move || {
        let result = work(&api);
        let _ = sink.send(Box::new(move |siv: &mut Cursive| {
            if current_generation(siv) != Some(generation) {
                return;
            }
            match result {
                Ok(value) => done(siv, value),
                Err(ApiError::Unauthorized(detail)) => {
                    back_to_login(
                        siv,
                        format!("Your session has expired ({detail}). Please log in again."),
                    );
                    return;
                }
                Err(error) => {
                    if let Some(session) = session_mut(siv) {
                        session.state.error(None, error.to_string());
                    }
                }
            }
            render::all(siv);
        }));
    });
}
