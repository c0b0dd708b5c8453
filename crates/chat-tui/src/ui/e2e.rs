//! End-to-end encrypted rooms on the chat screen: the device enrolled at
//! login, Welcomes fetched and joined, MLS items read in seq order, and
//! the commits this client makes when it adds or removes someone.
//!
//! The device ([`Secure`]) lives on the UI thread with the rest of the
//! session; REST calls run on worker threads as everywhere else and come
//! back here with their answers.

use std::time::Instant;

use chat_domain::Username;
use chat_e2e::{Change, E2eError, OutgoingCommit};
use chat_protocol::mls::DeviceBody;
use chat_protocol::mls::{self as wire, MlsKindBody};
use chat_protocol::rest::{MemberBody, MemberChangeBody, MessagePage, RoleBody, RoomMessage};
use chat_protocol::ws::{ClientFrame, ServerFrame};
use cursive::Cursive;

use super::{FollowDue, Session, WelcomeFetch, background, render, session_mut};
use crate::api::{Api, ApiError, CommitOutcome};
use crate::secure::{
    AfterCommit, Item, KEY_PACKAGES_LOW, KEY_PACKAGES_STOCK, LOCK, Reading, Secure,
};
use crate::state::ChatState;

/// How many times a commit refused as stale is made again.
const COMMIT_ATTEMPTS: u32 = 4;

/// How long a change waits for this client's commit before it in the same
/// room to be answered.
const PENDING_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// How long each place in the order of [`chat_e2e::turn`] waits for the
/// clients before it to make a change to a group, before it looks again.
const TURN_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// How long after (re)connecting to a room this client compares its
/// group with the room's members: time for the answer to `who`.
const FOLLOW_AFTER_CONNECT: std::time::Duration = std::time::Duration::from_secs(1);

/// The most MLS items held for one room while its Welcome is fetched.
const WAITING_MAX: usize = 500;

/// Registers the device (again: the server keeps one registration per
/// key) and keeps its KeyPackage stock up, then joins the groups of the
/// Welcomes waiting for it. Runs on the login's worker thread.
pub(super) fn enrol(
    api: &Api,
    secure: &mut Secure,
    notes: &mut Vec<String>,
) -> Result<(), ApiError> {
    let registration = secure
        .device()
        .registration()
        .map_err(|error| ApiError::Protocol(error.to_string()))?;
    api.register_device(&registration)?;
    top_up_now(api, secure)?;
    let device_id = secure.device().device_id();
    for welcome in api.welcomes(&device_id)? {
        match secure.join(&welcome.room, &welcome.welcome) {
            Ok(by) => notes.push(format!(
                "you joined the encrypted group of {} (added by {by})",
                welcome.room
            )),
            Err(error) => notes.push(format!(
                "a Welcome into {} could not be used: {error}",
                welcome.room
            )),
        }
        api.ack_welcome(welcome.id, &device_id)?;
    }
    // Failing to save is shown later, at the next save.
    let _ = secure.save_if_dirty();
    Ok(())
}

/// Uploads a fresh last-resort KeyPackage, and ordinary ones when the
/// server holds fewer than [`KEY_PACKAGES_LOW`].
fn top_up_now(api: &Api, secure: &mut Secure) -> Result<(), ApiError> {
    let protocol = |error: E2eError| ApiError::Protocol(error.to_string());
    let probe = secure
        .device_mut()
        .key_package_upload(0)
        .map_err(protocol)?;
    let stock = api.upload_key_packages(&probe)?;
    if stock.available < KEY_PACKAGES_LOW {
        let upload = secure
            .device_mut()
            .key_package_upload(KEY_PACKAGES_STOCK)
            .map_err(protocol)?;
        api.upload_key_packages(&upload)?;
    }
    Ok(())
}

/// Tops the KeyPackage stock up after a Welcome used one: the packages are
/// made here and uploaded on a worker thread.
fn top_up(siv: &mut Cursive) {
    let Some(secure) = session_mut(siv).and_then(|s| s.secure.as_mut()) else {
        return;
    };
    let Ok(probe) = secure.device_mut().key_package_upload(0) else {
        return;
    };
    background(
        siv,
        move |api| api.upload_key_packages(&probe),
        |siv, stock| {
            if stock.available >= KEY_PACKAGES_LOW {
                return;
            }
            let Some(secure) = session_mut(siv).and_then(|s| s.secure.as_mut()) else {
                return;
            };
            match secure.device_mut().key_package_upload(KEY_PACKAGES_STOCK) {
                Ok(upload) => background(
                    siv,
                    move |api| api.upload_key_packages(&upload),
                    |siv, _| save(siv),
                ),
                Err(error) => error_line(siv, None, format!("cannot make KeyPackages: {error}")),
            }
        },
    );
}

/// Saves the device state if it changed; a failure is shown.
pub(super) fn save(siv: &mut Cursive) {
    save_with(siv, Secure::save_if_dirty);
}

/// Saves what reading messages changed, when it is due (see
/// [`crate::secure::SAVE_AFTER`]).
pub(super) fn save_when_due(siv: &mut Cursive) {
    save_with(siv, |secure| secure.save_if_due(Instant::now()));
}

/// Updates this device's keys in every group where that is due (see
/// [`crate::secure::KEY_UPDATE_EVERY`]).
pub(super) fn update_keys_when_due(siv: &mut Cursive) {
    let due = match session_mut(siv).and_then(|session| session.secure.as_mut()) {
        Some(secure) => secure.key_updates_due(Instant::now()),
        None => return,
    };
    for room in due {
        commit_change(siv, room, Change::Update, 1);
    }
}

fn save_with(siv: &mut Cursive, save: impl FnOnce(&mut Secure) -> Result<(), E2eError>) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    let Some(secure) = session.secure.as_mut() else {
        return;
    };
    if let Err(error) = save(secure) {
        let path = secure.path().display().to_string();
        session.state.error(
            None,
            format!("cannot save the device state to {path}: {error}"),
        );
    }
}

fn error_line(siv: &mut Cursive, room: Option<&str>, text: String) {
    if let Some(session) = session_mut(siv) {
        session.state.error(room, text);
    }
}

/// The MLS items of a history page, oldest first, to read after the page
/// is applied.
pub(super) fn mls_items(messages: &[RoomMessage]) -> Vec<OwnedItem> {
    let mut items: Vec<OwnedItem> = messages
        .iter()
        .filter(|message| message.change.is_none() && !message.deleted)
        .filter_map(|message| {
            Some(OwnedItem {
                seq: message.seq,
                username: message.username.clone(),
                kind: message.mls?,
                content: message.content.clone()?,
                client_id: message.client_id.clone(),
            })
        })
        .collect();
    items.sort_by_key(|item| item.seq);
    items
}

/// An MLS item held for reading.
#[derive(Debug, Clone)]
pub(super) struct OwnedItem {
    seq: i64,
    username: String,
    kind: MlsKindBody,
    content: String,
    client_id: Option<String>,
}

impl OwnedItem {
    fn item(&self) -> Item<'_> {
        Item {
            seq: self.seq,
            username: &self.username,
            kind: self.kind,
            content: &self.content,
            client_id: self.client_id.as_deref(),
        }
    }
}

/// Reads the MLS items of a page of `room` and shows what they read as.
/// A room whose group this device is not in keeps its placeholders.
/// Returns the changes of this device's pending commits that commits in
/// the page superseded, to make again.
pub(super) fn reveal_items(
    secure: &mut Secure,
    state: &mut ChatState,
    room: &str,
    items: &[OwnedItem],
) -> Vec<Change> {
    let mut superseded = Vec::new();
    if items.is_empty() {
        return superseded;
    }
    state.set_encrypted(room, true);
    if !secure.has_group(room) {
        return superseded;
    }
    for item in items {
        let mut after = AfterCommit::default();
        let reading = secure.read(room, &item.item(), &mut after);
        state.reveal(room, item.seq, reading);
        superseded.extend(after.superseded);
    }
    superseded
}

/// Applies a page of history of `room`, reading its MLS items.
/// Returns the changes of this device's pending commits that commits in
/// the page superseded.
pub(super) fn apply_page(session: &mut Session, page: MessagePage) -> Vec<Change> {
    let room = page.room.clone();
    let items = mls_items(&page.messages);
    session
        .state
        .apply_history(&page.room, page.messages, page.has_more);
    match session.secure.as_mut() {
        Some(secure) => reveal_items(secure, &mut session.state, &room, &items),
        None => Vec::new(),
    }
}

/// What a frame asks of this client's encrypted groups once applied.
enum FollowUp {
    None,
    /// Fetch Welcomes: this device may have been added to a group.
    Welcomes,
    /// Commit a change to a room's group.
    Commit(String, Plan),
    /// Commit again a change that lost the race for its epoch.
    Again(String, Change),
}

/// A change to a room's group this client makes.
#[derive(Debug, Clone)]
pub(super) enum Plan {
    /// Add every device of the user.
    Add(String),
    /// Remove every device of the user.
    Remove(String),
}

/// Applies a frame of the connection: an MLS item is read before it is
/// shown (or held until this device has its room's Welcome), and a
/// membership change in an encrypted room may make this client commit.
pub(super) fn receive(siv: &mut Cursive, frame: ServerFrame, now: Instant) {
    let follow_up = match session_mut(siv) {
        Some(session) => apply_frame(session, frame, now, false),
        None => return,
    };
    follow(siv, follow_up);
}

fn follow(siv: &mut Cursive, follow_up: FollowUp) {
    match follow_up {
        FollowUp::None => {}
        FollowUp::Welcomes => fetch_welcomes(siv),
        FollowUp::Commit(room, plan) => commit(siv, room, plan),
        FollowUp::Again(room, change) => commit_change(siv, room, change, 1),
    }
}

fn apply_frame(session: &mut Session, frame: ServerFrame, now: Instant, replay: bool) -> FollowUp {
    let me = session.state.me().to_owned();
    match &frame {
        ServerFrame::Message {
            room,
            seq,
            username,
            content,
            client_id,
            mls: Some(kind),
            deleted: false,
            ..
        } => {
            let Some(secure) = session.secure.as_mut() else {
                session.state.apply(frame, now);
                return FollowUp::None;
            };
            if !secure.has_group(room) && !replay {
                session.state.set_encrypted(room, true);
                let waiting = session.waiting.entry(room.clone()).or_default();
                if waiting.len() < WAITING_MAX {
                    waiting.push(frame);
                    return FollowUp::Welcomes;
                }
            }
            let (room, seq) = (room.clone(), *seq);
            let item = Item {
                seq,
                username,
                kind: *kind,
                content,
                client_id: client_id.as_deref(),
            };
            let mut after = AfterCommit::default();
            let reading = secure
                .has_group(&room)
                .then(|| secure.read(&room, &item, &mut after));
            session.state.apply(frame, now);
            if let Some(reading) = reading {
                session.state.reveal(&room, seq, reading);
            }
            if after.removed_me {
                session.state.error(
                    Some(&room),
                    "this device was removed from the room's encrypted group",
                );
            }
            match after.superseded {
                Some(change) => FollowUp::Again(room, change),
                None => FollowUp::None,
            }
        }
        ServerFrame::Left { room, .. } => {
            // Out of the room, this device keeps no keys of its group.
            if let Some(secure) = session.secure.as_mut()
                && secure.has_group(room)
                && let Ok(name) = chat_domain::RoomName::parse(room)
            {
                let _ = secure.device_mut().forget_room(&name);
            }
            session.waiting.remove(room);
            session.state.apply(frame, now);
            FollowUp::None
        }
        ServerFrame::Joined {
            room, encrypted, ..
        } => {
            // Someone added this user to an encrypted room it did not hold:
            // its Welcome waits. A room already held had its group (or its
            // Welcome) looked after when it came.
            let added = *encrypted && session.state.room(room).is_none();
            let held = session
                .secure
                .as_ref()
                .is_some_and(|secure| secure.has_group(room));
            let room = room.clone();
            session.state.apply(frame, now);
            if held {
                // Connected (again) to a room whose group this device
                // holds: whatever changed in the room meanwhile, the group
                // follows. Who is online decides which client looks (one
                // per room is enough), so ask first.
                session.net.send(ClientFrame::Who {
                    room: Some(room.clone()),
                });
                schedule(session, &room, FOLLOW_AFTER_CONNECT, 0, true);
            }
            if added {
                FollowUp::Welcomes
            } else {
                FollowUp::None
            }
        }
        ServerFrame::Member {
            room,
            username,
            change,
            by,
            ..
        } => {
            let (room, username, change) = (room.clone(), username.clone(), *change);
            let by = by.clone();
            let by_me = by.as_deref().is_some_and(|by| by.eq_ignore_ascii_case(&me));
            session.state.apply(frame, now);
            let Some(secure) = session.secure.as_ref() else {
                return FollowUp::None;
            };
            let about_me = username.eq_ignore_ascii_case(&me);
            if !secure.has_group(&room) {
                return if about_me
                    && matches!(change, MemberChangeBody::Added | MemberChangeBody::Joined)
                {
                    FollowUp::Welcomes
                } else {
                    FollowUp::None
                };
            }
            let members = secure.members(&room);
            let in_group = members.contains(&username.to_ascii_lowercase());
            let arrived = matches!(change, MemberChangeBody::Added | MemberChangeBody::Joined);
            let gone = matches!(
                change,
                MemberChangeBody::Left | MemberChangeBody::Kicked | MemberChangeBody::Banned
            );
            if about_me || !(arrived && !in_group || gone && in_group) {
                return FollowUp::None;
            }
            // Who added or removed them commits the change to the group;
            // someone who joined or left on their own leaves it to the
            // members' clients, in turn.
            if by_me {
                return FollowUp::Commit(
                    room,
                    if arrived {
                        Plan::Add(username)
                    } else {
                        Plan::Remove(username)
                    },
                );
            }
            let actor_in_group = by
                .as_deref()
                .is_some_and(|by| members.contains(&by.to_ascii_lowercase()));
            let wait = if actor_in_group {
                TURN_WAIT
            } else {
                std::time::Duration::ZERO
            };
            schedule_follow(session, &room, wait, 0);
            FollowUp::None
        }
        ServerFrame::Presence {
            room,
            username,
            online: true,
        } if !username.eq_ignore_ascii_case(&me) => {
            // Someone came online, perhaps on a new device: the client
            // whose turn it is about them looks at the room's devices.
            let room = room.clone();
            let first = session.secure.as_ref().is_some_and(|secure| {
                secure.has_group(&room) && first_about(secure, &session.state, &room, username)
            });
            session.state.apply(frame, now);
            if first {
                schedule_follow(session, &room, FOLLOW_AFTER_CONNECT, 0);
            }
            FollowUp::None
        }
        _ => {
            session.state.apply(frame, now);
            FollowUp::None
        }
    }
}

/// Whether this client comes first (see [`chat_e2e::turn`]) among the
/// members online in the room with a device in its group, for a change
/// about `subject`.
fn first_about(secure: &Secure, state: &ChatState, room: &str, subject: &str) -> bool {
    chat_e2e::turn(
        subject,
        &candidates(secure, state, room),
        secure.device().username(),
    ) == 0
}

/// The users whose clients may change the room's group as it follows the
/// room: the members online there (as far as this client knows) with a
/// device in the group.
fn candidates(secure: &Secure, state: &ChatState, room: &str) -> Vec<Username> {
    let in_group = secure.members(room);
    state
        .room(room)
        .map(|entry| entry.online.iter())
        .into_iter()
        .flatten()
        .filter(|user| in_group.contains(&user.to_ascii_lowercase()))
        .filter_map(|user| Username::parse(user.as_str()).ok())
        .collect()
}

/// Lists the Welcomes waiting for this device, joins their groups and
/// acknowledges them; then reads the MLS items held meanwhile.
pub(super) fn fetch_welcomes(siv: &mut Cursive) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    let Some(secure) = session.secure.as_ref() else {
        return;
    };
    match session.welcomes {
        WelcomeFetch::Idle => session.welcomes = WelcomeFetch::Running,
        WelcomeFetch::Running | WelcomeFetch::RunningAgain => {
            session.welcomes = WelcomeFetch::RunningAgain;
            return;
        }
    }
    let device_id = secure.device().device_id();
    let finish = |siv: &mut Cursive| {
        let again = session_mut(siv).is_some_and(|session| {
            let again = session.welcomes == WelcomeFetch::RunningAgain;
            session.welcomes = WelcomeFetch::Idle;
            again
        });
        if again {
            fetch_welcomes(siv);
        } else {
            replay_waiting(siv);
        }
    };
    background(
        siv,
        move |api| match api.welcomes(&device_id) {
            Err(error @ ApiError::Unauthorized(_)) => Err(error),
            other => Ok((device_id, other)),
        },
        move |siv, (device_id, welcomes)| {
            let welcomes = match welcomes {
                Ok(welcomes) => welcomes,
                Err(error) => {
                    error_line(
                        siv,
                        None,
                        format!("cannot list this device's Welcomes: {error}"),
                    );
                    finish(siv);
                    return;
                }
            };
            let mut joined = false;
            for welcome in welcomes {
                let Some(session) = session_mut(siv) else {
                    return;
                };
                if !session.welcomes_taken.insert(welcome.id) {
                    continue;
                }
                let Some(secure) = session.secure.as_mut() else {
                    return;
                };
                match secure.join(&welcome.room, &welcome.welcome) {
                    Ok(by) => {
                        joined = true;
                        session.fresh_groups.remove(&welcome.room);
                        session.state.set_encrypted(&welcome.room, true);
                        session.state.notice(
                            Some(&welcome.room),
                            format!("{LOCK} you joined the encrypted group (added by {by})"),
                        );
                    }
                    Err(error) => session.state.error(
                        Some(&welcome.room),
                        format!("a Welcome into this room could not be used: {error}"),
                    ),
                }
                let id = welcome.id;
                let device_id = device_id.clone();
                background(siv, move |api| api.ack_welcome(id, &device_id), |_, ()| {});
            }
            if joined {
                save(siv);
                top_up(siv);
            }
            finish(siv);
        },
    );
}

/// Reads the MLS items held while Welcomes were fetched, in the order they
/// came; a room still without a group shows placeholders.
fn replay_waiting(siv: &mut Cursive) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    let waiting = std::mem::take(&mut session.waiting);
    let mut follow_ups = Vec::new();
    for frame in waiting.into_values().flatten() {
        follow_ups.push(apply_frame(session, frame, Instant::now(), true));
    }
    save(siv);
    for follow_up in follow_ups {
        follow(siv, follow_up);
    }
    render::all(siv);
}

/// Makes this device's group for a room it just created or opened.
pub(super) fn create_group(siv: &mut Cursive, room: &str) -> bool {
    let Some(session) = session_mut(siv) else {
        return false;
    };
    session.state.set_encrypted(room, true);
    let Some(secure) = session.secure.as_mut() else {
        session.state.error(
            Some(room),
            "no device passphrase was given at login: this client cannot take part in encrypted rooms",
        );
        return false;
    };
    if secure.has_group(room) {
        return false;
    }
    match secure.create_group(room) {
        Ok(()) => {
            session.fresh_groups.insert(room.to_owned());
            save(siv);
            true
        }
        Err(error) => {
            error_line(
                siv,
                Some(room),
                format!("cannot create the encrypted group: {error}"),
            );
            false
        }
    }
}

/// Commits a change to a room's group: for an addition, the user's
/// KeyPackages are claimed first.
pub(super) fn commit(siv: &mut Cursive, room: String, plan: Plan) {
    match plan {
        Plan::Remove(user) => remove(siv, room, vec![user]),
        Plan::Add(user) => add(siv, room, vec![user], None, false),
    }
}

/// Removes every device of `users` from the room's group.
fn remove(siv: &mut Cursive, room: String, users: Vec<String>) {
    match users
        .iter()
        .map(Username::parse)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(users) => commit_change(siv, room, Change::Remove(users), 1),
        Err(error) => error_line(
            siv,
            Some(&room),
            format!("cannot remove {users:?}: {error}"),
        ),
    }
}

/// Claims a KeyPackage of every device of `users` (or of the listed
/// `devices` of theirs only) and adds those devices to the room's group.
/// A user without a device is named: with `automatic` (the group following
/// the room, not the user's own command), as a notice rather than an error.
fn add(
    siv: &mut Cursive,
    room: String,
    users: Vec<String>,
    devices: Option<Vec<String>>,
    automatic: bool,
) {
    let whole_users = devices.is_none();
    background(
        siv,
        {
            let users = users.clone();
            move |api| api.claim_key_packages(&users, devices)
        },
        move |siv, claimed| {
            let packages: Result<Vec<Vec<u8>>, _> = claimed
                .key_packages
                .iter()
                .map(|package| wire::decode(&package.key_package))
                .collect();
            let without: Vec<String> = users
                .iter()
                .filter(|user| {
                    !claimed
                        .key_packages
                        .iter()
                        .any(|package| package.username.eq_ignore_ascii_case(user))
                })
                .cloned()
                .collect();
            if whole_users && let Some(session) = session_mut(siv) {
                no_device(session, &room, &without, automatic);
            }
            match packages {
                Ok(packages) if packages.is_empty() => {}
                Ok(packages) => commit_change(siv, room, Change::Add(packages), 1),
                Err(error) => error_line(
                    siv,
                    Some(&room),
                    format!("the server sent a damaged KeyPackage: {error}"),
                ),
            }
        },
    );
}

/// Says that `users`, members of the room, have no device to add to its
/// group; with `automatic`, as a notice rather than an error.
fn no_device(session: &mut Session, room: &str, users: &[String], automatic: bool) {
    if users.is_empty() {
        return;
    }
    let text = format!(
        "{} {} no device for encrypted rooms yet: they cannot read this room until a member's client adds them",
        users.join(", "),
        if users.len() == 1 { "has" } else { "have" }
    );
    if automatic {
        session.state.notice(Some(room), text);
    } else {
        session.state.error(Some(room), text);
    }
}

/// Asks for the room's group to be compared with the room's members
/// `after` from now, making the changes whose turn is at most `patience`
/// (see [`chat_e2e::turn`]). An earlier or more eager request already
/// waiting for the room stands.
pub(super) fn schedule_follow(
    session: &mut Session,
    room: &str,
    after: std::time::Duration,
    patience: usize,
) {
    schedule(session, room, after, patience, false);
}

/// [`schedule_follow`], or with `if_first` a look that only the client
/// coming first for the room (see [`chat_e2e::turn`]) takes, when it is
/// due.
fn schedule(
    session: &mut Session,
    room: &str,
    after: std::time::Duration,
    patience: usize,
    if_first: bool,
) {
    let at = Instant::now() + after;
    session
        .follow
        .entry(room.to_owned())
        .and_modify(|due| {
            due.at = due.at.min(at);
            due.patience = due.patience.min(patience);
            due.if_first &= if_first;
        })
        .or_insert(FollowDue {
            at,
            patience,
            if_first,
        });
}

/// Compares the groups due for it with their rooms' members (see
/// [`schedule_follow`]); run by the ticker.
pub(super) fn follow_when_due(siv: &mut Cursive) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    let now = Instant::now();
    let due: Vec<(String, usize, bool)> = session
        .follow
        .iter()
        .filter(|(_, due)| due.at <= now)
        .map(|(room, due)| (room.clone(), due.patience, due.if_first))
        .collect();
    for (room, _, _) in &due {
        session.follow.remove(room);
    }
    let Some(secure) = session.secure.as_ref() else {
        return;
    };
    let due: Vec<(String, usize)> = due
        .into_iter()
        .filter(|(room, _, if_first)| !if_first || first_about(secure, &session.state, room, room))
        .map(|(room, patience, _)| (room, patience))
        .collect();
    for (room, patience) in due {
        follow_room(siv, room, patience);
    }
}

/// Compares the room's group with the room's members and their devices,
/// and makes the changes whose turn (among the members online with a
/// device in the group) is at most `patience`: adds the members missing
/// and members' new devices, removes the users gone. A change whose turn
/// is later is looked at again then. Devices retired from the server are
/// removed by their user's other devices at once, and by moderators in
/// turn (the server lets no one else remove a member's device).
fn follow_room(siv: &mut Cursive, room: String, patience: usize) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    let Some(secure) = session.secure.as_ref() else {
        return;
    };
    if !secure.has_group(&room) {
        return;
    }
    if secure.pending_on(&room).is_some() {
        // This client's own commit is on its way: look once it is settled.
        schedule_follow(session, &room, TURN_WAIT, patience);
        return;
    }
    background(
        siv,
        {
            let room = room.clone();
            move |api| {
                let members = match api.members(&room) {
                    Err(error @ ApiError::Unauthorized(_)) => return Err(error),
                    // Out of the room (or it is gone): nothing to follow.
                    Err(_) => return Ok(None),
                    Ok(members) => members,
                };
                // Without the devices (a server that does not list them),
                // whole users are compared.
                let devices = match api.room_devices(&room) {
                    Err(error @ ApiError::Unauthorized(_)) => return Err(error),
                    other => other.ok(),
                };
                Ok(Some((members, devices)))
            }
        },
        move |siv, listed| {
            let Some((members, devices)) = listed else {
                return;
            };
            let Some(session) = session_mut(siv) else {
                return;
            };
            let Some(changes) = follow_changes(session, &room, &members, devices, patience) else {
                return;
            };
            if let Some(next) = changes.next {
                let wait = TURN_WAIT * u32::try_from(next - patience).unwrap_or(u32::MAX);
                schedule_follow(session, &room, wait, next);
            }
            no_device(session, &room, &changes.deviceless, true);
            if !changes.remove.is_empty() {
                remove(siv, room.clone(), changes.remove);
            }
            if !changes.retire.is_empty() {
                commit_change(siv, room.clone(), Change::RemoveDevices(changes.retire), 1);
            }
            if !changes.add.is_empty() {
                add(siv, room, changes.add, changes.add_devices, true);
            }
        },
    );
}

/// What this client does now for the room's group to follow the room.
#[derive(Debug, Default)]
struct FollowChanges {
    /// Users to remove, gone from the room.
    remove: Vec<String>,
    /// Devices to remove, retired from the server.
    retire: Vec<String>,
    /// Users to add devices of: these devices only, if listed.
    add: Vec<String>,
    add_devices: Option<Vec<String>>,
    /// Members missing from the group who have no device.
    deviceless: Vec<String>,
    /// The next turn to look again at, if a change is left for later.
    next: Option<usize>,
}

fn follow_changes(
    session: &Session,
    room: &str,
    members: &[MemberBody],
    devices: Option<Vec<DeviceBody>>,
    patience: usize,
) -> Option<FollowChanges> {
    let secure = session.secure.as_ref()?;
    let name = chat_domain::RoomName::parse(room).ok()?;
    let device = secure.device();
    let me = device.username().clone();
    let moderator = members.iter().any(|member| {
        member.username.eq_ignore_ascii_case(me.as_str())
            && matches!(member.role, RoleBody::Moderator | RoleBody::Owner)
    });
    let members: Vec<Username> = members
        .iter()
        .filter_map(|member| Username::parse(member.username.as_str()).ok())
        .collect();
    let gap = device.gap(&name, &members).ok()?;
    let registered: Option<Vec<(Username, String)>> = devices.map(|devices| {
        devices
            .into_iter()
            .filter_map(|listed| Some((Username::parse(listed.username).ok()?, listed.device_id)))
            .collect()
    });
    let devices = match &registered {
        Some(registered) => Some(device.device_gap(&name, &members, registered).ok()?),
        None => None,
    };
    if gap.is_empty() && devices.as_ref().is_none_or(|devices| devices.is_empty()) {
        return None;
    }
    let candidates = candidates(secure, &session.state, room);
    let mut changes = FollowChanges::default();
    let mut mine = |subject: &Username| {
        let place = chat_e2e::turn(subject.as_str(), &candidates, &me);
        if place > patience {
            changes.next = Some(changes.next.map_or(place, |next| next.min(place)));
        }
        place <= patience
    };
    let mut remove = Vec::new();
    for user in &gap.departed {
        if mine(user) {
            remove.push(user.as_str().to_owned());
        }
    }
    let mut add: Vec<String> = Vec::new();
    let mut add_devices: Vec<String> = Vec::new();
    let mut deviceless = Vec::new();
    let mut retire = Vec::new();
    match &devices {
        Some(devices) => {
            for (user, id) in &devices.unplaced {
                if mine(user) {
                    if !add
                        .iter()
                        .any(|known| known.eq_ignore_ascii_case(user.as_str()))
                    {
                        add.push(user.as_str().to_owned());
                    }
                    add_devices.push(id.clone());
                }
            }
            for user in &gap.missing {
                let listed = devices
                    .unplaced
                    .iter()
                    .any(|(owner, _)| owner.same_user(user));
                if !listed && mine(user) {
                    deviceless.push(user.as_str().to_owned());
                }
            }
            for (user, id) in &devices.retired {
                if user.same_user(&me) || moderator && mine(user) {
                    retire.push(id.clone());
                }
            }
        }
        None => {
            for user in &gap.missing {
                if mine(user) {
                    add.push(user.as_str().to_owned());
                }
            }
        }
    }
    changes.remove = remove;
    changes.retire = retire;
    changes.deviceless = deviceless;
    changes.add_devices = devices.is_some().then_some(add_devices);
    changes.add = add;
    Some(changes)
}

/// Makes the commit and uploads it; a stale one is cleared, the room's
/// newest items are read, and the change is made again on the new epoch.
fn commit_change(siv: &mut Cursive, room: String, change: Change, attempt: u32) {
    let Some(secure) = session_mut(siv).and_then(|s| s.secure.as_mut()) else {
        return;
    };
    let outgoing: OutgoingCommit = match secure.commit(&room, change.clone()) {
        Ok(outgoing) => outgoing,
        // Already done by someone else's commit, or nothing left to do.
        Err(E2eError::NotAMember(_) | E2eError::NothingToCommit) => return,
        // This client's previous change is still on its way (two quick
        // /invite, say): this one follows it.
        Err(E2eError::PendingCommit(_)) => {
            let sink = siv.cb_sink().clone();
            let generation = session_mut(siv).map(|session| session.generation);
            std::thread::spawn(move || {
                std::thread::sleep(PENDING_RETRY);
                let _ = sink.send(Box::new(move |siv: &mut Cursive| {
                    if session_mut(siv).map(|session| session.generation) == generation {
                        commit_change(siv, room, change, attempt);
                        render::all(siv);
                    }
                }));
            });
            return;
        }
        Err(error) => {
            error_line(
                siv,
                Some(&room),
                format!("cannot change the encrypted group: {error}"),
            );
            return;
        }
    };
    save(siv);
    let epoch = outgoing.epoch;
    let upload = outgoing.to_upload();
    background(
        siv,
        {
            let room = room.clone();
            move |api| match api.post_commit(&room, &upload) {
                Err(error @ ApiError::Unauthorized(_)) => Err(error),
                other => Ok(other),
            }
        },
        move |siv, outcome| {
            // The commit's own frame may have come first: processing it
            // merged the commit (or, if another commit won, dropped it and
            // made the change again). An answer for an epoch this device
            // has left is then old news, and must not touch a newer
            // pending commit.
            if !still_pending(siv, &room, epoch) {
                return;
            }
            match outcome {
                Ok(CommitOutcome::Accepted(accepted)) => accepted_commit(siv, &room, accepted.seq),
                Ok(CommitOutcome::Stale) => stale(siv, room, attempt),
                Err(error) => {
                    error_line(
                        siv,
                        Some(&room),
                        format!("the server refused a change to the encrypted group: {error}"),
                    );
                    settle(siv, room, None);
                }
            }
        },
    );
}

/// Whether this device's commit built on `epoch` of `room` still waits
/// for the server's answer.
fn still_pending(siv: &mut Cursive, room: &str, epoch: u64) -> bool {
    session_mut(siv)
        .and_then(|session| session.secure.as_ref())
        .is_some_and(|secure| secure.pending_on(room) == Some(epoch))
}

/// The server accepted this device's pending commit at `seq`.
fn accepted_commit(siv: &mut Cursive, room: &str, seq: i64) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    session.fresh_groups.remove(room);
    let Some(secure) = session.secure.as_mut() else {
        return;
    };
    match secure.merge(room) {
        Ok(Some(change)) => {
            secure.committed(room, seq, &change);
            let remaining = secure.members(room);
            let text = crate::secure::describe_change(session.state.me(), &change, &remaining);
            session.state.reveal(room, seq, Reading::Change(text));
        }
        Ok(None) => {}
        Err(error) => session
            .state
            .error(Some(room), format!("cannot apply the commit: {error}")),
    }
    save(siv);
}

/// The server refused this device's commit on `room` as stale: another
/// commit on the same epoch came first.
fn stale(siv: &mut Cursive, room: String, attempt: u32) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    if session.fresh_groups.remove(&room) {
        // Another member's client set the group up first: this device
        // forgets its own and waits for its Welcome.
        if let Some(secure) = session.secure.as_mut()
            && let Ok(name) = chat_domain::RoomName::parse(&room)
        {
            let _ = secure.device_mut().forget_room(&name);
        }
        session.state.notice(
            Some(&room),
            "another member's client set up this room's encryption; waiting to be added",
        );
        save(siv);
        fetch_welcomes(siv);
        return;
    }
    if attempt >= COMMIT_ATTEMPTS {
        error_line(
            siv,
            Some(&room),
            "the encrypted group kept changing under this client's commit; try again".to_owned(),
        );
        settle(siv, room, None);
        return;
    }
    settle(siv, room, Some(attempt + 1));
}

/// Reads what the room did since this device's pending commit was made
/// (the commit that won, or this one if it was accepted after all), then
/// drops the commit if it is still pending; with `again`, the change that
/// did not go through is made again on the new epoch (that attempt).
fn settle(siv: &mut Cursive, room: String, again: Option<u32>) {
    background(
        siv,
        {
            let room = room.clone();
            move |api| match api.messages(&room, None) {
                Err(error @ ApiError::Unauthorized(_)) => Err(error),
                other => Ok(other.ok()),
            }
        },
        move |siv, page| {
            let Some(session) = session_mut(siv) else {
                return;
            };
            let mut lost = match page {
                Some(page) => apply_page(session, page),
                None => Vec::new(),
            };
            if let Some(secure) = session.secure.as_mut()
                && secure.pending_on(&room).is_some()
            {
                match secure.clear_pending(&room) {
                    Ok(change) => lost.extend(change),
                    Err(error) => session.state.error(
                        Some(&room),
                        format!("cannot drop the refused commit: {error}"),
                    ),
                }
            }
            save(siv);
            if let Some(attempt) = again {
                for change in lost {
                    commit_change(siv, room.clone(), change, attempt);
                }
            }
        },
    );
}

/// `/verify <user>`: the user's devices as the server lists them, and the
/// safety number of the two users over the keys of the groups they share.
pub(super) fn verify(siv: &mut Cursive, user: String) {
    let Some(session) = session_mut(siv) else {
        return;
    };
    if session.secure.is_none() {
        session.state.error(
            None,
            "no device passphrase was given at login: there is no device to verify with",
        );
        return;
    }
    background(
        siv,
        {
            let user = user.clone();
            move |api| api.devices(&user)
        },
        move |siv, devices| {
            let Some(session) = session_mut(siv) else {
                return;
            };
            let Some(secure) = session.secure.as_ref() else {
                return;
            };
            let state = &mut session.state;
            // Long keys and numbers go on two lines each, so they fit
            // beside the other panels.
            let mut block = |title: String, long: &str| {
                state.notice(None, title);
                for half in halves(long) {
                    state.notice(None, format!("    {half}"));
                }
            };
            block(
                format!(
                    "{LOCK} devices of {user} on the server ({}):",
                    devices.len()
                ),
                "",
            );
            for device in &devices {
                block(
                    format!("  since {}:", device.created_at.date_naive()),
                    &device.fingerprint,
                );
            }
            block(
                "  your device:".to_owned(),
                &secure.device().fingerprint().to_string(),
            );
            match secure.safety_number(&user) {
                Some((members, number)) => {
                    for member in members {
                        let fingerprint = member.fingerprint().to_string();
                        // A key the server does not list is worth a look.
                        let listed = devices.iter().any(|d| d.fingerprint == fingerprint);
                        let mark = if listed { "" } else { " (not listed by the server)" };
                        block(format!("  {user}'s key in your groups{mark}:"), &fingerprint);
                    }
                    block(
                        format!("safety number of you and {user}, to compare with them:"),
                        &number.to_string(),
                    );
                }
                None => state.notice(
                    None,
                    format!(
                        "no encrypted group holds both you and {user} yet: the safety number needs their keys from one"
                    ),
                ),
            }
        },
    );
}

/// A fingerprint or safety number cut in two lines at the space nearest
/// its middle; nothing for an empty text.
fn halves(text: &str) -> Vec<&str> {
    let groups = text.split(' ').count();
    if text.is_empty() {
        return Vec::new();
    }
    if groups < 2 {
        return vec![text];
    }
    let cut = text
        .match_indices(' ')
        .nth(groups / 2 - 1)
        .map_or(text.len(), |(at, _)| at);
    let (first, second) = text.split_at(cut);
    vec![first, second.trim_start()]
}

#[cfg(test)]
mod tests {
    use super::halves;

    #[test]
    fn long_keys_and_numbers_are_cut_in_two_lines_between_groups() {
        assert_eq!(halves("1111 2222 3333 4444"), ["1111 2222", "3333 4444"]);
        assert_eq!(halves("12345"), ["12345"]);
        assert!(halves("").is_empty());
    }
}
