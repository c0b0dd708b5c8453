//! The chat screen: room list, messages, who is online, the input line;
//! and what the user's commands and the connection's events do to it.

use std::time::{Duration, Instant};

use chat_protocol::rest::{MessagePage, RoleBody, RoomBody, SearchParams, VisibilityBody};
use chat_protocol::ws::ClientFrame;
use chrono::Utc;
use cursive::Cursive;
use cursive::event::{Event, EventResult, Key};
use cursive::traits::{Nameable, Resizable, Scrollable};
use cursive::view::ScrollStrategy;
use cursive::views::{EditView, LinearLayout, OnEventView, Panel, SelectView, TextView};

use super::{Session, back_to_login, background, current_generation, e2e, render, session_mut};
use crate::api::ApiError;
use crate::command::{self, Command, HELP};
use crate::describe;
use crate::net::NetEvent;
use crate::state::{ChangeError, ChatState, Connection, SEEN_BY_MAX_MEMBERS, kind_of};

/// Typing frames go out at most this often while the user types.
const TYPING_EVERY: Duration = Duration::from_secs(3);

/// Replaces every screen with the chat screen.
pub(super) fn show(siv: &mut Cursive) {
    while siv.pop_layer().is_some() {}
    let rooms = SelectView::<String>::new()
        .on_submit(|siv, name: &String| {
            let name = name.clone();
            show_room(siv, |session| {
                session.state.switch_to(&name);
            });
            if let Ok(result) = siv.focus_name(render::INPUT) {
                result.process(siv);
            }
        })
        .with_name(render::ROOMS)
        .scrollable();
    let messages = TextView::new("")
        .with_name(render::MESSAGES)
        .scrollable()
        .scroll_strategy(ScrollStrategy::StickToBottom)
        .with_name(render::SCROLL);
    let online = TextView::new("").with_name(render::ONLINE).scrollable();
    let input = EditView::new()
        .on_edit(|siv, text, _| on_edit(siv, text))
        .on_submit(submit_line)
        .with_name(render::INPUT);
    // Up on an empty line edits the user's last message; Esc drops the
    // edit. Elsewhere Up and Esc keep their usual meaning.
    let input = OnEventView::new(input)
        .on_pre_event_inner(Key::Up, |input, _| {
            let empty = input.get_mut().get_content().is_empty();
            empty.then(|| EventResult::with_cb(begin_edit))
        })
        .on_pre_event_inner(Key::Esc, |_, _| Some(EventResult::with_cb(cancel_edit)))
        .full_width();
    let body = LinearLayout::horizontal()
        .child(Panel::new(rooms).title("Rooms").fixed_width(24))
        .child(
            Panel::new(messages)
                .title("Messages")
                .with_name(render::MESSAGES_PANEL)
                .full_width(),
        )
        .child(Panel::new(online).title("Online").fixed_width(18))
        .full_height();
    let screen = LinearLayout::vertical()
        .child(TextView::new("").with_name(render::STATUS))
        .child(body)
        .child(TextView::new("").with_name(render::TYPING))
        .child(input);
    let screen = OnEventView::new(screen)
        .on_pre_event(Key::PageUp, page_up)
        .on_pre_event(Key::PageDown, |siv| {
            render::scroll(siv, Event::Key(Key::PageDown));
        })
        .on_pre_event(Event::CtrlChar('n'), |siv| cycle(siv, 1))
        .on_pre_event(Event::CtrlChar('p'), |siv| cycle(siv, -1));
    siv.add_fullscreen_layer(screen);
    if let Ok(result) = siv.focus_name(render::INPUT) {
        result.process(siv);
    }
}

fn cycle(siv: &mut Cursive, step: isize) {
    show_room(siv, |session| session.state.cycle(step));
}

/// Shows another room (`switch` changes the room on screen): an edit under
/// way is dropped with the text of the input line, the room's members are
/// loaded for "seen by", and the room will be marked read.
fn show_room(siv: &mut Cursive, switch: impl FnOnce(&mut Session)) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    let was_editing = session.state.editing().is_some();
    switch(session);
    if was_editing && session.state.editing().is_none() {
        set_input(siv, String::new());
    }
    load_members(siv);
    mark_read(siv);
    render::all(siv);
    render::stick_to_bottom(siv);
}

fn set_input(siv: &mut Cursive, text: String) {
    siv.call_on_name(render::INPUT, |view: &mut EditView| {
        // Setting the text is not typing: the edit callback is not run.
        let _ = view.set_content(text);
    });
}

/// Asks the server once per session, for a room small enough to show "seen
/// by", how far its members have read.
pub(super) fn load_members(siv: &mut Cursive) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    let room = session.state.active().to_owned();
    if session.state.has_members(&room) || !session.members_asked.insert(room.clone()) {
        return;
    }
    background(
        siv,
        {
            let room = room.clone();
            move |api| {
                let detail = api.room(&room)?;
                if usize::try_from(detail.member_count).unwrap_or(usize::MAX) > SEEN_BY_MAX_MEMBERS
                {
                    return Ok(None);
                }
                api.members(&room).map(Some)
            }
        },
        move |siv, members| {
            if let (Some(session), Some(members)) = (session_mut(siv), members) {
                session.state.set_members(&room, &members);
            }
        },
    );
}

/// Marks the room on screen read when it is due (see
/// [`ChatState::read_mark_due`]).
fn mark_read(siv: &mut Cursive) {
    if let Some(session) = session_mut(siv)
        && let Some(frame) = session.state.read_mark_due(Instant::now())
    {
        session.net.send(frame);
    }
}

/// Runs once a second: marks the room on screen read when due, saves and
/// updates the device's keys when due, and redraws the typing line so "x
/// is typing" goes away on its own.
pub(super) fn tick(siv: &mut Cursive) {
    mark_read(siv);
    // What reading messages changed in the device's keys.
    e2e::save_when_due(siv);
    e2e::update_keys_when_due(siv);
    e2e::follow_when_due(siv);
    render::typing_line(siv);
}

/// Up on an empty input line: the user's last message of the room on
/// screen goes into it, to be edited.
fn begin_edit(siv: &mut Cursive) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    match session.state.begin_edit_last() {
        Ok(text) => set_input(siv, text),
        Err(error) => session.state.error(None, error.to_string()),
    }
    render::all(siv);
}

/// Esc: drops the edit under way and its text.
fn cancel_edit(siv: &mut Cursive) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    if session.state.cancel_edit() {
        set_input(siv, String::new());
        render::all(siv);
    }
}

/// Page Up scrolls the messages; at the top it loads older history.
fn page_up(siv: &mut Cursive) {
    if render::scroll(siv, Event::Key(Key::PageUp)) {
        load_history(siv);
    }
}

/// Applies an event of the connection of session `generation`.
pub(super) fn on_net_event(siv: &mut Cursive, generation: u64, event: NetEvent) {
    if current_generation(siv) != Some(generation) {
        return;
    }
    let Some(session) = session_mut(siv) else {
        return;
    };
    match event {
        NetEvent::Connected => {
            for frame in session.state.on_connected() {
                session.net.send(frame);
            }
        }
        NetEvent::Frame(frame) => e2e::receive(siv, frame, Instant::now()),
        NetEvent::Disconnected {
            reason,
            retry_in,
            attempt,
        } => session.state.on_disconnected(reason, retry_in, attempt),
        NetEvent::Rejected(reason) => {
            back_to_login(
                siv,
                format!("Your session has expired or was refused ({reason}). Please log in again."),
            );
            return;
        }
    }
    let Some(session) = session_mut(siv) else {
        return;
    };
    session.general.set(session.state.general_resume_seq());
    mark_read(siv);
    render::all(siv);
}

fn on_edit(siv: &mut Cursive, text: &str) {
    if text.trim().is_empty() || text.starts_with('/') {
        return;
    }
    let Some(session) = session_mut(siv) else {
        return;
    };
    // Editing an old message is not typing a new one.
    if session.state.editing().is_some() {
        return;
    }
    let due = session
        .last_typing_sent
        .is_none_or(|at| at.elapsed() >= TYPING_EVERY);
    if due {
        session.last_typing_sent = Some(Instant::now());
        session.net.send(ClientFrame::Typing {
            room: Some(session.state.active().to_owned()),
        });
    }
}

fn submit_line(siv: &mut Cursive, text: &str) {
    let text = text.to_owned();
    let editing = session_mut(siv).and_then(|session| session.state.editing().cloned());
    if let Some(editing) = editing {
        // The whole line is the new text; it stays on the line if the edit
        // cannot be sent.
        if change_message(siv, |state| state.edit(editing.seq, &text)) {
            set_input(siv, String::new());
        }
        render::all(siv);
        return;
    }
    set_input(siv, String::new());
    match command::parse(&text) {
        Ok(None) => {}
        Ok(Some(command)) => run(siv, command),
        Err(error) => {
            if let Some(session) = session_mut(siv) {
                session.state.error(None, error.to_string());
            }
        }
    }
    render::all(siv);
}

fn run(siv: &mut Cursive, command: Command) {
    match command {
        Command::Say(text) => say_in_room(siv, text, None),
        Command::Reply { seq, text } => say_in_room(siv, text, Some(seq)),
        Command::Edit { seq, text } => {
            change_message(siv, |state| state.edit(seq, &text));
        }
        Command::Delete(seq) => {
            change_message(siv, |state| state.delete(seq));
        }
        Command::React { seq, emoji } => {
            change_message(siv, |state| state.react(seq, &emoji, true));
        }
        Command::Unreact { seq, emoji } => {
            change_message(siv, |state| state.react(seq, &emoji, false));
        }
        Command::Quit => super::quit(siv),
        Command::Help => {
            if let Some(session) = session_mut(siv) {
                for line in HELP {
                    session.state.notice(None, *line);
                }
            }
        }
        Command::Join(room) => join(siv, room),
        Command::Leave(room) => leave(siv, room),
        Command::Rooms => list_rooms(siv),
        Command::Dm { user, encrypted } => open_direct(siv, user, encrypted),
        Command::Verify(user) => e2e::verify(siv, user),
        Command::Who => {
            if let Some(session) = session_mut(siv) {
                let frame = session.state.request_who();
                session.net.send(frame);
            }
        }
        Command::History => load_history(siv),
        Command::Search { words, this_room } => {
            if let Some(session) = session_mut(siv) {
                let (id, params) = session.state.start_search(&words, this_room);
                search(siv, id, params);
            }
        }
        Command::SearchMore => {
            if let Some(session) = session_mut(siv) {
                match session.state.search_more() {
                    Ok((id, params)) => search(siv, id, params),
                    Err(error) => session.state.error(None, error.to_string()),
                }
            }
        }
        Command::Goto(number) => goto(siv, number),
        Command::Create {
            room,
            private,
            encrypted,
        } => create(siv, room, private, encrypted),
        Command::Topic(None) => show_topic(siv),
        Command::Topic(Some(topic)) => send_to_room(siv, |room| ClientFrame::Topic { room, topic }),
        Command::Members => list_members(siv),
        Command::Invite(user) => put_member(siv, user, None),
        Command::Op(user) => put_member(siv, user, Some(RoleBody::Moderator)),
        Command::Kick { user, reason } => send_to_room(siv, |room| ClientFrame::Kick {
            room,
            username: user,
            reason,
        }),
        Command::Ban { user, reason } => send_to_room(siv, |room| ClientFrame::Ban {
            room,
            username: user,
            reason,
            until: None,
        }),
        Command::Mute { user, minutes } => {
            let until = Utc::now() + chrono::Duration::minutes(i64::from(minutes));
            send_to_room(siv, |room| ClientFrame::Mute {
                room,
                username: user,
                until,
            });
        }
    }
}

/// Sends a message typed into the room on screen (an answer to `reply_to`
/// if given): sealed for the group in an encrypted room.
fn say_in_room(siv: &mut Cursive, text: String, reply_to: Option<i64>) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    let room = session.state.active().to_owned();
    if !session.state.is_encrypted(&room) {
        match reply_to {
            None => say(siv, |state| Ok(state.compose(&text)?)),
            Some(seq) => say(siv, |state| state.compose_reply(seq, &text)),
        }
        return;
    }
    let Some(secure) = session.secure.as_mut() else {
        session.state.error(
            None,
            "no device passphrase was given at login: this client cannot write in encrypted rooms",
        );
        return;
    };
    if !secure.has_group(&room) {
        session.state.error(
            None,
            "this device is not in the room's encrypted group yet: a member's client adds it",
        );
        return;
    }
    let sealed = session
        .state
        .compose_sealed(&text, reply_to, |room, client_id, text| {
            secure
                .seal(room, client_id, text)
                .map_err(|error| format!("cannot encrypt the message: {error}"))
        });
    // The keys that sealed it are used up: the state is saved before the
    // message leaves, so a restart never seals with them again.
    if sealed.is_ok()
        && let Err(error) = secure.save()
    {
        session.state.error(
            None,
            format!(
                "cannot save the device state to {}: {error}",
                secure.path().display()
            ),
        );
    }
    match sealed {
        Ok(frame) => {
            session.net.send(frame);
            session.last_typing_sent = None;
        }
        Err(error) => session.state.error(None, error.to_string()),
    }
    render::stick_to_bottom(siv);
}

/// Sends a frame about the room on screen. The answer comes on the socket:
/// the change itself in the room, or an error naming the room.
fn send_to_room(siv: &mut Cursive, frame: impl FnOnce(String) -> ClientFrame) {
    change_message(siv, |state| Ok(frame(state.active().to_owned())));
}

/// Sends the frame `build` makes from the state, now: a change to a room
/// or one of its messages, which is not kept for a resend. Says whether it
/// went; why not is shown in the room on screen.
fn change_message(
    siv: &mut Cursive,
    build: impl FnOnce(&mut ChatState) -> Result<ClientFrame, ChangeError>,
) -> bool {
    let Some(session) = session_mut(siv) else {
        return false;
    };
    if session.state.connection() != &Connection::Connected {
        // A frame sent now would be lost with the connection.
        session
            .state
            .error(None, "not connected; try again once the connection is back");
        return false;
    }
    match build(&mut session.state) {
        Ok(frame) => {
            session.net.send(frame);
            true
        }
        Err(error) => {
            session.state.error(None, error.to_string());
            false
        }
    }
}

/// Sends a message (`compose` makes it pending in the state, so it is sent
/// again after a reconnect until the server acknowledges it).
fn say(
    siv: &mut Cursive,
    compose: impl FnOnce(&mut ChatState) -> Result<ClientFrame, ChangeError>,
) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    match compose(&mut session.state) {
        Ok(frame) => {
            session.net.send(frame);
            session.last_typing_sent = None;
        }
        Err(error) => session.state.error(None, error.to_string()),
    }
    render::stick_to_bottom(siv);
}

/// Shows a room the user is in, starts receiving it, and asks the server
/// for what happened since the newest message loaded.
fn enter(session: &mut Session, room: &str, kind: chat_protocol::rest::RoomKindBody) {
    session.state.add_room(room, kind);
    session.state.switch_to(room);
    let last_seq = session.state.room(room).map_or(0, |room| room.resume_seq());
    session.net.send(ClientFrame::Resume {
        room: room.to_owned(),
        last_seq,
    });
}

/// Shows a room just joined or created, with its newest page.
fn show_entered(siv: &mut Cursive, body: &RoomBody, page: MessagePage, created: bool) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    session.state.add_room(&body.name, body.kind);
    session.state.set_encrypted(&body.name, body.encrypted);
    e2e::apply_page(session, page);
    session.state.set_topic(&body.name, body.topic.clone());
    show_room(siv, |session| enter(session, &body.name, body.kind));
    let Some(session) = session_mut(siv) else {
        return;
    };
    if created {
        let lock = if body.encrypted {
            "end-to-end encrypted "
        } else {
            ""
        };
        let text = match body.visibility {
            VisibilityBody::Private => format!(
                "you created the {lock}private room {}; /invite <user> adds people",
                body.name
            ),
            VisibilityBody::Public if body.encrypted => format!(
                "you created the end-to-end encrypted public room {}; whoever joins is added to its group",
                body.name
            ),
            VisibilityBody::Public => format!("you created the room {}", body.name),
        };
        session.state.notice(Some(&body.name), text);
    }
    render::stick_to_bottom(siv);
}

fn join(siv: &mut Cursive, room: String) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    if session.state.room(&room).is_some() {
        show_room(siv, |session| {
            session.state.switch_to(&room);
        });
        return;
    }
    background(
        siv,
        move |api| {
            let (body, created) = match api.join(&room) {
                Ok(body) => (body, false),
                Err(error) if error.is_not_found() => (api.create_room(&room, None, false)?, true),
                Err(error) => return Err(error),
            };
            let page = api.messages(&body.name, None)?;
            Ok((body, page, created))
        },
        |siv, (body, page, created)| show_entered(siv, &body, page, created),
    );
}

/// `/create`: an encrypted room is members-only, and this client makes
/// its group at once.
fn create(siv: &mut Cursive, room: String, private: bool, encrypted: bool) {
    let visibility = private.then_some(VisibilityBody::Private);
    background(
        siv,
        move |api| {
            let body = api.create_room(&room, visibility, encrypted)?;
            let page = api.messages(&body.name, None)?;
            Ok((body, page))
        },
        |siv, (body, page)| {
            show_entered(siv, &body, page, true);
            if body.encrypted {
                e2e::create_group(siv, &body.name);
            }
        },
    );
}

/// The room on screen, for a command about it.
fn active_room(siv: &mut Cursive) -> Option<String> {
    session_mut(siv).map(|session| session.state.active().to_owned())
}

fn show_topic(siv: &mut Cursive) {
    let Some(room) = active_room(siv) else {
        return;
    };
    background(
        siv,
        move |api| api.room(&room),
        |siv, detail| {
            let Some(session) = session_mut(siv) else {
                return;
            };
            let name = session.state.display_name(&detail.name);
            let text = match &detail.topic {
                Some(topic) => format!("topic of {name}: {topic}"),
                None => format!("{name} has no topic; /topic <text> sets one"),
            };
            session.state.set_topic(&detail.name, detail.topic);
            session.state.notice(Some(&detail.name), text);
        },
    );
}

fn list_members(siv: &mut Cursive) {
    let Some(room) = active_room(siv) else {
        return;
    };
    background(
        siv,
        {
            let room = room.clone();
            move |api| api.members(&room)
        },
        move |siv, members| {
            let Some(session) = session_mut(siv) else {
                return;
            };
            let name = session.state.display_name(&room);
            session.state.notice(
                Some(&room),
                format!("members of {name} ({}):", members.len()),
            );
            let now = Utc::now();
            for member in members {
                let muted = member
                    .muted_until
                    .filter(|until| *until > now)
                    .map(|until| format!(", muted{}", describe::until(Some(&until))))
                    .unwrap_or_default();
                session.state.notice(
                    Some(&room),
                    format!(
                        "  {} ({}{muted})",
                        member.username,
                        describe::role(member.role)
                    ),
                );
            }
        },
    );
}

/// Adds a user to the room on screen, or gives a member a role. The
/// change shows in the room when the server records it.
fn put_member(siv: &mut Cursive, user: String, role: Option<RoleBody>) {
    let Some(room) = active_room(siv) else {
        return;
    };
    background(
        siv,
        move |api| api.put_member(&room, &user, role),
        |_, ()| {},
    );
}

fn leave(siv: &mut Cursive, room: Option<String>) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    let room = room.unwrap_or_else(|| session.state.active().to_owned());
    if session.state.room(&room).is_none() {
        session.state.error(None, format!("you are not in {room}"));
        return;
    }
    background(
        siv,
        {
            let room = room.clone();
            move |api| api.leave(&room)
        },
        move |siv, ()| {
            let Some(session) = session_mut(siv) else {
                return;
            };
            // The server's `left` frame may have come first and said so.
            if session.state.room(&room).is_some() {
                let name = session.state.display_name(&room);
                session.state.remove_room(&room);
                session.state.notice(None, format!("You left {name}"));
            }
        },
    );
}

fn list_rooms(siv: &mut Cursive) {
    background(
        siv,
        |api| api.rooms(),
        |siv, rooms| {
            let Some(session) = session_mut(siv) else {
                return;
            };
            session
                .state
                .notice(None, "rooms on the server (/join <room> to enter):");
            for room in rooms {
                let name = session.state.display_name(&room.name);
                let member = if room.member { ", you are in it" } else { "" };
                session.state.notice(
                    None,
                    format!("  {name} ({} messages{member})", room.last_seq),
                );
            }
        },
    );
}

/// `/dm`: an encrypted conversation that is new to this device gets its
/// group, with the other user added at once; one the other user's client
/// set up already waits for its Welcome.
fn open_direct(siv: &mut Cursive, user: String, encrypted: bool) {
    background(
        siv,
        {
            let user = user.clone();
            move |api| {
                let body = api.open_direct(&user, encrypted)?;
                let page = api.messages(&body.name, None)?;
                Ok((body, page))
            }
        },
        move |siv, (body, page)| {
            // A conversation with nothing MLS in its whole history has no
            // group yet: this client makes it. Otherwise someone's client
            // did, and this device waits for its Welcome.
            let fresh = !page.has_more && page.messages.iter().all(|m| m.mls.is_none());
            show_entered(siv, &body, page, false);
            if !body.encrypted {
                return;
            }
            if !fresh {
                e2e::fetch_welcomes(siv);
            } else if e2e::create_group(siv, &body.name) {
                e2e::commit(siv, body.name.clone(), e2e::Plan::Add(user));
            }
        },
    );
}

fn load_history(siv: &mut Cursive) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    let room = session.state.active().to_owned();
    let oldest = session
        .state
        .room(&room)
        .and_then(|r| r.has_older.then(|| r.oldest_seq()).flatten());
    let Some(oldest) = oldest else {
        session.state.notice(None, "no older messages");
        render::all(siv);
        return;
    };
    background(
        siv,
        {
            let room = room.clone();
            move |api| api.messages(&room, Some(oldest))
        },
        move |siv, page| {
            let Some(session) = session_mut(siv) else {
                return;
            };
            let count = page.messages.len();
            e2e::apply_page(session, page);
            session
                .state
                .notice(Some(&room), format!("loaded {count} older messages"));
        },
    );
}

/// Asks the server for a page of search `id` and lists it in the room on
/// screen; a refusal is shown in the server's words.
fn search(siv: &mut Cursive, id: u64, params: SearchParams) {
    background(
        siv,
        move |api| match api.search(&params) {
            // An expired session goes back to the login screen as usual.
            Err(error @ ApiError::Unauthorized(_)) => Err(error),
            other => Ok(other),
        },
        move |siv, answer| {
            let Some(session) = session_mut(siv) else {
                return;
            };
            match answer {
                Ok(page) => session.state.apply_search_page(id, page),
                Err(error) => session.state.search_failed(id, &error.to_string()),
            }
            render::stick_to_bottom(siv);
        },
    );
}

/// Shows result `number` of the last search in its room: the page of
/// history that ends with it, the message marked and scrolled to.
fn goto(siv: &mut Cursive, number: usize) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    let (room, seq) = match session.state.search_result(number) {
        Ok(found) => found,
        Err(error) => {
            session.state.error(None, error.to_string());
            return;
        }
    };
    background(
        siv,
        {
            let room = room.clone();
            move |api| api.messages(&room, Some(seq.saturating_add(1)))
        },
        move |siv, page| {
            let known = session_mut(siv).is_some_and(|session| session.state.room(&room).is_some());
            show_room(siv, |session| {
                let items = e2e::mls_items(&page.messages);
                session.state.show_found(&room, seq, page);
                if let Some(secure) = session.secure.as_mut() {
                    e2e::reveal_items(secure, &mut session.state, &room, &items);
                }
                if !known {
                    // A room this client did not hold yet: receive it live.
                    enter(session, &room, kind_of(&room));
                }
            });
            render::scroll_to_found_after_layout(siv);
        },
    );
}
