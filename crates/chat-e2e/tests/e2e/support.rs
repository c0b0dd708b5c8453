//! A stand-in for the server's side of a room, and devices that read it.

use chat_domain::{RoomName, Username};
use chat_e2e::{Device, E2eError, Incoming, OutgoingCommit};

/// A name as a test writes it.
pub(crate) fn user(name: &str) -> Username {
    Username::parse(name).expect("a valid username")
}

/// A room name as a test writes it.
pub(crate) fn room(name: &str) -> RoomName {
    RoomName::public(name).expect("a valid room name")
}

/// A new device of a user.
pub(crate) fn device(name: &str) -> Device {
    Device::new(user(name)).expect("a device")
}

/// What the server does for one encrypted room: it numbers everything it
/// relays, and accepts a commit only if it builds on the room's current
/// epoch (a stale one is refused, as `409 stale_epoch` will be).
#[derive(Debug)]
pub(crate) struct Relay {
    pub(crate) room: RoomName,
    pub(crate) epoch: u64,
    pub(crate) log: Vec<Vec<u8>>,
}

/// The server refused a commit built on an old epoch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StaleEpoch;

impl Relay {
    pub(crate) fn new(room: RoomName) -> Relay {
        Relay {
            room,
            epoch: 0,
            log: Vec::new(),
        }
    }

    /// Accepts the commit if it builds on the current epoch and relays it.
    pub(crate) fn upload(&mut self, commit: &OutgoingCommit) -> Result<(), StaleEpoch> {
        if commit.epoch != self.epoch {
            return Err(StaleEpoch);
        }
        self.epoch += 1;
        self.log.push(commit.commit.clone());
        Ok(())
    }

    /// Relays an application message.
    pub(crate) fn post(&mut self, message: Vec<u8>) {
        self.log.push(message);
    }
}

/// A device with its place in a room's log.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) device: Device,
    pub(crate) cursor: usize,
}

impl Member {
    /// A device that starts reading the room after everything relayed so
    /// far (a creator, or a device that joined from a Welcome made by the
    /// newest commit).
    pub(crate) fn at_end(device: Device, relay: &Relay) -> Member {
        Member {
            device,
            cursor: relay.log.len(),
        }
    }

    /// Processes everything relayed since the last call, in order.
    pub(crate) fn catch_up(&mut self, relay: &Relay) -> Vec<Result<Incoming, E2eError>> {
        let mut outcomes = Vec::new();
        while self.cursor < relay.log.len() {
            outcomes.push(self.device.process(&relay.room, &relay.log[self.cursor]));
            self.cursor += 1;
        }
        outcomes
    }

    /// Processes everything relayed since the last call and returns the
    /// plaintexts read, failing the test on any error.
    pub(crate) fn read(&mut self, relay: &Relay) -> Vec<(String, String)> {
        self.catch_up(relay)
            .into_iter()
            .filter_map(|outcome| match outcome.expect("processed") {
                Incoming::Message { sender, plaintext } => Some((
                    sender.into_string(),
                    String::from_utf8(plaintext).expect("UTF-8"),
                )),
                _ => None,
            })
            .collect()
    }

    /// Encrypts and relays a text.
    pub(crate) fn say(&mut self, relay: &mut Relay, text: &str) {
        let message = self
            .device
            .encrypt(&relay.room, text.as_bytes())
            .expect("encrypted");
        relay.post(message);
    }
}

/// The creator's commit is accepted: the relay takes it, the creator
/// merges it (the server's answer), and its own copy coming back later is
/// outdated.
pub(crate) fn accept(creator: &mut Member, relay: &mut Relay, commit: &OutgoingCommit) {
    relay.upload(commit).expect("accepted");
    creator
        .device
        .merge_pending_commit(&relay.room)
        .expect("merged");
}

/// A room created by `creator` with every other device added through
/// claimed KeyPackages in one commit, everyone at the same epoch.
pub(crate) fn room_with(creator: Device, others: Vec<Device>, name: &str) -> (Relay, Vec<Member>) {
    let mut relay = Relay::new(room(name));
    let mut creator = Member::at_end(creator, &relay);
    creator.device.create_group(&relay.room).expect("created");
    let mut joiners = Vec::new();
    if !others.is_empty() {
        let mut key_packages = Vec::new();
        for mut other in others {
            key_packages.extend(other.key_packages(1).expect("key packages"));
            joiners.push(other);
        }
        let commit = creator
            .device
            .add_members(&relay.room, &key_packages)
            .expect("added");
        accept(&mut creator, &mut relay, &commit);
        let welcome = commit.welcome.expect("a Welcome");
        for joiner in &mut joiners {
            joiner.join(&relay.room, &welcome).expect("joined");
        }
    }
    let mut members = vec![creator];
    members.extend(
        joiners
            .into_iter()
            .map(|device| Member::at_end(device, &relay)),
    );
    // The creator reads its own commit back: outdated, nothing changes.
    assert!(matches!(
        members[0].catch_up(&relay).as_slice(),
        [] | [Ok(Incoming::Outdated { .. })]
    ));
    (relay, members)
}
