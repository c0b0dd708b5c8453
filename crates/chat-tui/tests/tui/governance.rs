//! Rooms people govern: what the client shows when its user is removed,
//! and the moderation commands typed in the client reaching other people.

use anyhow::Result;
use chat_protocol::rest::MemberChangeBody;
use chat_protocol::ws::{LeftReason, ServerFrame};

use crate::helpers::{
    PASSWORD, Peer, TempDir, Terminal, TestServer, create_room, kick, register_and_login,
};

/// Whether the room list shows `room` (selected or not).
fn lists_room(screen: &str, room: &str) -> bool {
    screen.contains(&format!("│> {room} ")) || screen.contains(&format!("│  {room} "))
}

#[test]
fn a_kick_by_the_owner_over_rest_takes_the_room_off_the_kicked_users_screen() -> Result<()> {
    let data = TempDir::new()?;
    let server = TestServer::start("127.0.0.1:0", &data)?;
    register_and_login(&server.url(), "alice")?;
    let bob_token = register_and_login(&server.url(), "bob")?;
    create_room(&server.url(), &bob_token, "den")?;

    let mut terminal = Terminal::start(&server.url());
    terminal.log_in("alice", PASSWORD)?;
    terminal.submit("/join den");
    terminal.wait_until("den on screen, with alice's join", |screen| {
        lists_room(screen, "den") && screen.contains("alice joined")
    })?;

    kick(&server.url(), &bob_token, "den", "alice")?;

    terminal.wait_until("the removal, and den gone from the list", |screen| {
        screen.contains("You were kicked from den by bob")
            && !lists_room(screen, "den")
            && screen.contains("[general]")
    })?;
    Ok(())
}

#[test]
fn moderation_typed_in_the_client_reaches_the_member_concerned() -> Result<()> {
    let data = TempDir::new()?;
    let server = TestServer::start("127.0.0.1:0", &data)?;
    register_and_login(&server.url(), "carol")?;
    let dave_token = register_and_login(&server.url(), "dave")?;
    let mut dave = Peer::connect(server.address, &dave_token)?;

    let mut terminal = Terminal::start(&server.url());
    terminal.log_in("carol", PASSWORD)?;
    terminal.submit("/create attic private");
    terminal.wait_for("you created the private room attic")?;

    terminal.submit("/invite dave");
    dave.wait_for(|frame| matches!(frame, ServerFrame::Joined { room, .. } if room == "attic"))?;
    terminal.wait_for("dave was added by carol")?;

    terminal.submit("/topic plans for the attic");
    terminal.wait_until("the topic, in the timeline and over it", |screen| {
        screen.contains("carol set the topic: plans for the attic")
            && screen.contains("Topic: plans for the attic")
    })?;

    terminal.submit("/mute dave 10");
    terminal.wait_for("dave was muted by carol until")?;

    terminal.submit("/members");
    terminal.wait_until("the member list", |screen| {
        screen.contains("carol (owner)") && screen.contains("dave (member, muted until")
    })?;

    terminal.submit("/kick dave enough");
    dave.wait_for(|frame| {
        matches!(
            frame,
            ServerFrame::Member {
                change: MemberChangeBody::Kicked,
                ..
            }
        )
    })?;
    dave.wait_for(|frame| {
        matches!(
            frame,
            ServerFrame::Left { room, reason: Some(LeftReason::Kicked) } if room == "attic"
        )
    })?;
    terminal.wait_for("dave was kicked by carol (enough)")?;
    Ok(())
}
