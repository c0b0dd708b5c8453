//! Draws the chat state into the views of the chat screen.

use std::time::Instant;

use cursive::Cursive;
use cursive::event::Event;
use cursive::style::{BaseColor, Color, Effect, Style};
use cursive::utils::lines::spans::LinesIterator;
use cursive::utils::markup::StyledString;
use cursive::view::{ScrollStrategy, View};
use cursive::views::{NamedView, Panel, ScrollView, SelectView, TextView};

use super::session_mut;
use crate::describe::{self, clock};
use crate::secure::{LOCK, UNREADABLE};
use crate::state::{ChatState, Connection, Line, Notice, Pending, Quote, Room};

pub(super) const STATUS: &str = "status";
pub(super) const ROOMS: &str = "rooms";
pub(super) const MESSAGES: &str = "messages";
pub(super) const SCROLL: &str = "messages_scroll";
pub(super) const MESSAGES_PANEL: &str = "messages_panel";
pub(super) const ONLINE: &str = "online";
pub(super) const TYPING: &str = "typing";
pub(super) const INPUT: &str = "input";

type MessagesScroll = ScrollView<NamedView<TextView>>;
type MessagesPanel = Panel<NamedView<MessagesScroll>>;

/// Redraws every part of the chat screen from the state.
pub(super) fn all(siv: &mut Cursive) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    let state = &session.state;
    let server = session.api.base().to_owned();
    let status = status_line(state, &server);
    let rooms = room_items(state);
    let active_index = state
        .rooms()
        .iter()
        .position(|room| room.name == state.active());
    let (messages, _) = message_text(state);
    let title = messages_title(state);
    let online = online_text(state);
    let typing = typing_text(state, Instant::now());

    siv.call_on_name(STATUS, |view: &mut TextView| view.set_content(status));
    siv.call_on_name(ROOMS, |view: &mut SelectView<String>| {
        view.clear();
        for (label, name) in rooms {
            view.add_item(label, name);
        }
        if let Some(index) = active_index {
            // The callback of a selection change is for user moves; a
            // redraw must not trigger it.
            let _ = view.set_selection(index);
        }
    });
    let at_bottom = siv
        .call_on_name(SCROLL, |view: &mut MessagesScroll| view.is_at_bottom())
        .unwrap_or(true);
    siv.call_on_name(MESSAGES, |view: &mut TextView| view.set_content(messages));
    siv.call_on_name(MESSAGES_PANEL, |view: &mut MessagesPanel| {
        view.set_title(title);
    });
    if at_bottom {
        stick_to_bottom(siv);
    }
    siv.call_on_name(ONLINE, |view: &mut TextView| view.set_content(online));
    siv.call_on_name(TYPING, |view: &mut TextView| view.set_content(typing));
}

/// Keeps the newest message in view as messages arrive.
pub(super) fn stick_to_bottom(siv: &mut Cursive) {
    siv.call_on_name(SCROLL, |view: &mut MessagesScroll| {
        let _ = view.set_scroll_strategy(ScrollStrategy::StickToBottom);
    });
}

/// Scrolls the messages so the one `/goto` showed is near the top, once
/// the view has been laid out with them (on the next step of the UI: how
/// many rows come before it depends on the width they wrap to).
pub(super) fn scroll_to_found_after_layout(siv: &mut Cursive) {
    let _ = siv.cb_sink().send(Box::new(scroll_to_found));
}

fn scroll_to_found(siv: &mut Cursive) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    let (_, Some(before)) = message_text(&session.state) else {
        return;
    };
    siv.call_on_name(SCROLL, |view: &mut MessagesScroll| {
        let width = view.inner_size().x.max(1);
        let rows = LinesIterator::new(&before, width).count();
        // Two rows of what came before stay in view above it.
        let _ = view.set_scroll_strategy(ScrollStrategy::KeepRow);
        let _ = view.set_offset((0, rows.saturating_sub(2)));
    });
}

/// Passes a scrolling key to the message view. Says whether the view was
/// already at its top (so older history is wanted).
pub(super) fn scroll(siv: &mut Cursive, event: Event) -> bool {
    siv.call_on_name(SCROLL, |view: &mut MessagesScroll| {
        let at_top = view.is_at_top();
        let _ = view.on_event(event);
        at_top
    })
    .unwrap_or(false)
}

/// Redraws only the typing line (called every second).
pub(super) fn typing_line(siv: &mut Cursive) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    let typing = typing_text(&session.state, Instant::now());
    siv.call_on_name(TYPING, |view: &mut TextView| view.set_content(typing));
}

fn status_line(state: &ChatState, server: &str) -> StyledString {
    let room = room_label(state, state.active());
    let mut line = StyledString::styled(
        format!(" {} @ {server}  [{room}]  ", state.me()),
        Effect::Bold,
    );
    match state.connection() {
        Connection::Connecting => line.append_styled("connecting…", Effect::Dim),
        Connection::Connected => {
            line.append_styled("connected", Color::Dark(BaseColor::Green));
        }
        Connection::Reconnecting {
            reason,
            retry_in,
            attempt,
        } => line.append_styled(
            format!(
                "DISCONNECTED ({reason}); reconnecting in {:.1}s, attempt {attempt}",
                retry_in.as_secs_f32()
            ),
            Color::Light(BaseColor::Red),
        ),
    }
    line.append_plain("   /help for commands");
    line
}

fn room_items(state: &ChatState) -> Vec<(String, String)> {
    state
        .rooms()
        .iter()
        .map(|room| {
            let marker = if room.name == state.active() {
                "> "
            } else {
                "  "
            };
            let unread = if room.unread > 0 {
                format!(" ({})", room.unread)
            } else {
                String::new()
            };
            (
                format!("{marker}{}{unread}", room_label(state, &room.name)),
                room.name.clone(),
            )
        })
        .collect()
}

/// A room's name on screen, with the lock of an end-to-end encrypted room:
/// `@bob 🔒`.
pub(crate) fn room_label(state: &ChatState, room: &str) -> String {
    let name = state.display_name(room);
    if state.is_encrypted(room) {
        format!("{name} {LOCK}")
    } else {
        name
    }
}

/// The title over the messages: the topic of the room on screen, if it
/// has one.
fn messages_title(state: &ChatState) -> String {
    let title = match state.active_room().and_then(|room| room.topic.as_deref()) {
        Some(topic) => format!("Topic: {topic}"),
        None => "Messages".to_owned(),
    };
    if state.is_encrypted(state.active()) {
        format!("{LOCK} {title} (end-to-end encrypted)")
    } else {
        title
    }
}

/// An entry of the message view, in the order drawn.
enum Entry<'a> {
    Line(&'a Line),
    Notice(&'a Notice),
}

/// The messages of the room on screen; and, when it holds the message
/// `/goto` showed, the text drawn before that message (to scroll to it).
fn message_text(state: &ChatState) -> (StyledString, Option<StyledString>) {
    let mut text = StyledString::new();
    let Some(room) = state.active_room() else {
        return (text, None);
    };
    let found = state
        .found()
        .filter(|(found_room, _)| *found_room == room.name)
        .map(|(_, seq)| seq);
    let mut before_found = None;
    if room.has_older {
        text.append_styled(
            "(older messages: /history or Page Up at the top)\n",
            Effect::Dim,
        );
    }
    // A notice goes right after the message that was newest when it came.
    let mut entries: Vec<(i64, u8, usize, Entry<'_>)> = room
        .lines
        .values()
        .map(|line| (line.seq, 0, 0, Entry::Line(line)))
        .collect();
    entries.extend(
        room.notices
            .iter()
            .enumerate()
            .map(|(index, notice)| (notice.after_seq, 1, index, Entry::Notice(notice))),
    );
    entries.sort_by_key(|(seq, kind, index, _)| (*seq, *kind, *index));
    let seen_by = room.seen_by(state.me());
    // The last line drawn, and whether it is part of the history held.
    let mut previous: Option<(i64, bool)> = None;
    for (_, _, _, entry) in entries {
        match entry {
            Entry::Line(line) => {
                if let Some((seq, false)) = previous
                    && line.seq > seq.saturating_add(1)
                {
                    text.append_styled(
                        "(messages not loaded here: /history or Page Up at the top)\n",
                        Effect::Dim,
                    );
                }
                previous = Some((line.seq, room.holds(line.seq)));
                if found == Some(line.seq) {
                    before_found = Some(text.clone());
                }
                append_line(&mut text, state, room, line, found == Some(line.seq));
                if let Some((_, names)) = seen_by.as_ref().filter(|(seq, _)| *seq == line.seq) {
                    text.append_styled(
                        format!("{INDENT}seen by {}\n", names.join(", ")),
                        Effect::Dim,
                    );
                }
            }
            Entry::Notice(notice) => append_notice(&mut text, notice),
        }
    }
    for pending in state.pending_in(state.active()) {
        append_pending(&mut text, state, pending);
    }
    (text, before_found)
}

/// What goes before the lines drawn under a message (its reply quote, its
/// reactions, "seen by"): as wide as a time of today.
const INDENT: &str = "      ";

/// The most characters of the message answered that a reply quotes.
const QUOTE_CHARS: usize = 40;

/// Draws a line of the room; `found` marks the message `/goto` showed.
fn append_line(text: &mut StyledString, state: &ChatState, room: &Room, line: &Line, found: bool) {
    // A membership change is drawn dimmed, like a notice.
    if let Some(event) = line.event_text() {
        text.append_styled(
            format!("{} -- {event}\n", clock(&line.timestamp)),
            Effect::Dim,
        );
        return;
    }
    // A change to an encrypted room's group: who added or removed whom.
    if line.is_commit() {
        let change = line
            .group_change
            .clone()
            .unwrap_or_else(|| format!("{} changed the encrypted group", line.username));
        text.append_styled(
            format!("{} -- {LOCK} {change}\n", clock(&line.timestamp)),
            Effect::Dim,
        );
        return;
    }
    if let Some(quote) = room.quote(line) {
        let quote = match quote {
            Quote::Message { username, text } => format!(
                "{username}: {}",
                text.map_or_else(
                    || "…".to_owned(),
                    |text| describe::excerpt(text, QUOTE_CHARS)
                )
            ),
            Quote::Deleted => "deleted message".to_owned(),
            Quote::Unknown(seq) => format!("message #{seq}, not loaded"),
        };
        text.append_styled(format!("{INDENT}↪ {quote}\n"), Effect::Dim);
    }
    let mine = line.username.eq_ignore_ascii_case(state.me());
    if found {
        text.append_styled(
            "▶ ",
            Style::from(Color::Dark(BaseColor::Yellow)).combine(Effect::Bold),
        );
    }
    // The seq names the message in /reply, /edit, /delete and /react.
    text.append_styled(
        format!("{} #{} ", clock(&line.timestamp), line.seq),
        Effect::Dim,
    );
    if mine {
        text.append_styled(
            format!("{} (me)", line.username),
            Style::from(Color::Dark(BaseColor::Cyan)).combine(Effect::Bold),
        );
    } else {
        text.append_styled(&line.username, Effect::Bold);
    }
    text.append_plain(": ");
    match &line.content {
        _ if line.deleted => text.append_styled("[message deleted]", Effect::Italic),
        Some(content) => text.append_plain(content),
        None if line.mls.is_some() => text.append_styled(UNREADABLE, Effect::Italic),
        None => text.append_styled("[this message cannot be decrypted]", Effect::Italic),
    }
    if line.edited && !line.deleted {
        text.append_styled(" (edited)", Effect::Dim);
    }
    text.append_plain("\n");
    let tallies = line.reactions.tallies(state.me());
    if !tallies.is_empty() && !line.deleted {
        text.append_plain(INDENT);
        for (index, tally) in tallies.iter().enumerate() {
            if index > 0 {
                text.append_plain("  ");
            }
            // Brackets mark the reactions this user made.
            if tally.mine {
                text.append_styled(
                    format!("[{} {}]", tally.emoji, tally.count),
                    Color::Dark(BaseColor::Cyan),
                );
            } else {
                text.append_plain(format!("{} {}", tally.emoji, tally.count));
            }
        }
        text.append_plain("\n");
    }
}

fn append_notice(text: &mut StyledString, notice: &Notice) {
    if notice.is_error {
        text.append_styled(
            format!("!! {}\n", notice.text),
            Color::Light(BaseColor::Red),
        );
    } else {
        text.append_styled(format!("-- {}\n", notice.text), Effect::Dim);
    }
}

fn append_pending(text: &mut StyledString, state: &ChatState, pending: &Pending) {
    let status = match &pending.retry_reason {
        Some(reason) => format!("  [not stored yet: {reason}; will retry]"),
        None => "  [sending…]".to_owned(),
    };
    text.append_styled(
        format!(
            "{} {} (me): {}{status}\n",
            clock(&pending.sent_at),
            state.me(),
            pending.content
        ),
        Effect::Dim,
    );
}

fn online_text(state: &ChatState) -> String {
    state.active_room().map_or_else(String::new, |room| {
        room.online.iter().map(|name| format!("{name}\n")).collect()
    })
}

/// The line over the input: the edit under way, then who is typing.
fn typing_text(state: &ChatState, now: Instant) -> StyledString {
    let mut line = StyledString::new();
    if let Some(editing) = state.editing() {
        line.append_styled(
            format!(" editing #{} (Enter saves, Esc cancels) ", editing.seq),
            Style::from(Color::Dark(BaseColor::Yellow)).combine(Effect::Bold),
        );
    }
    let names = state.typing_in(state.active(), now);
    let text = match names.as_slice() {
        [] => String::new(),
        [one] => format!(" {one} is typing…"),
        [first, second] => format!(" {first} and {second} are typing…"),
        [first, rest @ ..] => format!(" {first} and {} others are typing…", rest.len()),
    };
    line.append_styled(text, Effect::Italic);
    line
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use chat_protocol::mls::MlsKindBody;
    use chat_protocol::rest::RoomKindBody;
    use chat_protocol::ws::ServerFrame;
    use chrono::Utc;

    use super::*;
    use crate::secure::Reading;

    fn sealed(seq: i64, kind: MlsKindBody) -> ServerFrame {
        ServerFrame::Message {
            mls: Some(kind),
            username: "bob".to_owned(),
            content: "c2VjcmV0IGJ5dGVz".to_owned(),
            timestamp: Utc::now(),
            id: seq,
            room: "dm:alice:bob".to_owned(),
            seq,
            client_id: None,
            reply_to: None,
            edited_at: None,
            deleted: false,
        }
    }

    #[test]
    fn an_encrypted_room_carries_the_lock_in_the_list_and_the_title() {
        let mut state = ChatState::new("alice");
        state.add_room("dm:alice:bob", RoomKindBody::Direct);
        state.add_room("lobby", RoomKindBody::Public);
        state.set_encrypted("dm:alice:bob", true);
        assert_eq!(room_label(&state, "dm:alice:bob"), "@bob 🔒");
        assert_eq!(room_label(&state, "lobby"), "lobby");
        state.switch_to("dm:alice:bob");
        assert_eq!(messages_title(&state), "🔒 Messages (end-to-end encrypted)");
        assert!(
            status_line(&state, "http://x")
                .source()
                .contains("[@bob 🔒]")
        );
    }

    #[test]
    fn an_unreadable_message_shows_a_placeholder_and_a_commit_who_changed_what() {
        let mut state = ChatState::new("alice");
        state.add_room("dm:alice:bob", RoomKindBody::Direct);
        state.switch_to("dm:alice:bob");
        let now = Instant::now();
        state.apply(sealed(1, MlsKindBody::Commit), now);
        state.apply(sealed(2, MlsKindBody::Application), now);
        state.apply(sealed(3, MlsKindBody::Application), now);
        state.reveal(
            "dm:alice:bob",
            1,
            Reading::Change("bob added alice to the encrypted group".to_owned()),
        );
        state.reveal("dm:alice:bob", 3, Reading::Text("lunch?".to_owned()));
        let (text, _) = message_text(&state);
        let text = text.source().to_owned();
        assert!(
            text.contains("-- 🔒 bob added alice to the encrypted group"),
            "{text}"
        );
        assert!(text.contains(&format!("#2 bob: {UNREADABLE}")), "{text}");
        assert!(text.contains("#3 bob: lunch?"), "{text}");
        assert!(
            !text.contains("c2VjcmV0"),
            "no ciphertext on screen: {text}"
        );
    }
}
