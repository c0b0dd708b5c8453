//! End-to-end encrypted rooms: the flag on rooms and direct conversations,
//! plaintext refused there, search skipping them, and the directory of
//! devices (per user and per room) and KeyPackages, driven by the real
//! client library (`chat-e2e`) over HTTP and WebSockets. Every refusal is
//! checked to change nothing.

use std::collections::HashSet;

use anyhow::{Result, ensure};
use chat_domain::Username;
use chat_e2e::Device;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, retry_after};

crate::backend_tests!(
    an_encrypted_room_refuses_plaintext_and_search_skips_it,
    an_encrypted_conversation_is_asked_for_once_and_never_changes_kind,
    devices_register_with_their_own_key_and_credential_only,
    key_packages_are_checked_and_each_is_handed_out_once,
    concurrent_claims_never_share_a_key_package,
    an_encrypted_room_carries_only_ciphertext_between_real_clients,
    a_commit_is_judged_by_what_it_does_not_by_the_group_info_sent_with_it,
    a_member_lists_every_device_of_the_rooms_members,
    the_rooms_devices_are_refused_to_non_members_and_in_plain_rooms,
    a_claim_naming_devices_takes_packages_of_those_devices_only,
);

fn device(name: &str) -> Result<Device> {
    Ok(Device::new(Username::parse(name)?)?)
}

async fn json_of(response: reqwest::Response) -> Result<(u16, Value)> {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// Registers `device` for the holder of `token`.
async fn register(app: &TestApp, token: &str, device: &Device) -> Result<(u16, Value)> {
    let body = serde_json::to_value(device.registration()?)?;
    json_of(app.post_authed("/api/mls/devices", token, &body).await?).await
}

/// Uploads `count` packages (and a last-resort one) of `device`.
async fn upload(
    app: &TestApp,
    token: &str,
    device: &mut Device,
    count: usize,
) -> Result<(u16, Value)> {
    let body = serde_json::to_value(device.key_package_upload(count)?)?;
    json_of(
        app.post_authed("/api/mls/key-packages", token, &body)
            .await?,
    )
    .await
}

async fn claim(app: &TestApp, token: &str, users: &[&str]) -> Result<(u16, Value)> {
    json_of(
        app.post_authed(
            "/api/mls/key-packages/claim",
            token,
            &json!({ "users": users }),
        )
        .await?,
    )
    .await
}

/// Claims with a body of the caller's making, `devices` and all.
async fn claim_with(app: &TestApp, token: &str, body: &Value) -> Result<(u16, Value)> {
    json_of(
        app.post_authed("/api/mls/key-packages/claim", token, body)
            .await?,
    )
    .await
}

/// The packages a claim handed out.
fn packages(body: &Value) -> Vec<Value> {
    body["key_packages"].as_array().cloned().unwrap_or_default()
}

async fn an_encrypted_room_refuses_plaintext_and_search_skips_it(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let (status, created) = json_of(
        app.post_authed(
            "/api/rooms",
            &alice,
            &json!({"name": "vault", "encrypted": true}),
        )
        .await?,
    )
    .await?;
    ensure!(status == 201, "create: {status} {created}");
    ensure!(created["encrypted"] == true, "{created}");
    let (status, shown) = json_of(app.get_authed("/api/rooms/vault", &alice).await?).await?;
    ensure!(
        status == 200 && shown["encrypted"] == true,
        "{status} {shown}"
    );
    let (_, listed) = json_of(app.get_authed("/api/rooms", &alice).await?).await?;
    let flags: Vec<(String, bool)> = listed
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|room| {
            (
                room["name"].as_str().unwrap_or_default().to_owned(),
                room["encrypted"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    ensure!(
        flags.contains(&("vault".to_owned(), true))
            && flags.contains(&("general".to_owned(), false)),
        "{flags:?}"
    );

    // `joined` says which rooms take ciphertext only.
    let mut socket = app.connect(&alice).await?;
    for (room, encrypted) in [("vault", true), ("general", false)] {
        socket.send(json!({"type": "join", "room": room})).await?;
        let joined = socket.recv_type("joined").await?;
        ensure!(
            joined["room"] == room && joined["encrypted"] == encrypted,
            "{joined}"
        );
    }
    socket
        .send(json!({"type": "message", "room": "vault", "content": "budget plans", "client_id": "p1"}))
        .await?;
    let refused = socket.recv_type("error").await?;
    ensure!(refused["code"] == "encryption_required", "{refused}");
    ensure!(
        refused["client_id"] == "p1" && refused["room"] == "vault",
        "{refused}"
    );
    // Nothing was stored: the room is still empty.
    let (_, page) = json_of(app.get_authed("/api/rooms/vault/messages", &alice).await?).await?;
    ensure!(
        page["messages"].as_array().is_some_and(Vec::is_empty),
        "{page}"
    );
    let (_, shown) = json_of(app.get_authed("/api/rooms/vault", &alice).await?).await?;
    ensure!(shown["last_seq"] == 0, "{shown}");

    // The same words in a plaintext room are found; the encrypted room is
    // never searched, even when named.
    socket.send_acked("general", "budget plans", "g1").await?;
    let (status, found) = json_of(app.get_authed("/api/search?q=budget", &alice).await?).await?;
    ensure!(status == 200, "{status} {found}");
    let rooms: Vec<&str> = found["results"]
        .as_array()
        .map(|results| results.iter().filter_map(|r| r["room"].as_str()).collect())
        .unwrap_or_default();
    ensure!(rooms == ["general"], "{found}");
    let (status, found) = json_of(
        app.get_authed("/api/search?q=budget&room=vault", &alice)
            .await?,
    )
    .await?;
    ensure!(
        status == 200 && found["results"].as_array().is_some_and(Vec::is_empty),
        "{status} {found}"
    );
    Ok(())
}

async fn an_encrypted_conversation_is_asked_for_once_and_never_changes_kind(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    app.user("carol").await?;
    // A socket of alice's that speaks the extended protocol (it asked for
    // `who`) is told of each conversation as it is opened.
    let mut watching = app.connect(&alice).await?;
    watching
        .send(json!({"type": "who", "room": "general"}))
        .await?;
    watching.recv_type("who").await?;
    let open = |token: String, with: &'static str, body: Option<Value>| {
        let path = format!("/api/dm/{with}");
        async move {
            json_of(
                app.send_authed(Method::POST, &path, &token, body.as_ref())
                    .await?,
            )
            .await
        }
    };
    let (status, opened) = open(alice.clone(), "bob", Some(json!({"encrypted": true}))).await?;
    ensure!(
        status == 200 && opened["encrypted"] == true,
        "{status} {opened}"
    );
    // Either side, with no body or an empty one, gets it as it is.
    let (status, again) = open(bob.clone(), "alice", None).await?;
    ensure!(
        status == 200 && again["encrypted"] == true,
        "{status} {again}"
    );
    let (status, again) = open(bob.clone(), "alice", Some(json!({}))).await?;
    ensure!(
        status == 200 && again["encrypted"] == true,
        "{status} {again}"
    );
    // Asking for the other kind is refused and changes nothing.
    let (status, refused) = open(bob.clone(), "alice", Some(json!({"encrypted": false}))).await?;
    ensure!(status == 409, "{status} {refused}");
    let (_, still) = json_of(app.get_authed("/api/rooms/dm:alice:bob", &alice).await?).await?;
    ensure!(still["encrypted"] == true, "{still}");

    // A plaintext conversation (the seed's way: no body) stays plaintext.
    let (status, plain) = open(alice.clone(), "carol", None).await?;
    ensure!(
        status == 200 && plain["encrypted"] == false,
        "{status} {plain}"
    );
    let (status, refused) = open(alice.clone(), "carol", Some(json!({"encrypted": true}))).await?;
    ensure!(status == 409, "{status} {refused}");
    // The socket learnt of both, each with its kind, in the order opened.
    let joined = watching.recv_type("joined").await?;
    ensure!(
        joined["room"] == "dm:alice:bob" && joined["encrypted"] == true,
        "{joined}"
    );
    let joined = watching.recv_type("joined").await?;
    ensure!(
        joined["room"] == "dm:alice:carol" && joined["encrypted"] == false,
        "{joined}"
    );
    let (status, refused) = json_of(
        app.http_post_raw("/api/dm/carol", &alice, "{not json")
            .await?,
    )
    .await?;
    ensure!(status == 422, "{status} {refused}");

    // Plaintext is refused in the encrypted conversation, on a socket that
    // learnt of it when it was opened.
    let mut socket = app.connect(&bob).await?;
    socket
        .send(
            json!({"type": "message", "room": "dm:alice:bob", "content": "hi", "client_id": "d1"}),
        )
        .await?;
    let refused = socket.recv_type("error").await?;
    ensure!(refused["code"] == "encryption_required", "{refused}");
    let (_, shown) = json_of(app.get_authed("/api/rooms/dm:alice:bob", &bob).await?).await?;
    ensure!(shown["last_seq"] == 0, "{shown}");
    Ok(())
}

async fn devices_register_with_their_own_key_and_credential_only(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let laptop = device("alice")?;
    let (status, registered) = register(app, &alice, &laptop).await?;
    ensure!(status == 201, "{status} {registered}");
    ensure!(
        registered["device_id"] == laptop.device_id(),
        "{registered}"
    );
    ensure!(
        registered["fingerprint"] == laptop.fingerprint().to_string(),
        "the server's fingerprint is the one the client shows: {registered}"
    );
    ensure!(
        registered["signature_key"] == laptop.registration()?.signature_key,
        "{registered}"
    );
    // Registering it again changes nothing.
    let (status, again) = register(app, &alice, &laptop).await?;
    ensure!(status == 201 && again == registered, "{status} {again}");

    // Bob may not register a device whose credential names Alice, nor an
    // id that is not his key's, nor something that is not a key.
    let (status, refused) = register(app, &bob, &device("alice")?).await?;
    ensure!(
        status == 422 && refused["code"] == "invalid",
        "{status} {refused}"
    );
    let phone = device("bob")?;
    let mut body = serde_json::to_value(phone.registration()?)?;
    body["device_id"] = json!(laptop.device_id());
    let (status, refused) =
        json_of(app.post_authed("/api/mls/devices", &bob, &body).await?).await?;
    ensure!(status == 422, "{status} {refused}");
    let mut body = serde_json::to_value(phone.registration()?)?;
    body["signature_key"] = json!("AAAA");
    let (status, refused) =
        json_of(app.post_authed("/api/mls/devices", &bob, &body).await?).await?;
    ensure!(status == 422, "{status} {refused}");
    let (_, listed) = json_of(app.get_authed("/api/mls/devices/bob", &alice).await?).await?;
    ensure!(
        listed["devices"].as_array().is_some_and(Vec::is_empty),
        "nothing was registered for bob: {listed}"
    );
    let (_, listed) = json_of(app.get_authed("/api/mls/devices/alice", &bob).await?).await?;
    ensure!(listed["devices"] == json!([registered]), "{listed}");
    let (status, _) = json_of(app.get_authed("/api/mls/devices/nobody", &bob).await?).await?;
    ensure!(status == 404);

    // Only its owner removes a device.
    let path = format!("/api/mls/devices/{}", laptop.device_id());
    let (status, _) = json_of(app.send_authed(Method::DELETE, &path, &bob, None).await?).await?;
    ensure!(status == 404, "bob has no such device: {status}");
    let (_, listed) = json_of(app.get_authed("/api/mls/devices/alice", &bob).await?).await?;
    ensure!(
        listed["devices"].as_array().map(Vec::len) == Some(1),
        "{listed}"
    );
    let (status, _) = json_of(app.send_authed(Method::DELETE, &path, &alice, None).await?).await?;
    ensure!(status == 204, "{status}");
    let (_, listed) = json_of(app.get_authed("/api/mls/devices/alice", &bob).await?).await?;
    ensure!(
        listed["devices"].as_array().is_some_and(Vec::is_empty),
        "{listed}"
    );
    Ok(())
}

async fn key_packages_are_checked_and_each_is_handed_out_once(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let carol = app.user("carol").await?;
    let mut phone = device("bob")?;
    let (status, _) = register(app, &bob, &phone).await?;
    ensure!(status == 201);
    let (status, stock) = upload(app, &bob, &mut phone, 3).await?;
    ensure!(status == 200, "{status} {stock}");
    ensure!(
        stock == json!({"device_id": phone.device_id(), "available": 3, "last_resort": true}),
        "{stock}"
    );
    let stock_path = format!("/api/mls/key-packages?device_id={}", phone.device_id());
    let (status, read) = json_of(app.get_authed(&stock_path, &bob).await?).await?;
    ensure!(status == 200 && read == stock, "{status} {read}");
    let (status, _) = json_of(app.get_authed(&stock_path, &carol).await?).await?;
    ensure!(status == 404, "another user's device: {status}");

    // Refused uploads store nothing: a package of another device, a
    // last-resort package among ordinary ones, garbage, an unknown device,
    // another user's device.
    let mut other = device("bob")?;
    let mut body = serde_json::to_value(other.key_package_upload(1)?)?;
    body["device_id"] = json!(phone.device_id());
    let (status, refused) = json_of(
        app.post_authed("/api/mls/key-packages", &bob, &body)
            .await?,
    )
    .await?;
    ensure!(
        status == 422 && refused["code"] == "invalid",
        "{status} {refused}"
    );
    let mut body = serde_json::to_value(phone.key_package_upload(1)?)?;
    body["key_packages"] = json!([body["last_resort"].clone()]);
    body["last_resort"] = Value::Null;
    let (status, refused) = json_of(
        app.post_authed("/api/mls/key-packages", &bob, &body)
            .await?,
    )
    .await?;
    ensure!(status == 422, "{status} {refused}");
    let (status, refused) = json_of(
        app.post_authed(
            "/api/mls/key-packages",
            &bob,
            &json!({"device_id": phone.device_id(), "key_packages": ["not base64!"]}),
        )
        .await?,
    )
    .await?;
    ensure!(status == 422, "{status} {refused}");
    let (status, refused) = json_of(
        app.post_authed(
            "/api/mls/key-packages",
            &bob,
            &json!({"device_id": phone.device_id(), "key_packages": ["AAEC"]}),
        )
        .await?,
    )
    .await?;
    ensure!(status == 422, "{status} {refused}");
    let (status, _) = upload(app, &bob, &mut other, 1).await?;
    ensure!(status == 404, "an unregistered device: {status}");
    let mut body = serde_json::to_value(phone.key_package_upload(1)?)?;
    body["device_id"] = json!(phone.device_id());
    let (status, _) = json_of(
        app.post_authed("/api/mls/key-packages", &carol, &body)
            .await?,
    )
    .await?;
    ensure!(status == 404, "carol has no such device: {status}");

    // Three ordinary packages, each once, then the last-resort one as
    // often as asked.
    let mut seen = HashSet::new();
    for round in 0..3 {
        let (status, claimed) = claim(app, &alice, &["bob"]).await?;
        ensure!(status == 200, "{status} {claimed}");
        let handed = packages(&claimed);
        ensure!(handed.len() == 1, "{claimed}");
        ensure!(
            handed[0]["last_resort"] == false,
            "round {round}: {claimed}"
        );
        ensure!(handed[0]["username"] == "bob" && handed[0]["device_id"] == phone.device_id());
        ensure!(
            seen.insert(
                handed[0]["key_package"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            ),
            "a package was handed out twice"
        );
    }
    let mut last_resorts = HashSet::new();
    for _ in 0..2 {
        let (_, claimed) = claim(app, &carol, &["bob", "alice"]).await?;
        let handed = packages(&claimed);
        ensure!(
            handed.len() == 1 && handed[0]["last_resort"] == true,
            "{claimed}"
        );
        last_resorts.insert(
            handed[0]["key_package"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    ensure!(
        last_resorts.len() == 1,
        "the same last-resort package each time"
    );

    // A claimed package is one the client can use: Alice adds Bob with it.
    let (_, claimed) = claim(app, &alice, &["bob"]).await?;
    let package = chat_protocol::mls::decode(
        packages(&claimed)[0]["key_package"]
            .as_str()
            .unwrap_or_default(),
    )?;
    let mut laptop = device("alice")?;
    let vault = chat_domain::RoomName::public("vault")?;
    laptop.create_group(&vault)?;
    let commit = laptop.add_members(&vault, &[package])?;
    ensure!(commit.welcome.is_some(), "adding bob makes a Welcome");

    // Bad claims are refused.
    let (status, _) = claim(app, &alice, &[]).await?;
    ensure!(status == 422);
    let (status, _) = claim(app, &alice, &["nobody"]).await?;
    ensure!(status == 404);
    Ok(())
}

/// A server whose claims are limited to three users at once, refilled so
/// slowly that nothing comes back during a test.
mod claim_limit {
    use chat_transport::{Rate, RateLimits};

    use super::claims_over_the_limit_are_refused_and_take_nothing;
    use crate::helpers::Tweaks;

    fn tweaks() -> Tweaks {
        Tweaks {
            rate_limits: Some(RateLimits {
                register: Rate::per_minute(1000),
                login: Rate::per_minute(1000),
                key_package_claims: Rate {
                    burst: 3,
                    per_second: 1.0 / 3600.0,
                },
                ..RateLimits::default()
            }),
            ..Tweaks::default()
        }
    }

    crate::backend_tests!(
        tweaks = super::tweaks();
        claims_over_the_limit_are_refused_and_take_nothing,
    );
}

async fn claims_over_the_limit_are_refused_and_take_nothing(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let carol = app.user("carol").await?;
    let mut phone = device("bob")?;
    register(app, &bob, &phone).await?;
    let (status, _) = upload(app, &bob, &mut phone, 10).await?;
    ensure!(status == 200);
    let stock_path = format!("/api/mls/key-packages?device_id={}", phone.device_id());
    let available = || async {
        let (_, stock) = json_of(app.get_authed(&stock_path, &bob).await?).await?;
        anyhow::Ok(stock["available"].clone())
    };

    // Alice's three are spent one user at a time; the fourth claim is
    // refused with when to try again, and bob keeps his packages.
    for _ in 0..3 {
        let (status, claimed) = claim(app, &alice, &["bob"]).await?;
        ensure!(
            status == 200 && packages(&claimed).len() == 1,
            "{status} {claimed}"
        );
    }
    ensure!(available().await? == 7);
    let refused = app
        .post_authed(
            "/api/mls/key-packages/claim",
            &alice,
            &json!({ "users": ["bob"] }),
        )
        .await?;
    let retry = retry_after(&refused);
    let (status, body) = json_of(refused).await?;
    ensure!(status == 429, "{status} {body}");
    ensure!(retry >= 1, "Retry-After {retry}");
    ensure!(available().await? == 7, "a refused claim took a package");

    // Each user named counts: carol, with a bucket of her own, may claim
    // bob's package but not three users' at once, and that takes nothing.
    let (status, claimed) = claim(app, &carol, &["bob"]).await?;
    ensure!(
        status == 200 && packages(&claimed).len() == 1,
        "{status} {claimed}"
    );
    let (status, body) = claim(app, &carol, &["bob", "alice", "carol"]).await?;
    ensure!(status == 429, "{status} {body}");
    ensure!(available().await? == 6, "a refused claim took a package");
    let (status, claimed) = claim(app, &carol, &["bob", "alice"]).await?;
    ensure!(
        status == 200 && packages(&claimed).len() == 1,
        "{status} {claimed}"
    );
    ensure!(available().await? == 5);
    Ok(())
}

async fn concurrent_claims_never_share_a_key_package(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut phone = device("bob")?;
    register(app, &bob, &phone).await?;
    // Sixty packages make a body larger than the general limit of 16 KiB,
    // which the upload route raises.
    let (status, stock) = upload(app, &bob, &mut phone, 60).await?;
    ensure!(status == 200 && stock["available"] == 60, "{stock}");
    let claims: Vec<_> = (0..60).map(|_| claim(app, &alice, &["bob"])).collect();
    let answers = futures_util::future::join_all(claims).await;
    let mut handed = HashSet::new();
    for answer in answers {
        let (status, claimed) = answer?;
        ensure!(status == 200, "{status} {claimed}");
        for package in packages(&claimed) {
            ensure!(package["last_resort"] == false, "{claimed}");
            ensure!(
                handed.insert(
                    package["key_package"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                ),
                "a package was handed out twice"
            );
        }
    }
    ensure!(handed.len() == 60, "{} packages", handed.len());
    let (_, claimed) = claim(app, &alice, &["bob"]).await?;
    ensure!(packages(&claimed)[0]["last_resort"] == true, "{claimed}");
    Ok(())
}

/// Registers a device of `name` (signed in with `token`) with a stock of
/// KeyPackages.
async fn enrolled(app: &TestApp, token: &str, name: &str) -> Result<Device> {
    let mut device = device(name)?;
    let (status, body) = register(app, token, &device).await?;
    ensure!(status == 201, "{status} {body}");
    let (status, body) = upload(app, token, &mut device, 4).await?;
    ensure!(status == 200, "{status} {body}");
    Ok(device)
}

/// Uploads `commit` to `room` as the holder of `token`.
pub(crate) async fn post_commit(
    app: &TestApp,
    token: &str,
    room: &str,
    commit: &chat_e2e::OutgoingCommit,
) -> Result<(u16, Value)> {
    let body = serde_json::to_value(commit.to_upload())?;
    json_of(
        app.post_authed(&format!("/api/rooms/{room}/mls/commits"), token, &body)
            .await?,
    )
    .await
}

/// The next MLS message of `room` someone other than `me` sent, from
/// `socket`, as its kind and bytes; every frame read is kept in `seen`.
pub(crate) async fn next_mls(
    socket: &mut crate::helpers::Client,
    me: &str,
    seen: &mut Vec<String>,
) -> Result<(String, Vec<u8>)> {
    loop {
        let frame = socket.recv().await?;
        seen.push(frame.to_string());
        if frame["type"] != "message" || frame["username"] == me {
            continue;
        }
        let kind = frame["mls"].as_str().unwrap_or("none").to_owned();
        let bytes = chat_protocol::mls::decode(frame["content"].as_str().unwrap_or_default())?;
        return Ok((kind, bytes));
    }
}

/// Joins `device` to the group of every Welcome waiting for it, and
/// acknowledges them.
pub(crate) async fn take_welcomes(
    app: &TestApp,
    token: &str,
    device: &mut Device,
) -> Result<usize> {
    let path = format!("/api/mls/welcomes?device_id={}", device.device_id());
    let (status, body) = json_of(app.get_authed(&path, token).await?).await?;
    ensure!(status == 200, "{status} {body}");
    let welcomes = body["welcomes"].as_array().cloned().unwrap_or_default();
    for welcome in &welcomes {
        let room = chat_domain::RoomName::parse(welcome["room"].as_str().unwrap_or_default())?;
        let bytes = chat_protocol::mls::decode(welcome["welcome"].as_str().unwrap_or_default())?;
        device.join(&room, &bytes)?;
        let ack = format!(
            "/api/mls/welcomes/{}?device_id={}",
            welcome["id"],
            device.device_id()
        );
        let (status, _) =
            json_of(app.send_authed(Method::DELETE, &ack, token, None).await?).await?;
        ensure!(status == 204, "ack: {status}");
    }
    Ok(welcomes.len())
}

/// Creates the private encrypted room `name`, owned by the holder of
/// `token`.
async fn private_encrypted_room(app: &TestApp, token: &str, name: &str) -> Result<()> {
    let (status, body) = json_of(
        app.post_authed(
            "/api/rooms",
            token,
            &json!({"name": name, "visibility": "private", "encrypted": true}),
        )
        .await?,
    )
    .await?;
    ensure!(status == 201, "{status} {body}");
    Ok(())
}

/// Makes `user` a member of `room`, as its owner (the holder of `token`).
pub(crate) async fn put_member(app: &TestApp, token: &str, room: &str, user: &str) -> Result<()> {
    let path = format!("/api/rooms/{room}/members/{user}");
    let response = app
        .send_authed(Method::PUT, &path, token, Some(&json!({})))
        .await?;
    ensure!(
        response.status().is_success(),
        "add {user}: {}",
        response.status()
    );
    Ok(())
}

pub(crate) async fn claimed(app: &TestApp, token: &str, user: &str) -> Result<Vec<Vec<u8>>> {
    let (status, body) = claim(app, token, &[user]).await?;
    ensure!(status == 200, "{status} {body}");
    packages(&body)
        .iter()
        .map(|package| {
            Ok(chat_protocol::mls::decode(
                package["key_package"].as_str().unwrap_or_default(),
            )?)
        })
        .collect()
}

/// Alice, Bob and Carol, signed in, each with a registered device, and
/// Alice's private encrypted room `vault`, whose group holds Alice's and
/// Bob's devices at epoch 1. Carol is not in the room.
pub(crate) struct Vault {
    pub(crate) alice_token: String,
    pub(crate) bob_token: String,
    pub(crate) carol_token: String,
    pub(crate) alice: Device,
    pub(crate) bob: Device,
    pub(crate) carol: Device,
    pub(crate) room: chat_domain::RoomName,
    /// The first commit, by which Alice added Bob: the server keeps its
    /// GroupInfo as the group's state at epoch 1.
    pub(crate) add_bob: chat_e2e::OutgoingCommit,
}

pub(crate) async fn vault_of_alice_and_bob(app: &TestApp) -> Result<Vault> {
    let alice_token = app.user("alice").await?;
    let bob_token = app.user("bob").await?;
    let carol_token = app.user("carol").await?;
    let mut alice = enrolled(app, &alice_token, "alice").await?;
    let mut bob = enrolled(app, &bob_token, "bob").await?;
    let carol = enrolled(app, &carol_token, "carol").await?;
    let room = chat_domain::RoomName::public("vault")?;
    private_encrypted_room(app, &alice_token, "vault").await?;
    put_member(app, &alice_token, "vault", "bob").await?;

    // Alice makes the group and adds Bob's device with a claimed package.
    alice.create_group(&room)?;
    let add_bob = alice.add_members(&room, &claimed(app, &alice_token, "bob").await?)?;
    let (status, accepted) = post_commit(app, &alice_token, "vault", &add_bob).await?;
    ensure!(
        status == 201 && accepted["epoch"] == 1,
        "{status} {accepted}"
    );
    alice.merge_pending_commit(&room)?;
    ensure!(take_welcomes(app, &bob_token, &mut bob).await? == 1);
    ensure!(
        take_welcomes(app, &bob_token, &mut bob).await? == 0,
        "acknowledged"
    );
    ensure!(bob.epoch(&room)? == 1);
    Ok(Vault {
        alice_token,
        bob_token,
        carol_token,
        alice,
        bob,
        carol,
        room,
        add_bob,
    })
}

async fn an_encrypted_room_carries_only_ciphertext_between_real_clients(
    app: &TestApp,
) -> Result<()> {
    let Vault {
        alice_token,
        bob_token,
        carol_token,
        mut alice,
        mut bob,
        mut carol,
        room: vault,
        ..
    } = vault_of_alice_and_bob(app).await?;

    let mut alice_socket = joined(app, &alice_token, "vault").await?;
    let mut bob_socket = joined(app, &bob_token, "vault").await?;
    let mut seen = Vec::new();
    let secrets = [
        "meet at the north gate",
        "bring the blue folder",
        "after carol left",
    ];

    // Messages both ways, as ciphertext.
    let sealed = chat_protocol::mls::encode(alice.encrypt(&vault, secrets[0].as_bytes())?);
    let ack = alice_socket
        .acked(json!({"type": "message", "room": "vault", "content": sealed, "mls": "application", "client_id": "a1"}))
        .await?;
    seen.push(ack.to_string());
    let (kind, bytes) = next_mls(&mut bob_socket, "bob", &mut seen).await?;
    ensure!(kind == "application");
    match bob.process(&vault, &bytes)? {
        chat_e2e::Incoming::Message { sender, plaintext } => {
            ensure!(sender.as_str() == "alice" && plaintext == secrets[0].as_bytes());
        }
        other => anyhow::bail!("expected a message, got {other:?}"),
    }
    let sealed = chat_protocol::mls::encode(bob.encrypt(&vault, secrets[1].as_bytes())?);
    bob_socket
        .acked(json!({"type": "message", "room": "vault", "content": sealed, "mls": "application", "client_id": "b1"}))
        .await?;
    let (_, bytes) = next_mls(&mut alice_socket, "alice", &mut seen).await?;
    ensure!(
        matches!(alice.process(&vault, &bytes)?, chat_e2e::Incoming::Message { plaintext, .. } if plaintext == secrets[1].as_bytes())
    );
    // An edit would put readable text in: refused on the socket and over
    // REST, and the message is as it was.
    let seq = ack["seq"].as_i64().unwrap_or_default();
    alice_socket
        .send(json!({"type": "edit", "room": "vault", "seq": seq, "content": "readable", "client_id": "e1"}))
        .await?;
    let refused = alice_socket.recv_type("error").await?;
    ensure!(refused["code"] == "encryption_required", "{refused}");
    let (status, refused) = json_of(
        app.send_authed(
            Method::PATCH,
            &format!("/api/rooms/vault/messages/{seq}"),
            &alice_token,
            Some(&json!({"content": "readable"})),
        )
        .await?,
    )
    .await?;
    ensure!(
        status == 409 && refused["code"] == "encryption_required",
        "{status} {refused}"
    );
    let (_, page) = json_of(
        app.get_authed("/api/rooms/vault/messages", &alice_token)
            .await?,
    )
    .await?;
    ensure!(!page.to_string().contains("readable"), "{page}");
    ensure!(
        page["messages"]
            .as_array()
            .is_some_and(|items| items.iter().all(|item| item["edited_at"].is_null())),
        "{page}"
    );

    // A frame claiming to be MLS but holding anything else is refused.
    alice_socket
        .send(json!({"type": "message", "room": "vault", "content": chat_protocol::mls::encode(b"plain words"), "mls": "application", "client_id": "a2"}))
        .await?;
    let refused = alice_socket.recv_type("error").await?;
    ensure!(refused["code"] == "invalid_frame", "{refused}");

    // Two commits on one epoch: the first wins, the other is stale, and
    // its author processes the winner and commits again.
    let from_alice = alice.self_update(&vault)?;
    let from_bob = bob.self_update(&vault)?;
    let (status, _) = post_commit(app, &alice_token, "vault", &from_alice).await?;
    ensure!(status == 201);
    alice.merge_pending_commit(&vault)?;
    let (status, stale) = post_commit(app, &bob_token, "vault", &from_bob).await?;
    ensure!(
        status == 409 && stale["code"] == "stale_epoch",
        "{status} {stale}"
    );
    bob.clear_pending_commit(&vault)?;
    let (kind, bytes) = next_mls(&mut bob_socket, "bob", &mut seen).await?;
    ensure!(kind == "commit");
    ensure!(matches!(
        bob.process(&vault, &bytes)?,
        chat_e2e::Incoming::Commit { epoch: 2, .. }
    ));
    let again = bob.self_update(&vault)?;
    let (status, accepted) = post_commit(app, &bob_token, "vault", &again).await?;
    ensure!(
        status == 201 && accepted["epoch"] == 3,
        "{status} {accepted}"
    );
    bob.merge_pending_commit(&vault)?;
    let (_, bytes) = next_mls(&mut alice_socket, "alice", &mut seen).await?;
    ensure!(matches!(
        alice.process(&vault, &bytes)?,
        chat_e2e::Incoming::Commit { epoch: 3, .. }
    ));

    // Nobody outside the room joins the group.
    let add_carol = alice.add_members(&vault, &claimed(app, &alice_token, "carol").await?)?;
    let (status, refused) = post_commit(app, &alice_token, "vault", &add_carol).await?;
    ensure!(status == 422, "{status} {refused}");
    alice.clear_pending_commit(&vault)?;
    ensure!(take_welcomes(app, &carol_token, &mut carol).await? == 0);
    put_member(app, &alice_token, "vault", "carol").await?;
    let add_carol = alice.add_members(&vault, &claimed(app, &alice_token, "carol").await?)?;
    let (status, _) = post_commit(app, &alice_token, "vault", &add_carol).await?;
    ensure!(status == 201);
    alice.merge_pending_commit(&vault)?;
    ensure!(take_welcomes(app, &carol_token, &mut carol).await? == 1);
    let (_, bytes) = next_mls(&mut bob_socket, "bob", &mut seen).await?;
    ensure!(matches!(
        bob.process(&vault, &bytes)?,
        chat_e2e::Incoming::Commit { epoch: 4, .. }
    ));

    // Bob is no moderator: he may not remove Carol while she is in the room.
    let carol_name = Username::parse("carol")?;
    let removal = bob.remove_members(&vault, std::slice::from_ref(&carol_name))?;
    let (status, refused) = post_commit(app, &bob_token, "vault", &removal).await?;
    ensure!(
        status == 403 && refused["code"] == "forbidden",
        "{status} {refused}"
    );
    bob.clear_pending_commit(&vault)?;

    // Carol is kicked, and Alice's client removes her from the group: she
    // cannot read what is sent afterwards.
    let response = app
        .send_authed(
            Method::DELETE,
            "/api/rooms/vault/members/carol",
            &alice_token,
            None,
        )
        .await?;
    ensure!(
        response.status().is_success(),
        "kick: {}",
        response.status()
    );
    let removal = alice.remove_members(&vault, std::slice::from_ref(&carol_name))?;
    let (status, _) = post_commit(app, &alice_token, "vault", &removal).await?;
    ensure!(status == 201);
    alice.merge_pending_commit(&vault)?;
    let (_, bytes) = next_mls(&mut bob_socket, "bob", &mut seen).await?;
    ensure!(matches!(
        bob.process(&vault, &bytes)?,
        chat_e2e::Incoming::Commit { epoch: 5, .. }
    ));
    let sealed = chat_protocol::mls::encode(alice.encrypt(&vault, secrets[2].as_bytes())?);
    alice_socket
        .acked(json!({"type": "message", "room": "vault", "content": sealed, "mls": "application", "client_id": "a3"}))
        .await?;
    let (_, bytes) = next_mls(&mut bob_socket, "bob", &mut seen).await?;
    ensure!(
        matches!(bob.process(&vault, &bytes)?, chat_e2e::Incoming::Message { plaintext, .. } if plaintext == secrets[2].as_bytes())
    );
    let read_by_carol = carol.process(&vault, &bytes);
    ensure!(
        !matches!(read_by_carol, Ok(chat_e2e::Incoming::Message { .. })),
        "a removed member read a later message: {read_by_carol:?}"
    );

    // Bob goes offline across two epochs and a message, then resumes from
    // the last seq he saw and catches up in order.
    let (_, shown) = json_of(app.get_authed("/api/rooms/vault", &bob_token).await?).await?;
    let seen_seq = shown["last_seq"].as_i64().unwrap_or_default();
    bob_socket.close().await?;
    for _ in 0..2 {
        let update = alice.self_update(&vault)?;
        let (status, _) = post_commit(app, &alice_token, "vault", &update).await?;
        ensure!(status == 201);
        alice.merge_pending_commit(&vault)?;
    }
    let sealed = chat_protocol::mls::encode(alice.encrypt(&vault, secrets[1].as_bytes())?);
    alice_socket
        .acked(json!({"type": "message", "room": "vault", "content": sealed, "mls": "application", "client_id": "a4"}))
        .await?;
    let mut bob_socket = app.connect(&bob_token).await?;
    bob_socket
        .send(json!({"type": "resume", "room": "vault", "last_seq": seen_seq}))
        .await?;
    for expected_epoch in [6, 7] {
        let (kind, bytes) = next_mls(&mut bob_socket, "bob", &mut seen).await?;
        ensure!(kind == "commit", "{kind}");
        ensure!(
            matches!(bob.process(&vault, &bytes)?, chat_e2e::Incoming::Commit { epoch, .. } if epoch == expected_epoch)
        );
    }
    let (_, bytes) = next_mls(&mut bob_socket, "bob", &mut seen).await?;
    ensure!(
        matches!(bob.process(&vault, &bytes)?, chat_e2e::Incoming::Message { plaintext, .. } if plaintext == secrets[1].as_bytes())
    );

    // Nothing the server sent or stored holds a plaintext: frames as
    // received, and the room's history as the server decrypts it.
    let room = app.store.room_by_name(&vault).await?.expect("the room");
    let stored = app.store.latest(room.id, 100).await?;
    ensure!(stored.len() >= 8, "{} rows", stored.len());
    let (_, history) = json_of(
        app.get_authed("/api/rooms/vault/messages", &bob_token)
            .await?,
    )
    .await?;
    for secret in secrets {
        ensure!(
            !seen.iter().any(|frame| frame.contains(secret)),
            "a frame holds {secret:?}"
        );
        ensure!(
            !stored.iter().any(|message| message
                .content
                .as_deref()
                .is_some_and(|text| text.contains(secret))),
            "a stored row holds {secret:?}"
        );
        ensure!(
            !history.to_string().contains(secret),
            "history holds {secret:?}"
        );
    }
    let kinds: Vec<&str> = history["messages"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["mls"].as_str())
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        kinds.contains(&"commit") && kinds.contains(&"application"),
        "history lists MLS messages by kind: {kinds:?}"
    );
    Ok(())
}

/// A socket of the holder of `token` that joined `room`.
async fn joined(app: &TestApp, token: &str, room: &str) -> Result<crate::helpers::Client> {
    let mut socket = app.connect(token).await?;
    socket.send(json!({"type": "join", "room": room})).await?;
    socket.recv_type("joined").await?;
    Ok(socket)
}

/// Reads the next commit someone else made from `socket` and processes it
/// on `device`, which must then be at `epoch`.
pub(crate) async fn process_next_commit(
    socket: &mut crate::helpers::Client,
    device: &mut Device,
    room: &chat_domain::RoomName,
    epoch: u64,
    seen: &mut Vec<String>,
) -> Result<()> {
    let me = device.username().as_str().to_owned();
    let (kind, bytes) = next_mls(socket, &me, seen).await?;
    ensure!(kind == "commit", "{kind}");
    let incoming = device.process(room, &bytes)?;
    ensure!(
        matches!(incoming, chat_e2e::Incoming::Commit { epoch: now, .. } if now == epoch),
        "{incoming:?}"
    );
    Ok(())
}

/// Whether a refusal is a 422 whose detail names `field`.
fn refused_for(status: u16, refused: &Value, field: &str) -> bool {
    status == 422
        && refused["code"] == "invalid"
        && refused["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains(field))
}

async fn a_commit_is_judged_by_what_it_does_not_by_the_group_info_sent_with_it(
    app: &TestApp,
) -> Result<()> {
    let Vault {
        alice_token,
        bob_token,
        carol_token,
        mut alice,
        mut bob,
        mut carol,
        room: vault,
        add_bob,
    } = vault_of_alice_and_bob(app).await?;
    let mut bob_socket = joined(app, &bob_token, "vault").await?;
    let mut seen = Vec::new();

    // Alice adds Carol, who is not in the room, and sends that commit with
    // a GroupInfo that does not show her: the one of another commit of
    // hers on the same epoch, then the one the server stored. A Welcome
    // for Carol's device is refused as well with a commit that adds no one.
    let add_carol = alice.add_members(&vault, &claimed(app, &alice_token, "carol").await?)?;
    alice.clear_pending_commit(&vault)?;
    let update = alice.self_update(&vault)?;
    let forgeries = [
        (
            chat_e2e::OutgoingCommit {
                group_info: update.group_info.clone(),
                ..add_carol.clone()
            },
            "group_info",
        ),
        (
            chat_e2e::OutgoingCommit {
                group_info: add_bob.group_info.clone(),
                ..add_carol.clone()
            },
            "group_info",
        ),
        (
            chat_e2e::OutgoingCommit {
                welcome: add_carol.welcome.clone(),
                ..update.clone()
            },
            "welcome",
        ),
    ];
    for (forged, field) in &forgeries {
        let (status, refused) = post_commit(app, &alice_token, "vault", forged).await?;
        ensure!(refused_for(status, &refused, field), "{status} {refused}");
    }
    // None of them changed anything: Carol has no Welcome, and the honest
    // commit on the same epoch is accepted and moves the group on.
    ensure!(take_welcomes(app, &carol_token, &mut carol).await? == 0);
    let (status, accepted) = post_commit(app, &alice_token, "vault", &update).await?;
    ensure!(
        status == 201 && accepted["epoch"] == 2,
        "{status} {accepted}"
    );
    alice.merge_pending_commit(&vault)?;
    process_next_commit(&mut bob_socket, &mut bob, &vault, 2, &mut seen).await?;

    // Carol joins the room, then the group.
    put_member(app, &alice_token, "vault", "carol").await?;
    let add_carol = alice.add_members(&vault, &claimed(app, &alice_token, "carol").await?)?;
    let (status, accepted) = post_commit(app, &alice_token, "vault", &add_carol).await?;
    ensure!(
        status == 201 && accepted["epoch"] == 3,
        "{status} {accepted}"
    );
    alice.merge_pending_commit(&vault)?;
    ensure!(take_welcomes(app, &carol_token, &mut carol).await? == 1);
    process_next_commit(&mut bob_socket, &mut bob, &vault, 3, &mut seen).await?;
    let mut carol_socket = joined(app, &carol_token, "vault").await?;

    // Bob, no moderator, removes Carol and hides it behind the GroupInfo of
    // a self-update of his, which still shows her: refused. Sent with its
    // own GroupInfo, the removal is what it is, one he may not make.
    let carol_name = Username::parse("carol")?;
    let removal = bob.remove_members(&vault, std::slice::from_ref(&carol_name))?;
    bob.clear_pending_commit(&vault)?;
    let bob_update = bob.self_update(&vault)?;
    let hidden = chat_e2e::OutgoingCommit {
        group_info: bob_update.group_info.clone(),
        ..removal.clone()
    };
    let (status, refused) = post_commit(app, &bob_token, "vault", &hidden).await?;
    ensure!(
        refused_for(status, &refused, "group_info"),
        "{status} {refused}"
    );
    let (status, refused) = post_commit(app, &bob_token, "vault", &removal).await?;
    ensure!(
        status == 403 && refused["code"] == "forbidden",
        "{status} {refused}"
    );

    // Carol is still in the group: Bob's honest commit on the same epoch is
    // accepted, and she processes it and stays a member.
    let (status, accepted) = post_commit(app, &bob_token, "vault", &bob_update).await?;
    ensure!(
        status == 201 && accepted["epoch"] == 4,
        "{status} {accepted}"
    );
    bob.merge_pending_commit(&vault)?;
    process_next_commit(&mut carol_socket, &mut carol, &vault, 4, &mut seen).await?;
    ensure!(carol.members(&vault)?.len() == 3);
    Ok(())
}

/// The devices of `room`'s members, as the holder of `token` gets them.
async fn room_devices(app: &TestApp, token: &str, room: &str) -> Result<(u16, Value)> {
    json_of(
        app.get_authed(&format!("/api/rooms/{room}/mls/devices"), token)
            .await?,
    )
    .await
}

async fn a_member_lists_every_device_of_the_rooms_members(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let carol = app.user("carol").await?;
    private_encrypted_room(app, &alice, "vault").await?;
    put_member(app, &alice, "vault", "bob").await?;
    let (status, listed) = room_devices(app, &bob, "vault").await?;
    ensure!(
        status == 200 && listed == json!({"devices": []}),
        "no device registered yet: {status} {listed}"
    );

    // Bob registers his phone, then a second device; Carol, who is not in
    // the room, one of hers.
    let mut registered = Vec::new();
    for (token, name) in [
        (&bob, "bob"),
        (&bob, "bob"),
        (&carol, "carol"),
        (&alice, "alice"),
    ] {
        let (status, body) = register(app, token, &device(name)?).await?;
        ensure!(status == 201, "{status} {body}");
        registered.push(body);
    }
    let [bob_phone, bob_tablet, _carol_desktop, alice_laptop] =
        <[Value; 4]>::try_from(registered).map_err(|_| anyhow::anyhow!("four devices"))?;
    let everyone = json!({"devices": [alice_laptop, bob_phone, bob_tablet]});
    for token in [&alice, &bob] {
        let (status, listed) = room_devices(app, token, "vault").await?;
        ensure!(
            status == 200 && listed == everyone,
            "by username, each member's oldest first: {status} {listed}"
        );
    }

    // A device its owner removes leaves the list, so the members' clients
    // remove it from the group.
    let path = format!(
        "/api/mls/devices/{}",
        bob_tablet["device_id"].as_str().unwrap_or_default()
    );
    let (status, _) = json_of(app.send_authed(Method::DELETE, &path, &bob, None).await?).await?;
    ensure!(status == 204, "{status}");
    let (_, listed) = room_devices(app, &alice, "vault").await?;
    ensure!(
        listed == json!({"devices": [alice_laptop, bob_phone]}),
        "{listed}"
    );

    // A member who leaves takes their devices off the list, and no longer
    // sees it.
    let (status, _) = json_of(
        app.send_authed(Method::POST, "/api/rooms/vault/leave", &bob, None)
            .await?,
    )
    .await?;
    ensure!(status == 204, "leave: {status}");
    let (_, listed) = room_devices(app, &alice, "vault").await?;
    ensure!(listed == json!({"devices": [alice_laptop]}), "{listed}");
    let (status, refused) = room_devices(app, &bob, "vault").await?;
    ensure!(status == 404, "{status} {refused}");
    Ok(())
}

async fn the_rooms_devices_are_refused_to_non_members_and_in_plain_rooms(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let carol = app.user("carol").await?;
    let (status, _) = register(app, &alice, &device("alice")?).await?;
    ensure!(status == 201);
    private_encrypted_room(app, &alice, "vault").await?;
    for (name, encrypted) in [("forum", true), ("lobby", false)] {
        let (status, body) = json_of(
            app.post_authed(
                "/api/rooms",
                &alice,
                &json!({"name": name, "encrypted": encrypted}),
            )
            .await?,
        )
        .await?;
        ensure!(status == 201, "{status} {body}");
    }
    let (status, listed) = room_devices(app, &alice, "forum").await?;
    ensure!(
        status == 200 && listed["devices"].as_array().map(Vec::len) == Some(1),
        "{status} {listed}"
    );

    // Carol is in none of them: a public room says she is not a member, a
    // private one does not exist for her, as for the commit route.
    let (status, refused) = room_devices(app, &carol, "forum").await?;
    ensure!(
        status == 403 && refused["code"] == "not_a_member",
        "{status} {refused}"
    );
    let (status, refused) = room_devices(app, &carol, "vault").await?;
    ensure!(status == 404, "{status} {refused}");
    let (status, refused) = room_devices(app, &carol, "nowhere").await?;
    ensure!(status == 404, "{status} {refused}");

    // A plaintext room has no group, hence no devices to list.
    let (status, refused) = room_devices(app, &alice, "lobby").await?;
    ensure!(
        status == 409 && refused["detail"] == "the room is not end-to-end encrypted",
        "{status} {refused}"
    );
    let response = app
        .http
        .get(app.url("/api/rooms/forum/mls/devices"))
        .send()
        .await?;
    ensure!(response.status() == 401, "{}", response.status());
    Ok(())
}

async fn a_claim_naming_devices_takes_packages_of_those_devices_only(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let carol = app.user("carol").await?;
    let phone = enrolled(app, &bob, "bob").await?;
    let tablet = enrolled(app, &bob, "bob").await?;
    let desktop = enrolled(app, &carol, "carol").await?;
    let stocks = || async {
        let mut stocks = Vec::new();
        for (token, device) in [(&bob, &phone), (&bob, &tablet), (&carol, &desktop)] {
            let path = format!("/api/mls/key-packages?device_id={}", device.device_id());
            let (status, stock) = json_of(app.get_authed(&path, token).await?).await?;
            ensure!(status == 200, "{status} {stock}");
            stocks.push(stock["available"].as_i64().unwrap_or(-1));
        }
        anyhow::Ok(stocks)
    };
    ensure!(stocks().await? == [4, 4, 4]);

    // Bob's new tablet, alone.
    let (status, claimed) = claim_with(
        app,
        &alice,
        &json!({"users": ["bob"], "devices": [tablet.device_id()]}),
    )
    .await?;
    ensure!(status == 200, "{status} {claimed}");
    let handed = packages(&claimed);
    ensure!(
        handed.len() == 1
            && handed[0]["username"] == "bob"
            && handed[0]["device_id"] == tablet.device_id()
            && handed[0]["last_resort"] == false,
        "{claimed}"
    );
    ensure!(stocks().await? == [4, 3, 4], "the phone keeps its packages");

    // A device of someone not named, or of nobody, claims nothing.
    for other in [desktop.device_id().to_owned(), "0".repeat(32)] {
        let (status, claimed) =
            claim_with(app, &alice, &json!({"users": ["bob"], "devices": [other]})).await?;
        ensure!(
            status == 200 && packages(&claimed).is_empty(),
            "{status} {claimed}"
        );
    }
    ensure!(stocks().await? == [4, 3, 4]);

    // A malformed id, an empty list or too long a one (short ids, so the
    // body stays under the general limit) is refused, and nothing is
    // taken, not even of the well-formed ids beside it.
    let most = chat_domain::e2e::MAX_USERS_PER_CLAIM * chat_domain::e2e::MAX_DEVICES_PER_USER;
    let too_many: Vec<String> = (0..=most).map(|n| format!("d{n}")).collect();
    for devices in [
        json!([phone.device_id(), "not a device!"]),
        json!([]),
        json!(too_many),
    ] {
        let (status, refused) =
            claim_with(app, &alice, &json!({"users": ["bob"], "devices": devices})).await?;
        ensure!(
            status == 422 && refused["code"] == "invalid",
            "{status} {refused}"
        );
    }
    ensure!(
        stocks().await? == [4, 3, 4],
        "a refused claim took a package"
    );

    // Several users, a device of each; and without `devices`, every one.
    let (status, claimed) = claim_with(
        app,
        &alice,
        &json!({"users": ["bob", "carol"], "devices": [phone.device_id(), desktop.device_id()]}),
    )
    .await?;
    ensure!(status == 200, "{status} {claimed}");
    let mut handed: Vec<String> = packages(&claimed)
        .iter()
        .map(|package| package["device_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    handed.sort();
    let mut expected = vec![phone.device_id().to_owned(), desktop.device_id().to_owned()];
    expected.sort();
    ensure!(handed == expected, "{claimed}");
    ensure!(stocks().await? == [3, 3, 3]);
    let (_, claimed) = claim(app, &alice, &["bob"]).await?;
    ensure!(packages(&claimed).len() == 2, "{claimed}");
    ensure!(stocks().await? == [2, 2, 3]);
    Ok(())
}
