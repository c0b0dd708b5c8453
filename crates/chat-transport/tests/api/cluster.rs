//! Two nodes on one database and one Redis: everyone sees everything, in
//! order, exactly once, even when the broker drops out.

use anyhow::Result;
use chat_crypto::{FernetKey, KeyRing};
use chat_storage::testing::{TestDatabase, unique_name};
use serde_json::json;

use crate::helpers::{TestApp, Tweaks, sample};
use crate::tokens::{close_of, me_status, still_open};

/// The Redis the cluster tests use, from `CHAT_TEST_REDIS_URL`. Skipped
/// (with a note) when unset, unless `CHAT_TEST_REQUIRE_REDIS=1`.
fn redis_url() -> Option<String> {
    match std::env::var("CHAT_TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var("CHAT_TEST_REQUIRE_REDIS").as_deref() != Ok("1"),
                "CHAT_TEST_REQUIRE_REDIS=1 but CHAT_TEST_REDIS_URL is not set"
            );
            eprintln!("skipped: CHAT_TEST_REDIS_URL not set");
            None
        }
    }
}

/// Two nodes sharing a database, a key ring and a Redis namespace of their
/// own.
struct Cluster {
    a: TestApp,
    b: TestApp,
    redis: String,
    database: TestDatabase,
}

impl Cluster {
    async fn spawn(database: TestDatabase) -> Result<Option<Cluster>> {
        let Some(redis) = redis_url() else {
            database.drop_database().await;
            return Ok(None);
        };
        Cluster::spawn_on(database, redis, Tweaks::default())
            .await
            .map(Some)
    }

    /// Two nodes on the Redis at `redis`, configured with `tweaks`.
    async fn spawn_on(database: TestDatabase, redis: String, tweaks: Tweaks) -> Result<Cluster> {
        let keys = KeyRing::new(FernetKey::generate(), Vec::new());
        let tweaks = Tweaks {
            redis: Some((redis.clone(), unique_name())),
            ..tweaks
        };
        let a = TestApp::spawn_node(database.url(), keys.clone(), tweaks.clone()).await?;
        let b = TestApp::spawn_node(database.url(), keys, tweaks).await?;
        // Give both nodes a moment to subscribe.
        for node in [&a, &b] {
            wait_until_ready(node).await?;
        }
        Ok(Cluster {
            a,
            b,
            redis,
            database,
        })
    }

    async fn stop(self) {
        self.a.stop().await;
        self.b.stop().await;
        self.database.drop_database().await;
    }
}

/// Creates the public room `lobby` on node A, owned by `owner`.
async fn lobby(cluster: &Cluster, owner: &str) -> Result<()> {
    let created = cluster
        .a
        .post_authed("/api/rooms", owner, &json!({"name": "lobby"}))
        .await?;
    anyhow::ensure!(created.status() == 201, "create: {}", created.status());
    Ok(())
}

/// A socket of `token` on `node` that joined `room`.
async fn joined(node: &TestApp, token: &str, room: &str) -> Result<crate::helpers::Client> {
    let mut socket = node.connect(token).await?;
    socket.send(json!({"type": "join", "room": room})).await?;
    socket.recv_type("joined").await?;
    Ok(socket)
}

async fn wait_until_ready(node: &TestApp) -> Result<()> {
    wait_for_status(node, "ok").await
}

/// Waits (up to 15 s, longer than the nodes' longest wait between two
/// attempts to reach Redis) until `/ready` says `status`.
async fn wait_for_status(node: &TestApp, status: &str) -> Result<()> {
    for _ in 0..300 {
        let body: serde_json::Value = node
            .http
            .get(node.url("/ready"))
            .send()
            .await?
            .json()
            .await?;
        if body["status"] == status {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("the node's readiness never became {status:?}")
}

macro_rules! cluster_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let database = chat_storage::testing::TestDatabase::sqlite();
                    let Some(cluster) = super::Cluster::spawn(database).await? else { return Ok(()) };
                    let result = super::$name(&cluster).await;
                    cluster.stop().await;
                    result
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let Some(database) = chat_storage::testing::TestDatabase::postgres().await else {
                        return Ok(());
                    };
                    let Some(cluster) = super::Cluster::spawn(database).await? else { return Ok(()) };
                    let result = super::$name(&cluster).await;
                    cluster.stop().await;
                    result
                }
            )*
        }
    };
}

cluster_tests!(
    messages_cross_nodes_both_ways_once_and_in_order,
    presence_and_typing_cross_nodes,
    resume_works_on_the_other_node,
    a_client_id_resent_to_the_other_node_is_not_stored_twice,
    logout_closes_the_sessions_sockets_on_every_node,
    a_reused_refresh_token_closes_the_sessions_sockets_on_the_other_node,
    a_ban_on_one_node_removes_the_users_socket_on_the_other,
    a_member_added_on_one_node_is_subscribed_on_the_other,
    a_forbidden_kick_on_the_other_node_changes_nothing,
    changes_on_one_node_reach_the_other_and_its_history_at_once,
    search_on_either_node_finds_what_is_sent_on_the_other_and_a_ban_on_one_hides_it_on_both,
    an_encrypted_conversation_opened_on_one_node_is_encrypted_on_the_other,
    a_commit_made_on_one_node_moves_the_group_on_for_the_other,
    a_member_removed_on_one_node_no_longer_lists_the_rooms_devices_on_the_other,
);

/// Sends `commit` to room `vault` on `node` as the holder of `token`, and
/// checks that it is accepted and moves the group to `epoch`; returns its
/// seq.
async fn accepted_at(
    node: &TestApp,
    token: &str,
    commit: &chat_e2e::OutgoingCommit,
    epoch: u64,
) -> Result<i64> {
    let (status, accepted) = crate::encryption::post_commit(node, token, "vault", commit).await?;
    anyhow::ensure!(
        status == 201 && accepted["epoch"] == epoch,
        "{status} {accepted}"
    );
    Ok(accepted["seq"].as_i64().unwrap_or_default())
}

/// Sends `commit` to room `vault` on `node` as the holder of `token`, and
/// checks that it is refused as built on an epoch the group has left.
async fn refused_as_stale(
    node: &TestApp,
    token: &str,
    commit: &chat_e2e::OutgoingCommit,
) -> Result<()> {
    let (status, refused) = crate::encryption::post_commit(node, token, "vault", commit).await?;
    anyhow::ensure!(
        status == 409 && refused["code"] == "stale_epoch",
        "{status} {refused}"
    );
    Ok(())
}

/// Alice's encrypted room is made on node A, where Bob is connected, and
/// Alice adds Carol to its group with a commit sent over REST to node B.
/// Bob's socket on A delivers that commit and his device moves to the new
/// epoch; A refuses the key update Bob built on the epoch before (409
/// `stale_epoch`) and takes the one he builds again, which reaches Alice's
/// socket on B; B then refuses a commit Alice built on the epoch A left.
/// Carol, welcomed through B, reads what Alice sends after all that.
async fn a_commit_made_on_one_node_moves_the_group_on_for_the_other(
    cluster: &Cluster,
) -> Result<()> {
    use crate::encryption::{
        Vault, claimed, next_mls, process_next_commit, put_member, take_welcomes,
        vault_of_alice_and_bob,
    };
    use anyhow::ensure;

    // The group starts on node A: Alice and Bob at epoch 1.
    let (a, b) = (&cluster.a, &cluster.b);
    let Vault {
        alice_token,
        bob_token,
        carol_token,
        mut alice,
        mut bob,
        mut carol,
        room: vault,
        ..
    } = vault_of_alice_and_bob(a).await?;
    put_member(a, &alice_token, "vault", "carol").await?;
    let mut bob_on_a = joined(a, &bob_token, "vault").await?;
    let mut alice_on_b = joined(b, &alice_token, "vault").await?;
    let mut seen = Vec::new();

    // Alice adds Carol through node B while Bob, on A, builds a key update
    // on epoch 1.
    let add_carol = alice.add_members(&vault, &claimed(b, &alice_token, "carol").await?)?;
    let carol_added_at = accepted_at(b, &alice_token, &add_carol, 2).await?;
    alice.merge_pending_commit(&vault)?;
    let stale = bob.self_update(&vault)?;
    refused_as_stale(a, &bob_token, &stale).await?;

    // Bob's socket on A delivers B's commit: his device moves to epoch 2
    // and commits again there, on A, which reaches Alice on B.
    bob.clear_pending_commit(&vault)?;
    process_next_commit(&mut bob_on_a, &mut bob, &vault, 2, &mut seen).await?;
    let update = bob.self_update(&vault)?;
    accepted_at(a, &bob_token, &update, 3).await?;
    bob.merge_pending_commit(&vault)?;

    // Alice, not yet past epoch 2, commits to B: refused, A moved on.
    let late = alice.self_update(&vault)?;
    refused_as_stale(b, &alice_token, &late).await?;
    alice.clear_pending_commit(&vault)?;
    process_next_commit(&mut alice_on_b, &mut alice, &vault, 3, &mut seen).await?;

    // Carol, welcomed through B at epoch 2, processes Bob's commit and
    // reads with Bob what Alice sends at epoch 3.
    ensure!(take_welcomes(b, &carol_token, &mut carol).await? == 1);
    let mut carol_on_b = joined(b, &carol_token, "vault").await?;
    carol_on_b
        .send(json!({"type": "resume", "room": "vault", "last_seq": carol_added_at}))
        .await?;
    process_next_commit(&mut carol_on_b, &mut carol, &vault, 3, &mut seen).await?;
    let sealed = chat_protocol::mls::encode(alice.encrypt(&vault, b"all at epoch three")?);
    alice_on_b
        .acked(json!({"type": "message", "room": "vault", "content": sealed, "mls": "application", "client_id": "a1"}))
        .await?;
    for (socket, device, me) in [
        (&mut bob_on_a, &mut bob, "bob"),
        (&mut carol_on_b, &mut carol, "carol"),
    ] {
        let (kind, bytes) = next_mls(socket, me, &mut seen).await?;
        let read = device.process(&vault, &bytes)?;
        ensure!(
            kind == "application"
                && matches!(&read, chat_e2e::Incoming::Message { plaintext, .. } if plaintext == b"all at epoch three"),
            "{me}: {kind} {read:?}"
        );
    }
    Ok(())
}

/// Bob, a member of the encrypted room `vault` made on node A, lists its
/// devices on node B; once Alice removes him on A, node B refuses him the
/// list at once (404: the room is private), and lists Alice the devices
/// of the members left.
async fn a_member_removed_on_one_node_no_longer_lists_the_rooms_devices_on_the_other(
    cluster: &Cluster,
) -> Result<()> {
    use crate::encryption::{Vault, vault_of_alice_and_bob};
    use anyhow::ensure;

    let (a, b) = (&cluster.a, &cluster.b);
    let Vault {
        alice_token,
        bob_token,
        ..
    } = vault_of_alice_and_bob(a).await?;
    let list = |token: String| async move {
        let response = b.get_authed("/api/rooms/vault/mls/devices", &token).await?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await?;
        Ok::<_, anyhow::Error>((status, body))
    };
    let (status, before) = list(bob_token.clone()).await?;
    ensure!(status == 200, "{status} {before}");

    let removed = a
        .send_authed(
            reqwest::Method::DELETE,
            "/api/rooms/vault/members/bob",
            &alice_token,
            None,
        )
        .await?;
    ensure!(removed.status().is_success(), "{}", removed.status());

    let (status, refused) = list(bob_token).await?;
    ensure!(status == 404, "{status} {refused}");
    ensure!(refused["devices"].is_null(), "{refused}");
    let (status, after) = list(alice_token).await?;
    ensure!(status == 200, "{status} {after}");
    let names = |body: &serde_json::Value| -> Vec<String> {
        body["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|device| device["username"].as_str().map(str::to_owned))
            .collect()
    };
    ensure!(
        names(&before).contains(&"bob".to_owned()) && !names(&after).contains(&"bob".to_owned()),
        "{before} {after}"
    );
    Ok(())
}

/// Alice opens an encrypted conversation on node A while Bob is connected
/// to node B: B learns of it through Redis as encrypted, refuses Bob's
/// plaintext there, and relays Alice's ciphertext to him marked as MLS;
/// Bob's device on B reads it after joining from the Welcome. B refuses
/// Alice's edit of her message as A would, and neither node's history
/// shows it edited.
async fn an_encrypted_conversation_opened_on_one_node_is_encrypted_on_the_other(
    cluster: &Cluster,
) -> Result<()> {
    use chat_e2e::{Device, Incoming};
    use chat_protocol::mls::{decode, encode};

    let alice_token = cluster.a.user("alice").await?;
    let bob_token = cluster.a.user("bob").await?;
    let mut alice = Device::new(chat_domain::Username::parse("alice")?)?;
    let mut bob = Device::new(chat_domain::Username::parse("bob")?)?;
    for (node, token, device) in [
        (&cluster.a, &alice_token, &mut alice),
        (&cluster.b, &bob_token, &mut bob),
    ] {
        let registered = node
            .post_authed(
                "/api/mls/devices",
                token,
                &serde_json::to_value(device.registration()?)?,
            )
            .await?;
        assert_eq!(registered.status(), 201);
        let uploaded = node
            .post_authed(
                "/api/mls/key-packages",
                token,
                &serde_json::to_value(device.key_package_upload(2)?)?,
            )
            .await?;
        assert_eq!(uploaded.status(), 200);
    }
    let mut on_b = cluster.b.connect(&bob_token).await?;
    on_b.send(json!({"type": "ping"})).await?;
    on_b.recv_type("pong").await?;

    let opened = cluster
        .a
        .post_authed("/api/dm/bob", &alice_token, &json!({"encrypted": true}))
        .await?;
    assert_eq!(opened.status(), 200);
    let room = "dm:alice:bob";
    assert_eq!(on_b.recv_type("joined").await?["room"], room);
    on_b.send(json!({"type": "message", "room": room, "content": "hi", "client_id": "b1"}))
        .await?;
    let refused = on_b.recv_type("error").await?;
    assert_eq!(refused["code"], "encryption_required", "{refused}");

    let dm = chat_domain::RoomName::parse(room)?;
    alice.create_group(&dm)?;
    let claimed: serde_json::Value = cluster
        .a
        .post_authed(
            "/api/mls/key-packages/claim",
            &alice_token,
            &json!({"users": ["bob"]}),
        )
        .await?
        .json()
        .await?;
    let package = decode(
        claimed["key_packages"][0]["key_package"]
            .as_str()
            .unwrap_or_default(),
    )?;
    let commit = alice.add_members(&dm, &[package])?;
    let accepted = cluster
        .a
        .post_authed(
            &format!("/api/rooms/{room}/mls/commits"),
            &alice_token,
            &serde_json::to_value(commit.to_upload())?,
        )
        .await?;
    assert_eq!(accepted.status(), 201);
    alice.merge_pending_commit(&dm)?;
    let relayed = on_b.recv_type("message").await?;
    assert_eq!(relayed["mls"], "commit", "{relayed}");
    let waiting: serde_json::Value = cluster
        .b
        .get_authed(
            &format!("/api/mls/welcomes?device_id={}", bob.device_id()),
            &bob_token,
        )
        .await?
        .json()
        .await?;
    bob.join(
        &dm,
        &decode(
            waiting["welcomes"][0]["welcome"]
                .as_str()
                .unwrap_or_default(),
        )?,
    )?;

    let mut on_a = cluster.a.connect(&alice_token).await?;
    let sealed = encode(alice.encrypt(&dm, b"across the nodes")?);
    let ack = on_a.acked(json!({"type": "message", "room": room, "content": sealed, "mls": "application", "client_id": "a1"}))
        .await?;
    let relayed = on_b.recv_type("message").await?;
    assert_eq!(relayed["mls"], "application", "{relayed}");
    assert!(!relayed.to_string().contains("across the nodes"));
    let bytes = decode(relayed["content"].as_str().unwrap_or_default())?;
    match bob.process(&dm, &bytes)? {
        Incoming::Message { plaintext, .. } => assert_eq!(plaintext, b"across the nodes"),
        other => panic!("expected a message, got {other:?}"),
    }

    // An edit would put readable text in: made on B, it is refused there
    // too, and the message is as it was on both nodes.
    let seq = ack["seq"].as_i64().unwrap_or_default();
    let refused = cluster
        .b
        .send_authed(
            reqwest::Method::PATCH,
            &format!("/api/rooms/{room}/messages/{seq}"),
            &alice_token,
            Some(&json!({"content": "readable"})),
        )
        .await?;
    assert_eq!(refused.status(), 409);
    let refused: serde_json::Value = refused.json().await?;
    assert_eq!(refused["code"], "encryption_required", "{refused}");
    for node in [&cluster.a, &cluster.b] {
        let page: serde_json::Value = node
            .get_authed(&format!("/api/rooms/{room}/messages"), &alice_token)
            .await?
            .json()
            .await?;
        let message = page["messages"]
            .as_array()
            .and_then(|items| items.iter().find(|item| item["seq"] == seq))
            .cloned()
            .unwrap_or_default();
        assert_eq!(message["content"], sealed, "{page}");
        assert!(message["edited_at"].is_null(), "{page}");
        assert!(!page.to_string().contains("readable"), "{page}");
    }
    Ok(())
}

async fn search_on_either_node_finds_what_is_sent_on_the_other_and_a_ban_on_one_hides_it_on_both(
    cluster: &Cluster,
) -> Result<()> {
    use crate::search::found;
    let alice = cluster.a.user("alice").await?;
    let bob = cluster.a.user("bob").await?;
    lobby(cluster, &alice).await?;
    let mut alice_on_a = joined(&cluster.a, &alice, "lobby").await?;
    let _bob_on_b = joined(&cluster.b, &bob, "lobby").await?;
    let seq = alice_on_a
        .send_acked("lobby", "the harbour at dawn", "m1")
        .await?["seq"]
        .as_i64()
        .unwrap_or_default();
    assert_eq!(
        found(&cluster.b, &bob, "harbour").await?,
        ["the harbour at dawn"]
    );
    // Edited on A: B finds the new text only.
    let edited = cluster
        .a
        .send_authed(
            reqwest::Method::PATCH,
            &format!("/api/rooms/lobby/messages/{seq}"),
            &alice,
            Some(&json!({"content": "the lighthouse at dawn"})),
        )
        .await?;
    assert_eq!(edited.status(), 200);
    assert!(found(&cluster.b, &bob, "harbour").await?.is_empty());
    assert_eq!(found(&cluster.b, &bob, "lighthouse").await?.len(), 1);
    // Banned on A: nothing on either node.
    let banned = cluster
        .a
        .send_authed(
            reqwest::Method::PUT,
            "/api/rooms/lobby/bans/bob",
            &alice,
            Some(&json!({})),
        )
        .await?;
    assert_eq!(banned.status(), 204);
    for node in [&cluster.a, &cluster.b] {
        assert!(found(node, &bob, "lighthouse").await?.is_empty());
    }
    assert_eq!(found(&cluster.b, &alice, "dawn").await?.len(), 1);
    Ok(())
}

async fn changes_on_one_node_reach_the_other_and_its_history_at_once(
    cluster: &Cluster,
) -> Result<()> {
    let alice = cluster.a.user("alice").await?;
    let bob = cluster.a.user("bob").await?;
    lobby(cluster, &alice).await?;
    let mut bob_on_b = joined(&cluster.b, &bob, "lobby").await?;
    let mut alice_on_a = joined(&cluster.a, &alice, "lobby").await?;
    let kept = alice_on_a.send_acked("lobby", "draft", "a1").await?["seq"]
        .as_i64()
        .unwrap_or_default();
    let gone = alice_on_a.send_acked("lobby", "mistake", "a2").await?["seq"]
        .as_i64()
        .unwrap_or_default();
    // Node B reads the room's newest page, so its memory holds it.
    let page = |node: &crate::helpers::TestApp, token: String| {
        let node = node.url("/api/rooms/lobby/messages?limit=100");
        let http = cluster.b.http.clone();
        async move {
            let page: serde_json::Value = http
                .get(node)
                .bearer_auth(token)
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(page["messages"].as_array().cloned().unwrap_or_default())
        }
    };
    let before = page(&cluster.b, bob.clone()).await?;
    assert!(before.iter().any(|item| item["content"] == "mistake"));

    // An edit by frame and a deletion by route, both on node A.
    alice_on_a
        .send(json!({"type": "edit", "room": "lobby", "seq": kept, "content": "final"}))
        .await?;
    alice_on_a.recv_type("ack").await?;
    let deleted = cluster
        .a
        .send_authed(
            reqwest::Method::DELETE,
            &format!("/api/rooms/lobby/messages/{gone}"),
            &alice,
            None,
        )
        .await?;
    assert_eq!(deleted.status(), 204);
    let edited = bob_on_b.recv_type("edited").await?;
    assert_eq!(
        (edited["target"].as_i64(), edited["content"].as_str()),
        (Some(kept), Some("final"))
    );
    let removed = bob_on_b.recv_type("deleted").await?;
    assert_eq!(
        (removed["target"].as_i64(), removed["by"].as_str()),
        (Some(gone), Some("alice"))
    );
    assert_eq!(
        removed["seq"].as_i64(),
        edited["seq"].as_i64().map(|seq| seq + 1)
    );

    // A reaction by route on node A, and one by frame on node B.
    let reacted = cluster
        .a
        .send_authed(
            reqwest::Method::PUT,
            &format!("/api/rooms/lobby/messages/{kept}/reactions/%F0%9F%91%8D"),
            &alice,
            None,
        )
        .await?;
    assert_eq!(reacted.status(), 200);
    let reaction = bob_on_b.recv_type("reaction").await?;
    assert_eq!(
        (reaction["target"].as_i64(), reaction["username"].as_str()),
        (Some(kept), Some("alice"))
    );
    bob_on_b
        .send(json!({"type": "react", "room": "lobby", "seq": kept, "emoji": "🎉"}))
        .await?;
    bob_on_b.recv_type("ack").await?;
    loop {
        let reaction = alice_on_a.recv_type("reaction").await?;
        if reaction["username"] == "bob" {
            assert_eq!(reaction["emoji"], "🎉");
            break;
        }
    }

    // Node B's history shows the new state at once.
    let after = page(&cluster.b, bob.clone()).await?;
    let item = |seq: i64| after.iter().find(|item| item["seq"] == seq).cloned();
    assert_eq!(
        item(kept).map(|i| i["content"].clone()),
        Some(json!("final"))
    );
    assert_eq!(item(gone).map(|i| i["deleted"].clone()), Some(json!(true)));
    assert_eq!(
        item(kept).map(|i| i["reactions"].clone()),
        Some(
            json!([{"emoji": "👍", "count": 1, "me": false}, {"emoji": "🎉", "count": 1, "me": true}])
        )
    );

    // Refused on node B by frame and by route: Bob, not the author, may
    // neither edit nor delete Alice's message; Carol, not a member, may not
    // react to it.
    let path = format!("/api/rooms/lobby/messages/{kept}");
    let edit = json!({"type": "edit", "room": "lobby", "seq": kept, "content": "bob's"});
    let delete = json!({"type": "delete", "room": "lobby", "seq": kept});
    let body = json!({"content": "bob's"});
    for (frame, method, body) in [
        (edit, reqwest::Method::PATCH, Some(&body)),
        (delete, reqwest::Method::DELETE, None),
    ] {
        bob_on_b.send(frame).await?;
        assert_eq!(bob_on_b.recv_type("error").await?["code"], "forbidden");
        let refused = cluster.b.send_authed(method, &path, &bob, body).await?;
        assert_eq!(refused.status(), 403);
    }
    let carol = cluster.a.user("carol").await?;
    let mut carol_on_b = cluster.b.connect(&carol).await?;
    carol_on_b
        .send(json!({"type": "react", "room": "lobby", "seq": kept, "emoji": "👍"}))
        .await?;
    assert_eq!(carol_on_b.recv_type("error").await?["code"], "not_a_member");
    let refused = cluster
        .b
        .send_authed(
            reqwest::Method::PUT,
            &format!("{path}/reactions/%F0%9F%91%8D"),
            &carol,
            None,
        )
        .await?;
    assert_eq!(refused.status(), 403);
    assert_eq!(page(&cluster.b, bob.clone()).await?, after);
    assert_eq!(page(&cluster.a, bob.clone()).await?, after);
    alice_on_a.expect_no("deleted").await?;
    alice_on_a.expect_no("reaction").await?;
    Ok(())
}

async fn a_forbidden_kick_on_the_other_node_changes_nothing(cluster: &Cluster) -> Result<()> {
    let alice = cluster.a.user("alice").await?;
    let bob = cluster.a.user("bob").await?;
    let carol = cluster.a.user("carol").await?;
    lobby(cluster, &alice).await?;
    let mut bob_on_b = joined(&cluster.b, &bob, "lobby").await?;
    let mut carol_on_a = joined(&cluster.a, &carol, "lobby").await?;

    // Bob, a plain member, tries on node B, by frame and by route.
    bob_on_b
        .send(json!({"type": "kick", "room": "lobby", "username": "carol"}))
        .await?;
    assert_eq!(bob_on_b.recv_type("error").await?["code"], "forbidden");
    let by_route = cluster
        .b
        .send_authed(
            reqwest::Method::DELETE,
            "/api/rooms/lobby/members/carol",
            &bob,
            None,
        )
        .await?;
    assert_eq!(by_route.status(), 403);
    // Carol, on node A, is still in and still posts.
    carol_on_a.expect_no("left").await?;
    carol_on_a.send_acked("lobby", "still here", "c1").await?;
    let members: Vec<serde_json::Value> = cluster
        .a
        .get_authed("/api/rooms/lobby/members", &alice)
        .await?
        .json()
        .await?;
    assert_eq!(members.len(), 3);
    Ok(())
}

async fn a_ban_on_one_node_removes_the_users_socket_on_the_other(cluster: &Cluster) -> Result<()> {
    let alice = cluster.a.user("alice").await?;
    let bob = cluster.a.user("bob").await?;
    lobby(cluster, &alice).await?;
    let mut on_b = cluster.b.connect(&bob).await?;
    on_b.send(json!({"type": "join", "room": "lobby"})).await?;
    on_b.recv_type("joined").await?;
    on_b.send_acked("lobby", "hello", "b1").await?;

    let banned = cluster
        .a
        .send_authed(
            reqwest::Method::PUT,
            "/api/rooms/lobby/bans/bob",
            &alice,
            Some(&json!({"reason": "spam"})),
        )
        .await?;
    assert_eq!(banned.status(), 204);
    // Node B hears of it through Redis: the change, then `left`.
    let change = on_b.recv_type("member").await?;
    assert_eq!(change["change"], "banned");
    assert_eq!(on_b.recv_type("left").await?["reason"], "banned");
    on_b.send(
        json!({"type": "message", "room": "lobby", "content": "more spam", "client_id": "b2"}),
    )
    .await?;
    let refused = on_b.recv_type("error").await?;
    assert_eq!(
        (refused["code"].as_str(), refused["client_id"].as_str()),
        (Some("banned"), Some("b2"))
    );
    let page: serde_json::Value = cluster
        .a
        .get_authed("/api/rooms/lobby/messages", &alice)
        .await?
        .json()
        .await?;
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["content"].as_str())
        .collect();
    assert_eq!(texts, ["hello"]);
    Ok(())
}

async fn a_member_added_on_one_node_is_subscribed_on_the_other(cluster: &Cluster) -> Result<()> {
    let alice = cluster.a.user("alice").await?;
    let bob = cluster.a.user("bob").await?;
    let created = cluster
        .a
        .post_authed(
            "/api/rooms",
            &alice,
            &json!({"name": "secret", "visibility": "private"}),
        )
        .await?;
    assert_eq!(created.status(), 201);
    let mut on_b = cluster.b.connect(&bob).await?;
    on_b.send(json!({"type": "ping"})).await?;
    on_b.recv_type("pong").await?;
    let added = cluster
        .a
        .send_authed(
            reqwest::Method::PUT,
            "/api/rooms/secret/members/bob",
            &alice,
            None,
        )
        .await?;
    assert_eq!(added.status(), 204);
    assert_eq!(on_b.recv_type("joined").await?["room"], "secret");
    assert_eq!(on_b.recv_type("member").await?["change"], "added");
    let mut on_a = cluster.a.connect(&alice).await?;
    on_a.send_acked("secret", "welcome", "a1").await?;
    assert_eq!(on_b.recv_type("message").await?["content"], "welcome");
    Ok(())
}

async fn logout_closes_the_sessions_sockets_on_every_node(cluster: &Cluster) -> Result<()> {
    cluster.a.register("alice").await?;
    let phone = cluster.a.sign_in("alice").await?;
    let laptop = cluster.b.sign_in("alice").await?;
    let mut phone_on_a = cluster.a.connect(&phone.access).await?;
    let mut phone_on_b = cluster.b.connect(&phone.access).await?;
    let mut laptop_on_b = cluster.b.connect(&laptop.access).await?;

    assert_eq!(cluster.a.logout(&phone.access).await?.status(), 204);

    // Closed here and on the other node, through Redis.
    for socket in [&mut phone_on_a, &mut phone_on_b] {
        assert_eq!(close_of(socket).await?, (1008, "session ended".to_owned()));
    }
    // Both nodes refuse the session's token at once: each checks the
    // database on every request.
    for node in [&cluster.a, &cluster.b] {
        assert_eq!(me_status(node, &phone.access).await?, 401);
        assert_eq!(me_status(node, &laptop.access).await?, 200);
    }
    still_open(&mut laptop_on_b).await?;
    Ok(())
}

async fn a_reused_refresh_token_closes_the_sessions_sockets_on_the_other_node(
    cluster: &Cluster,
) -> Result<()> {
    cluster.a.register("alice").await?;
    let first = cluster.a.sign_in("alice").await?;
    let mut on_a = cluster.a.connect(&first.access).await?;
    cluster.a.refreshed(&first.refresh).await?;
    // The copy is replayed on the other node.
    assert_eq!(cluster.b.refresh(&first.refresh).await?.status(), 401);
    assert_eq!(
        close_of(&mut on_a).await?,
        (1008, "session ended".to_owned())
    );
    Ok(())
}

async fn messages_cross_nodes_both_ways_once_and_in_order(cluster: &Cluster) -> Result<()> {
    let alice = cluster.a.user("alice").await?;
    let bob = cluster.a.user("bob").await?;
    let mut on_a = cluster.a.connect(&alice).await?;
    let mut on_b = cluster.b.connect(&bob).await?;
    for i in 1..=20 {
        // Alternate the node that writes, so both publish into one room.
        if i % 2 == 1 {
            on_a.send(json!({"type": "message", "content": format!("m{i}"), "client_id": format!("a{i}")})).await?;
        } else {
            on_b.send(json!({"type": "message", "content": format!("m{i}"), "client_id": format!("b{i}")})).await?;
        }
    }
    for client in [&mut on_a, &mut on_b] {
        let mut seqs = Vec::new();
        while seqs.len() < 20 {
            let frame = client.recv_type("message").await?;
            seqs.push(frame["seq"].as_i64().unwrap_or(-1));
        }
        assert_eq!(seqs, (1..=20).collect::<Vec<i64>>());
        client.expect_no("message").await?;
    }
    Ok(())
}

async fn presence_and_typing_cross_nodes(cluster: &Cluster) -> Result<()> {
    let alice = cluster.a.user("alice").await?;
    let bob = cluster.a.user("bob").await?;
    let mut observer = cluster.a.connect(&alice).await?;
    observer.send(json!({"type": "ping"})).await?;
    observer.recv_type("pong").await?;
    let mut on_b = cluster.b.connect(&bob).await?;
    let presence = observer.recv_type("presence").await?;
    assert_eq!(presence["username"], "bob");
    assert_eq!(presence["online"], true);
    // The presence snapshot on node A lists bob, who is on node B.
    let mut listed = false;
    for _ in 0..40 {
        observer.send(json!({"type": "who"})).await?;
        let who = observer.recv_type("who").await?;
        if who["online"] == json!(["alice", "bob"]) {
            listed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(listed, "bob never showed as online on node A");
    on_b.send(json!({"type": "typing"})).await?;
    assert_eq!(observer.recv_type("typing").await?["username"], "bob");
    on_b.close().await?;
    let gone = observer.recv_type("presence").await?;
    assert_eq!(
        (gone["username"].as_str(), gone["online"].as_bool()),
        (Some("bob"), Some(false))
    );
    Ok(())
}

async fn resume_works_on_the_other_node(cluster: &Cluster) -> Result<()> {
    let alice = cluster.a.user("alice").await?;
    let bob = cluster.a.user("bob").await?;
    let mut writer = cluster.a.connect(&alice).await?;
    for i in 1..=10 {
        writer
            .send_acked("general", &format!("m{i}"), &format!("w{i}"))
            .await?;
    }
    // Bob saw up to 4 on node A, then reconnects to node B.
    let mut reader = cluster.b.connect(&bob).await?;
    reader
        .send(json!({"type": "resume", "room": "general", "last_seq": 4}))
        .await?;
    for expected in 5..=10 {
        assert_eq!(reader.recv_type("message").await?["seq"], expected);
    }
    assert_eq!(reader.recv_type("joined").await?["last_seq"], 10);
    writer.send_acked("general", "m11", "w11").await?;
    assert_eq!(reader.recv_type("message").await?["seq"], 11);
    Ok(())
}

async fn a_client_id_resent_to_the_other_node_is_not_stored_twice(cluster: &Cluster) -> Result<()> {
    let alice = cluster.a.user("alice").await?;
    let mut first = cluster.a.connect(&alice).await?;
    let original = first.send_acked("general", "once", "same-id").await?;
    let mut second = cluster.b.connect(&alice).await?;
    let again = second.send_acked("general", "once", "same-id").await?;
    assert_eq!(again["id"], original["id"]);
    assert_eq!(again["duplicate"], true);
    let items: Vec<serde_json::Value> = cluster
        .b
        .get_authed("/api/chat/messages", &alice)
        .await?
        .json()
        .await?;
    assert_eq!(items.len(), 1);
    Ok(())
}

/// A Redis server of a test's own, on a free port, for a test that cuts
/// its connections or stops it: doing that to the machine's shared Redis
/// would cut every other test's nodes too. Stopped when dropped.
struct OwnRedis {
    child: Option<std::process::Child>,
    port: u16,
    url: String,
}

impl OwnRedis {
    async fn start() -> Result<OwnRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut own = OwnRedis {
            child: None,
            port,
            url: format!("redis://127.0.0.1:{port}"),
        };
        own.restart().await?;
        Ok(own)
    }

    /// Starts the server (again) on its port, empty.
    async fn restart(&mut self) -> Result<()> {
        let port = self.port;
        self.child = Some(
            std::process::Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()?,
        );
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        anyhow::bail!("redis-server did not start on port {port}")
    }

    /// Kills the server, as a crash would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `test` on two nodes (configured with `tweaks`) sharing a Redis of
/// their own.
async fn on_own_redis<F>(database: TestDatabase, tweaks: Tweaks, test: F) -> Result<()>
where
    F: AsyncFnOnce(&Cluster, &mut OwnRedis) -> Result<()>,
{
    if redis_url().is_none() {
        database.drop_database().await;
        return Ok(());
    }
    let mut redis = OwnRedis::start().await?;
    let cluster = Cluster::spawn_on(database, redis.url.clone(), tweaks).await?;
    let result = test(&cluster, &mut redis).await;
    cluster.stop().await;
    result
}

/// Closes every connection of `kind` (`normal`, `pubsub`) that the Redis at
/// `url` holds, but the one that asks.
async fn kill_clients(url: &str, kind: &str) -> Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg(kind)
        .query_async(&mut conn)
        .await?;
    Ok(())
}

/// Alice's socket on node A and Bob's on node B, once a first message
/// (seq 1) from Alice has reached Bob.
async fn writer_and_remote_reader(
    cluster: &Cluster,
) -> Result<(crate::helpers::Client, crate::helpers::Client)> {
    let alice = cluster.a.user("alice").await?;
    let bob = cluster.a.user("bob").await?;
    let mut writer = cluster.a.connect(&alice).await?;
    let mut reader = cluster.b.connect(&bob).await?;
    writer.send_acked("general", "before", "w1").await?;
    assert_eq!(reader.recv_type("message").await?["seq"], 1);
    Ok((writer, reader))
}

/// The backlog of the outage tests: far fewer events than they send.
const SMALL_BACKLOG: usize = 8;

macro_rules! own_redis_tests {
    ($($name:ident),* $(,)?) => {
        mod own_redis {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() -> anyhow::Result<()> {
                        let database = chat_storage::testing::TestDatabase::sqlite();
                        super::super::on_own_redis(database, super::super::outage_tweaks(), super::super::$name).await
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() -> anyhow::Result<()> {
                        let Some(database) = chat_storage::testing::TestDatabase::postgres().await else {
                            return Ok(());
                        };
                        super::super::on_own_redis(database, super::super::outage_tweaks(), super::super::$name).await
                    }
                )*
            }
        }
    };
}

own_redis_tests!(
    a_broker_that_goes_silent_is_noticed_and_nothing_is_missed,
    a_lost_broker_connection_loses_and_doubles_nothing,
    a_broker_outage_keeps_local_sockets_served_bounds_the_backlog_and_the_other_node_repairs_the_gap,
    events_a_node_could_not_publish_reach_the_other_node_from_the_database,
);

fn outage_tweaks() -> Tweaks {
    Tweaks {
        redis_backlog: Some(SMALL_BACKLOG),
        ..Tweaks::default()
    }
}

/// Sends `m{i}` for each `i` from `writer`, each acknowledged, and checks
/// that `local` (on the writer's node) receives each at once, in order.
async fn send_and_see_locally(
    writer: &mut crate::helpers::Client,
    local: &mut crate::helpers::Client,
    numbers: std::ops::RangeInclusive<i64>,
) -> Result<()> {
    for i in numbers {
        let ack = writer
            .send_acked("general", &format!("m{i}"), &format!("w{i}"))
            .await?;
        assert_eq!(ack["seq"], i);
        assert_eq!(local.recv_type("message").await?["seq"], i);
    }
    Ok(())
}

/// Receives `message` frames until `count` have come; returns their seqs.
async fn seqs_received(client: &mut crate::helpers::Client, count: usize) -> Result<Vec<i64>> {
    let mut seqs = Vec::with_capacity(count);
    while seqs.len() < count {
        seqs.push(
            client.recv_type("message").await?["seq"]
                .as_i64()
                .unwrap_or(-1),
        );
    }
    Ok(seqs)
}

async fn a_broker_outage_keeps_local_sockets_served_bounds_the_backlog_and_the_other_node_repairs_the_gap(
    cluster: &Cluster,
    redis: &mut OwnRedis,
) -> Result<()> {
    let alice = cluster.a.user("alice").await?;
    let bob = cluster.a.user("bob").await?;
    let carol = cluster.a.user("carol").await?;
    let mut writer = cluster.a.connect(&alice).await?;
    let mut local = cluster.a.connect(&carol).await?;
    let mut remote = cluster.b.connect(&bob).await?;
    send_and_see_locally(&mut writer, &mut local, 1..=1).await?;
    assert_eq!(remote.recv_type("message").await?["seq"], 1);

    redis.kill();
    for node in [&cluster.a, &cluster.b] {
        wait_for_status(node, "degraded").await?;
    }
    let dropped_before = cluster.a.metric("chat_frames_dropped_total", &[]).await?;
    // Five times the backlog, every one acknowledged and delivered on the
    // node that stored it.
    let outage = 2..=(1 + 5 * SMALL_BACKLOG as i64);
    send_and_see_locally(&mut writer, &mut local, outage.clone()).await?;
    let metrics = cluster.a.metrics().await?;
    let dropped = sample(&metrics, "chat_frames_dropped_total", &[]) - dropped_before;
    assert!(
        dropped >= outage.clone().count() as f64,
        "only {dropped} events were counted as dropped"
    );
    let backlog = sample(&metrics, "chat_redis_publish_backlog", &[]);
    assert!(
        backlog <= SMALL_BACKLOG as f64,
        "{backlog} events wait for Redis"
    );
    assert_eq!(
        sample(&metrics, "chat_redis_link_up", &["direction=\"publish\""]),
        0.0
    );
    assert_eq!(
        sample(&metrics, "chat_redis_publish_backlog_capacity", &[]),
        SMALL_BACKLOG as f64
    );

    redis.restart().await?;
    for node in [&cluster.a, &cluster.b] {
        wait_until_ready(node).await?;
    }
    // The other node read what it missed from the database, in order,
    // once; then live delivery goes on.
    let last = *outage.end();
    assert_eq!(
        seqs_received(&mut remote, outage.clone().count()).await?,
        outage.collect::<Vec<i64>>()
    );
    send_and_see_locally(&mut writer, &mut local, last + 1..=last + 1).await?;
    assert_eq!(remote.recv_type("message").await?["seq"], last + 1);
    remote.expect_no("message").await?;
    local.expect_no("message").await?;
    let metrics = cluster.a.metrics().await?;
    assert_eq!(
        sample(&metrics, "chat_redis_link_up", &["direction=\"publish\""]),
        1.0
    );
    Ok(())
}

async fn events_a_node_could_not_publish_reach_the_other_node_from_the_database(
    cluster: &Cluster,
    redis: &mut OwnRedis,
) -> Result<()> {
    let (mut writer, mut remote) = writer_and_remote_reader(cluster).await?;
    // Cut the connections nodes publish on, but not their subscriptions:
    // the next message cannot be published, and nothing else will tell
    // the other node about it.
    kill_clients(&redis.url, "normal").await?;
    writer.send_acked("general", "unpublished", "w2").await?;
    // Its publisher reconnects and asks the other nodes to catch up.
    let caught_up = remote.recv_type("message").await?;
    assert_eq!(
        (caught_up["seq"].as_i64(), caught_up["content"].as_str()),
        (Some(2), Some("unpublished"))
    );
    remote.expect_no("message").await?;
    Ok(())
}

async fn a_broker_that_goes_silent_is_noticed_and_nothing_is_missed(
    cluster: &Cluster,
    _: &mut OwnRedis,
) -> Result<()> {
    let (mut writer, mut reader) = writer_and_remote_reader(cluster).await?;
    // Redis stops answering every client for 10 s without closing any
    // connection, as a network path that drops packets would look.
    let client = redis::Client::open(cluster.redis.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(10_000)
        .arg("ALL")
        .query_async(&mut conn)
        .await?;
    writer.send_acked("general", "during", "w2").await?;
    // Node B notices its subscription went silent and says so.
    wait_for_status(&cluster.b, "degraded").await?;
    // Once Redis answers again, B subscribes again and reads what it
    // missed: the message reaches Bob once.
    wait_for_status(&cluster.b, "ok").await?;
    let message = reader.recv_type("message").await?;
    assert_eq!(
        (message["seq"].as_i64(), message["content"].as_str()),
        (Some(2), Some("during"))
    );
    reader.expect_no("message").await?;
    Ok(())
}

async fn a_lost_broker_connection_loses_and_doubles_nothing(
    cluster: &Cluster,
    _: &mut OwnRedis,
) -> Result<()> {
    let (mut writer, mut reader) = writer_and_remote_reader(cluster).await?;
    // Cut every subscriber's connection, as a Redis restart would, and keep
    // writing while the nodes reconnect.
    kill_clients(&cluster.redis, "pubsub").await?;
    for i in 2..=30 {
        writer
            .send_acked("general", &format!("m{i}"), &format!("w{i}"))
            .await?;
    }
    assert_eq!(
        seqs_received(&mut reader, 29).await?,
        (2..=30).collect::<Vec<i64>>()
    );
    reader.expect_no("message").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_its_broker_serves_its_own_sockets_and_says_degraded() -> Result<()> {
    let database = TestDatabase::sqlite();
    let keys = KeyRing::new(FernetKey::generate(), Vec::new());
    // Nothing listens on port 1.
    let tweaks = Tweaks {
        redis: Some(("redis://127.0.0.1:1".to_owned(), unique_name())),
        ..Tweaks::default()
    };
    let node = TestApp::spawn_node(database.url(), keys, tweaks).await?;
    let result = async {
        let ready = node.http.get(node.url("/ready")).send().await?;
        assert_eq!(ready.status(), 200);
        let body: serde_json::Value = ready.json().await?;
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["broker"], "unavailable");
        let alice = node.user("alice").await?;
        let bob = node.user("bob").await?;
        let mut sender = node.connect(&alice).await?;
        let mut receiver = node.connect(&bob).await?;
        sender.send_acked("general", "still local", "l1").await?;
        assert_eq!(
            receiver.recv_type("message").await?["content"],
            "still local"
        );
        Ok(())
    }
    .await;
    node.stop().await;
    database.drop_database().await;
    result
}
