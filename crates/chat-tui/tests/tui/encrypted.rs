//! End-to-end encrypted conversations: two real clients, each with its
//! own device, against the real server, which only ever holds ciphertext.

use anyhow::{Result, ensure};
use chat_protocol::rest::MessagePage;

use crate::helpers::{PASSWORD, TempDir, Terminal, TestServer, WAIT, register_and_login};

/// A room's newest page of history, as the user of `token` reads it.
fn history(server: &str, token: &str, room: &str) -> Result<MessagePage> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(WAIT))
        .build()
        .into();
    Ok(agent
        .get(format!("{server}/api/rooms/{room}/messages"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()?
        .body_mut()
        .read_json()?)
}

/// The safety number on screen: twelve groups of five digits, on two
/// lines of six.
fn safety_number(screen: &str) -> Option<String> {
    let halves: Vec<&str> = screen
        .lines()
        .flat_map(|line| line.split('│'))
        .map(|text| text.trim().trim_start_matches("--").trim())
        .filter(|text| {
            let groups: Vec<&str> = text.split(' ').collect();
            groups.len() == 6
                && groups
                    .iter()
                    .all(|group| group.len() == 5 && group.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    (halves.len() == 2).then(|| halves.join(" "))
}

#[test]
fn an_encrypted_conversation_reads_in_clear_on_both_screens_and_as_ciphertext_on_the_server()
-> Result<()> {
    let data = TempDir::new()?;
    let devices = TempDir::new()?;
    let server = TestServer::start("127.0.0.1:0", &data)?;
    let alice_token = register_and_login(&server.url(), "alice")?;
    register_and_login(&server.url(), "bob")?;

    let mut alice = Terminal::start_with_device(&server.url(), &devices, "alice's passphrase");
    alice.log_in("alice", PASSWORD)?;
    let mut bob = Terminal::start_with_device(&server.url(), &devices, "bob's passphrase");
    bob.log_in("bob", PASSWORD)?;

    alice.submit("/dm -e bob");
    alice.wait_for_beside(&mut bob, "alice added bob to the encrypted group")?;
    ensure!(alice.text().contains("[@bob 🔒]"), "{}", alice.text());
    bob.wait_for_beside(&mut alice, "@alice 🔒")?;
    bob.submit("/dm alice");
    bob.wait_for_beside(
        &mut alice,
        "you joined the encrypted group (added by alice)",
    )?;
    bob.wait_for_beside(&mut alice, "alice added you to the encrypted group")?;

    let secrets = ["meet at the north gate", "bring the blue folder"];
    alice.submit(secrets[0]);
    bob.wait_for_beside(&mut alice, &format!("alice: {}", secrets[0]))?;
    bob.submit(secrets[1]);
    alice.wait_for_beside(&mut bob, &format!("bob: {}", secrets[1]))?;
    bob.wait_for_beside(&mut alice, &format!("bob (me): {}", secrets[1]))?;
    ensure!(
        !alice.text().contains("cannot be read") && !bob.text().contains("cannot be read"),
        "alice:\n{}\nbob:\n{}",
        alice.text(),
        bob.text()
    );

    // Both compute the same safety number over the keys of their group.
    alice.submit("/verify bob");
    alice.wait_for_beside(&mut bob, "safety number of you and bob")?;
    bob.submit("/verify alice");
    bob.wait_for_beside(&mut alice, "safety number of you and alice")?;
    let (Some(alices), Some(bobs)) = (safety_number(&alice.text()), safety_number(&bob.text()))
    else {
        anyhow::bail!("no safety number:\n{}\n{}", alice.text(), bob.text());
    };
    ensure!(alices == bobs, "{alices} != {bobs}");
    ensure!(
        alice.text().contains("bob's key in your groups") && !alice.text().contains("not listed"),
        "the key in the group is the one the server lists: {}",
        alice.text()
    );

    // The server holds the messages, as MLS ciphertext only.
    let page = history(&server.url(), &alice_token, "dm:alice:bob")?;
    let messages: Vec<_> = page
        .messages
        .iter()
        .filter(|item| item.mls.is_some())
        .collect();
    ensure!(messages.len() >= 3, "a commit and two messages: {page:?}");
    for item in &page.messages {
        let content = item.content.clone().unwrap_or_default();
        for secret in secrets {
            ensure!(
                !content.contains(secret),
                "plaintext on the server: {item:?}"
            );
        }
    }
    // Nor does either device's saved state hold them.
    for entry in std::fs::read_dir(&devices.0)? {
        let bytes = std::fs::read(entry?.path())?;
        for secret in secrets {
            ensure!(
                !bytes
                    .windows(secret.len())
                    .any(|window| window == secret.as_bytes()),
                "plaintext in a device file"
            );
        }
    }
    Ok(())
}

#[test]
fn a_member_invited_to_an_encrypted_room_reads_it_until_kicked_out_of_its_group() -> Result<()> {
    let data = TempDir::new()?;
    let devices = TempDir::new()?;
    let server = TestServer::start("127.0.0.1:0", &data)?;
    register_and_login(&server.url(), "carol")?;
    register_and_login(&server.url(), "dave")?;

    let mut carol = Terminal::start_with_device(&server.url(), &devices, "carol's passphrase");
    carol.log_in("carol", PASSWORD)?;
    let mut dave = Terminal::start_with_device(&server.url(), &devices, "dave's passphrase");
    dave.log_in("dave", PASSWORD)?;

    carol.submit("/create -e vault");
    carol.wait_for_beside(
        &mut dave,
        "you created the end-to-end encrypted private room vault",
    )?;
    ensure!(carol.text().contains("vault 🔒"), "{}", carol.text());
    carol.submit("/invite dave");
    carol.wait_for_beside(&mut dave, "carol added dave to the encrypted group")?;
    dave.wait_for_beside(&mut carol, "vault 🔒")?;
    dave.submit("/join vault");
    dave.wait_for_beside(
        &mut carol,
        "you joined the encrypted group (added by carol)",
    )?;

    carol.submit("the code is 4711");
    dave.wait_for_beside(&mut carol, "carol: the code is 4711")?;

    // Editing is not offered in an encrypted room.
    carol.submit("/edit 1 changed");
    carol.wait_for_beside(&mut dave, "cannot be edited")?;

    carol.submit("/kick dave");
    carol.wait_for_beside(&mut dave, "carol removed dave from the encrypted group")?;
    dave.wait_for_beside(&mut carol, "You were kicked from vault by carol")?;
    carol.submit("dave is gone");
    // The server takes it from the group as it now is: the message is
    // stored (acknowledged), not left sending.
    carol.wait_until_beside(
        &mut dave,
        "the message after the removal, stored",
        |screen| screen.contains("carol (me): dave is gone") && !screen.contains("[sending…]"),
    )?;
    Ok(())
}

#[test]
fn a_restarted_client_opens_its_device_with_its_passphrase_and_reads_what_follows() -> Result<()> {
    let data = TempDir::new()?;
    let devices = TempDir::new()?;
    let server = TestServer::start("127.0.0.1:0", &data)?;
    register_and_login(&server.url(), "erin")?;
    register_and_login(&server.url(), "frank")?;

    let mut erin = Terminal::start_with_device(&server.url(), &devices, "erin's passphrase");
    erin.log_in("erin", PASSWORD)?;
    let mut frank = Terminal::start_with_device(&server.url(), &devices, "frank's passphrase");
    frank.log_in("frank", PASSWORD)?;
    erin.submit("/dm -e frank");
    erin.wait_for_beside(&mut frank, "erin added frank to the encrypted group")?;
    frank.wait_for_beside(&mut erin, "@erin 🔒")?;
    frank.submit("/dm erin");
    frank.wait_for_beside(&mut erin, "you joined the encrypted group (added by erin)")?;
    erin.submit("before the restart");
    frank.wait_for_beside(&mut erin, "erin: before the restart")?;
    frank.submit("/quit");
    drop(frank);

    // Typed on the login screen, a wrong passphrase does not open the
    // device, and the right one does.
    let mut frank = Terminal::start_asking_passphrase(&server.url(), &devices);
    frank.wait_for("Device passphrase")?;
    frank.log_in_with_passphrase_without_waiting("frank", PASSWORD, "not frank's");
    frank.wait_for("wrong device passphrase")?;
    drop(frank);
    let mut frank = Terminal::start_asking_passphrase(&server.url(), &devices);
    frank.wait_for("Device passphrase")?;
    frank.log_in_with_passphrase_without_waiting("frank", PASSWORD, "frank's passphrase");
    frank.wait_until("the connected chat screen", |screen| {
        screen.contains("connected") && !screen.contains("connecting")
    })?;
    frank.submit("/dm erin");
    // What was read before the restart was kept, encrypted beside the
    // device: it still reads.
    frank.wait_for_beside(&mut erin, "erin: before the restart")?;
    ensure!(
        !frank.text().contains("[encrypted message"),
        "{}",
        frank.text()
    );
    erin.submit("after the restart");
    frank.wait_for_beside(&mut erin, "erin: after the restart")?;
    frank.submit("still here");
    erin.wait_for_beside(&mut frank, "frank: still here")?;
    Ok(())
}

#[test]
fn when_a_member_leaves_the_remaining_clients_race_to_remove_them_and_agree() -> Result<()> {
    let data = TempDir::new()?;
    let devices = TempDir::new()?;
    let server = TestServer::start("127.0.0.1:0", &data)?;
    for name in ["gina", "hank", "ivan"] {
        register_and_login(&server.url(), name)?;
    }
    let mut gina = Terminal::start_with_device(&server.url(), &devices, "gina's passphrase");
    gina.log_in("gina", PASSWORD)?;
    let mut hank = Terminal::start_with_device(&server.url(), &devices, "hank's passphrase");
    hank.log_in("hank", PASSWORD)?;
    let mut ivan = Terminal::start_with_device(&server.url(), &devices, "ivan's passphrase");
    ivan.log_in("ivan", PASSWORD)?;

    gina.submit("/create -e plans");
    gina.wait_for_beside(&mut hank, "you created the end-to-end encrypted")?;
    gina.submit("/invite hank");
    gina.wait_for_beside(&mut hank, "gina added hank to the encrypted group")?;
    gina.submit("/invite ivan");
    gina.wait_for_beside(&mut ivan, "gina added ivan to the encrypted group")?;
    for (terminal, name) in [(&mut hank, "hank"), (&mut ivan, "ivan")] {
        terminal.wait_for_beside(&mut gina, "plans 🔒")?;
        terminal.submit("/join plans");
        terminal.wait_for_beside(&mut gina, "you joined the encrypted group (added by gina)")?;
        let _ = name;
    }
    hank.wait_for_beside(&mut gina, "gina added ivan to the encrypted group")?;

    ivan.submit("/leave");
    ivan.wait_for_beside(&mut gina, "You left plans")?;
    // Gina's and Hank's clients both commit Ivan's removal; one commit is
    // accepted, the other is stale and finds the work done.
    let removed = |screen: &str| {
        screen.contains("removed ivan from the encrypted group") && !screen.contains("!!")
    };
    gina.wait_until_beside(&mut hank, "ivan's removal, once", removed)?;
    hank.wait_until_beside(&mut gina, "ivan's removal, once", removed)?;

    gina.submit("without ivan");
    hank.wait_for_beside(&mut gina, "gina: without ivan")?;
    hank.submit("agreed");
    gina.wait_for_beside(&mut hank, "hank: agreed")?;
    for screen in [gina.text(), hank.text()] {
        ensure!(
            screen.matches("removed ivan").count() == 1 && !screen.contains("!!"),
            "{screen}"
        );
    }
    Ok(())
}

#[test]
fn who_joins_a_public_encrypted_room_is_added_to_its_group_by_one_member_client() -> Result<()> {
    let data = TempDir::new()?;
    let devices = TempDir::new()?;
    let server = TestServer::start("127.0.0.1:0", &data)?;
    for name in ["jane", "kurt", "lena"] {
        register_and_login(&server.url(), name)?;
    }
    let mut jane = Terminal::start_with_device(&server.url(), &devices, "jane's passphrase");
    jane.log_in("jane", PASSWORD)?;
    let mut kurt = Terminal::start_with_device(&server.url(), &devices, "kurt's passphrase");
    kurt.log_in("kurt", PASSWORD)?;
    let mut lena = Terminal::start_with_device(&server.url(), &devices, "lena's passphrase");
    lena.log_in("lena", PASSWORD)?;

    jane.submit("/create -e square public");
    jane.wait_for_beside(
        &mut kurt,
        "you created the end-to-end encrypted public room square",
    )?;
    // Kurt joins on his own: Jane's client, the only one in the group,
    // adds him.
    kurt.submit("/join square");
    jane.wait_for_beside(&mut kurt, "jane added kurt to the encrypted group")?;
    kurt.wait_for_beside(&mut jane, "you joined the encrypted group (added by jane)")?;
    jane.submit("welcome kurt");
    kurt.wait_for_beside(&mut jane, "jane: welcome kurt")?;

    // Lena joins: of the two clients in the group, one adds her, once.
    lena.submit("/join square");
    let added = |screen: &str| screen.contains("added lena to the encrypted group");
    jane.wait_until_beside(&mut kurt, "lena's addition", added)?;
    kurt.wait_until_beside(&mut jane, "lena's addition", added)?;
    lena.wait_until_beside(&mut jane, "lena in the group", |screen| {
        screen.contains("you joined the encrypted group (added by")
    })?;
    kurt.submit("hello lena");
    lena.wait_for_beside(&mut kurt, "kurt: hello lena")?;
    jane.wait_for_beside(&mut kurt, "kurt: hello lena")?;
    for screen in [jane.text(), kurt.text()] {
        ensure!(
            screen.matches("added lena").count() == 1 && !screen.contains("!!"),
            "{screen}"
        );
    }
    Ok(())
}

#[test]
fn who_joined_while_every_member_client_was_away_is_added_when_one_comes_back() -> Result<()> {
    let data = TempDir::new()?;
    let devices = TempDir::new()?;
    let server = TestServer::start("127.0.0.1:0", &data)?;
    register_and_login(&server.url(), "mona")?;
    register_and_login(&server.url(), "nils")?;

    let mut mona = Terminal::start_with_device(&server.url(), &devices, "mona's passphrase");
    mona.log_in("mona", PASSWORD)?;
    mona.submit("/create -e porch public");
    mona.wait_for("you created the end-to-end encrypted public room porch")?;
    mona.submit("/quit");
    drop(mona);

    let mut nils = Terminal::start_with_device(&server.url(), &devices, "nils's passphrase");
    nils.log_in("nils", PASSWORD)?;
    nils.submit("/join porch");
    nils.wait_for("porch 🔒")?;

    // Back, Mona's client finds Nils in the room but not in the group.
    let mut mona = Terminal::start_with_device(&server.url(), &devices, "mona's passphrase");
    mona.log_in("mona", PASSWORD)?;
    mona.submit("/join porch");
    mona.wait_for_beside(&mut nils, "mona added nils to the encrypted group")?;
    nils.wait_for_beside(&mut mona, "you joined the encrypted group (added by mona)")?;
    mona.submit("you made it");
    nils.wait_for_beside(&mut mona, "mona: you made it")?;
    Ok(())
}

#[test]
fn a_members_new_device_is_added_and_a_retired_one_removed_when_they_come_online() -> Result<()> {
    let data = TempDir::new()?;
    let devices = TempDir::new()?;
    let laptop = TempDir::new()?;
    let server = TestServer::start("127.0.0.1:0", &data)?;
    register_and_login(&server.url(), "olga")?;
    let pete_token = register_and_login(&server.url(), "pete")?;

    let mut olga = Terminal::start_with_device(&server.url(), &devices, "olga's passphrase");
    olga.log_in("olga", PASSWORD)?;
    let mut pete = Terminal::start_with_device(&server.url(), &devices, "pete's passphrase");
    pete.log_in("pete", PASSWORD)?;
    olga.submit("/create -e loft");
    olga.wait_for_beside(
        &mut pete,
        "you created the end-to-end encrypted private room",
    )?;
    olga.submit("/invite pete");
    olga.wait_for_beside(&mut pete, "olga added pete to the encrypted group")?;
    pete.wait_for_beside(&mut olga, "loft 🔒")?;
    pete.submit("/join loft");
    pete.wait_for_beside(&mut olga, "you joined the encrypted group (added by olga)")?;
    pete.submit("/quit");
    drop(pete);

    // Pete logs in on a new device: coming online, it is added to the
    // group by Olga's client, beside his first device.
    let mut pete = Terminal::start_with_device(&server.url(), &laptop, "pete's laptop");
    pete.log_in("pete", PASSWORD)?;
    pete.submit("/join loft");
    olga.wait_until_beside(&mut pete, "pete's second device added", |screen| {
        screen
            .matches("olga added pete to the encrypted group")
            .count()
            == 2
    })?;
    pete.wait_for_beside(&mut olga, "you joined the encrypted group (added by olga)")?;
    olga.submit("for both of your devices");
    pete.wait_for_beside(&mut olga, "olga: for both of your devices")?;
    ensure!(!olga.text().contains("!!"), "{}", olga.text());

    // Pete retires his first device on the server; when he next comes
    // online, its leaf leaves the group, his laptop stays.
    let phone = devices_of(&server.url(), &pete_token, "pete")?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("pete's first device"))?;
    retire_device(&server.url(), &pete_token, &phone)?;
    pete.submit("/quit");
    drop(pete);
    let mut pete = Terminal::start_with_device(&server.url(), &laptop, "pete's laptop");
    pete.log_in("pete", PASSWORD)?;
    pete.submit("/join loft");
    let retired =
        |screen: &str| screen.contains("removed a device of pete from the encrypted group");
    olga.wait_until_beside(&mut pete, "the retired device removed", retired)?;
    pete.wait_until_beside(&mut olga, "the retired device removed", retired)?;
    olga.submit("to the laptop only");
    pete.wait_for_beside(&mut olga, "olga: to the laptop only")?;
    for screen in [olga.text(), pete.text()] {
        ensure!(
            screen.matches("removed a device of pete").count() == 1 && !screen.contains("!!"),
            "{screen}"
        );
    }
    Ok(())
}

/// The ids of a user's devices, oldest first.
fn devices_of(server: &str, token: &str, username: &str) -> Result<Vec<String>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(WAIT))
        .build()
        .into();
    let body: chat_protocol::mls::DevicesBody = agent
        .get(format!("{server}/api/mls/devices/{username}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()?
        .body_mut()
        .read_json()?;
    Ok(body
        .devices
        .into_iter()
        .map(|device| device.device_id)
        .collect())
}

/// Deletes one of the user's devices from the server.
fn retire_device(server: &str, token: &str, device_id: &str) -> Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(WAIT))
        .build()
        .into();
    agent
        .delete(format!("{server}/api/mls/devices/{device_id}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()?;
    Ok(())
}
