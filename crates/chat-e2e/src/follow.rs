//! Keeping a room's group in step with the room's members.
//!
//! The server decides who is in a room; the group of an encrypted room
//! must follow, and only a member's client can change the group. When
//! someone joins a public encrypted room, leaves, or is removed, some
//! member's client has to commit the addition or removal. [`Device::gap`]
//! says what the group lacks or holds too much of, and [`turn`] spreads
//! the work: every client that sees the same gap ranks the candidates the
//! same way, the first acts at once and the others wait their turn, then
//! look again. A commit made twice anyway is harmless: the second is
//! refused as stale, and made again it finds nothing left to do.

use sha2::{Digest, Sha256};

use chat_domain::{RoomName, Username};

use crate::{Device, E2eError};

/// How a room's group differs from the room's members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gap {
    /// Members of the room with no device in the group, to add.
    pub missing: Vec<Username>,
    /// Users with a device in the group who are no longer members of the
    /// room, to remove.
    pub departed: Vec<Username>,
}

impl Gap {
    /// Whether the group and the room agree.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.departed.is_empty()
    }
}

/// How the devices in a room's group differ from the devices its members
/// have registered, each device named by its user and its id (as
/// `GET /api/rooms/{room}/mls/devices` lists them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceGap {
    /// Registered devices of members with no leaf in the group: a member's
    /// new device, or every device of a member not yet in the group.
    pub unplaced: Vec<(Username, String)>,
    /// Devices of members still in the group that are registered no more:
    /// retired, their leaves to remove.
    pub retired: Vec<(Username, String)>,
}

impl DeviceGap {
    /// Whether the group holds exactly the members' registered devices.
    pub fn is_empty(&self) -> bool {
        self.unplaced.is_empty() && self.retired.is_empty()
    }
}

impl Device {
    /// How the devices in the room's group differ from `registered`, the
    /// devices of the room's `members`. Leaves of users who are not members
    /// are not counted here (see [`Device::gap`]), nor is this device.
    pub fn device_gap(
        &self,
        room: &RoomName,
        members: &[Username],
        registered: &[(Username, String)],
    ) -> Result<DeviceGap, E2eError> {
        let leaves: Vec<(Username, String)> = self
            .members(room)?
            .into_iter()
            .map(|member| {
                let id = member.fingerprint().device_id();
                (member.username, id)
            })
            .collect();
        let own = self.device_id();
        let mut gap = DeviceGap::default();
        for (user, id) in registered {
            let member = members.iter().any(|member| member.same_user(user));
            if member
                && *id != own
                && !leaves.iter().any(|(_, leaf)| leaf == id)
                && !gap.unplaced.iter().any(|(_, seen)| seen == id)
            {
                gap.unplaced.push((user.clone(), id.clone()));
            }
        }
        for (user, id) in leaves {
            let member = members.iter().any(|member| member.same_user(&user));
            if member
                && id != own
                && !registered.iter().any(|(_, listed)| *listed == id)
                && !gap.retired.iter().any(|(_, seen)| *seen == id)
            {
                gap.retired.push((user, id));
            }
        }
        Ok(gap)
    }

    /// How the room's group, as this device holds it, differs from the
    /// room's members (as `GET /api/rooms/{room}/members` lists them).
    /// This device's own user is never missing nor departed: a device
    /// whose user left the room drops the group instead
    /// ([`Device::forget_room`]).
    pub fn gap(&self, room: &RoomName, room_members: &[Username]) -> Result<Gap, E2eError> {
        let in_group = self.members(room)?;
        let me = self.username();
        let mut gap = Gap::default();
        for member in room_members {
            if member.same_user(me) || gap.missing.iter().any(|m| m.same_user(member)) {
                continue;
            }
            if !in_group.iter().any(|held| held.username.same_user(member)) {
                gap.missing.push(member.clone());
            }
        }
        for held in in_group {
            let name = held.username;
            if name.same_user(me)
                || room_members.iter().any(|member| member.same_user(&name))
                || gap.departed.iter().any(|gone| gone.same_user(&name))
            {
                continue;
            }
            gap.departed.push(name);
        }
        Ok(gap)
    }
}

/// The place of `me` in the order in which clients take on a change about
/// `subject` (a user to add or remove, or a whole room to look at): 0 acts
/// at once; `n` acts only if, after waiting its turn, the change is still
/// not made.
///
/// `candidates` are the users whose clients may make the change, say the
/// room's members with a device in the group who are online; `me` counts
/// among them whether listed or not, a user named like `subject` never
/// does, and a user listed twice counts once. The order is a hash of each
/// candidate's name with the subject (case aside), so every client
/// computes the same one and the work spreads over members rather than
/// falling on one.
pub fn turn(subject: &str, candidates: &[Username], me: &Username) -> usize {
    let subject = subject.to_lowercase();
    let key = |user: &Username| {
        let mut hash = Sha256::new();
        hash.update(b"chat-e2e turn v1\0");
        hash.update(subject.as_bytes());
        hash.update([0]);
        hash.update(user.normalized().as_bytes());
        <[u8; 32]>::from(hash.finalize())
    };
    let mine = key(me);
    let mut before: Vec<[u8; 32]> = candidates
        .iter()
        .filter(|user| user.normalized() != subject && !user.same_user(me))
        .map(key)
        .filter(|theirs| *theirs < mine)
        .collect();
    before.sort_unstable();
    before.dedup();
    before.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Change;

    fn user(name: &str) -> Username {
        Username::parse(name).expect("a valid name")
    }

    fn users(names: &[&str]) -> Vec<Username> {
        names.iter().map(|name| user(name)).collect()
    }

    #[test]
    fn the_gap_names_members_missing_from_the_group_and_users_gone_from_the_room()
    -> Result<(), E2eError> {
        let room = RoomName::public("plans").expect("a valid room");
        let mut alice = Device::new(user("alice"))?;
        let mut bob = Device::new(user("bob"))?;
        alice.create_group(&room)?;
        let bob_packages = bob.key_packages(2)?;
        alice.add_members(&room, &bob_packages[..1])?;
        alice.merge_pending_commit(&room)?;
        assert!(alice.gap(&room, &users(&["alice", "Bob"]))?.is_empty());
        assert_eq!(
            alice.gap(&room, &users(&["alice", "carol", "Carol"]))?,
            Gap {
                missing: users(&["carol"]),
                departed: users(&["bob"]),
            }
        );
        // Alice's own user is neither missing nor departed.
        assert!(alice.gap(&room, &users(&["bob"]))?.is_empty());
        // Bob's device is in: another of its KeyPackages adds nothing.
        assert!(matches!(
            alice.add_members(&room, &bob_packages[1..]),
            Err(E2eError::NothingToCommit)
        ));
        assert!(!alice.has_pending_commit(&room)?);
        Ok(())
    }

    #[test]
    fn the_device_gap_names_new_devices_and_retired_ones_of_members() -> Result<(), E2eError> {
        let room = RoomName::public("plans").expect("a valid room");
        let mut alice = Device::new(user("alice"))?;
        let mut bob_phone = Device::new(user("bob"))?;
        let bob_laptop = Device::new(user("bob"))?;
        let carol = Device::new(user("carol"))?;
        alice.create_group(&room)?;
        let package = bob_phone.key_packages(1)?;
        alice.add_members(&room, &package)?;
        alice.merge_pending_commit(&room)?;
        let members = users(&["alice", "bob", "carol"]);
        let listed = |device: &Device| (device.username().clone(), device.device_id());
        let registered = vec![
            listed(&alice),
            listed(&bob_phone),
            listed(&bob_laptop),
            listed(&carol),
        ];
        assert_eq!(
            alice.device_gap(&room, &members, &registered)?,
            DeviceGap {
                unplaced: vec![listed(&bob_laptop), listed(&carol)],
                retired: Vec::new(),
            }
        );
        // Bob's phone retired: its leaf is to go; alice's own device,
        // listed or not, never is.
        let registered = vec![listed(&bob_laptop)];
        assert_eq!(
            alice.device_gap(&room, &members, &registered)?,
            DeviceGap {
                unplaced: vec![listed(&bob_laptop)],
                retired: vec![listed(&bob_phone)],
            }
        );
        // Not a member any more: that is `gap`'s business.
        assert!(alice.device_gap(&room, &users(&["alice"]), &[])?.is_empty());
        // Removing the retired device takes its leaf only.
        alice.commit(&room, Change::RemoveDevices(vec![bob_phone.device_id()]))?;
        let change = alice.merge_pending_commit(&room)?;
        assert_eq!(change.removed.len(), 1);
        assert_eq!(alice.members(&room)?.len(), 1);
        assert!(matches!(
            alice.commit(&room, Change::RemoveDevices(vec![alice.device_id()])),
            Err(E2eError::NothingToCommit)
        ));
        Ok(())
    }

    #[test]
    fn every_candidate_gets_its_own_place_and_all_agree_on_the_order() {
        let candidates = users(&["alice", "bob", "carol", "dave", "erin"]);
        let subject = "zoe";
        let mut places: Vec<usize> = candidates
            .iter()
            .map(|me| turn(subject, &candidates, me))
            .collect();
        places.sort_unstable();
        assert_eq!(places, [0, 1, 2, 3, 4]);
        // Listed or not, in another case or twice, `me` gets the same place.
        let shuffled = users(&["Erin", "carol", "alice", "bob", "carol"]);
        assert_eq!(
            turn(subject, &shuffled, &user("dave")),
            turn(subject, &candidates, &user("dave"))
        );
        // The subject never takes a turn.
        let with_subject = users(&["alice", "bob", "carol", "dave", "erin", "zoe"]);
        for me in &candidates {
            assert_eq!(
                turn(subject, &with_subject, me),
                turn(subject, &candidates, me)
            );
        }
    }

    #[test]
    fn alone_a_client_acts_at_once_and_the_first_place_moves_with_the_subject() {
        assert_eq!(turn("zoe", &[], &user("alice")), 0);
        assert_eq!(turn("dm:zoe:alice", &[], &user("alice")), 0);
        let candidates = users(&["alice", "bob", "carol", "dave", "erin", "frank"]);
        let first = |subject: &str| {
            candidates
                .iter()
                .find(|me| turn(subject, &candidates, me) == 0)
                .cloned()
        };
        let firsts: std::collections::BTreeSet<Username> = [
            "sam", "sue", "tom", "tim", "uma", "una", "val", "vic", "wes", "xia",
        ]
        .iter()
        .filter_map(|subject| first(subject))
        .collect();
        assert!(firsts.len() > 1, "the work is spread: {firsts:?}");
    }
}
