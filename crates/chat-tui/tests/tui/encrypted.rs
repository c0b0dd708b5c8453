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
