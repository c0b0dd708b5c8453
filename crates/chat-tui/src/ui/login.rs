//! The login screen: username, password, Login and Register, and errors
//! shown in place.

use std::collections::{BTreeMap, BTreeSet};
use std::thread;

use chat_protocol::rest::{Credentials, MessagePage, RoomBody};
use cursive::Cursive;
use cursive::style::{BaseColor, Color, Effect};
use cursive::traits::{Nameable, Resizable};
use cursive::utils::markup::StyledString;
use cursive::views::{Dialog, DummyView, EditView, LinearLayout, TextView};

use super::{App, Session, WelcomeFetch, chat, e2e, render};
use crate::Options;
use crate::api::{Api, ApiError};
use crate::net::{self, GeneralPosition, NetEvent};
use crate::secure::{self, Secure};
use crate::state::ChatState;

const STATUS: &str = "login_status";

/// Replaces every screen with the login form; `message` is shown under it
/// (why the user is back here, for instance).
pub(super) fn show(siv: &mut Cursive, message: Option<String>) {
    while siv.pop_layer().is_some() {}
    let server = siv
        .user_data::<App>()
        .map(|app| app.server.clone())
        .unwrap_or_default();
    let passphrase_given = siv
        .user_data::<App>()
        .is_some_and(|app| app.options.passphrase.is_some());
    let form = LinearLayout::vertical()
        .child(TextView::new(format!("Server: {server}")))
        .child(DummyView)
        .child(TextView::new("Username"))
        .child(
            EditView::new()
                .on_submit(|siv, _| {
                    if let Ok(result) = siv.focus_name("password") {
                        result.process(siv);
                    }
                })
                .with_name("username")
                .fixed_width(32),
        )
        .child(TextView::new("Password"))
        .child(
            EditView::new()
                .secret()
                .on_submit(|siv, _| {
                    // The device passphrase comes next, when it is asked.
                    let asked = siv
                        .call_on_name("passphrase", |view: &mut EditView| {
                            view.get_content().is_empty()
                        })
                        .unwrap_or(false);
                    if asked && let Ok(result) = siv.focus_name("passphrase") {
                        result.process(siv);
                        return;
                    }
                    submit(siv, Action::Login);
                })
                .with_name("password")
                .fixed_width(32),
        );
    // The device passphrase opens the saved keys of encrypted rooms; it
    // never leaves this machine. Given in the environment, it is not asked.
    let form = if passphrase_given {
        form
    } else {
        form.child(TextView::new("Device passphrase (encrypted rooms)"))
            .child(
                EditView::new()
                    .secret()
                    .on_submit(|siv, _| submit(siv, Action::Login))
                    .with_name("passphrase")
                    .fixed_width(32),
            )
    };
    let form = form
        .child(DummyView)
        .child(TextView::new(error_text(message.as_deref().unwrap_or(""))).with_name(STATUS));
    siv.add_layer(
        Dialog::around(form)
            .title("chat: log in or register")
            .button("Login", |siv| submit(siv, Action::Login))
            .button("Register", |siv| submit(siv, Action::Register))
            .button("Quit", super::quit),
    );
    if let Ok(result) = siv.focus_name("username") {
        result.process(siv);
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Login,
    Register,
}

fn error_text(text: &str) -> StyledString {
    StyledString::styled(text, Color::Light(BaseColor::Red))
}

fn set_status(siv: &mut Cursive, text: StyledString) {
    siv.call_on_name(STATUS, |view: &mut TextView| view.set_content(text));
}

fn field(siv: &mut Cursive, name: &str) -> String {
    siv.call_on_name(name, |view: &mut EditView| view.get_content().to_string())
        .unwrap_or_default()
}

fn submit(siv: &mut Cursive, action: Action) {
    let username = field(siv, "username").trim().to_owned();
    let password = field(siv, "password");
    if username.is_empty() || password.is_empty() {
        set_status(siv, error_text("Enter a username and a password."));
        return;
    }
    let progress = match action {
        Action::Login => "Logging in…",
        Action::Register => "Creating the account…",
    };
    set_status(siv, StyledString::styled(progress, Effect::Dim));
    let typed = field(siv, "passphrase");
    let Some(mut options) = siv.user_data::<App>().map(|app| app.options.clone()) else {
        return;
    };
    let Some(server) = siv.user_data::<App>().map(|app| app.server.clone()) else {
        return;
    };
    if options.passphrase.is_none() && !typed.is_empty() {
        options.passphrase = Some(typed);
    }
    let sink = siv.cb_sink().clone();
    thread::spawn(move || {
        let credentials = Credentials { username, password };
        let result = bootstrap(&server, &credentials, action, &options);
        let username = credentials.username;
        let _ = sink.send(Box::new(move |siv: &mut Cursive| match result {
            Ok(start) => start_session(siv, &username, start),
            Err(error) => set_status(siv, error_text(&error.to_string())),
        }));
    });
}

/// What a session starts from: a logged-in client, the rooms, and the
/// newest page of each room the user is in.
struct Start {
    api: Api,
    rooms: Vec<RoomBody>,
    pages: Vec<MessagePage>,
    secure: Option<Secure>,
    /// What setting up the device said (rooms it joined, a new device).
    notes: Vec<String>,
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Device(#[from] secure::OpenError),
}

fn bootstrap(
    server: &str,
    credentials: &Credentials,
    action: Action,
    options: &Options,
) -> Result<Start, StartError> {
    let mut api = Api::new(server);
    if let Action::Register = action {
        api.register(credentials)?;
    }
    api.login(credentials)?;
    let mut notes = Vec::new();
    // The device comes before the history: Welcomes waiting for it open
    // the encrypted rooms whose newest messages are loaded next.
    let secure = match &options.passphrase {
        Some(passphrase) => {
            let path = secure::state_path(&options.state_dir, server, &credentials.username);
            let (mut secure, created) =
                Secure::open(&credentials.username, &path, passphrase, options.kdf)?;
            if created {
                notes.push(format!(
                    "a new device for encrypted rooms, saved in {}",
                    path.display()
                ));
            }
            e2e::enrol(&api, &mut secure, &mut notes)?;
            Some(secure)
        }
        None => None,
    };
    let rooms = api.rooms()?;
    let pages = rooms
        .iter()
        .filter(|room| room.member)
        .map(|room| api.messages(&room.name, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Start {
        api,
        rooms,
        pages,
        secure,
        notes,
    })
}

fn start_session(siv: &mut Cursive, username: &str, start: Start) {
    if start.api.token().is_none() {
        return;
    }
    let sink = siv.cb_sink().clone();
    let Some(app) = siv.user_data::<App>() else {
        return;
    };
    app.generation += 1;
    let generation = app.generation;
    let mut state = ChatState::new(username);
    state.add_member_rooms(&start.rooms);
    let mut secure = start.secure;
    for page in start.pages {
        let room = page.room.clone();
        let items = e2e::mls_items(&page.messages);
        state.apply_history(&page.room, page.messages, page.has_more);
        if let Some(secure) = secure.as_mut() {
            e2e::reveal_items(secure, &mut state, &room, &items);
        }
    }
    if secure.is_none() && start.rooms.iter().any(|room| room.member && room.encrypted) {
        state.notice(
            None,
            "no device passphrase was given at login: encrypted rooms (🔒) cannot be read or written",
        );
    }
    for note in start.notes {
        state.notice(None, note);
    }
    state.count_unread();
    let general = GeneralPosition::default();
    general.set(state.general_resume_seq());
    let net = net::spawn(
        start.api.ws_url(),
        start.api.clone(),
        general.clone(),
        move |event: NetEvent| {
            let _ = sink.send(Box::new(move |siv: &mut Cursive| {
                chat::on_net_event(siv, generation, event);
            }));
        },
    );
    app.session = Some(Session {
        api: start.api,
        state,
        net,
        general,
        generation,
        last_typing_sent: None,
        members_asked: BTreeSet::new(),
        secure,
        waiting: Default::default(),
        welcomes: WelcomeFetch::Idle,
        welcomes_taken: BTreeSet::new(),
        fresh_groups: BTreeSet::new(),
        follow: BTreeMap::new(),
    });
    e2e::save(siv);
    chat::show(siv);
    chat::load_members(siv);
    render::all(siv);
}
