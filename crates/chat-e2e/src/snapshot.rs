//! The plaintext inside a saved state file: the device's identity, its
//! rooms, and every entry of the MLS storage, in a small length-prefixed
//! binary format.
//!
//! ```text
//! u8      version (1)
//! bytes   username
//! bytes   signature public key
//! u32     number of rooms, then for each:
//!           bytes  room name
//!           bytes  group id
//!           u8     pending change: 0 none, 1 add, 2 remove, 3 update
//!           u32    number of items (KeyPackages or usernames), each as bytes
//! u32     number of storage entries, then for each: bytes key, bytes value
//! ```
//!
//! `bytes` is a u32 big-endian length and that many bytes. The format is
//! read only after the file authenticated, so a failure here means a bug
//! or a file from an incompatible version, reported as damage.

use zeroize::{Zeroize, Zeroizing};

use crate::{Change, E2eError};

const SNAPSHOT_VERSION: u8 = 1;

/// A room as saved: its name, its group's id and the change of a commit
/// still waiting for the server's answer.
#[derive(Debug)]
pub(crate) struct SavedRoom {
    pub(crate) room: String,
    pub(crate) group_id: Vec<u8>,
    pub(crate) pending: Option<Change>,
}

/// Everything a device saves.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) username: String,
    pub(crate) signature_key: Vec<u8>,
    pub(crate) rooms: Vec<SavedRoom>,
    pub(crate) storage: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // The storage entries hold private keys.
        for (key, value) in &mut self.storage {
            key.zeroize();
            value.zeroize();
        }
    }
}

impl Snapshot {
    /// The snapshot's bytes, wiped from memory when dropped: they hold the
    /// device's private keys.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        out.push(SNAPSHOT_VERSION);
        put_bytes(&mut out, self.username.as_bytes());
        put_bytes(&mut out, &self.signature_key);
        put_len(&mut out, self.rooms.len());
        for room in &self.rooms {
            put_bytes(&mut out, room.room.as_bytes());
            put_bytes(&mut out, &room.group_id);
            match &room.pending {
                None => {
                    out.push(0);
                    put_len(&mut out, 0);
                }
                Some(Change::Add(key_packages)) => {
                    out.push(1);
                    put_len(&mut out, key_packages.len());
                    for key_package in key_packages {
                        put_bytes(&mut out, key_package);
                    }
                }
                Some(Change::Remove(users)) => {
                    out.push(2);
                    put_len(&mut out, users.len());
                    for user in users {
                        put_bytes(&mut out, user.as_str().as_bytes());
                    }
                }
                Some(Change::Update) => {
                    out.push(3);
                    put_len(&mut out, 0);
                }
                Some(Change::RemoveDevices(devices)) => {
                    out.push(4);
                    put_len(&mut out, devices.len());
                    for device in devices {
                        put_bytes(&mut out, device.as_bytes());
                    }
                }
            }
        }
        put_len(&mut out, self.storage.len());
        for (key, value) in &self.storage {
            put_bytes(&mut out, key);
            put_bytes(&mut out, value);
        }
        out
    }

    /// Reads a snapshot back.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Snapshot, E2eError> {
        let mut reader = Reader { rest: bytes };
        if reader.byte()? != SNAPSHOT_VERSION {
            return Err(E2eError::DamagedState("unknown state version"));
        }
        let username = reader.text()?;
        let signature_key = reader.bytes()?.to_vec();
        let room_count = reader.len()?;
        let mut rooms = Vec::new();
        for _ in 0..room_count {
            let room = reader.text()?;
            let group_id = reader.bytes()?.to_vec();
            let kind = reader.byte()?;
            let items = reader.len()?;
            let mut values = Vec::new();
            for _ in 0..items {
                values.push(reader.bytes()?.to_vec());
            }
            let pending = match kind {
                0 => None,
                1 => Some(Change::Add(values)),
                2 => {
                    let users = values
                        .into_iter()
                        .map(|value| {
                            String::from_utf8(value)
                                .ok()
                                .and_then(|name| chat_domain::Username::parse(name).ok())
                                .ok_or(E2eError::DamagedState("a pending removal names no user"))
                        })
                        .collect::<Result<_, _>>()?;
                    Some(Change::Remove(users))
                }
                3 => Some(Change::Update),
                4 => Some(Change::RemoveDevices(
                    values
                        .into_iter()
                        .map(|value| {
                            String::from_utf8(value).map_err(|_| {
                                E2eError::DamagedState("a pending removal names no device")
                            })
                        })
                        .collect::<Result<_, _>>()?,
                )),
                _ => return Err(E2eError::DamagedState("unknown pending change")),
            };
            rooms.push(SavedRoom {
                room,
                group_id,
                pending,
            });
        }
        let entry_count = reader.len()?;
        let mut storage = Vec::new();
        for _ in 0..entry_count {
            let key = reader.bytes()?.to_vec();
            let value = reader.bytes()?.to_vec();
            storage.push((key, value));
        }
        if !reader.rest.is_empty() {
            return Err(E2eError::DamagedState("trailing bytes after the state"));
        }
        Ok(Snapshot {
            username,
            signature_key,
            rooms,
            storage,
        })
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Every length here is of data held in memory by this process and far
    // below 4 GiB: a room list, a storage map, a key.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], E2eError> {
        if self.rest.len() < n {
            return Err(E2eError::DamagedState("the state ends early"));
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, E2eError> {
        Ok(self.take(1)?[0])
    }

    fn len(&mut self) -> Result<usize, E2eError> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4)?);
        usize::try_from(u32::from_be_bytes(word))
            .map_err(|_| E2eError::DamagedState("a length does not fit in memory"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], E2eError> {
        let len = self.len()?;
        self.take(len)
    }

    fn text(&mut self) -> Result<String, E2eError> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| E2eError::DamagedState("a name is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::Username;

    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            username: "alice".to_owned(),
            signature_key: vec![1, 2, 3],
            rooms: vec![
                SavedRoom {
                    room: "lobby".to_owned(),
                    group_id: b"id".to_vec(),
                    pending: Some(Change::Remove(vec![
                        Username::parse("bob").expect("a valid name"),
                    ])),
                },
                SavedRoom {
                    room: "other".to_owned(),
                    group_id: b"id2".to_vec(),
                    pending: Some(Change::Add(vec![vec![9; 5]])),
                },
                SavedRoom {
                    room: "third".to_owned(),
                    group_id: b"id3".to_vec(),
                    pending: Some(Change::RemoveDevices(vec!["ab12".to_owned()])),
                },
            ],
            storage: vec![(b"key".to_vec(), b"value".to_vec())],
        }
    }

    #[test]
    fn a_snapshot_reads_back_as_written() {
        let bytes = sample().encode();
        let back = Snapshot::decode(&bytes).expect("decodes");
        assert_eq!(back.username, "alice");
        assert_eq!(back.signature_key, [1, 2, 3]);
        assert_eq!(back.rooms.len(), 3);
        assert_eq!(back.rooms[0].room, "lobby");
        assert_eq!(
            back.rooms[0].pending,
            Some(Change::Remove(vec![
                Username::parse("bob").expect("a valid name")
            ]))
        );
        assert_eq!(back.rooms[1].pending, Some(Change::Add(vec![vec![9; 5]])));
        assert_eq!(
            back.rooms[2].pending,
            Some(Change::RemoveDevices(vec!["ab12".to_owned()]))
        );
        assert_eq!(back.storage, [(b"key".to_vec(), b"value".to_vec())]);
    }

    #[test]
    fn a_cut_snapshot_is_damage_and_not_a_panic() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(matches!(
                Snapshot::decode(&bytes[..len]),
                Err(E2eError::DamagedState(_))
            ));
        }
    }
}
