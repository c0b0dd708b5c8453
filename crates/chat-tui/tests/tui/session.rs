//! A whole session: log in, chat with someone live, survive a restart.

use anyhow::Result;
use chat_protocol::ws::{ClientFrame, ServerFrame};
use cursive::event::Key;

use crate::helpers::{
    PASSWORD, Peer, TempDir, Terminal, TestServer, general_history, register_and_login,
};

fn is_message(content: &'static str) -> impl Fn(&ServerFrame) -> bool {
    move |frame| matches!(frame, ServerFrame::Message { content: c, .. } if c == content)
}

#[test]
fn a_message_typed_in_the_client_is_shown_stored_and_seen_live_by_another_user() -> Result<()> {
    let data = TempDir::new()?;
    let server = TestServer::start("127.0.0.1:0", &data)?;
    register_and_login(&server.url(), "alice")?;
    let bob_token = register_and_login(&server.url(), "bob")?;
    let mut bob = Peer::connect(server.address, &bob_token)?;

    let mut terminal = Terminal::start(&server.url());
    terminal.log_in("alice", PASSWORD)?;
    terminal.type_text("hello from the terminal");
    terminal.press(Key::Enter);

    // On screen, as the user's own message, and no longer pending.
    terminal.wait_until("the acknowledged message", |screen| {
        screen.contains("alice (me): hello from the terminal") && !screen.contains("[sending")
    })?;
    // Seen live by bob.
    bob.wait_for(is_message("hello from the terminal"))?;
    // Stored on the server, once.
    let history = general_history(&server.url(), &bob_token)?;
    let stored = history
        .iter()
        .filter(|item| item.content == "hello from the terminal" && item.username == "alice")
        .count();
    assert_eq!(stored, 1, "{history:?}");

    // And the other way round: bob's message appears live on alice's screen.
    bob.send(&ClientFrame::Message {
        mls: None,
        content: "hi alice, bob here".to_owned(),
        room: None,
        client_id: None,
        reply_to: None,
    })?;
    terminal.wait_for("bob: hi alice, bob here")?;
    Ok(())
}

#[test]
fn a_wrong_password_is_reported_on_the_login_screen() -> Result<()> {
    let data = TempDir::new()?;
    let server = TestServer::start("127.0.0.1:0", &data)?;
    register_and_login(&server.url(), "carol")?;

    let mut terminal = Terminal::start(&server.url());
    terminal.wait_for("Username")?;
    terminal.log_in_without_waiting("carol", "not the password");

    terminal.wait_until("a login error", |screen| {
        screen.to_lowercase().contains("incorrect") || screen.to_lowercase().contains("invalid")
    })?;
    assert!(
        terminal.text().contains("Password"),
        "still on the login screen"
    );
    Ok(())
}

#[test]
fn an_unreachable_server_is_named_on_the_login_screen() -> Result<()> {
    // Nothing listens on port 1.
    let mut terminal = Terminal::start("http://127.0.0.1:1");
    terminal.log_in_without_waiting("dave", PASSWORD);
    terminal.wait_for("cannot reach the server at http://127.0.0.1:1")?;
    Ok(())
}

#[test]
fn after_a_server_restart_the_client_resumes_without_losing_or_doubling_a_line() -> Result<()> {
    let data = TempDir::new()?;
    let mut server = TestServer::start("127.0.0.1:0", &data)?;
    let address = server.address;
    register_and_login(&server.url(), "erin")?;
    let frank_token = register_and_login(&server.url(), "frank")?;

    let mut terminal = Terminal::start(&server.url());
    terminal.log_in("erin", PASSWORD)?;

    server.stop();
    terminal.wait_for("DISCONNECTED")?;
    // Typed while the server is down: pending until it is back.
    terminal.type_text("typed during the outage");
    terminal.press(Key::Enter);
    terminal.wait_for("[sending")?;

    let server = TestServer::start(&address.to_string(), &data)?;
    // Said while erin was away.
    let mut frank = Peer::connect(server.address, &frank_token)?;
    frank.send(&ClientFrame::Message {
        mls: None,
        content: "said while erin was away".to_owned(),
        room: None,
        client_id: None,
        reply_to: None,
    })?;
    frank.wait_for(is_message("said while erin was away"))?;

    terminal.wait_until("the missed message and the resent one", |screen| {
        screen.contains("frank: said while erin was away")
            && screen.contains("erin (me): typed during the outage")
            && !screen.contains("[sending")
            && screen.contains("connected")
            && !screen.contains("DISCONNECTED")
    })?;
    frank.wait_for(is_message("typed during the outage"))?;
    let history = general_history(&server.url(), &frank_token)?;
    let resent = history
        .iter()
        .filter(|item| item.content == "typed during the outage")
        .count();
    assert_eq!(resent, 1, "{history:?}");
    Ok(())
}
