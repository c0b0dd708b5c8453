//! The login screen: username, password, Login and Register, and errors
//! shown in place.

use std::collections::BTreeSet;
use std::thread;

use chat_protocol::rest::{Credentials, MessagePage, RoomBody};
use cursive::Cursive;
use cursive::style::{BaseColor, Color, Effect};
use cursive::traits::{Nameable, Resizable};
use cursive::utils::markup::StyledString;
use cursive::views::{Dialog, DummyView, EditView, LinearLayout, TextView};

use super::{App, Session, chat, render};
use crate::api::{Api, ApiError};
use crate::net::{self, GeneralPosition, NetEvent};
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
                .on_submit(|siv, _| submit(siv, Action::Login))
                .with_name("password")
                .fixed_width(32),
        )
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
    let Some(server) = siv.user_data::<App>().map(|app| app.server.clone()) else {
        return;
    };
    let sink = siv.cb_sink().clone();
    thread::spawn(move || {
        let credentials = Credentials { username, password };
        let result = bootstrap(&server, &credentials, action);
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
}

fn bootstrap(server: &str, credentials: &Credentials, action: Action) -> Result<Start, ApiError> {
    let mut api = Api::new(server);
    if let Action::Register = action {
        api.register(credentials)?;
    }
    api.login(credentials)?;
    let rooms = api.rooms()?;
    let pages = rooms
        .iter()
        .filter(|room| room.member)
        .map(|room| api.messages(&room.name, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Start { api, rooms, pages })
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
    for page in start.pages {
        state.apply_history(&page.room, page.messages, page.has_more);
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
    });
    chat::show(siv);
    chat::load_members(siv);
    render::all(siv);
}
