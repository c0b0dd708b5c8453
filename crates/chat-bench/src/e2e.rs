//! End-to-end encrypted rooms, as a client sets them up with `chat-e2e`:
//! devices registered with KeyPackages, one group per room made by its
//! creator, senders joined from their Welcomes; and the `claims` scenario,
//! which measures how fast the server hands out KeyPackages.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chat_domain::{RoomName, Username};
use chat_e2e::{Device, Incoming};
use chat_protocol::mls::{
    ClaimedKeyPackages, CommitAccepted, DeviceRegistration, KeyPackageClaim, KeyPackageUpload,
    WelcomesBody, decode, encode,
};
use chat_protocol::rest::CreateRoomRequest;
use clap::Args;
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{Api, RunNames};
use crate::fleet::{self, Target};
use crate::stats::{Percentiles, Report, per_second};

/// A device that encrypts a sender's messages for one room.
#[derive(Clone)]
pub(crate) struct Sealer {
    device: Arc<Mutex<Device>>,
    room: RoomName,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("room", &self.room).finish()
    }
}

impl Sealer {
    /// `text` as the base64 of an MLS application message of the room.
    pub(crate) fn seal(&self, text: &str) -> anyhow::Result<String> {
        let mut device = self
            .device
            .lock()
            .map_err(|_| anyhow::anyhow!("a sealer's lock was poisoned"))?;
        Ok(encode(device.encrypt(&self.room, text.as_bytes())?))
    }
}

async fn post<B: Serialize, T: DeserializeOwned>(
    api: &Api,
    token: &str,
    path: &str,
    body: &B,
) -> anyhow::Result<T> {
    let response = api
        .http()
        .post(api.url(path)?)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("POST {path} answered {status}: {text}");
    }
    Ok(response.json().await?)
}

/// Registers a new device of `username` and uploads `packages` KeyPackages
/// and a last-resort one.
async fn enroll(api: &Api, token: &str, username: &str, packages: usize) -> anyhow::Result<Device> {
    let mut device = Device::new(Username::parse(username)?)?;
    let registration: DeviceRegistration = device.registration()?;
    let _: serde_json::Value = post(api, token, "/api/mls/devices", &registration).await?;
    let mut left = packages;
    let mut last_resort = true;
    while left > 0 || last_resort {
        let batch = left.min(100);
        let mut upload: KeyPackageUpload = device.key_package_upload(batch)?;
        if !last_resort {
            upload.last_resort = None;
        }
        let _: serde_json::Value = post(api, token, "/api/mls/key-packages", &upload).await?;
        left -= batch;
        last_resort = false;
    }
    Ok(device)
}

/// Creates the encrypted room `room` as the first account, makes its
/// group, and adds every account's device to it; the first `senders`
/// accounts' devices join from their Welcomes. The accounts must be
/// members of the room when this runs (the caller's clients have joined).
///
/// Returns a sealer per sender, and what one message costs a client to
/// encrypt and to decrypt, measured on two devices of the group.
pub(crate) async fn group(
    api: &Api,
    names: &RunNames,
    tokens: &[String],
    room: &str,
    senders: usize,
) -> anyhow::Result<(Vec<Sealer>, Duration, Duration)> {
    let room_name = RoomName::public(room)?;
    let mut devices = Vec::with_capacity(tokens.len());
    for (index, token) in tokens.iter().enumerate() {
        devices.push(enroll(api, token, &names.user(index), 1).await?);
    }
    let mut creator = devices.remove(0);
    creator.create_group(&room_name)?;
    let mut packages = Vec::new();
    let others: Vec<String> = (1..tokens.len()).map(|index| names.user(index)).collect();
    for chunk in others.chunks(32) {
        let claimed: ClaimedKeyPackages = post(
            api,
            &tokens[0],
            "/api/mls/key-packages/claim",
            &KeyPackageClaim {
                users: chunk.to_vec(),
                devices: None,
            },
        )
        .await?;
        for package in claimed.key_packages {
            packages.push(decode(&package.key_package)?);
        }
    }
    if !packages.is_empty() {
        let commit = creator.add_members(&room_name, &packages)?;
        let accepted: CommitAccepted = post(
            api,
            &tokens[0],
            &format!("/api/rooms/{room}/mls/commits"),
            &commit.to_upload(),
        )
        .await?;
        ensure!(
            accepted.epoch == 1,
            "the group is at epoch {}",
            accepted.epoch
        );
        creator.merge_pending_commit(&room_name)?;
    }
    let mut joined = vec![creator];
    for (index, mut device) in devices.into_iter().enumerate().take(senders.max(2) - 1) {
        let token = &tokens[index + 1];
        let path = format!("/api/mls/welcomes?device_id={}", device.device_id());
        let response = api
            .http()
            .get(api.url(&path)?)
            .bearer_auth(token)
            .send()
            .await?;
        ensure!(
            response.status() == StatusCode::OK,
            "welcomes: {}",
            response.status()
        );
        let waiting: WelcomesBody = response.json().await?;
        let welcome = waiting
            .welcomes
            .first()
            .context("a member has no Welcome")?;
        device.join(&room_name, &decode(&welcome.welcome)?)?;
        joined.push(device);
    }

    // What a client pays per message: encrypt on one device, decrypt on
    // another, over a thousand messages.
    let samples = 1_000;
    let text = "bench 0 0 0000000000000000000 a message of ordinary length";
    let started = Instant::now();
    let mut sealed = Vec::with_capacity(samples);
    for _ in 0..samples {
        sealed.push(joined[0].encrypt(&room_name, text.as_bytes())?);
    }
    let encrypt = started.elapsed() / samples as u32;
    let started = Instant::now();
    if let Some(reader) = joined.get_mut(1) {
        for message in &sealed {
            match reader.process(&room_name, message)? {
                Incoming::Message { .. } => {}
                other => bail!("expected a message, got {other:?}"),
            }
        }
    }
    let decrypt = started.elapsed() / samples as u32;

    let sealers = joined
        .into_iter()
        .take(senders)
        .map(|device| Sealer {
            device: Arc::new(Mutex::new(device)),
            room: room_name.clone(),
        })
        .collect();
    Ok((sealers, encrypt, decrypt))
}

/// Creates the end-to-end encrypted public room `name`.
pub(crate) async fn create_room(api: &Api, token: &str, name: &str) -> anyhow::Result<()> {
    let _: serde_json::Value = post(
        api,
        token,
        "/api/rooms",
        &CreateRoomRequest {
            name: name.to_owned(),
            visibility: None,
            topic: None,
            encrypted: true,
        },
    )
    .await?;
    Ok(())
}

/// Options of the `claims` scenario.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClaimsArgs {
    /// (`--users`, 20 unless given: the users whose devices publish
    /// KeyPackages.)
    #[command(flatten)]
    pub(crate) target: Target,
    /// KeyPackages each of them uploads.
    #[arg(long, default_value_t = 200)]
    pub(crate) packages: usize,
    /// Claims in flight at once.
    #[arg(long, default_value_t = 16)]
    pub(crate) concurrency: usize,
}

/// Claims one user's KeyPackages at a time, `concurrency` at once, until
/// every ordinary package is taken: claims/s and latency, and a check that
/// no package was handed out twice.
pub(crate) async fn claims(args: ClaimsArgs) -> anyhow::Result<Report> {
    let users = args.target.users.unwrap_or(20);
    ensure!(
        users > 0 && args.packages > 0,
        "need --users and --packages"
    );
    let api = Api::new(&args.target.server)?;
    let names = RunNames::new();
    eprintln!(
        "claims: {} users x {} KeyPackages, {} claims at once",
        users, args.packages, args.concurrency
    );
    let tokens = fleet::accounts(&api, &names, users + 1, args.target.setup_concurrency).await?;
    for (index, token) in tokens.iter().enumerate().skip(1) {
        enroll(&api, token, &names.user(index), args.packages).await?;
    }
    let total = users * args.packages;
    let claimer = tokens[0].clone();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency.max(1) {
        let api = api.clone();
        let claimer = claimer.clone();
        let next = Arc::clone(&next);
        let names: Vec<String> = (1..=users).map(|index| names.user(index)).collect();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut handed = Vec::new();
            loop {
                let turn = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if turn >= total {
                    return anyhow::Ok((latencies, handed));
                }
                let user = names[turn % names.len()].clone();
                let sent = Instant::now();
                let claimed: ClaimedKeyPackages = post(
                    &api,
                    &claimer,
                    "/api/mls/key-packages/claim",
                    &KeyPackageClaim {
                        users: vec![user],
                        devices: None,
                    },
                )
                .await?;
                latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                for package in claimed.key_packages {
                    ensure!(!package.last_resort, "ran out of ordinary packages early");
                    handed.push(package.key_package);
                }
            }
        }));
    }
    let mut latencies = Vec::new();
    let mut handed = Vec::new();
    for task in tasks {
        let (mut some, mut packages) = task.await??;
        latencies.append(&mut some);
        handed.append(&mut packages);
    }
    let elapsed = started.elapsed();
    let handed_out = handed.len();
    handed.sort_unstable();
    handed.dedup();
    let mut report = Report::new("claims");
    report.add("server", args.target.server.as_str());
    report.add("users", users as u64);
    report.add("packages_per_user", args.packages as u64);
    report.add("concurrency", args.concurrency as u64);
    report.add("claims", latencies.len() as u64);
    report.add("claims_per_s", per_second(latencies.len() as u64, elapsed));
    report.latency("claim", &Percentiles::of_micros(latencies));
    report.add("handed_out", handed_out as u64);
    if handed.len() != handed_out {
        report.problem(format!(
            "{} KeyPackages were handed out more than once",
            handed_out - handed.len()
        ));
    }
    if handed_out != total {
        report.problem(format!(
            "{handed_out} of {total} KeyPackages were handed out"
        ));
    }
    Ok(report)
}
