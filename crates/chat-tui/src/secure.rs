//! The client's side of end-to-end encrypted rooms, without a terminal or
//! a network: this installation's MLS device (from `chat-e2e`), where its
//! state is saved, and what each MLS item of a room reads as.
//!
//! The device's state lives in one file, encrypted under a passphrase the
//! user gives at login; see [`state_path`]. Everything a room's group
//! changes (a commit merged, a Welcome joined, a message sent or read,
//! which advance the keys) marks the state dirty, and the UI saves it.
//!
//! A message's keys are used once: a message read (or sent) cannot be
//! decrypted again. What the device read or sent is kept by room and seq,
//! so a history page loaded again shows it in clear, and saved beside the
//! device state, encrypted under the same key ([`StateFile::save_beside`]),
//! so it still reads after a restart: the newest [`KEPT_PER_ROOM`] items
//! of each room (see `docs/TUI.md`).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chat_domain::{RoomName, Username};
use chat_e2e::{
    Change, Device, E2eError, GroupMember, Incoming, KdfParams, MembershipChange, OutgoingCommit,
    SafetyNumber, StateFile,
};
use chat_protocol::mls::{self as wire, MlsKindBody};
use sha2::Digest as _;

/// How many ordinary KeyPackages a device keeps on the server; below
/// [`KEY_PACKAGES_LOW`], it uploads more.
pub(crate) const KEY_PACKAGES_STOCK: usize = 20;

/// The stock under which the device uploads new KeyPackages.
pub(crate) const KEY_PACKAGES_LOW: i64 = 5;

/// How long what reading messages changed may wait to be saved. Each save
/// encrypts the whole state and writes it to disk (the key is derived
/// once, when the file is opened), so reads are saved in batches. Losing
/// them is harmless: a device restored from an older save reads those
/// messages again from the history. What must never be lost is saved at
/// once by the UI: a sealed message's keys (before it is sent), a merged
/// commit, a joined group.
pub(crate) const SAVE_AFTER: Duration = Duration::from_secs(5);

/// How many items of each room what was read keeps across restarts: the
/// newest by seq.
pub(crate) const KEPT_PER_ROOM: usize = 2_000;

/// The placeholder of a message this device cannot read.
pub(crate) const UNREADABLE: &str = "[encrypted message: cannot be read on this device]";

/// The mark of an end-to-end encrypted room, in the room list and the
/// title.
pub(crate) const LOCK: &str = "🔒";

/// Where the device state of `username` on `server` is saved, under
/// `dir`: one file per account and server, so two accounts (or two
/// servers) never share a device.
pub(crate) fn state_path(dir: &Path, server: &str, username: &str) -> PathBuf {
    let host = server
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{}@{host}.mls", username.to_ascii_lowercase()))
}

/// What an MLS item of a room reads as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reading {
    /// A message, decrypted (or sent by this device in this session).
    Text(String),
    /// A change to the room's group, in words.
    Change(String),
    /// A message this device cannot read: sent before it joined, read
    /// before the client last started, or not meant for it.
    Unreadable,
}

/// Where what the device read is kept beside its state file.
fn kept_path(state: &Path) -> PathBuf {
    state.with_extension("read")
}

/// What an item read as, and the digest of its content as the server
/// relayed it ([`digest`]): a reading is used again only for the same
/// content (a server whose database was replaced may number other items
/// alike). `None` for this device's own commits, recorded by seq alone.
#[derive(Debug, Clone)]
struct Held {
    reading: Reading,
    digest: Option<u64>,
}

/// The first 8 bytes of the SHA-256 digest of an item's content.
fn digest(content: &str) -> u64 {
    let hash = sha2::Sha256::digest(content.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(first)
}

/// One item of what was read, as saved.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Kept {
    room: String,
    seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<u64>,
    /// A message's text, or (with `change`) a change to the group in words.
    text: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    change: bool,
}

/// What reading a commit asks the client to do next.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct AfterCommit {
    /// This device's own commit lost the race for the epoch: its change,
    /// to commit again.
    pub(crate) superseded: Option<Change>,
    /// This device was removed from the group.
    pub(crate) removed_me: bool,
}

/// This installation's device and what this session read with it.
pub(crate) struct Secure {
    device: Device,
    /// The device's file and its key, derived from the passphrase once
    /// and wiped from memory when the session ends.
    file: StateFile,
    /// What each MLS item read or sent reads as, by room and seq: in this
    /// session, and as kept from earlier ones.
    readings: HashMap<(String, i64), Held>,
    /// Whether `readings` changed since it was last kept.
    readings_changed: bool,
    /// The text of each message this device sent, by `client_id`.
    sent: HashMap<String, String>,
    /// The epoch each room's group had when this device joined it from a
    /// Welcome in this session: the commit that led to it added this
    /// device.
    joined_at: HashMap<String, u64>,
    /// When the state first changed since the last save.
    changed_at: Option<Instant>,
    /// When this session started: the first key update of each group is
    /// due [`KEY_UPDATE_EVERY`] after it.
    started: Instant,
    /// When this device last asked to update its keys in each room's group.
    keys_updated: HashMap<String, Instant>,
}

/// How often, while the client runs, this device updates its own keys in
/// each group it is in (a commit that changes nothing but its leaf), so
/// that keys which leaked stop opening what is sent afterwards.
pub(crate) const KEY_UPDATE_EVERY: Duration = Duration::from_secs(60 * 60);

impl std::fmt::Debug for Secure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secure")
            .field("device", &self.device)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Why the device could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("wrong device passphrase for {0}")]
    WrongPassphrase(PathBuf),
    #[error("{path} holds the device of {owner}, not {user}")]
    OtherUser {
        path: PathBuf,
        owner: String,
        user: String,
    },
    #[error("cannot open the device state {path}: {source}")]
    State { path: PathBuf, source: E2eError },
}

impl Secure {
    /// Loads the device saved at `path`, or creates (and saves) a new one
    /// for `username` when there is no file, its key derived at the cost
    /// of `kdf` (an existing file keeps the cost it was saved with). Says
    /// whether it is new.
    pub(crate) fn open(
        username: &str,
        path: &Path,
        passphrase: &str,
        kdf: KdfParams,
    ) -> Result<(Secure, bool), OpenError> {
        let failed = |source| OpenError::State {
            path: path.to_owned(),
            source,
        };
        let (file, device, created) = if path.exists() {
            let (file, device) =
                StateFile::open(path, passphrase).map_err(|error| match error {
                    E2eError::WrongPassphrase => OpenError::WrongPassphrase(path.to_owned()),
                    other => failed(other),
                })?;
            if !device.username().as_str().eq_ignore_ascii_case(username) {
                return Err(OpenError::OtherUser {
                    path: path.to_owned(),
                    owner: device.username().as_str().to_owned(),
                    user: username.to_owned(),
                });
            }
            (file, device, false)
        } else {
            let name = Username::parse(username)
                .map_err(|error| failed(E2eError::Malformed(format!("not a username: {error}"))))?;
            let file = StateFile::create(path, passphrase, kdf).map_err(failed)?;
            (file, Device::new(name).map_err(failed)?, true)
        };
        // What was read before; a kept file that cannot be read (damaged,
        // or from another passphrase) is left for the next save to replace.
        let readings = if created {
            HashMap::new()
        } else {
            load_kept(&file)
        };
        let mut secure = Secure {
            device,
            file,
            readings,
            readings_changed: false,
            sent: HashMap::new(),
            joined_at: HashMap::new(),
            changed_at: created.then(Instant::now),
            started: Instant::now(),
            keys_updated: HashMap::new(),
        };
        if created {
            if let Some(dir) = path.parent() {
                create_private_dir(dir).map_err(|error| failed(E2eError::Io(error)))?;
            }
            secure.save().map_err(failed)?;
        }
        Ok((secure, created))
    }

    /// The rooms in whose group this device should update its keys now:
    /// [`KEY_UPDATE_EVERY`] since it last did (or since the session
    /// started), and no commit of its own on the way there. Each is
    /// counted as updated from `now`, so it is named once.
    pub(crate) fn key_updates_due(&mut self, now: Instant) -> Vec<String> {
        let rooms: Vec<String> = self
            .device
            .rooms()
            .map(|room| room.as_str().to_owned())
            .collect();
        let mut due = Vec::new();
        for room in rooms {
            let since = self
                .keys_updated
                .get(&room)
                .copied()
                .unwrap_or(self.started);
            if now.saturating_duration_since(since) >= KEY_UPDATE_EVERY
                && self.pending_on(&room).is_none()
            {
                self.keys_updated.insert(room.clone(), now);
                due.push(room);
            }
        }
        due
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    pub(crate) fn device_mut(&mut self) -> &mut Device {
        self.mark();
        &mut self.device
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    /// Writes the device state to its file now.
    /// What was read is kept after the state: should the second write
    /// fail, what is kept is older than the state, and the items it lacks
    /// show as unreadable; never the other way round, which would skip a
    /// commit the state has not processed.
    pub(crate) fn save(&mut self) -> Result<(), E2eError> {
        self.file.save(&self.device)?;
        self.changed_at = None;
        if self.readings_changed {
            let kept = kept_items(&self.readings);
            let bytes =
                serde_json::to_vec(&kept).map_err(|error| E2eError::Internal(error.to_string()))?;
            self.file
                .save_beside(&kept_path(self.file.path()), &bytes)?;
            self.readings_changed = false;
        }
        Ok(())
    }

    /// Writes the device state if anything changed since the last save.
    pub(crate) fn save_if_dirty(&mut self) -> Result<(), E2eError> {
        if self.changed_at.is_some() {
            self.save()
        } else {
            Ok(())
        }
    }

    /// Writes the device state if it changed at least [`SAVE_AFTER`] ago:
    /// for what reading messages changed, which is only worth a save now
    /// and then (see [`SAVE_AFTER`]).
    pub(crate) fn save_if_due(&mut self, now: Instant) -> Result<(), E2eError> {
        match self.changed_at {
            Some(at) if now.duration_since(at) >= SAVE_AFTER => self.save(),
            _ => Ok(()),
        }
    }

    fn mark(&mut self) {
        self.changed_at.get_or_insert_with(Instant::now);
    }

    /// Whether this device is in the room's group.
    pub(crate) fn has_group(&self, room: &str) -> bool {
        RoomName::parse(room).is_ok_and(|room| self.device.rooms().any(|held| *held == room))
    }

    /// Encrypts `text` for the room's group, and remembers it as the text
    /// of the message `client_id`.
    pub(crate) fn seal(
        &mut self,
        room: &str,
        client_id: &str,
        text: &str,
    ) -> Result<String, E2eError> {
        let room = room_name(room)?;
        let sealed = self.device.encrypt(&room, text.as_bytes())?;
        self.mark();
        self.sent.insert(client_id.to_owned(), text.to_owned());
        Ok(wire::encode(sealed))
    }

    /// Reads the MLS item `seq` of `room`, sent by `username`, as the
    /// server relayed it. Items are read in seq order; one already read in
    /// this session gives the same reading again.
    pub(crate) fn read(&mut self, room: &str, item: &Item<'_>, after: &mut AfterCommit) -> Reading {
        let key = (room.to_owned(), item.seq);
        let digest = digest(item.content);
        if let Some(held) = self.readings.get(&key)
            && held.digest.is_none_or(|held| held == digest)
        {
            return held.reading.clone();
        }
        if let Some(text) = item.client_id.and_then(|id| self.sent.get(id)) {
            let reading = Reading::Text(text.clone());
            self.keep(key, reading.clone(), Some(digest));
            return reading;
        }
        let reading = self.process(room, item, after);
        self.keep(key, reading.clone(), Some(digest));
        reading
    }

    fn keep(&mut self, key: (String, i64), reading: Reading, digest: Option<u64>) {
        if reading != Reading::Unreadable {
            self.readings_changed = true;
            self.mark();
        }
        self.readings.insert(key, Held { reading, digest });
    }

    fn process(&mut self, room: &str, item: &Item<'_>, after: &mut AfterCommit) -> Reading {
        let (Ok(name), Ok(bytes)) = (room_name(room), wire::decode(item.content)) else {
            return Reading::Unreadable;
        };
        let changed = format!("{} changed the encrypted group", item.username);
        match self.device.process(&name, &bytes) {
            Ok(Incoming::Message { plaintext, .. }) => {
                self.mark();
                Reading::Text(String::from_utf8_lossy(&plaintext).into_owned())
            }
            Ok(Incoming::Commit {
                by,
                change,
                superseded,
                ..
            }) => {
                self.mark();
                after.superseded = superseded;
                after.removed_me = change.removed_this_device;
                let remaining = self.members(room);
                Reading::Change(describe_change(by.as_str(), &change, &remaining))
            }
            Ok(Incoming::Proposal { by }) => {
                self.mark();
                Reading::Change(format!("{by} proposed a change to the encrypted group"))
            }
            Ok(Incoming::Outdated { epoch })
                if self.joined_at.get(room) == Some(&epoch.saturating_add(1)) =>
            {
                Reading::Change(format!(
                    "{} added you to the encrypted group",
                    item.username
                ))
            }
            Ok(Incoming::Outdated { .. }) => Reading::Change(changed),
            Ok(Incoming::OwnMessage) => Reading::Unreadable,
            Err(_) if item.kind == MlsKindBody::Commit => Reading::Change(changed),
            Err(_) => Reading::Unreadable,
        }
    }

    /// Records what this device's commit accepted at `seq` of `room` did.
    pub(crate) fn committed(&mut self, room: &str, seq: i64, change: &MembershipChange) {
        let me = self.device.username().as_str().to_owned();
        let remaining = self.members(room);
        self.keep(
            (room.to_owned(), seq),
            Reading::Change(describe_change(&me, change, &remaining)),
            None,
        );
    }

    /// Creates the room's group, with this device alone in it.
    pub(crate) fn create_group(&mut self, room: &str) -> Result<(), E2eError> {
        let room = room_name(room)?;
        self.mark();
        self.device.create_group(&room)
    }

    /// The epoch this device's pending commit in the room builds on, if
    /// one waits for the server's answer.
    pub(crate) fn pending_on(&self, room: &str) -> Option<u64> {
        let room = room_name(room).ok()?;
        if !self.device.has_pending_commit(&room).ok()? {
            return None;
        }
        self.device.epoch(&room).ok()
    }

    /// Makes a commit with `change` on the group's current epoch.
    pub(crate) fn commit(
        &mut self,
        room: &str,
        change: Change,
    ) -> Result<OutgoingCommit, E2eError> {
        let room = room_name(room)?;
        self.mark();
        self.device.commit(&room, change)
    }

    /// The server accepted this device's pending commit: applies it. A
    /// commit already applied (its frame came first) changes nothing.
    pub(crate) fn merge(&mut self, room: &str) -> Result<Option<MembershipChange>, E2eError> {
        let room = room_name(room)?;
        self.mark();
        match self.device.merge_pending_commit(&room) {
            Ok(change) => Ok(Some(change)),
            Err(E2eError::NoPendingCommit(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The server refused this device's pending commit as stale: drops it
    /// and returns its change.
    pub(crate) fn clear_pending(&mut self, room: &str) -> Result<Option<Change>, E2eError> {
        let room = room_name(room)?;
        self.mark();
        self.device.clear_pending_commit(&room)
    }

    /// Joins a room's group from a Welcome; says who added this device.
    pub(crate) fn join(&mut self, room: &str, welcome: &str) -> Result<String, E2eError> {
        let room = room_name(room)?;
        let bytes = wire::decode(welcome)
            .map_err(|error| E2eError::Malformed(format!("the Welcome is not base64: {error}")))?;
        let joined = self.device.join(&room, &bytes)?;
        self.joined_at
            .insert(room.as_str().to_owned(), joined.epoch);
        self.mark();
        Ok(joined.by.as_str().to_owned())
    }

    /// The users with a device in the room's group.
    pub(crate) fn members(&self, room: &str) -> BTreeSet<String> {
        room_name(room)
            .and_then(|room| self.device.members(&room))
            .map(|members| {
                members
                    .iter()
                    .map(|member| member.username.as_str().to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The devices of `other` in the groups this device shares with them,
    /// and the safety number of the two users over their keys there:
    /// `None` when no group holds both.
    pub(crate) fn safety_number(&self, other: &str) -> Option<(Vec<GroupMember>, SafetyNumber)> {
        let me = self.device.username();
        let other_name = Username::parse(other).ok()?;
        let mut mine: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut theirs: Vec<GroupMember> = Vec::new();
        for room in self.device.rooms() {
            let Ok(members) = self.device.members(room) else {
                continue;
            };
            if !members.iter().any(|m| m.username.same_user(&other_name)) {
                continue;
            }
            for member in members {
                if member.username.same_user(me) {
                    mine.insert(member.signature_key);
                } else if member.username.same_user(&other_name)
                    && !theirs
                        .iter()
                        .any(|t| t.signature_key == member.signature_key)
                {
                    theirs.push(member);
                }
            }
        }
        if theirs.is_empty() {
            return None;
        }
        mine.insert(self.device.signature_key().to_vec());
        let mine: Vec<Vec<u8>> = mine.into_iter().collect();
        let keys: Vec<&[u8]> = theirs.iter().map(|m| m.signature_key.as_slice()).collect();
        let number = SafetyNumber::compute(me, &mine, &other_name, &keys);
        Some((theirs, number))
    }
}

/// An MLS item of a room, as a `message` frame or a history item carries
/// it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Item<'a> {
    pub(crate) seq: i64,
    pub(crate) username: &'a str,
    pub(crate) kind: MlsKindBody,
    pub(crate) content: &'a str,
    pub(crate) client_id: Option<&'a str>,
}

/// What was read, as kept: the newest [`KEPT_PER_ROOM`] readable items of
/// each room.
fn kept_items(readings: &HashMap<(String, i64), Held>) -> Vec<Kept> {
    let mut kept: Vec<Kept> = readings
        .iter()
        .filter_map(|((room, seq), held)| {
            let (text, change) = match &held.reading {
                Reading::Text(text) => (text.clone(), false),
                Reading::Change(text) => (text.clone(), true),
                Reading::Unreadable => return None,
            };
            Some(Kept {
                room: room.clone(),
                seq: *seq,
                digest: held.digest,
                text,
                change,
            })
        })
        .collect();
    kept.sort_by(|a, b| a.room.cmp(&b.room).then(b.seq.cmp(&a.seq)));
    let mut per_room: HashMap<String, usize> = HashMap::new();
    kept.retain(|item| {
        let count = per_room.entry(item.room.clone()).or_default();
        *count += 1;
        *count <= KEPT_PER_ROOM
    });
    kept
}

/// Reads what was kept beside the device's file; nothing when there is
/// none or it cannot be read.
fn load_kept(file: &StateFile) -> HashMap<(String, i64), Held> {
    let path = kept_path(file.path());
    let Ok(bytes) = file.load_beside(&path) else {
        return HashMap::new();
    };
    let Ok(kept) = serde_json::from_slice::<Vec<Kept>>(&bytes) else {
        return HashMap::new();
    };
    kept.into_iter()
        .map(|item| {
            let reading = if item.change {
                Reading::Change(item.text)
            } else {
                Reading::Text(item.text)
            };
            (
                (item.room, item.seq),
                Held {
                    reading,
                    digest: item.digest,
                },
            )
        })
        .collect()
}

fn room_name(room: &str) -> Result<RoomName, E2eError> {
    RoomName::parse(room).map_err(|error| E2eError::Malformed(format!("room {room}: {error}")))
}

/// A commit's change in words: `alice added bob to the encrypted group`.
/// `remaining` are the users (lower case) with a device in the group
/// after it: a removed device whose user is still there reads `removed a
/// device of bob`.
pub(crate) fn describe_change(
    by: &str,
    change: &MembershipChange,
    remaining: &BTreeSet<String>,
) -> String {
    let names = |members: &[GroupMember]| {
        let names: BTreeSet<&str> = members.iter().map(|m| m.username.as_str()).collect();
        names.into_iter().collect::<Vec<_>>().join(", ")
    };
    let mut parts = Vec::new();
    if !change.added.is_empty() {
        parts.push(format!("added {}", names(&change.added)));
    }
    let (devices, users): (Vec<GroupMember>, Vec<GroupMember>) = change
        .removed
        .iter()
        .cloned()
        .partition(|member| remaining.contains(&member.username.as_str().to_ascii_lowercase()));
    if !users.is_empty() {
        parts.push(format!("removed {}", names(&users)));
    }
    if !devices.is_empty() {
        parts.push(format!("removed a device of {}", names(&devices)));
    }
    if parts.is_empty() {
        format!("{by} updated their keys in the encrypted group")
    } else {
        format!(
            "{by} {} {} the encrypted group",
            parts.join(" and "),
            if change.added.is_empty() {
                "from"
            } else {
                "to"
            }
        )
    }
}

/// Creates `dir` (and its parents) readable by this user only where the
/// system has permissions.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap key derivation: these tests save often.
    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn temp_dir(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        std::env::temp_dir().join(format!(
            "chat-tui-secure-{name}-{}-{nanos}",
            std::process::id()
        ))
    }

    #[test]
    fn keys_are_updated_in_each_group_once_an_hour() -> Result<(), Box<dyn std::error::Error>> {
        let dir = temp_dir("updates");
        let (mut secure, _) = Secure::open("alice", &dir.join("alice.mls"), "pass", FAST)?;
        secure.create_group("vault")?;
        let start = secure.started;
        assert!(secure.key_updates_due(start).is_empty());
        assert!(
            secure
                .key_updates_due(start + KEY_UPDATE_EVERY / 2)
                .is_empty()
        );
        let due = start + KEY_UPDATE_EVERY;
        assert_eq!(secure.key_updates_due(due), ["vault"]);
        assert!(secure.key_updates_due(due).is_empty(), "named once");
        assert_eq!(secure.key_updates_due(due + KEY_UPDATE_EVERY), ["vault"]);
        // Not while a commit of this device is on its way.
        secure.commit("vault", Change::Update)?;
        assert!(
            secure
                .key_updates_due(due + 3 * KEY_UPDATE_EVERY)
                .is_empty()
        );
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }

    #[test]
    fn the_state_file_is_named_after_the_user_and_the_server() {
        let path = state_path(Path::new("/data"), "http://127.0.0.1:8000/", "Alice");
        assert_eq!(path, Path::new("/data/alice@127.0.0.1_8000.mls"));
    }

    #[test]
    fn a_device_is_created_once_then_loaded_with_its_passphrase_only() -> Result<(), OpenError> {
        let dir = temp_dir("open");
        let path = dir.join("alice.mls");
        let (first, created) = Secure::open("alice", &path, "pass phrase", FAST)?;
        assert!(created);
        let (again, created) = Secure::open("alice", &path, "pass phrase", FAST)?;
        assert!(!created);
        assert_eq!(first.device().device_id(), again.device().device_id());
        assert!(matches!(
            Secure::open("alice", &path, "wrong", FAST),
            Err(OpenError::WrongPassphrase(_))
        ));
        assert!(matches!(
            Secure::open("bob", &path, "pass phrase", FAST),
            Err(OpenError::OtherUser { .. })
        ));
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }

    #[test]
    fn a_change_is_saved_at_once_on_demand_or_in_a_batch_once_due() -> Result<(), OpenError> {
        let dir = temp_dir("due");
        let path = dir.join("alice.mls");
        let (mut secure, _) = Secure::open("alice", &path, "pass", FAST)?;
        let saved = |path: &Path| std::fs::read(path).unwrap_or_default();
        let before = saved(&path);
        assert!(secure.create_group("vault").is_ok());
        let now = Instant::now();
        assert!(secure.save_if_due(now).is_ok());
        assert_eq!(saved(&path), before, "not due yet");
        assert!(secure.save_if_due(now + SAVE_AFTER).is_ok());
        let after = saved(&path);
        assert_ne!(after, before, "saved once due");
        assert!(secure.save_if_dirty().is_ok());
        assert_eq!(saved(&path), after, "nothing changed since");
        let (reopened, _) = Secure::open("alice", &path, "pass", FAST)?;
        assert!(reopened.has_group("vault"));
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }

    #[test]
    fn messages_are_read_once_sent_ones_are_known_and_garbage_is_a_placeholder()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = temp_dir("read");
        let (mut alice, _) = Secure::open("alice", &dir.join("a.mls"), "a", FAST)?;
        let (mut bob, _) = Secure::open("bob", &dir.join("b.mls"), "b", FAST)?;
        let room = "dm:alice:bob";
        alice.create_group(room)?;
        let packages = bob.device_mut().key_packages(1)?;
        let commit = alice.commit(room, Change::Add(packages))?;
        let change = alice.merge(room)?.ok_or("a pending commit")?;
        alice.committed(room, 1, &change);
        let welcome = wire::encode(commit.welcome.ok_or("a Welcome")?);
        assert_eq!(bob.join(room, &welcome)?, "alice");
        assert!(bob.has_group(room) && !bob.has_group("dm:bob:carol"));
        // The commit that added Bob, relayed after his Welcome.
        let added = wire::encode(&commit.commit);
        assert_eq!(
            bob.read(
                room,
                &Item {
                    seq: 1,
                    username: "alice",
                    kind: MlsKindBody::Commit,
                    content: &added,
                    client_id: None,
                },
                &mut AfterCommit::default()
            ),
            Reading::Change("alice added you to the encrypted group".to_owned())
        );

        let sealed = alice.seal(room, "c1", "hello bob")?;
        let item = Item {
            seq: 2,
            username: "alice",
            kind: MlsKindBody::Application,
            content: &sealed,
            client_id: Some("c1"),
        };
        let mut after = AfterCommit::default();
        assert_eq!(
            bob.read(room, &item, &mut after),
            Reading::Text("hello bob".to_owned())
        );
        // Read again (a history page): the same text, from this session.
        assert_eq!(
            bob.read(room, &item, &mut after),
            Reading::Text("hello bob".to_owned())
        );
        // The sender reads its own message from what it sent.
        assert_eq!(
            alice.read(room, &item, &mut after),
            Reading::Text("hello bob".to_owned())
        );
        let garbage = Item {
            seq: 3,
            content: "bm90IG1scw==",
            client_id: None,
            ..item
        };
        assert_eq!(bob.read(room, &garbage, &mut after), Reading::Unreadable);
        assert_eq!(
            alice.read(
                room,
                &Item {
                    seq: 1,
                    kind: MlsKindBody::Commit,
                    ..garbage
                },
                &mut after
            ),
            Reading::Change("alice added bob to the encrypted group".to_owned())
        );
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }

    #[test]
    fn what_was_read_still_reads_after_a_restart_for_the_same_content_only()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = temp_dir("kept");
        let (mut alice, _) = Secure::open("alice", &dir.join("a.mls"), "a", FAST)?;
        let bob_path = dir.join("b.mls");
        let (mut bob, _) = Secure::open("bob", &bob_path, "b", FAST)?;
        let room = "vault";
        alice.create_group(room)?;
        let packages = bob.device_mut().key_packages(1)?;
        let commit = alice.commit(room, Change::Add(packages))?;
        alice.merge(room)?;
        bob.join(room, &wire::encode(commit.welcome.ok_or("a Welcome")?))?;
        let sealed = alice.seal(room, "c1", "kept across restarts")?;
        let item = Item {
            seq: 2,
            username: "alice",
            kind: MlsKindBody::Application,
            content: &sealed,
            client_id: Some("c1"),
        };
        let text = Reading::Text("kept across restarts".to_owned());
        assert_eq!(bob.read(room, &item, &mut AfterCommit::default()), text);
        bob.save()?;
        let kept = std::fs::read(kept_path(&bob_path))?;
        assert!(
            !kept.windows(7).any(|window| window == b"restart"),
            "kept encrypted"
        );
        drop(bob);

        let (mut bob, created) = Secure::open("bob", &bob_path, "b", FAST)?;
        assert!(!created);
        assert_eq!(bob.read(room, &item, &mut AfterCommit::default()), text);
        // Another content under the same seq is read anew, not taken for
        // what was kept.
        let other = alice.seal(room, "c2", "something else")?;
        let swapped = Item {
            content: &other,
            client_id: None,
            ..item
        };
        assert_eq!(
            bob.read(room, &swapped, &mut AfterCommit::default()),
            Reading::Text("something else".to_owned())
        );
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }

    #[test]
    fn only_the_newest_items_of_each_room_are_kept() {
        let mut readings = HashMap::new();
        for seq in 1..=(KEPT_PER_ROOM as i64 + 5) {
            for room in ["a", "b"] {
                readings.insert(
                    (room.to_owned(), seq),
                    Held {
                        reading: Reading::Text(format!("{room}{seq}")),
                        digest: Some(1),
                    },
                );
            }
        }
        readings.insert(
            ("c".to_owned(), 1),
            Held {
                reading: Reading::Unreadable,
                digest: Some(2),
            },
        );
        let kept = kept_items(&readings);
        assert_eq!(kept.len(), 2 * KEPT_PER_ROOM);
        assert!(kept.iter().all(|item| item.seq > 5 && item.room != "c"));
    }

    #[test]
    fn a_removed_device_of_a_user_still_in_the_group_is_named_as_a_device() {
        let member = |name: &str, key: u8| GroupMember {
            username: Username::parse(name).expect("a valid name"),
            signature_key: vec![key; 32],
        };
        let change = MembershipChange {
            added: Vec::new(),
            removed: vec![member("bob", 1), member("carol", 2)],
            removed_this_device: false,
        };
        let remaining: BTreeSet<String> = ["alice".to_owned(), "bob".to_owned()].into();
        assert_eq!(
            describe_change("alice", &change, &remaining),
            "alice removed carol and removed a device of bob from the encrypted group"
        );
        assert_eq!(
            describe_change("alice", &change, &BTreeSet::new()),
            "alice removed bob, carol from the encrypted group"
        );
    }

    #[test]
    fn a_removal_is_described_with_whom_it_removed() -> Result<(), Box<dyn std::error::Error>> {
        let dir = temp_dir("remove");
        let (mut alice, _) = Secure::open("alice", &dir.join("a.mls"), "a", FAST)?;
        let (mut bob, _) = Secure::open("bob", &dir.join("b.mls"), "b", FAST)?;
        alice.create_group("vault")?;
        assert_eq!(alice.pending_on("vault"), None);
        let packages = bob.device_mut().key_packages(1)?;
        let commit = alice.commit("vault", Change::Add(packages))?;
        assert_eq!(alice.pending_on("vault"), Some(0), "built on epoch 0");
        alice.merge("vault")?;
        assert_eq!(alice.pending_on("vault"), None);
        assert_eq!(alice.merge("vault")?, None, "merged once");
        bob.join("vault", &wire::encode(commit.welcome.ok_or("a Welcome")?))?;
        assert_eq!(alice.members("vault").len(), 2);
        let bob_name = Username::parse("bob")?;
        let removal = alice.commit("vault", Change::Remove(vec![bob_name]))?;
        let content = wire::encode(&removal.commit);
        let mut after = AfterCommit::default();
        let reading = bob.read(
            "vault",
            &Item {
                seq: 5,
                username: "alice",
                kind: MlsKindBody::Commit,
                content: &content,
                client_id: None,
            },
            &mut after,
        );
        assert_eq!(
            reading,
            Reading::Change("alice removed bob from the encrypted group".to_owned())
        );
        assert!(after.removed_me);
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }
}
