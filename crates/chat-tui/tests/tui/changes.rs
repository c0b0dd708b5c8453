//! Messages people change: edits, reactions and replies typed in the
//! client, seen by another user; read marks that outlive the client.

use anyhow::{Result, bail};
use chat_protocol::ws::{ClientFrame, ServerFrame};
use cursive::event::{Event, Key};

use crate::helpers::{PASSWORD, Peer, Scene, Terminal, create_room, rooms};

/// Waits until `peer` receives the edit of message `target` to `text`.
fn wait_for_edit(peer: &mut Peer, target: i64, text: &str) -> Result<()> {
    peer.wait_for(|frame| {
        matches!(
            frame,
            ServerFrame::Edited { target: t, content, .. } if *t == target && content == text
        )
    })?;
    Ok(())
}

/// Quits the client and starts a new one, logged in as gina.
fn restart<'a>(terminal: &'a mut Terminal, server: &str) -> Result<&'a mut Terminal> {
    *terminal = Terminal::start(server);
    terminal.log_in("gina", PASSWORD)?;
    Ok(terminal)
}

#[test]
fn a_message_edited_with_the_up_arrow_or_slash_edit_shows_as_edited_for_everyone() -> Result<()> {
    let mut scene = Scene::start("alice", "bob")?;
    let Scene {
        terminal,
        peer: bob,
        ..
    } = &mut scene;
    terminal.submit("hello wrold");
    let seq = bob.wait_for_message("hello wrold")?;
    terminal.wait_until("the acknowledged message", |screen| {
        screen.contains(&format!("#{seq} alice (me): hello wrold")) && !screen.contains("[sending")
    })?;

    // Up on the empty line brings the message back, in edit mode.
    terminal.press(Key::Up);
    terminal.wait_for(&format!("editing #{seq} (Enter saves, Esc cancels)"))?;
    for _ in 0.."wrold".len() {
        terminal.press(Key::Backspace);
    }
    terminal.submit("world");
    wait_for_edit(bob, seq, "hello world")?;
    terminal.wait_until("the edited text, out of edit mode", |screen| {
        screen.contains(&format!("#{seq} alice (me): hello world (edited)"))
            && !screen.contains("editing #")
    })?;

    terminal.submit(&format!("/edit {seq} hello, world"));
    wait_for_edit(bob, seq, "hello, world")?;
    terminal.wait_for("alice (me): hello, world (edited)")?;

    // Someone else's message cannot be edited; the client says why.
    let theirs = bob.say("general", "bob's own words")?;
    terminal.wait_for("bob: bob's own words")?;
    terminal.submit(&format!("/edit {theirs} not yours"));
    terminal.wait_for(&format!(
        "#{theirs} is not your message: only its author may edit it"
    ))?;
    Ok(())
}

#[test]
fn reactions_from_the_client_and_from_others_show_as_counts_under_the_message() -> Result<()> {
    let mut scene = Scene::start("carol", "dave")?;
    let Scene {
        terminal,
        peer: dave,
        ..
    } = &mut scene;
    let seq = dave.say("general", "ship it?")?;
    terminal.wait_for("dave: ship it?")?;

    terminal.submit(&format!("/react {seq} 👍"));
    terminal.wait_for("[👍 1]")?;

    let react = |emoji: &str| ClientFrame::React {
        room: "general".to_owned(),
        seq,
        emoji: emoji.to_owned(),
        client_id: None,
    };
    dave.send(&react("👍"))?;
    dave.send(&react("🎉"))?;
    terminal.wait_for("[👍 2]  🎉 1")?;

    // The same reaction again takes it back.
    terminal.submit(&format!("/react {seq} 👍"));
    dave.wait_for(|frame| {
        matches!(
            frame,
            ServerFrame::Reaction { username, added: false, .. } if username == "carol"
        )
    })?;
    terminal.wait_until("carol's reaction gone, dave's kept", |screen| {
        screen.contains("👍 1  🎉 1") && !screen.contains("[👍")
    })?;

    terminal.submit("/react 999999 👍");
    terminal.wait_for("!! error:")?;
    Ok(())
}

#[test]
fn a_reply_shows_the_start_of_the_message_it_answers() -> Result<()> {
    let mut scene = Scene::start("erin", "frank")?;
    let Scene {
        terminal,
        peer: frank,
        ..
    } = &mut scene;
    let seq = frank.say("general", "tea or coffee this afternoon?")?;
    terminal.wait_for("frank: tea or coffee this afternoon?")?;

    terminal.submit(&format!("/reply {seq} coffee, please"));
    let reply = frank.wait_for(|frame| {
        matches!(frame, ServerFrame::Message { content, .. } if content == "coffee, please")
    })?;
    let ServerFrame::Message { reply_to, .. } = reply else {
        bail!("expected a message, got {reply:?}");
    };
    assert_eq!(reply_to, Some(seq));
    terminal.wait_until("the reply under its quote", |screen| {
        let lines: Vec<&str> = screen.lines().collect();
        lines.windows(2).any(|pair| {
            pair[0].contains("↪ frank: tea or coffee this afternoon?")
                && pair[1].contains("erin (me): coffee, please")
        })
    })?;

    // A reply with nothing to say is refused in the client.
    terminal.submit(&format!("/reply {seq}"));
    terminal.wait_for("usage: /reply <seq> <text>")?;

    // Once the original is deleted, the quote says so.
    frank.send(&ClientFrame::Delete {
        room: "general".to_owned(),
        seq,
        client_id: None,
    })?;
    terminal.wait_until("the tombstone and the quote of it", |screen| {
        screen.contains("frank: [message deleted]") && screen.contains("↪ deleted message")
    })?;
    Ok(())
}

#[test]
fn a_room_looked_at_is_marked_read_so_its_unread_count_survives_a_restart() -> Result<()> {
    let mut scene = Scene::start("gina", "hugo")?;
    let server = scene.server.url();
    create_room(&server, &scene.peer_token, "den")?;
    let hugo = &mut scene.peer;
    hugo.send(&ClientFrame::Join {
        room: "den".to_owned(),
    })?;

    let terminal = &mut scene.terminal;
    terminal.submit("/join den");
    terminal.wait_for("gina joined")?;
    terminal.submit("/join general");
    terminal.wait_for("[general]")?;
    hugo.say("den", "first, while you look elsewhere")?;
    hugo.say("den", "second")?;
    terminal.wait_for("den (2)")?;

    // A new client counts what the server says is unread.
    let terminal = restart(&mut scene.terminal, &server)?;
    terminal.wait_for("den (2)")?;

    // Looking at den marks it read: the server knows, and hugo is told.
    terminal.event(Event::CtrlChar('n'));
    terminal.wait_for("[den]")?;
    terminal.run_until("den marked read on the server", || {
        let den = rooms(&server, &scene.token)?
            .into_iter()
            .find(|room| room.name == "den");
        Ok(den.is_some_and(|den| den.last_seq > 0 && den.unread == 0))
    })?;
    let hugo = &mut scene.peer;
    hugo.wait_for(|frame| {
        matches!(frame, ServerFrame::Read { username, room, .. } if username == "gina" && room == "den")
    })?;

    // Hugo reads gina's answer: "seen by" under it, in this small room.
    let terminal = &mut scene.terminal;
    terminal.submit("thanks, read them");
    let seq = hugo.wait_for_message("thanks, read them")?;
    hugo.send(&ClientFrame::Read {
        room: "den".to_owned(),
        seq,
    })?;
    terminal.wait_for("seen by hugo")?;

    let terminal = restart(&mut scene.terminal, &server)?;
    terminal.wait_until("den without unread messages", |screen| {
        screen.contains("│  den ") && !screen.contains("den (")
    })?;
    Ok(())
}
