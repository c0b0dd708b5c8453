//! Search typed in the client: the results listed with the words found
//! marked, and a result shown in its room.

use std::thread;
use std::time::Duration;

use anyhow::Result;

use crate::helpers::{PASSWORD, Scene, Terminal};

#[test]
fn a_search_finds_a_sent_message_and_goto_shows_it_marked_in_its_room() -> Result<()> {
    let mut scene = Scene::start("ivan", "judy")?;
    let Scene {
        terminal,
        peer: judy,
        ..
    } = &mut scene;
    let seq = judy.say("general", "Le Café ouvre à midi")?;
    judy.say("general", "something else entirely")?;
    terminal.wait_for("judy: something else entirely")?;

    // Case and accents do not matter; the word found is in brackets.
    terminal.submit("/search CAFE");
    terminal.wait_for("1. general ")?;
    terminal.wait_for(&format!("#{seq} judy: Le [Café] ouvre à midi"))?;
    terminal.wait_for("/goto 1 shows it in its room; no older ones")?;

    // From another room, /goto comes back to general with it marked.
    terminal.submit("/create attic");
    terminal.wait_for("you created the room attic")?;
    terminal.submit("/goto 1");
    terminal.wait_until("general with the message found marked", |screen| {
        screen.contains("[general]")
            && screen
                .lines()
                .any(|line| line.contains("▶ ") && line.contains("judy: Le Café ouvre à midi"))
    })?;

    // Only what was searched for is found, in the room on screen with -r.
    terminal.submit("/search -r midi* soir");
    terminal.wait_for("no messages found for \"midi* soir\" in general")?;
    terminal.submit("/goto 1");
    terminal.wait_for("no search result 1: the last search found nothing")?;
    Ok(())
}

#[test]
fn goto_a_result_older_than_the_history_loaded_scrolls_to_it_and_marks_the_gap() -> Result<()> {
    let mut scene = Scene::start("kate", "liam")?;
    let liam = &mut scene.peer;
    let seq = liam.say("general", "the needle is here")?;
    // More than a page of history, paced under the server's limit on
    // frames per second.
    for n in 1..=55 {
        liam.say("general", &format!("hay {n}"))?;
        thread::sleep(Duration::from_millis(100));
    }
    // A new client loads only the newest page of general.
    let terminal = &mut scene.terminal;
    *terminal = Terminal::start(&scene.server.url());
    terminal.log_in("kate", PASSWORD)?;
    terminal.wait_for("liam: hay 55")?;

    terminal.submit("/search needle");
    terminal.wait_for(&format!("#{seq} liam: the [needle] is here"))?;
    terminal.submit("/goto 1");
    terminal.wait_until("the message found, in view and marked", |screen| {
        screen.contains("▶ ")
            && screen.contains("liam: the needle is here")
            && screen.contains("(messages not loaded here")
    })?;
    Ok(())
}
