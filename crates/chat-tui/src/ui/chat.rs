//! The chat screen: room list, messages, who is online, the input line;
//! and what the user's commands and the connection's events do to it.

use std::time::{Duration, Instant};

use chat_protocol::rest::{MessagePage, RoleBody, RoomBody, VisibilityBody};
use chat_protocol::ws::ClientFrame;
use chrono::Utc;
use cursive::Cursive;
use cursive::event::{Event, Key};
use cursive::traits::{Nameable, Resizable, Scrollable};
use cursive::view::ScrollStrategy;
use cursive::views::{EditView, LinearLayout, OnEventView, Panel, SelectView, TextView};

use super::{Session, back_to_login, background, current_generation, render, session_mut};
use crate::command::{self, Command, HELP};
use crate::describe;
use crate::net::NetEvent;
use crate::state::Connection;

/// Typing frames go out at most this often while the user types.
const TYPING_EVERY: Duration = Duration::from_secs(3);

/// Replaces every screen with the chat screen.
pub(super) fn show(siv: &mut Cursive) {
    while siv.pop_layer().is_some() {}
    let rooms = SelectView::<String>::new()
        .on_submit(|siv, name: &String| {
            let name = name.clone();
            if let Some(session) = session_mut(siv) {
                session.state.switch_to(&name);
            }
            render::all(siv);
            render::stick_to_bottom(siv);
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
        .with_name(render::INPUT)
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
    if let Some(session) = session_mut(siv) {
        session.state.cycle(step);
    }
    render::all(siv);
    render::stick_to_bottom(siv);
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
        NetEvent::Frame(frame) => session.state.apply(frame, Instant::now()),
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
    session.general.set(session.state.general_resume_seq());
    render::all(siv);
}

fn on_edit(siv: &mut Cursive, text: &str) {
    if text.trim().is_empty() || text.starts_with('/') {
        return;
    }
    let Some(session) = session_mut(siv) else {
        return;
    };
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
    siv.call_on_name(render::INPUT, |view: &mut EditView| view.set_content(""));
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
        Command::Say(text) => say(siv, &text),
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
        Command::Dm(user) => open_direct(siv, user),
        Command::Who => {
            if let Some(session) = session_mut(siv) {
                let frame = session.state.request_who();
                session.net.send(frame);
            }
        }
        Command::History => load_history(siv),
        Command::Create { room, private } => create(siv, room, private),
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

/// Sends a frame about the room on screen. The answer comes on the socket:
/// the change itself in the room, or an error naming the room.
fn send_to_room(siv: &mut Cursive, frame: impl FnOnce(String) -> ClientFrame) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    if session.state.connection() != &Connection::Connected {
        // A frame sent now would be lost with the connection.
        session
            .state
            .error(None, "not connected; try again once the connection is back");
        return;
    }
    let room = session.state.active().to_owned();
    session.net.send(frame(room));
}

fn say(siv: &mut Cursive, text: &str) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    match session.state.compose(text) {
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
    session
        .state
        .apply_history(&body.name, page.messages, page.has_more);
    enter(session, &body.name, body.kind);
    session.state.set_topic(&body.name, body.topic.clone());
    if created {
        let text = match body.visibility {
            VisibilityBody::Private => format!(
                "you created the private room {}; /invite <user> adds people",
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
    if session.state.switch_to(&room) {
        render::stick_to_bottom(siv);
        return;
    }
    background(
        siv,
        move |api| {
            let (body, created) = match api.join(&room) {
                Ok(body) => (body, false),
                Err(error) if error.is_not_found() => (api.create_room(&room, None)?, true),
                Err(error) => return Err(error),
            };
            let page = api.messages(&body.name, None)?;
            Ok((body, page, created))
        },
        |siv, (body, page, created)| show_entered(siv, &body, page, created),
    );
}

fn create(siv: &mut Cursive, room: String, private: bool) {
    let visibility = private.then_some(VisibilityBody::Private);
    background(
        siv,
        move |api| {
            let body = api.create_room(&room, visibility)?;
            let page = api.messages(&body.name, None)?;
            Ok((body, page))
        },
        |siv, (body, page)| show_entered(siv, &body, page, true),
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

fn open_direct(siv: &mut Cursive, user: String) {
    background(
        siv,
        move |api| {
            let body = api.open_direct(&user)?;
            let page = api.messages(&body.name, None)?;
            Ok((body, page))
        },
        |siv, (body, page)| show_entered(siv, &body, page, false),
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
            session
                .state
                .apply_history(&room, page.messages, page.has_more);
            session
                .state
                .notice(Some(&room), format!("loaded {count} older messages"));
        },
    );
}
