//! Everything the client knows, as a plain struct with no terminal and no
//! network: the rooms, their messages by seq (with edits, deletions,
//! replies and reactions), the sends still waiting for an ack, unread
//! counts and read positions, who is online and typing, the message being
//! edited, the connection status.
//!
//! The UI applies server frames and user actions to it and draws what it
//! holds; the WebSocket thread never touches it. That keeps every rule
//! (ordering, de-duplication, what to resume after a reconnect) testable
//! without a terminal.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chat_domain::{DomainError, Emoji, MessageBody, RoomName};
use chat_protocol::mls::MlsKindBody;
use chat_protocol::rest::{
    MemberBody, MemberChangeBody, MemberEventBody, MessagePage, ReplyExcerpt, RoomBody,
    RoomKindBody, RoomMessage, SearchBody, SearchParams,
};
use chat_protocol::ws::{ClientFrame, ErrorCode, LeftReason, ServerFrame};
use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::describe::{self, clock};
use crate::reactions::Reactions;
use crate::search::{self, Search, SearchError};
use crate::secure::Reading;

/// How long "x is typing" stays up after the last typing frame.
pub(crate) const TYPING_SHOWN_FOR: Duration = Duration::from_secs(5);

/// How long something new stays on screen before the room is marked read:
/// a burst of messages costs one `read` frame, not one each.
pub(crate) const READ_MARK_AFTER: Duration = Duration::from_secs(1);

/// The most members a room may have for "seen by" to show under its last
/// message. Well under the server's default limit for read receipts (100),
/// so the positions stay current; a larger room would make a long line.
pub(crate) const SEEN_BY_MAX_MEMBERS: usize = 10;

/// A stored item of a room's sequence, as the server numbered it: a
/// message, or a membership change (which has a seq like a message, so
/// that resuming after it finds no gap).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) seq: i64,
    /// The sender of a message; the member concerned by a change.
    pub(crate) username: String,
    /// `None` when the server could not decrypt a message, and for a
    /// membership change.
    pub(crate) content: Option<String>,
    pub(crate) timestamp: DateTime<Utc>,
    /// Set for a membership change.
    pub(crate) event: Option<MemberEventBody>,
    /// The text was edited since it was sent.
    pub(crate) edited: bool,
    /// The message was deleted: a tombstone.
    pub(crate) deleted: bool,
    /// The seq of the message this one answers.
    pub(crate) reply_to: Option<i64>,
    /// The message answered, as the history page that brought this one
    /// described it (a live reply has none: the original is looked up).
    pub(crate) reply: Option<ReplyExcerpt>,
    pub(crate) reactions: Reactions,
    /// Set for an item of an end-to-end encrypted room: what its MLS
    /// content is. The server's `content` (ciphertext) is never kept.
    pub(crate) mls: Option<MlsKindBody>,
    /// For a commit: the change to the room's group, in words.
    pub(crate) group_change: Option<String>,
}

impl Line {
    /// A history item as a line; `None` for a change to an earlier message,
    /// which the page already shows in its current state. The page's
    /// reaction counts reflect every change up to `horizon`.
    fn from_history(message: RoomMessage, horizon: i64) -> Option<Line> {
        if message.change.is_some() {
            return None;
        }
        let mut reactions = Reactions::default();
        reactions.set_counted(message.reactions, horizon);
        // Ciphertext is never shown: the client reveals what it reads. The
        // server's excerpt of the message answered is ciphertext too.
        let content = message.content.filter(|_| message.mls.is_none());
        let mut reply = message.reply;
        if message.mls.is_some()
            && let Some(reply) = reply.as_mut()
        {
            reply.excerpt = None;
        }
        Some(Line {
            seq: message.seq,
            username: message.username,
            content,
            timestamp: message.created_at,
            event: message.event,
            edited: message.edited_at.is_some(),
            deleted: message.deleted,
            reply_to: message.reply_to,
            reply,
            reactions,
            mls: message.mls,
            group_change: None,
        })
    }

    /// Whether this is a commit of an encrypted room's group.
    pub(crate) fn is_commit(&self) -> bool {
        self.mls == Some(MlsKindBody::Commit)
    }

    /// Whether this is a message (not a membership change) that is still
    /// there (not deleted).
    fn is_live_message(&self) -> bool {
        self.event.is_none() && !self.is_commit() && !self.deleted
    }

    /// The membership change in words, for a change.
    pub(crate) fn event_text(&self) -> Option<String> {
        self.event
            .as_ref()
            .map(|event| describe::member_event(&self.username, event))
    }
}

/// What a reply shows of the message it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quote<'a> {
    /// Its author and text (`None` when it cannot be decrypted).
    Message {
        username: &'a str,
        text: Option<&'a str>,
    },
    /// It was deleted.
    Deleted,
    /// Neither it nor a description of it is loaded: only its seq.
    Unknown(i64),
}

/// A notice for people (joins, errors, command output), shown after the
/// message it arrived after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    /// The highest seq on screen when it arrived; it is drawn after it.
    pub(crate) after_seq: i64,
    pub(crate) text: String,
    pub(crate) is_error: bool,
}

/// A message sent but not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) client_id: String,
    pub(crate) room: String,
    pub(crate) content: String,
    /// The seq of the message it answers.
    pub(crate) reply_to: Option<i64>,
    /// In an encrypted room: the message as sent, MLS ciphertext in
    /// base64. A resend sends the same bytes.
    pub(crate) sealed: Option<String>,
    pub(crate) sent_at: DateTime<Utc>,
    /// Why the last attempt did not go through, when the server said it
    /// should be tried again later; it is re-sent on the next connection.
    pub(crate) retry_reason: Option<String>,
}

impl Pending {
    fn frame(&self) -> ClientFrame {
        if let Some(sealed) = &self.sealed {
            return ClientFrame::Message {
                mls: Some(MlsKindBody::Application),
                content: sealed.clone(),
                room: Some(self.room.clone()),
                client_id: Some(self.client_id.clone()),
                reply_to: self.reply_to,
            };
        }
        ClientFrame::Message {
            mls: None,
            content: self.content.clone(),
            room: Some(self.room.clone()),
            client_id: Some(self.client_id.clone()),
            reply_to: self.reply_to,
        }
    }
}

/// One room the user is in.
#[derive(Debug, Clone)]
pub(crate) struct Room {
    pub(crate) name: String,
    pub(crate) kind: RoomKindBody,
    pub(crate) lines: BTreeMap<i64, Line>,
    pub(crate) notices: Vec<Notice>,
    pub(crate) unread: u64,
    pub(crate) online: BTreeSet<String>,
    /// The room's topic, as the room list or the last `topic` frame said.
    pub(crate) topic: Option<String>,
    /// End-to-end encrypted: messages go out as MLS ciphertext and cannot
    /// be edited.
    pub(crate) encrypted: bool,
    typing: BTreeMap<String, Instant>,
    /// Whether the server has messages older than the oldest loaded one.
    pub(crate) has_older: bool,
    /// Every seq held: the lines' and those of the changes to earlier
    /// messages (edits, deletions, reactions), which are items of the
    /// sequence too, so that resuming after one finds no gap.
    held: BTreeSet<i64>,
    /// The newest seq this user has read, as the server knows it.
    read_mark: i64,
    /// Since when the room on screen has shown something newer than
    /// `read_mark`.
    unread_shown_since: Option<Instant>,
    /// How far each member has read, once the members are loaded; `None`
    /// before. Kept current by `read` frames and membership changes.
    read_positions: Option<BTreeMap<String, i64>>,
    /// Reactions to messages not held yet, by the message's seq: a live
    /// reaction may overtake the replay of its message after a reconnect,
    /// and is not sent again with it.
    early_reactions: BTreeMap<i64, Vec<EarlyReaction>>,
}

/// A `reaction` frame kept until its message arrives.
#[derive(Debug, Clone)]
struct EarlyReaction {
    seq: i64,
    emoji: String,
    username: String,
    added: bool,
}

impl Room {
    fn new(name: &str, kind: RoomKindBody) -> Room {
        Room {
            name: name.to_owned(),
            kind,
            lines: BTreeMap::new(),
            notices: Vec::new(),
            unread: 0,
            online: BTreeSet::new(),
            topic: None,
            encrypted: false,
            typing: BTreeMap::new(),
            has_older: false,
            held: BTreeSet::new(),
            read_mark: 0,
            unread_shown_since: None,
            read_positions: None,
            early_reactions: BTreeMap::new(),
        }
    }

    fn newest_seq(&self) -> i64 {
        self.held.last().copied().unwrap_or(0)
    }

    /// The seq to resume from: the end of the unbroken run of messages
    /// that starts at the oldest one loaded. A live message that arrived
    /// ahead of a gap (while a resume was on its way) does not hide the gap.
    pub(crate) fn resume_seq(&self) -> i64 {
        let mut seqs = self.held.iter().copied();
        let Some(mut end) = seqs.next() else {
            return 0;
        };
        for seq in seqs {
            if seq != end + 1 {
                break;
            }
            end = seq;
        }
        end
    }

    /// Whether `seq` belongs to the run of history held for resuming; a
    /// page shown around a search result far back is not (see
    /// [`ChatState::show_found`]), and the screen marks the gap after it.
    pub(crate) fn holds(&self, seq: i64) -> bool {
        self.held.contains(&seq)
    }

    /// The oldest seq loaded, the cursor for loading older history.
    pub(crate) fn oldest_seq(&self) -> Option<i64> {
        self.held.first().copied()
    }

    /// What `line` answers, if it is a reply: the original as this client
    /// holds it (so an edit or a deletion since shows), else as the history
    /// page described it.
    pub(crate) fn quote<'a>(&'a self, line: &'a Line) -> Option<Quote<'a>> {
        let seq = line.reply_to?;
        let quote = match (self.lines.get(&seq), &line.reply) {
            (Some(original), _) if original.event.is_none() => {
                if original.deleted {
                    Quote::Deleted
                } else {
                    Quote::Message {
                        username: &original.username,
                        text: original.content.as_deref(),
                    }
                }
            }
            (_, Some(reply)) if reply.deleted => Quote::Deleted,
            (_, Some(reply)) => Quote::Message {
                username: &reply.username,
                text: reply.excerpt.as_deref(),
            },
            _ => Quote::Unknown(seq),
        };
        Some(quote)
    }

    /// Whether the members' read positions are known and the room is small
    /// enough for "seen by".
    pub(crate) fn shows_seen_by(&self) -> bool {
        self.read_positions
            .as_ref()
            .is_some_and(|positions| positions.len() <= SEEN_BY_MAX_MEMBERS)
    }

    /// The newest message (not a membership change) and who, besides its
    /// author and `me`, has read it: shown in small rooms as "seen by".
    pub(crate) fn seen_by(&self, me: &str) -> Option<(i64, Vec<&str>)> {
        if !self.shows_seen_by() {
            return None;
        }
        let positions = self.read_positions.as_ref()?;
        let last = self
            .lines
            .values()
            .rev()
            .find(|line| line.event.is_none())?;
        let readers: Vec<&str> = positions
            .iter()
            .filter(|(name, seq)| {
                **seq >= last.seq
                    && !name.eq_ignore_ascii_case(me)
                    && !name.eq_ignore_ascii_case(&last.username)
            })
            .map(|(name, _)| name.as_str())
            .collect();
        (!readers.is_empty()).then_some((last.seq, readers))
    }

    /// A member read up to `seq`; positions never move back.
    fn read_up_to(&mut self, username: &str, seq: i64) {
        if let Some(positions) = &mut self.read_positions {
            let position = positions.entry(username.to_owned()).or_insert(0);
            *position = (*position).max(seq);
        }
    }

    /// Keeps the members list's read positions in step with a membership
    /// change: a newcomer has read nothing, someone removed is forgotten.
    fn track_member(&mut self, username: &str, change: MemberChangeBody) {
        let Some(positions) = &mut self.read_positions else {
            return;
        };
        match change {
            MemberChangeBody::Joined | MemberChangeBody::Added => {
                positions.entry(username.to_owned()).or_insert(0);
            }
            MemberChangeBody::Left | MemberChangeBody::Kicked | MemberChangeBody::Banned => {
                positions.retain(|name, _| !name.eq_ignore_ascii_case(username));
            }
            _ => {}
        }
    }

    /// How many messages of others come after `read_mark`, when the lines
    /// held reach back that far.
    fn unread_held(&self, me: &str) -> Option<u64> {
        let reaches_back = !self.has_older
            || self
                .oldest_seq()
                .is_some_and(|oldest| oldest <= self.read_mark + 1);
        reaches_back.then(|| {
            self.lines
                .range(self.read_mark + 1..)
                .filter(|(_, line)| line.event.is_none() && !line.username.eq_ignore_ascii_case(me))
                .count() as u64
        })
    }

    fn notice(&mut self, text: impl Into<String>, is_error: bool) {
        let after_seq = self.newest_seq();
        self.notices.push(Notice {
            after_seq,
            text: text.into(),
            is_error,
        });
    }

    /// Stores a message or a change unless its seq is already there; says
    /// whether it was new.
    fn insert(&mut self, mut line: Line) -> bool {
        if self.lines.contains_key(&line.seq) {
            return false;
        }
        if line.event.is_none() {
            self.typing.remove(&line.username);
        }
        if line.mls.is_some() {
            self.encrypted = true;
        }
        for early in self.early_reactions.remove(&line.seq).unwrap_or_default() {
            line.reactions
                .apply(early.seq, &early.emoji, &early.username, early.added);
        }
        self.held.insert(line.seq);
        self.lines.insert(line.seq, line);
        true
    }
}

/// The state of the WebSocket, for the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Connection {
    Connecting,
    Connected,
    Reconnecting {
        reason: String,
        retry_in: Duration,
        attempt: u32,
    },
}

/// Makes `client_id`s unique for this user: a prefix from the start time
/// and process id, then a counter.
#[derive(Debug, Clone)]
struct ClientIds {
    prefix: String,
    next: u64,
}

impl ClientIds {
    fn new() -> ClientIds {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        ClientIds {
            prefix: format!("tui-{nanos:x}-{:x}", std::process::id()),
            next: 1,
        }
    }

    fn next(&mut self) -> String {
        let id = format!("{}-{}", self.prefix, self.next);
        self.next += 1;
        id
    }
}

/// The message being edited from the input line (Up on an empty line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Editing {
    pub(crate) room: String,
    pub(crate) seq: i64,
}

/// Why a change to a message is refused before it is sent. The text is
/// shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum ChangeError {
    #[error("{0}")]
    Invalid(#[from] DomainError),
    #[error("#{0} is not your message: only its author may edit it")]
    NotMine(i64),
    #[error("#{0} was deleted")]
    Deleted(i64),
    #[error("#{0} is not a message")]
    NotAMessage(i64),
    #[error("you have no message to edit in this room")]
    NothingToEdit,
    #[error("messages of an end-to-end encrypted room cannot be edited")]
    Encrypted,
    #[error("{0}")]
    Sealing(String),
}

/// Everything the client knows about the logged-in session.
#[derive(Debug, Clone)]
pub(crate) struct ChatState {
    me: String,
    rooms: BTreeMap<String, Room>,
    active: String,
    pending: Vec<Pending>,
    connection: Connection,
    client_ids: ClientIds,
    /// Rooms whose next `who` answer was asked for with `/who`, and is
    /// therefore printed.
    who_requested: BTreeSet<String>,
    editing: Option<Editing>,
    /// The last search and its results loaded so far.
    search: Option<Search>,
    /// How many searches were started, which numbers the next one.
    searches: u64,
    /// The message `/goto` showed: its room and seq, marked on screen.
    found: Option<(String, i64)>,
}

impl ChatState {
    /// A fresh session for `me`, showing `general`.
    pub(crate) fn new(me: &str) -> ChatState {
        let general = RoomName::GENERAL.to_owned();
        let mut rooms = BTreeMap::new();
        rooms.insert(general.clone(), Room::new(&general, RoomKindBody::Public));
        ChatState {
            me: me.to_owned(),
            rooms,
            active: general,
            pending: Vec::new(),
            connection: Connection::Connecting,
            client_ids: ClientIds::new(),
            who_requested: BTreeSet::new(),
            editing: None,
            search: None,
            searches: 0,
            found: None,
        }
    }

    pub(crate) fn me(&self) -> &str {
        &self.me
    }

    pub(crate) fn active(&self) -> &str {
        &self.active
    }

    pub(crate) fn active_room(&self) -> Option<&Room> {
        self.rooms.get(&self.active)
    }

    pub(crate) fn room(&self, name: &str) -> Option<&Room> {
        self.rooms.get(name)
    }

    /// The rooms in the order of the room list: `general`, then public
    /// rooms, then direct conversations, each by name.
    pub(crate) fn rooms(&self) -> Vec<&Room> {
        let mut rooms: Vec<&Room> = self.rooms.values().collect();
        rooms.sort_by_key(|room| {
            (
                room.name != RoomName::GENERAL,
                room.kind == RoomKindBody::Direct,
                room.name.clone(),
            )
        });
        rooms
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The sends of a room still waiting for their ack, oldest first.
    pub(crate) fn pending_in(&self, room: &str) -> impl Iterator<Item = &Pending> {
        self.pending.iter().filter(move |p| p.room == room)
    }

    /// How a room is called on screen: `@bob` for a direct conversation
    /// with bob, the name otherwise.
    pub(crate) fn display_name(&self, room: &str) -> String {
        let Some(members) = room.strip_prefix("dm:") else {
            return room.to_owned();
        };
        let me = self.me.to_ascii_lowercase();
        let other = members
            .split(':')
            .find(|member| *member != me)
            .unwrap_or(members);
        format!("@{other}")
    }

    /// Adds a room the user is a member of (from the room list, `/join`,
    /// `/dm`, or a `joined` frame); an existing room is kept as it is.
    pub(crate) fn add_room(&mut self, name: &str, kind: RoomKindBody) {
        self.rooms
            .entry(name.to_owned())
            .or_insert_with(|| Room::new(name, kind));
    }

    /// Marks a room end-to-end encrypted (the flag never goes back).
    pub(crate) fn set_encrypted(&mut self, room: &str, encrypted: bool) {
        if let Some(entry) = self.rooms.get_mut(room) {
            entry.encrypted |= encrypted;
        }
    }

    /// Whether a room is end-to-end encrypted, as far as this client knows.
    pub(crate) fn is_encrypted(&self, room: &str) -> bool {
        self.rooms.get(room).is_some_and(|room| room.encrypted)
    }

    /// Shows what the MLS item `seq` of `room` reads as: a message's text
    /// (or the placeholder of one that cannot be read), a commit's change.
    pub(crate) fn reveal(&mut self, room: &str, seq: i64, reading: Reading) {
        let Some(line) = self.rooms.get_mut(room).and_then(|r| r.lines.get_mut(&seq)) else {
            return;
        };
        if line.mls.is_none() || line.deleted {
            return;
        }
        match reading {
            Reading::Text(text) => line.content = Some(text),
            Reading::Change(change) => line.group_change = Some(change),
            Reading::Unreadable => line.content = None,
        }
    }

    /// Adds the rooms of the REST room list that the user is a member of,
    /// with how far the user has read each and the server's unread count
    /// (see [`ChatState::count_unread`]).
    pub(crate) fn add_member_rooms(&mut self, rooms: &[RoomBody]) {
        for room in rooms.iter().filter(|room| room.member) {
            self.add_room(&room.name, room.kind);
            self.set_topic(&room.name, room.topic.clone());
            self.set_encrypted(&room.name, room.encrypted);
            if let Some(entry) = self.rooms.get_mut(&room.name) {
                entry.read_mark = entry.read_mark.max(room.last_read_seq);
                entry.unread = u64::try_from(room.unread).unwrap_or(0);
            }
        }
    }

    /// Counts the unread messages of every room but the one on screen from
    /// the history loaded, where it reaches back to the user's read mark:
    /// the server's count includes membership changes and changes to
    /// messages, which the client does not count. Where the history does
    /// not reach that far, the server's count stays.
    pub(crate) fn count_unread(&mut self) {
        for room in self.rooms.values_mut() {
            if room.name == self.active {
                room.unread = 0;
            } else if let Some(unread) = room.unread_held(&self.me) {
                room.unread = unread;
            }
        }
    }

    /// Keeps the members of a room with how far each has read, for "seen
    /// by".
    pub(crate) fn set_members(&mut self, room: &str, members: &[MemberBody]) {
        let Some(entry) = self.rooms.get_mut(room) else {
            return;
        };
        let known = entry.read_positions.take().unwrap_or_default();
        let positions = members
            .iter()
            .map(|member| {
                let seen = known.get(&member.username).copied().unwrap_or(0);
                (member.username.clone(), member.last_read_seq.max(seen))
            })
            .collect();
        entry.read_positions = Some(positions);
    }

    /// Whether the members of a room have been loaded.
    pub(crate) fn has_members(&self, room: &str) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|room| room.read_positions.is_some())
    }

    /// Keeps a room's topic (from the server's room list or details).
    pub(crate) fn set_topic(&mut self, room: &str, topic: Option<String>) {
        if let Some(entry) = self.rooms.get_mut(room) {
            entry.topic = topic;
        }
    }

    /// Forgets a room after leaving it; the screen moves to `general`
    /// (or the first room left) if it was showing it.
    pub(crate) fn remove_room(&mut self, name: &str) {
        self.rooms.remove(name);
        self.pending.retain(|p| p.room != name);
        if self.active == name {
            let next = if self.rooms.contains_key(RoomName::GENERAL) {
                Some(RoomName::GENERAL.to_owned())
            } else {
                self.rooms.keys().next().cloned()
            };
            match next {
                Some(next) => self.active = next,
                None => {
                    let general = RoomName::GENERAL.to_owned();
                    self.rooms
                        .insert(general.clone(), Room::new(&general, RoomKindBody::Public));
                    self.active = general;
                }
            }
        }
    }

    /// Shows a room and clears its unread count; an edit under way in
    /// another room is dropped. Says whether the room is known.
    pub(crate) fn switch_to(&mut self, name: &str) -> bool {
        let Some(room) = self.rooms.get_mut(name) else {
            return false;
        };
        room.unread = 0;
        self.active = name.to_owned();
        if self
            .editing
            .as_ref()
            .is_some_and(|editing| editing.room != name)
        {
            self.editing = None;
        }
        true
    }

    /// Shows the next (`step` 1) or previous (`step` -1) room of the list.
    pub(crate) fn cycle(&mut self, step: isize) {
        let names: Vec<String> = self.rooms().iter().map(|room| room.name.clone()).collect();
        let Some(position) = names.iter().position(|name| *name == self.active) else {
            return;
        };
        let count = names.len() as isize;
        let next = (position as isize + step).rem_euclid(count) as usize;
        let name = names[next].clone();
        self.switch_to(&name);
    }

    /// Adds a page of history. Messages already there are kept, with
    /// the page's reaction counts; history never counts as unread.
    /// `older_exists` is the page's `has_more` when it was read backwards
    /// (newest page or `before`).
    ///
    /// The page was read after every frame this client holds had been
    /// sent and reflects at least its own items, so its reaction counts
    /// stand for every change up to the newer of the two.
    pub(crate) fn apply_history(
        &mut self,
        room: &str,
        messages: Vec<RoomMessage>,
        older_exists: bool,
    ) {
        let kind = kind_of(room);
        let entry = self
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| Room::new(room, kind));
        let page_newest = messages.iter().map(|message| message.seq).max();
        let horizon = page_newest.unwrap_or(0).max(entry.newest_seq());
        for message in messages {
            if let Some(client_id) = &message.client_id {
                self.pending.retain(|p| &p.client_id != client_id);
            }
            let seq = message.seq;
            let Some(line) = Line::from_history(message, horizon) else {
                entry.held.insert(seq);
                continue;
            };
            match entry.lines.get_mut(&seq) {
                Some(held) => {
                    held.reactions = line.reactions;
                    // A line shown around a search result becomes part of
                    // the run once a page of history reaches it.
                    entry.held.insert(seq);
                }
                None => {
                    entry.insert(line);
                }
            }
        }
        entry.has_older = older_exists;
    }

    /// Starts a search for `words`, in the room on screen when `this_room`,
    /// else in every room of the user's; the results of an earlier one are
    /// forgotten. Returns the search's id and the query of its first page.
    pub(crate) fn start_search(&mut self, words: &str, this_room: bool) -> (u64, SearchParams) {
        self.searches += 1;
        let room = this_room.then(|| self.active.clone());
        let search = Search::new(self.searches, words, room);
        let params = search.first_page();
        self.search = Some(search);
        (self.searches, params)
    }

    /// The query of the next page of the last search (`/search more`).
    pub(crate) fn search_more(&mut self) -> Result<(u64, SearchParams), SearchError> {
        let search = self.search.as_mut().ok_or(SearchError::NoSearch)?;
        let params = search.next_page()?;
        Ok((search.id(), params))
    }

    /// Lists a page of results of search `id` in the room on screen, each
    /// numbered for `/goto`; a page of a search since replaced is dropped.
    pub(crate) fn apply_search_page(&mut self, id: u64, page: SearchBody) {
        let Some(search) = self.search.as_mut().filter(|search| search.id() == id) else {
            return;
        };
        let first = search.add_page(page);
        let search = search.clone();
        let words = search.words();
        let found = &search.results()[first - 1..];
        let place = match search.room() {
            Some(room) => format!("in {}", self.display_name(room)),
            None => "in your rooms".to_owned(),
        };
        if first == 1 {
            if found.is_empty() && !search.has_more() {
                self.notice(None, format!("no messages found for \"{words}\" {place}"));
                return;
            }
            self.notice(
                None,
                format!("messages with \"{words}\" {place}, newest first:"),
            );
        }
        for (offset, result) in found.iter().enumerate() {
            let room = self.display_name(&result.room);
            let line =
                search::result_line(first + offset, &room, &clock(&result.created_at), result);
            self.notice(None, line);
        }
        let count = search.results().len();
        let end = if search.has_more() {
            "/search more for older ones"
        } else {
            "no older ones"
        };
        let goto = match count {
            0 => String::new(),
            1 => "/goto 1 shows it in its room; ".to_owned(),
            _ => format!("/goto <1-{count}> shows one in its room; "),
        };
        self.notice(None, format!("{goto}{end}"));
    }

    /// A page of search `id` could not be loaded: says why. A search whose
    /// first page failed is forgotten; otherwise `/search more` tries again.
    pub(crate) fn search_failed(&mut self, id: u64, reason: &str) {
        let Some(search) = self.search.as_mut().filter(|search| search.id() == id) else {
            return;
        };
        if search.results().is_empty() {
            self.search = None;
        } else {
            search.page_failed();
        }
        self.error(None, format!("search failed: {reason}"));
    }

    /// The room and seq of result `number` of the last search (`/goto`).
    pub(crate) fn search_result(&self, number: usize) -> Result<(String, i64), SearchError> {
        let search = self.search.as_ref().ok_or(SearchError::NoSearch)?;
        let found = search.result(number)?;
        Ok((found.room.clone(), found.seq))
    }

    /// Shows message `seq` of `room` in its context: `page` is the history
    /// page that ends with it (`before = seq + 1`). The room comes on
    /// screen with the message marked.
    ///
    /// A page that reaches the history held (or extends it) joins it. A
    /// page further back is shown but kept out of the run held for
    /// resuming: the seqs between are not loaded, and resuming from the
    /// end of that page would have the server replay all of them.
    pub(crate) fn show_found(&mut self, room: &str, seq: i64, page: MessagePage) {
        let kind = kind_of(room);
        let entry = self
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| Room::new(room, kind));
        let page_oldest = page.messages.iter().map(|message| message.seq).min();
        let page_newest = page.messages.iter().map(|message| message.seq).max();
        match (page_newest, entry.oldest_seq()) {
            (Some(newest), Some(oldest)) if newest.saturating_add(1) < oldest => {
                let horizon = entry.newest_seq();
                for message in page.messages {
                    if let Some(line) = Line::from_history(message, horizon) {
                        entry.lines.entry(line.seq).or_insert(line);
                    }
                }
            }
            (_, oldest) => {
                // Whether older history exists beyond the page is the
                // page's to say only if it reaches further back than what
                // was held.
                let older_exists = match (page_oldest, oldest) {
                    (Some(page_oldest), Some(oldest)) if page_oldest >= oldest => entry.has_older,
                    (None, _) => entry.has_older,
                    _ => page.has_more,
                };
                self.apply_history(room, page.messages, older_exists);
            }
        }
        self.found = Some((room.to_owned(), seq));
        self.switch_to(room);
    }

    /// The message `/goto` showed last, as its room and seq.
    pub(crate) fn found(&self) -> Option<(&str, i64)> {
        self.found.as_ref().map(|(room, seq)| (room.as_str(), *seq))
    }

    /// Adds a notice to a room (the room on screen if it is unknown).
    pub(crate) fn notice(&mut self, room: Option<&str>, text: impl Into<String>) {
        self.room_for_notice(room).notice(text, false);
    }

    /// Adds an error notice to a room (the room on screen if unknown).
    pub(crate) fn error(&mut self, room: Option<&str>, text: impl Into<String>) {
        self.room_for_notice(room).notice(text, true);
    }

    fn room_for_notice(&mut self, room: Option<&str>) -> &mut Room {
        let name = room
            .filter(|name| self.rooms.contains_key(*name))
            .unwrap_or(&self.active)
            .to_owned();
        self.rooms
            .entry(name.clone())
            .or_insert_with(|| Room::new(&name, kind_of(&name)))
    }

    /// Prepares a message typed into the room on screen: checks it the way
    /// the server will, gives it a fresh `client_id`, and keeps it pending
    /// until its ack. The frame returned is what to send.
    pub(crate) fn compose(&mut self, content: &str) -> Result<ClientFrame, DomainError> {
        self.queue(content, None)
    }

    /// Prepares an answer to message `seq` of the room on screen, like
    /// [`ChatState::compose`].
    pub(crate) fn compose_reply(
        &mut self,
        seq: i64,
        content: &str,
    ) -> Result<ClientFrame, ChangeError> {
        if let Some(line) = self.active_line(seq)
            && line.event.is_some()
        {
            return Err(ChangeError::NotAMessage(seq));
        }
        Ok(self.queue(content, Some(seq))?)
    }

    /// Prepares a message (an answer to `reply_to` if given) for the
    /// encrypted room on screen, like [`ChatState::compose`]: `seal`
    /// encrypts the checked text of the message `client_id`.
    pub(crate) fn compose_sealed(
        &mut self,
        content: &str,
        reply_to: Option<i64>,
        seal: impl FnOnce(&str, &str, &str) -> Result<String, String>,
    ) -> Result<ClientFrame, ChangeError> {
        if let Some(seq) = reply_to
            && let Some(line) = self.active_line(seq)
            && (line.event.is_some() || line.is_commit())
        {
            return Err(ChangeError::NotAMessage(seq));
        }
        let body = MessageBody::parse(content)?.into_string();
        let client_id = self.client_ids.next();
        let sealed = seal(&self.active, &client_id, &body).map_err(ChangeError::Sealing)?;
        let pending = Pending {
            client_id,
            room: self.active.clone(),
            content: body,
            reply_to,
            sealed: Some(sealed),
            sent_at: Utc::now(),
            retry_reason: None,
        };
        let frame = pending.frame();
        self.pending.push(pending);
        Ok(frame)
    }

    fn queue(&mut self, content: &str, reply_to: Option<i64>) -> Result<ClientFrame, DomainError> {
        let body = MessageBody::parse(content)?;
        let pending = Pending {
            client_id: self.client_ids.next(),
            room: self.active.clone(),
            content: body.into_string(),
            reply_to,
            sealed: None,
            sent_at: Utc::now(),
            retry_reason: None,
        };
        let frame = pending.frame();
        self.pending.push(pending);
        Ok(frame)
    }

    /// The line at `seq` of the room on screen, if this client holds it.
    fn active_line(&self, seq: i64) -> Option<&Line> {
        self.active_room()?.lines.get(&seq)
    }

    /// Checks that message `seq` of the room on screen may be changed, as
    /// far as this client knows it: a message held must be a message and
    /// not deleted; one not held is left to the server to judge.
    fn changeable(&self, seq: i64) -> Result<Option<&Line>, ChangeError> {
        match self.active_line(seq) {
            Some(line) if line.event.is_some() || line.is_commit() => {
                Err(ChangeError::NotAMessage(seq))
            }
            Some(line) if line.deleted => Err(ChangeError::Deleted(seq)),
            line => Ok(line),
        }
    }

    /// The frame that replaces the text of message `seq` of the room on
    /// screen, which must be this user's.
    pub(crate) fn edit(&mut self, seq: i64, content: &str) -> Result<ClientFrame, ChangeError> {
        if self.is_encrypted(&self.active) {
            return Err(ChangeError::Encrypted);
        }
        let body = MessageBody::parse(content)?;
        if let Some(line) = self.changeable(seq)?
            && !line.username.eq_ignore_ascii_case(&self.me)
        {
            return Err(ChangeError::NotMine(seq));
        }
        if self
            .editing
            .as_ref()
            .is_some_and(|editing| editing.room == self.active && editing.seq == seq)
        {
            self.editing = None;
        }
        Ok(ClientFrame::Edit {
            room: self.active.clone(),
            seq,
            content: body.into_string(),
            client_id: Some(self.client_ids.next()),
        })
    }

    /// The frame that deletes message `seq` of the room on screen (the
    /// server decides whether this user may).
    pub(crate) fn delete(&mut self, seq: i64) -> Result<ClientFrame, ChangeError> {
        self.changeable(seq)?;
        Ok(ClientFrame::Delete {
            room: self.active.clone(),
            seq,
            client_id: Some(self.client_ids.next()),
        })
    }

    /// The frame that adds `emoji` to message `seq` of the room on screen,
    /// or takes it back when this user has already reacted so (`toggle`),
    /// or takes it back in any case (`!add`).
    pub(crate) fn react(
        &mut self,
        seq: i64,
        emoji: &str,
        add: bool,
    ) -> Result<ClientFrame, ChangeError> {
        let emoji = Emoji::parse(emoji)?.into_string();
        let mine = self
            .changeable(seq)?
            .is_some_and(|line| line.reactions.is_mine(&emoji, &self.me));
        let room = self.active.clone();
        let client_id = Some(self.client_ids.next());
        Ok(if add && !mine {
            ClientFrame::React {
                room,
                seq,
                emoji,
                client_id,
            }
        } else {
            ClientFrame::Unreact {
                room,
                seq,
                emoji,
                client_id,
            }
        })
    }

    /// Starts editing this user's newest message of the room on screen that
    /// is still there; returns its text, for the input line.
    pub(crate) fn begin_edit_last(&mut self) -> Result<String, ChangeError> {
        if self.is_encrypted(&self.active) {
            return Err(ChangeError::Encrypted);
        }
        let last = self.active_room().and_then(|room| {
            room.lines.values().rev().find(|line| {
                line.is_live_message()
                    && line.content.is_some()
                    && line.username.eq_ignore_ascii_case(&self.me)
            })
        });
        let Some(line) = last else {
            return Err(ChangeError::NothingToEdit);
        };
        let text = line.content.clone().unwrap_or_default();
        self.editing = Some(Editing {
            room: self.active.clone(),
            seq: line.seq,
        });
        Ok(text)
    }

    /// The edit under way in the room on screen, if any.
    pub(crate) fn editing(&self) -> Option<&Editing> {
        self.editing
            .as_ref()
            .filter(|editing| editing.room == self.active)
    }

    /// Drops the edit under way; says whether there was one.
    pub(crate) fn cancel_edit(&mut self) -> bool {
        self.editing.take().is_some()
    }

    /// The room on screen, once it has shown something newer than the
    /// user's read mark for [`READ_MARK_AFTER`], is marked read up to its
    /// newest seq: the frame to send. Nothing while disconnected (the
    /// frame would be lost); the mark is sent once the connection is back.
    pub(crate) fn read_mark_due(&mut self, now: Instant) -> Option<ClientFrame> {
        if self.connection != Connection::Connected {
            return None;
        }
        let room = self.rooms.get_mut(&self.active)?;
        let newest = room.newest_seq();
        if newest <= room.read_mark {
            room.unread_shown_since = None;
            return None;
        }
        let since = *room.unread_shown_since.get_or_insert(now);
        if now.saturating_duration_since(since) < READ_MARK_AFTER {
            return None;
        }
        room.read_mark = newest;
        room.unread_shown_since = None;
        Some(ClientFrame::Read {
            room: room.name.clone(),
            seq: newest,
        })
    }

    /// Asks that the next `who` answer for the room on screen be printed.
    pub(crate) fn request_who(&mut self) -> ClientFrame {
        self.who_requested.insert(self.active.clone());
        ClientFrame::Who {
            room: Some(self.active.clone()),
        }
    }

    /// Where this client stands in `general`, for the next connect to
    /// start from (see [`crate::net::GeneralPosition`]).
    pub(crate) fn general_resume_seq(&self) -> i64 {
        self.rooms
            .get(RoomName::GENERAL)
            .map_or(0, Room::resume_seq)
    }

    /// A (re)connection is up: resume every room from where this client
    /// stands, then send again every message that has no ack yet, with the
    /// same `client_id` so the server stores each once. `general` is not
    /// among the resumed rooms: the connect itself resumed it, from
    /// [`ChatState::general_resume_seq`].
    pub(crate) fn on_connected(&mut self) -> Vec<ClientFrame> {
        self.connection = Connection::Connected;
        let mut frames: Vec<ClientFrame> = self
            .rooms()
            .iter()
            .filter(|room| room.name != RoomName::GENERAL)
            .map(|room| ClientFrame::Resume {
                room: room.name.clone(),
                last_seq: room.resume_seq(),
            })
            .collect();
        for pending in &mut self.pending {
            pending.retry_reason = None;
            frames.push(pending.frame());
        }
        frames
    }

    /// The connection dropped; the status bar says when the next try is.
    pub(crate) fn on_disconnected(&mut self, reason: String, retry_in: Duration, attempt: u32) {
        self.connection = Connection::Reconnecting {
            reason,
            retry_in,
            attempt,
        };
    }

    /// Applies one frame from the server.
    pub(crate) fn apply(&mut self, frame: ServerFrame, now: Instant) {
        match frame {
            ServerFrame::System { message, room } => {
                // The greeting only confirms what the status bar shows.
                if !message.starts_with("Connected as ") {
                    let room = room.unwrap_or_else(|| RoomName::GENERAL.to_owned());
                    self.notice(Some(&room), message);
                }
            }
            ServerFrame::Message {
                username,
                content,
                timestamp,
                room,
                seq,
                client_id,
                reply_to,
                edited_at,
                deleted,
                mls,
                ..
            } => {
                let line = Line {
                    seq,
                    username,
                    // Ciphertext is never shown: the client reveals what
                    // it reads.
                    content: (!deleted && mls.is_none()).then_some(content),
                    mls,
                    timestamp,
                    edited: edited_at.is_some(),
                    deleted,
                    reply_to,
                    ..Line::default()
                };
                self.store(&room, line, client_id.as_deref());
            }
            ServerFrame::Edited {
                room,
                seq,
                target,
                content,
                ..
            } => {
                if let Some(line) = self.change(&room, seq, target)
                    && !line.deleted
                {
                    line.content = Some(content);
                    line.edited = true;
                }
            }
            ServerFrame::Deleted {
                room, seq, target, ..
            } => {
                if let Some(line) = self.change(&room, seq, target) {
                    line.content = None;
                    line.deleted = true;
                    line.reactions.clear(seq);
                }
                let editing = Editing { room, seq: target };
                if self.editing.as_ref() == Some(&editing) {
                    self.editing = None;
                }
            }
            ServerFrame::Reaction {
                room,
                seq,
                target,
                emoji,
                username,
                added,
            } => {
                if let Some(line) = self.change(&room, seq, target) {
                    line.reactions.apply(seq, &emoji, &username, added);
                } else if let Some(entry) = self.rooms.get_mut(&room) {
                    entry
                        .early_reactions
                        .entry(target)
                        .or_default()
                        .push(EarlyReaction {
                            seq,
                            emoji,
                            username,
                            added,
                        });
                }
            }
            ServerFrame::Read {
                room,
                username,
                seq,
            } => {
                if let Some(entry) = self.rooms.get_mut(&room) {
                    entry.read_up_to(&username, seq);
                }
            }
            ServerFrame::Ack {
                client_id,
                room,
                seq,
                timestamp,
                ..
            } => {
                let Some(client_id) = client_id else { return };
                let Some(position) = self.pending.iter().position(|p| p.client_id == client_id)
                else {
                    return;
                };
                let pending = self.pending.remove(position);
                let line = Line {
                    seq,
                    username: self.me.clone(),
                    content: Some(pending.content),
                    timestamp,
                    reply_to: pending.reply_to,
                    ..Line::default()
                };
                self.store(&room, line, None);
            }
            ServerFrame::Error {
                code,
                message,
                client_id,
                room,
                until,
            } => {
                let message = format!("{message}{}", describe::until(until.as_ref()));
                self.on_error(code, message, client_id, room);
            }
            ServerFrame::Presence {
                room,
                username,
                online,
            } => {
                let me = username.eq_ignore_ascii_case(&self.me);
                let Some(entry) = self.rooms.get_mut(&room) else {
                    return;
                };
                if online {
                    entry.online.insert(username.clone());
                } else {
                    entry.online.remove(&username);
                    entry.typing.remove(&username);
                }
                // The user knows when they themselves come and go.
                if !me {
                    let change = if online { "is online" } else { "went offline" };
                    entry.notice(format!("{username} {change}"), false);
                }
            }
            ServerFrame::Who { room, online } => {
                let Some(entry) = self.rooms.get_mut(&room) else {
                    return;
                };
                entry.online = online.into_iter().collect();
                if self.who_requested.remove(&room) {
                    let names: Vec<&str> = entry.online.iter().map(String::as_str).collect();
                    entry.notice(format!("online here: {}", names.join(", ")), false);
                }
            }
            ServerFrame::Typing { room, username } => {
                if username.eq_ignore_ascii_case(&self.me) {
                    return;
                }
                if let Some(entry) = self.rooms.get_mut(&room) {
                    entry.typing.insert(username, now);
                }
            }
            ServerFrame::Joined {
                room,
                kind,
                last_seq,
                encrypted,
            } => {
                let entry = self.rooms.entry(room).or_insert_with_key(|room| {
                    // Added by someone else: what came before is history,
                    // loaded on demand.
                    let mut entry = Room::new(room, kind);
                    entry.has_older = last_seq > 0;
                    entry
                });
                entry.encrypted |= encrypted;
            }
            ServerFrame::Left { room, reason } => self.on_removed(&room, reason),
            ServerFrame::Member {
                room,
                seq,
                username,
                change,
                by,
                role,
                until,
                reason,
                timestamp,
            } => {
                // A room this client has left (or was never told of with
                // `joined`) is not brought back by a late change in it.
                let Some(entry) = self.rooms.get_mut(&room) else {
                    return;
                };
                entry.track_member(&username, change);
                let line = Line {
                    seq,
                    username,
                    timestamp,
                    event: Some(MemberEventBody {
                        change,
                        by,
                        role,
                        until,
                        reason,
                    }),
                    ..Line::default()
                };
                self.store(&room, line, None);
            }
            ServerFrame::Topic { room, topic, by } => {
                let text = match &topic {
                    Some(topic) => format!("{by} set the topic: {topic}"),
                    None => format!("{by} cleared the topic"),
                };
                self.set_topic(&room, topic);
                self.notice(Some(&room), text);
            }
            ServerFrame::Pong | ServerFrame::Authenticated { .. } => {}
        }
    }

    /// Records the change at `seq` of `room` and returns the line it
    /// changes (at `target`), if this client holds it.
    fn change(&mut self, room: &str, seq: i64, target: i64) -> Option<&mut Line> {
        let entry = self.rooms.get_mut(room)?;
        entry.held.insert(seq);
        entry.lines.get_mut(&target)
    }

    fn store(&mut self, room: &str, line: Line, client_id: Option<&str>) {
        if let Some(client_id) = client_id {
            self.pending.retain(|p| p.client_id != client_id);
        }
        let mine = line.username.eq_ignore_ascii_case(&self.me);
        let on_screen = self.active == room;
        let entry = self
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| Room::new(room, kind_of(room)));
        // Membership changes are shown, but only messages count as unread.
        let message = line.event.is_none() && !line.is_commit();
        if entry.insert(line) && message && !mine && !on_screen {
            entry.unread += 1;
        }
    }

    /// This user is no longer in `room` (they left, were removed, or the
    /// room was deleted): the room leaves the list and a line in the room
    /// on screen says why, and by whom when the change reached this client.
    fn on_removed(&mut self, room: &str, reason: Option<LeftReason>) {
        let Some(entry) = self.rooms.get(room) else {
            // Already forgotten (the answer to `/leave` came first).
            return;
        };
        let change = match reason {
            Some(LeftReason::Kicked) => Some(MemberChangeBody::Kicked),
            Some(LeftReason::Banned) => Some(MemberChangeBody::Banned),
            _ => None,
        };
        let event = entry
            .lines
            .values()
            .rev()
            .filter_map(|line| line.event.as_ref().map(|event| (line, event)))
            .find(|(line, event)| {
                line.username.eq_ignore_ascii_case(&self.me) && Some(event.change) == change
            })
            .map(|(_, event)| event.clone());
        let text = describe::removal(&self.display_name(room), reason, event.as_ref());
        self.remove_room(room);
        match reason {
            Some(LeftReason::Left) | None => self.notice(None, text),
            Some(_) => self.error(None, text),
        }
    }

    fn on_error(
        &mut self,
        code: ErrorCode,
        message: String,
        client_id: Option<String>,
        room: Option<String>,
    ) {
        let position = client_id
            .as_ref()
            .and_then(|id| self.pending.iter().position(|p| &p.client_id == id));
        let Some(position) = position else {
            self.error(room.as_deref(), format!("error: {message}"));
            return;
        };
        let transient = matches!(
            code,
            ErrorCode::Unavailable | ErrorCode::RateLimited | ErrorCode::Internal
        );
        if transient {
            // Kept, and sent again with the same client_id on the next
            // connection: the server stores it at most once.
            self.pending[position].retry_reason = Some(message);
        } else {
            let pending = self.pending.remove(position);
            self.error(
                Some(&pending.room),
                format!("not sent ({message}): {}", pending.content),
            );
        }
    }

    /// Who is typing in a room right now, by name.
    pub(crate) fn typing_in(&self, room: &str, now: Instant) -> Vec<&str> {
        self.rooms.get(room).map_or_else(Vec::new, |room| {
            room.typing
                .iter()
                .filter(|(_, at)| now.saturating_duration_since(**at) < TYPING_SHOWN_FOR)
                .map(|(name, _)| name.as_str())
                .collect()
        })
    }
}

/// A room's kind, from its name: `dm:` names a direct conversation.
pub(crate) fn kind_of(room: &str) -> RoomKindBody {
    if room.starts_with("dm:") {
        RoomKindBody::Direct
    } else {
        RoomKindBody::Public
    }
}

#[cfg(test)]
mod tests {
    use chat_protocol::rest::{HighlightBody, SearchResult};
    use chrono::TimeZone;

    use super::*;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, second)
            .single()
            .expect("a valid date")
    }

    fn message(room: &str, seq: i64, username: &str, content: &str) -> ServerFrame {
        ServerFrame::Message {
            mls: None,
            username: username.to_owned(),
            content: content.to_owned(),
            timestamp: at(seq as u32 % 60),
            id: seq + 100,
            room: room.to_owned(),
            seq,
            client_id: None,
            reply_to: None,
            edited_at: None,
            deleted: false,
        }
    }

    fn history(room: &str, seqs: &[i64]) -> Vec<RoomMessage> {
        seqs.iter()
            .map(|&seq| RoomMessage {
                mls: None,
                id: seq + 100,
                room: room.to_owned(),
                seq,
                user_id: 2,
                username: "bob".to_owned(),
                content: Some(format!("m{seq}")),
                client_id: None,
                created_at: at(0),
                event: None,
                change: None,
                edited_at: None,
                deleted: false,
                deleted_by: None,
                deleted_at: None,
                reply_to: None,
                reply: None,
                reactions: Vec::new(),
            })
            .collect()
    }

    fn seqs(state: &ChatState, room: &str) -> Vec<i64> {
        state
            .room(room)
            .expect(room)
            .lines
            .keys()
            .copied()
            .collect()
    }

    fn sent_client_id(frame: &ClientFrame) -> String {
        match frame {
            ClientFrame::Message {
                client_id: Some(id),
                ..
            } => id.clone(),
            other => panic!("expected a message frame, got {other:?}"),
        }
    }

    fn ack(client_id: &str, room: &str, seq: i64, duplicate: bool) -> ServerFrame {
        ServerFrame::Ack {
            client_id: Some(client_id.to_owned()),
            id: seq + 100,
            room: room.to_owned(),
            seq,
            timestamp: at(1),
            duplicate,
        }
    }

    #[test]
    fn messages_are_shown_in_seq_order_whatever_order_they_arrive_in() {
        let mut state = ChatState::new("alice");
        let now = Instant::now();
        for seq in [3, 1, 2] {
            state.apply(message("general", seq, "bob", "x"), now);
        }
        assert_eq!(seqs(&state, "general"), [1, 2, 3]);
    }

    #[test]
    fn a_message_seen_twice_is_shown_once() {
        let mut state = ChatState::new("alice");
        state.apply_history("general", history("general", &[1, 2]), false);
        state.apply(message("general", 2, "bob", "m2"), Instant::now());
        state.apply(message("general", 2, "bob", "m2"), Instant::now());
        assert_eq!(seqs(&state, "general"), [1, 2]);
    }

    #[test]
    fn a_sent_message_is_pending_until_its_ack_arrives() {
        let mut state = ChatState::new("alice");
        let frame = state.compose("hello").expect("valid");
        let client_id = sent_client_id(&frame);
        assert_eq!(state.pending_in("general").count(), 1);
        assert!(state.room("general").expect("general").lines.is_empty());

        state.apply(ack(&client_id, "general", 1, false), Instant::now());

        assert_eq!(state.pending_in("general").count(), 0);
        let line = &state.room("general").expect("general").lines[&1];
        assert_eq!(line.username, "alice");
        assert_eq!(line.content.as_deref(), Some("hello"));
    }

    #[test]
    fn the_broadcast_of_my_own_message_also_clears_it_from_pending() {
        let mut state = ChatState::new("alice");
        let client_id = sent_client_id(&state.compose("hi").expect("valid"));
        let ServerFrame::Message {
            username,
            content,
            timestamp,
            id,
            room,
            seq,
            ..
        } = message("general", 4, "alice", "hi")
        else {
            unreachable!("message() builds message frames")
        };
        state.apply(
            ServerFrame::Message {
                mls: None,
                username,
                content,
                timestamp,
                id,
                room,
                seq,
                client_id: Some(client_id.clone()),
                reply_to: None,
                edited_at: None,
                deleted: false,
            },
            Instant::now(),
        );
        assert_eq!(state.pending_in("general").count(), 0);
        // The ack that follows changes nothing.
        state.apply(ack(&client_id, "general", 4, false), Instant::now());
        assert_eq!(seqs(&state, "general"), [4]);
    }

    #[test]
    fn each_message_gets_its_own_valid_client_id() {
        let mut state = ChatState::new("alice");
        let first = sent_client_id(&state.compose("one").expect("valid"));
        let second = sent_client_id(&state.compose("two").expect("valid"));
        assert_ne!(first, second);
        for id in [first, second] {
            assert!(chat_domain::ClientId::parse(id.clone()).is_ok(), "{id}");
        }
    }

    #[test]
    fn a_blank_message_is_refused_before_it_is_sent() {
        let mut state = ChatState::new("alice");
        assert_eq!(state.compose("   "), Err(DomainError::MessageBlank));
        assert_eq!(state.pending_in("general").count(), 0);
    }

    #[test]
    fn a_reconnect_resumes_every_room_and_resends_unacked_messages_with_the_same_client_id() {
        let mut state = ChatState::new("alice");
        state.apply_history("general", history("general", &[1, 2, 3]), false);
        state.add_room("lobby", RoomKindBody::Public);
        state.switch_to("lobby");
        let client_id = sent_client_id(&state.compose("are you there?").expect("valid"));

        let frames = state.on_connected();

        // `general` was resumed by the connect itself.
        assert_eq!(state.general_resume_seq(), 3);
        assert_eq!(
            frames,
            [
                ClientFrame::Resume {
                    room: "lobby".to_owned(),
                    last_seq: 0
                },
                ClientFrame::Message {
                    mls: None,
                    content: "are you there?".to_owned(),
                    room: Some("lobby".to_owned()),
                    client_id: Some(client_id),
                    reply_to: None,
                },
            ]
        );
        assert_eq!(state.connection(), &Connection::Connected);
    }

    #[test]
    fn resume_starts_before_a_gap_so_missed_messages_are_replayed() {
        let mut state = ChatState::new("alice");
        state.apply_history("general", history("general", &[4, 5]), true);
        // A live message overtook the replay of 6 and 7.
        state.apply(message("general", 8, "bob", "late"), Instant::now());
        assert_eq!(state.room("general").expect("general").resume_seq(), 5);
        assert_eq!(state.general_resume_seq(), 5);
    }

    #[test]
    fn a_duplicate_ack_after_a_resend_does_not_double_the_message() {
        let mut state = ChatState::new("alice");
        let client_id = sent_client_id(&state.compose("once").expect("valid"));
        state.apply(ack(&client_id, "general", 7, false), Instant::now());
        state.on_connected();
        state.apply(ack(&client_id, "general", 7, true), Instant::now());
        assert_eq!(seqs(&state, "general"), [7]);
    }

    #[test]
    fn messages_in_other_rooms_count_as_unread_until_the_room_is_shown() {
        let mut state = ChatState::new("alice");
        state.add_room("lobby", RoomKindBody::Public);
        let now = Instant::now();
        state.apply(message("lobby", 1, "bob", "a"), now);
        state.apply(message("lobby", 2, "bob", "b"), now);
        state.apply(message("lobby", 2, "bob", "b"), now);
        state.apply(message("general", 1, "bob", "c"), now);
        assert_eq!(state.room("lobby").expect("lobby").unread, 2);
        assert_eq!(state.room("general").expect("general").unread, 0);

        assert!(state.switch_to("lobby"));
        assert_eq!(state.room("lobby").expect("lobby").unread, 0);
    }

    #[test]
    fn my_own_messages_and_history_never_count_as_unread() {
        let mut state = ChatState::new("alice");
        state.add_room("lobby", RoomKindBody::Public);
        state.apply(
            message("lobby", 1, "Alice", "from my other terminal"),
            Instant::now(),
        );
        state.apply_history("lobby", history("lobby", &[2, 3]), false);
        assert_eq!(state.room("lobby").expect("lobby").unread, 0);
    }

    #[test]
    fn a_refused_message_leaves_pending_with_the_reason_shown() {
        let mut state = ChatState::new("alice");
        let client_id = sent_client_id(&state.compose("hi").expect("valid"));
        state.apply(
            ServerFrame::Error {
                code: ErrorCode::NotAMember,
                message: "you are not a member".to_owned(),
                client_id: Some(client_id),
                room: Some("general".to_owned()),
                until: None,
            },
            Instant::now(),
        );
        assert_eq!(state.pending_in("general").count(), 0);
        let notice = state
            .room("general")
            .expect("general")
            .notices
            .last()
            .cloned();
        let notice = notice.expect("a notice");
        assert!(notice.is_error);
        assert!(
            notice.text.contains("you are not a member"),
            "{}",
            notice.text
        );
    }

    #[test]
    fn a_message_the_server_could_not_store_stays_pending_for_a_resend() {
        let mut state = ChatState::new("alice");
        let client_id = sent_client_id(&state.compose("hi").expect("valid"));
        state.apply(
            ServerFrame::Error {
                code: ErrorCode::Unavailable,
                message: "storage unavailable".to_owned(),
                client_id: Some(client_id.clone()),
                room: Some("general".to_owned()),
                until: None,
            },
            Instant::now(),
        );
        let pending: Vec<&Pending> = state.pending_in("general").collect();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            pending[0].retry_reason.as_deref(),
            Some("storage unavailable")
        );
        let resent: Vec<String> = state
            .on_connected()
            .iter()
            .filter(|frame| matches!(frame, ClientFrame::Message { .. }))
            .map(sent_client_id)
            .collect();
        assert_eq!(resent, [client_id]);
    }

    #[test]
    fn typing_shows_for_a_few_seconds_and_never_for_myself() {
        let mut state = ChatState::new("alice");
        let start = Instant::now();
        for username in ["bob", "alice"] {
            state.apply(
                ServerFrame::Typing {
                    room: "general".to_owned(),
                    username: username.to_owned(),
                },
                start,
            );
        }
        assert_eq!(state.typing_in("general", start), ["bob"]);
        assert!(
            state
                .typing_in("general", start + TYPING_SHOWN_FOR)
                .is_empty()
        );
    }

    #[test]
    fn a_message_from_someone_typing_ends_their_typing() {
        let mut state = ChatState::new("alice");
        let now = Instant::now();
        state.apply(
            ServerFrame::Typing {
                room: "general".to_owned(),
                username: "bob".to_owned(),
            },
            now,
        );
        state.apply(message("general", 1, "bob", "done"), now);
        assert!(state.typing_in("general", now).is_empty());
    }

    #[test]
    fn presence_and_who_keep_the_online_list() {
        let mut state = ChatState::new("alice");
        let now = Instant::now();
        state.apply(
            ServerFrame::Who {
                room: "general".to_owned(),
                online: vec!["alice".to_owned(), "bob".to_owned()],
            },
            now,
        );
        state.apply(
            ServerFrame::Presence {
                room: "general".to_owned(),
                username: "bob".to_owned(),
                online: false,
            },
            now,
        );
        state.apply(
            ServerFrame::Presence {
                room: "general".to_owned(),
                username: "carol".to_owned(),
                online: true,
            },
            now,
        );
        let online: Vec<&str> = state
            .room("general")
            .expect("general")
            .online
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(online, ["alice", "carol"]);
    }

    #[test]
    fn others_coming_and_going_is_noted_but_my_own_presence_is_not() {
        let mut state = ChatState::new("alice");
        for username in ["Alice", "bob"] {
            state.apply(
                ServerFrame::Presence {
                    room: "general".to_owned(),
                    username: username.to_owned(),
                    online: true,
                },
                Instant::now(),
            );
        }
        let room = state.room("general").expect("general");
        let notices: Vec<&str> = room.notices.iter().map(|n| n.text.as_str()).collect();
        assert_eq!(notices, ["bob is online"]);
        assert_eq!(room.online.len(), 2);
    }

    #[test]
    fn only_a_requested_who_answer_is_printed() {
        let mut state = ChatState::new("alice");
        let who = || ServerFrame::Who {
            room: "general".to_owned(),
            online: vec!["alice".to_owned()],
        };
        state.apply(who(), Instant::now());
        assert!(state.room("general").expect("general").notices.is_empty());
        assert_eq!(
            state.request_who(),
            ClientFrame::Who {
                room: Some("general".to_owned())
            }
        );
        state.apply(who(), Instant::now());
        let notices = &state.room("general").expect("general").notices;
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].text, "online here: alice");
    }

    #[test]
    fn a_direct_conversation_is_named_after_the_other_person() {
        let state = ChatState::new("Bob");
        assert_eq!(state.display_name("dm:alice:bob"), "@alice");
        assert_eq!(state.display_name("lobby"), "lobby");
    }

    #[test]
    fn the_room_list_puts_general_first_and_direct_conversations_last() {
        let mut state = ChatState::new("alice");
        state.add_room("dm:alice:bob", RoomKindBody::Direct);
        state.add_room("zoo", RoomKindBody::Public);
        state.add_room("art", RoomKindBody::Public);
        let names: Vec<&str> = state
            .rooms()
            .iter()
            .map(|room| room.name.as_str())
            .collect();
        assert_eq!(names, ["general", "art", "zoo", "dm:alice:bob"]);
    }

    #[test]
    fn leaving_the_room_on_screen_shows_general_again() {
        let mut state = ChatState::new("alice");
        state.add_room("lobby", RoomKindBody::Public);
        state.switch_to("lobby");
        state.apply(
            ServerFrame::Left {
                room: "lobby".to_owned(),
                reason: None,
            },
            Instant::now(),
        );
        assert_eq!(state.active(), "general");
        assert!(state.room("lobby").is_none());
    }

    #[test]
    fn a_new_direct_conversation_from_someone_else_appears_in_the_room_list() {
        let mut state = ChatState::new("alice");
        state.apply(
            ServerFrame::Joined {
                room: "dm:alice:bob".to_owned(),
                kind: RoomKindBody::Direct,
                last_seq: 0,
                encrypted: false,
            },
            Instant::now(),
        );
        assert!(state.room("dm:alice:bob").is_some());
        assert!(!state.is_encrypted("dm:alice:bob"));
    }

    #[test]
    fn a_room_joined_as_encrypted_is_marked_encrypted() {
        let mut state = ChatState::new("alice");
        let joined = |room: &str, encrypted| ServerFrame::Joined {
            room: room.to_owned(),
            kind: RoomKindBody::Public,
            last_seq: 0,
            encrypted,
        };
        state.apply(joined("den", false), Instant::now());
        state.apply(joined(VAULT, true), Instant::now());
        assert!(!state.is_encrypted("den"));
        assert!(state.is_encrypted(VAULT));
    }

    #[test]
    fn cycling_moves_through_the_room_list_and_wraps_around() {
        let mut state = ChatState::new("alice");
        state.add_room("lobby", RoomKindBody::Public);
        state.cycle(1);
        assert_eq!(state.active(), "lobby");
        state.cycle(1);
        assert_eq!(state.active(), "general");
        state.cycle(-1);
        assert_eq!(state.active(), "lobby");
    }

    #[test]
    fn notices_are_placed_after_the_newest_message_present_when_they_arrived() {
        let mut state = ChatState::new("alice");
        state.apply_history("general", history("general", &[1, 2]), false);
        state.notice(None, "hello");
        let notice = &state.room("general").expect("general").notices[0];
        assert_eq!(notice.after_seq, 2);
    }

    fn member(room: &str, seq: i64, username: &str, change: MemberChangeBody) -> ServerFrame {
        ServerFrame::Member {
            room: room.to_owned(),
            seq,
            username: username.to_owned(),
            change,
            by: Some("bob".to_owned()),
            role: None,
            until: None,
            reason: None,
            timestamp: at(seq as u32 % 60),
        }
    }

    fn left(room: &str, reason: LeftReason) -> ServerFrame {
        ServerFrame::Left {
            room: room.to_owned(),
            reason: Some(reason),
        }
    }

    fn notice_texts(state: &ChatState, room: &str) -> Vec<(String, bool)> {
        state
            .room(room)
            .expect(room)
            .notices
            .iter()
            .map(|notice| (notice.text.clone(), notice.is_error))
            .collect()
    }

    #[test]
    fn a_membership_change_takes_its_seq_so_a_reconnect_resumes_after_it() {
        let mut state = ChatState::new("alice");
        state.add_room("lobby", RoomKindBody::Public);
        state.apply_history("lobby", history("lobby", &[1, 2]), false);
        state.apply_history("general", history("general", &[1]), false);
        let now = Instant::now();
        state.apply(member("lobby", 3, "carol", MemberChangeBody::Joined), now);
        state.apply(member("general", 2, "carol", MemberChangeBody::Joined), now);
        state.apply(message("lobby", 4, "carol", "hi"), now);

        assert_eq!(seqs(&state, "lobby"), [1, 2, 3, 4]);
        assert_eq!(state.general_resume_seq(), 2);
        assert!(state.on_connected().contains(&ClientFrame::Resume {
            room: "lobby".to_owned(),
            last_seq: 4
        }));
        let line = &state.room("lobby").expect("lobby").lines[&3];
        assert_eq!(line.event_text().as_deref(), Some("carol joined"));
    }

    #[test]
    fn membership_changes_elsewhere_are_shown_but_not_counted_as_unread() {
        let mut state = ChatState::new("alice");
        state.add_room("lobby", RoomKindBody::Public);
        let now = Instant::now();
        state.apply(member("lobby", 1, "carol", MemberChangeBody::Joined), now);
        state.apply(message("lobby", 2, "carol", "hello"), now);
        let lobby = state.room("lobby").expect("lobby");
        assert_eq!(lobby.unread, 1);
        assert_eq!(lobby.lines.len(), 2);
    }

    #[test]
    fn history_with_membership_changes_shows_them_as_events_not_as_undecryptable_messages() {
        let mut state = ChatState::new("alice");
        let mut page = history("general", &[1, 2, 3]);
        page[1].content = None;
        page[1].username = "dave".to_owned();
        page[1].event = Some(MemberEventBody {
            change: MemberChangeBody::Kicked,
            by: Some("alice".to_owned()),
            role: None,
            until: None,
            reason: Some("spam".to_owned()),
        });
        page[2].content = None;
        state.apply_history("general", page, false);

        let lines = &state.room("general").expect("general").lines;
        assert_eq!(
            lines[&2].event_text().as_deref(),
            Some("dave was kicked by alice (spam)")
        );
        // A message that could not be decrypted is still a message.
        assert_eq!(lines[&3].event_text(), None);
        assert_eq!(state.general_resume_seq(), 3);
    }

    #[test]
    fn being_kicked_removes_the_room_and_says_by_whom_in_the_room_shown_next() {
        let mut state = ChatState::new("alice");
        state.add_room("lobby", RoomKindBody::Public);
        state.switch_to("lobby");
        let now = Instant::now();
        let mut kicked = member("lobby", 5, "Alice", MemberChangeBody::Kicked);
        if let ServerFrame::Member { reason, .. } = &mut kicked {
            *reason = Some("spam".to_owned());
        }
        state.apply(kicked, now);
        state.apply(left("lobby", LeftReason::Kicked), now);

        assert!(state.room("lobby").is_none());
        assert_eq!(state.active(), "general");
        assert_eq!(
            notice_texts(&state, "general"),
            [("You were kicked from lobby by bob (spam)".to_owned(), true)]
        );
    }

    #[test]
    fn a_late_change_in_a_room_already_left_does_not_bring_it_back() {
        let mut state = ChatState::new("alice");
        state.add_room("lobby", RoomKindBody::Public);
        state.remove_room("lobby");
        let now = Instant::now();
        state.apply(member("lobby", 9, "alice", MemberChangeBody::Left), now);
        state.apply(left("lobby", LeftReason::Left), now);
        assert!(state.room("lobby").is_none());
        assert!(notice_texts(&state, "general").is_empty());
    }

    #[test]
    fn a_deleted_room_leaves_the_list_with_a_line_saying_so() {
        let mut state = ChatState::new("alice");
        state.add_room("lobby", RoomKindBody::Public);
        state.apply(left("lobby", LeftReason::RoomDeleted), Instant::now());
        assert!(state.room("lobby").is_none());
        assert_eq!(
            notice_texts(&state, "general"),
            [("lobby was deleted".to_owned(), true)]
        );
    }

    #[test]
    fn a_left_frame_for_a_room_already_forgotten_changes_nothing() {
        let mut state = ChatState::new("alice");
        state.apply(left("lobby", LeftReason::Left), Instant::now());
        assert!(notice_texts(&state, "general").is_empty());
    }

    #[test]
    fn a_topic_frame_keeps_the_topic_and_says_who_set_it() {
        let mut state = ChatState::new("alice");
        state.add_room("lobby", RoomKindBody::Public);
        state.apply(
            ServerFrame::Topic {
                room: "lobby".to_owned(),
                topic: Some("release friday".to_owned()),
                by: "bob".to_owned(),
            },
            Instant::now(),
        );
        let lobby = state.room("lobby").expect("lobby");
        assert_eq!(lobby.topic.as_deref(), Some("release friday"));
        assert_eq!(
            notice_texts(&state, "lobby"),
            [("bob set the topic: release friday".to_owned(), false)]
        );
        state.apply(
            ServerFrame::Topic {
                room: "lobby".to_owned(),
                topic: None,
                by: "bob".to_owned(),
            },
            Instant::now(),
        );
        assert_eq!(state.room("lobby").expect("lobby").topic, None);
    }

    #[test]
    fn the_room_list_brings_each_rooms_topic() {
        let mut state = ChatState::new("alice");
        state.add_member_rooms(&[RoomBody {
            name: "lobby".to_owned(),
            kind: RoomKindBody::Public,
            last_seq: 0,
            last_read_seq: 0,
            unread: 0,
            member: true,
            visibility: chat_protocol::rest::VisibilityBody::Public,
            topic: Some("welcome".to_owned()),
            role: None,
            encrypted: false,
        }]);
        assert_eq!(
            state.room("lobby").expect("lobby").topic.as_deref(),
            Some("welcome")
        );
    }

    #[test]
    fn an_error_with_an_end_says_until_when() {
        let mut state = ChatState::new("alice");
        let until = at(30);
        state.apply(
            ServerFrame::Error {
                code: ErrorCode::Muted,
                message: "you are muted in general".to_owned(),
                client_id: None,
                room: Some("general".to_owned()),
                until: Some(until),
            },
            Instant::now(),
        );
        assert_eq!(
            notice_texts(&state, "general"),
            [(
                format!(
                    "error: you are muted in general until {}",
                    describe::clock(&until)
                ),
                true
            )]
        );
    }

    #[test]
    fn a_room_someone_added_me_to_appears_with_its_older_history_to_load() {
        let mut state = ChatState::new("alice");
        state.apply(
            ServerFrame::Joined {
                room: "den".to_owned(),
                kind: RoomKindBody::Public,
                last_seq: 7,
                encrypted: false,
            },
            Instant::now(),
        );
        state.apply(
            member("den", 8, "alice", MemberChangeBody::Added),
            Instant::now(),
        );
        let den = state.room("den").expect("den");
        assert!(den.has_older);
        assert_eq!(den.resume_seq(), 8);
        assert_eq!(den.oldest_seq(), Some(8));
    }

    fn reaction(seq: i64, target: i64, emoji: &str, username: &str, added: bool) -> ServerFrame {
        ServerFrame::Reaction {
            room: "general".to_owned(),
            seq,
            target,
            emoji: emoji.to_owned(),
            username: username.to_owned(),
            added,
        }
    }

    fn tallies(state: &ChatState, seq: i64) -> Vec<(String, i64, bool)> {
        state.room("general").expect("general").lines[&seq]
            .reactions
            .tallies(state.me())
            .into_iter()
            .map(|tally| (tally.emoji, tally.count, tally.mine))
            .collect()
    }

    fn mine(state: &mut ChatState, seq: i64, content: &str) {
        state.apply(message("general", seq, "alice", content), Instant::now());
    }

    fn connected(me: &str) -> ChatState {
        let mut state = ChatState::new(me);
        state.on_connected();
        state
    }

    #[test]
    fn an_edit_replaces_the_text_and_its_seq_leaves_no_gap_to_resume_from() {
        let mut state = ChatState::new("alice");
        let now = Instant::now();
        state.apply(message("general", 1, "bob", "helo"), now);
        state.apply(
            ServerFrame::Edited {
                room: "general".to_owned(),
                seq: 2,
                target: 1,
                content: "hello".to_owned(),
                edited_at: at(3),
                username: "bob".to_owned(),
            },
            now,
        );
        state.apply(message("general", 3, "bob", "again"), now);
        let line = &state.room("general").expect("general").lines[&1];
        assert_eq!(line.content.as_deref(), Some("hello"));
        assert!(line.edited);
        assert_eq!(state.general_resume_seq(), 3);
    }

    #[test]
    fn changes_in_a_history_page_count_as_held_for_resuming() {
        let mut state = ChatState::new("alice");
        let mut page = history("general", &[1, 2, 3]);
        page[1].change = Some(chat_protocol::rest::MessageChangeBody {
            kind: chat_protocol::rest::MessageChangeKind::Reacted,
            target: 1,
        });
        state.apply_history("general", page, false);
        assert_eq!(seqs(&state, "general"), [1, 3]);
        assert_eq!(state.general_resume_seq(), 3);
    }

    #[test]
    fn a_deleted_message_becomes_a_tombstone_and_loses_its_reactions() {
        let mut state = ChatState::new("alice");
        let now = Instant::now();
        state.apply(message("general", 1, "bob", "oops"), now);
        state.apply(reaction(2, 1, "👍", "carol", true), now);
        state.apply(
            ServerFrame::Deleted {
                room: "general".to_owned(),
                seq: 3,
                target: 1,
                by: "bob".to_owned(),
            },
            now,
        );
        // The reaction replayed after a reconnect does not come back.
        state.apply(reaction(2, 1, "👍", "carol", true), now);
        let line = &state.room("general").expect("general").lines[&1];
        assert!(line.deleted);
        assert_eq!(line.content, None);
        assert_eq!(tallies(&state, 1), []);
    }

    #[test]
    fn reactions_from_frames_and_an_overlapping_history_page_count_each_person_once() {
        let mut state = ChatState::new("alice");
        let now = Instant::now();
        state.apply(message("general", 1, "bob", "ship it"), now);
        state.apply(reaction(2, 1, "👍", "carol", true), now);
        state.apply(reaction(3, 1, "🎉", "alice", true), now);
        // A page read now counts carol's and alice's reactions already.
        let mut page = history("general", &[1]);
        page[0].reactions = vec![
            chat_protocol::rest::ReactionCount {
                emoji: "👍".to_owned(),
                count: 1,
                me: false,
            },
            chat_protocol::rest::ReactionCount {
                emoji: "🎉".to_owned(),
                count: 1,
                me: true,
            },
        ];
        state.apply_history("general", page, false);
        // Replayed after a reconnect, and one new reaction.
        state.apply(reaction(2, 1, "👍", "carol", true), now);
        state.apply(reaction(4, 1, "👍", "dave", true), now);
        assert_eq!(
            tallies(&state, 1),
            [("👍".to_owned(), 2, false), ("🎉".to_owned(), 1, true)]
        );
        state.apply(reaction(5, 1, "🎉", "alice", false), now);
        assert_eq!(tallies(&state, 1), [("👍".to_owned(), 2, false)]);
        assert_eq!(state.general_resume_seq(), 5);
    }

    #[test]
    fn a_reaction_that_overtakes_the_replay_of_its_message_is_kept_for_it() {
        let mut state = ChatState::new("alice");
        let now = Instant::now();
        state.apply(reaction(9, 4, "👍", "carol", true), now);
        state.apply(
            message("general", 4, "bob", "sent while you were away"),
            now,
        );
        assert_eq!(tallies(&state, 4), [("👍".to_owned(), 1, false)]);
    }

    #[test]
    fn react_adds_a_reaction_or_takes_back_one_already_made() {
        let mut state = ChatState::new("alice");
        state.apply(message("general", 1, "bob", "lunch?"), Instant::now());
        let frame = state.react(1, "👍", true).expect("valid");
        assert!(
            matches!(&frame, ClientFrame::React { room, seq: 1, emoji, .. } if room == "general" && emoji == "👍"),
            "{frame:?}"
        );
        state.apply(reaction(2, 1, "👍", "alice", true), Instant::now());
        let frame = state.react(1, "👍", true).expect("valid");
        assert!(
            matches!(&frame, ClientFrame::Unreact { seq: 1, .. }),
            "{frame:?}"
        );
        assert!(matches!(
            state.react(1, "🎉", false),
            Ok(ClientFrame::Unreact { .. })
        ));
        assert!(matches!(
            state.react(1, "two words", true),
            Err(ChangeError::Invalid(_))
        ));
    }

    #[test]
    fn a_reply_quotes_the_original_as_held_else_as_the_page_described_it() {
        let mut state = ChatState::new("alice");
        let now = Instant::now();
        let mut page = history("general", &[5]);
        page[0].reply_to = Some(2);
        page[0].reply = Some(ReplyExcerpt {
            username: "carol".to_owned(),
            excerpt: Some("tea or coffee?".to_owned()),
            deleted: false,
        });
        state.apply_history("general", page, true);
        let quote_of = |state: &ChatState, seq: i64| {
            let room = state.room("general").expect("general");
            room.quote(&room.lines[&seq])
                .map(|quote| format!("{quote:?}"))
        };
        assert_eq!(
            quote_of(&state, 5).as_deref(),
            Some(r#"Message { username: "carol", text: Some("tea or coffee?") }"#)
        );

        // Held locally: the original's current text, then its deletion.
        state.apply(message("general", 6, "bob", "first words"), now);
        let mut reply_frame = message("general", 7, "carol", "answer");
        if let ServerFrame::Message { reply_to, .. } = &mut reply_frame {
            *reply_to = Some(6);
        }
        state.apply(reply_frame, now);
        assert_eq!(
            quote_of(&state, 7).as_deref(),
            Some(r#"Message { username: "bob", text: Some("first words") }"#)
        );
        state.apply(
            ServerFrame::Deleted {
                room: "general".to_owned(),
                seq: 8,
                target: 6,
                by: "bob".to_owned(),
            },
            now,
        );
        assert_eq!(quote_of(&state, 7).as_deref(), Some("Deleted"));
        assert_eq!(quote_of(&state, 6), None, "not a reply");
    }

    #[test]
    fn a_reply_is_sent_with_what_it_answers_and_keeps_it_through_resend_and_ack() {
        let mut state = ChatState::new("alice");
        state.apply(message("general", 3, "bob", "tea?"), Instant::now());
        let frame = state.compose_reply(3, "yes please").expect("valid");
        assert!(
            matches!(
                &frame,
                ClientFrame::Message {
                    reply_to: Some(3),
                    ..
                }
            ),
            "{frame:?}"
        );
        let resent = state.on_connected();
        assert!(
            resent.iter().any(|frame| matches!(
                frame,
                ClientFrame::Message {
                    reply_to: Some(3),
                    ..
                }
            )),
            "{resent:?}"
        );
        state.apply(
            ack(&sent_client_id(&frame), "general", 4, false),
            Instant::now(),
        );
        let line = &state.room("general").expect("general").lines[&4];
        assert_eq!(line.reply_to, Some(3));
        assert!(matches!(
            state.compose_reply(3, "  "),
            Err(ChangeError::Invalid(DomainError::MessageBlank))
        ));
    }

    #[test]
    fn up_arrow_edits_my_newest_message_that_is_still_there() {
        let mut state = ChatState::new("alice");
        let now = Instant::now();
        mine(&mut state, 1, "first");
        mine(&mut state, 2, "second");
        state.apply(message("general", 3, "bob", "not mine"), now);
        state.apply(
            ServerFrame::Deleted {
                room: "general".to_owned(),
                seq: 4,
                target: 2,
                by: "alice".to_owned(),
            },
            now,
        );
        assert_eq!(state.begin_edit_last(), Ok("first".to_owned()));
        assert_eq!(
            state.editing(),
            Some(&Editing {
                room: "general".to_owned(),
                seq: 1
            })
        );
        let frame = state.edit(1, "first, fixed").expect("valid");
        assert!(
            matches!(&frame, ClientFrame::Edit { seq: 1, content, .. } if content == "first, fixed"),
            "{frame:?}"
        );
        assert_eq!(state.editing(), None, "sending the edit ends edit mode");
    }

    #[test]
    fn up_arrow_without_a_message_of_mine_says_so() {
        let mut state = ChatState::new("alice");
        state.apply(message("general", 1, "bob", "hi"), Instant::now());
        assert_eq!(state.begin_edit_last(), Err(ChangeError::NothingToEdit));
        assert_eq!(state.editing(), None);
    }

    #[test]
    fn an_edit_is_dropped_by_esc_by_another_room_or_by_the_messages_deletion() {
        let mut state = ChatState::new("alice");
        state.add_room("lobby", RoomKindBody::Public);
        mine(&mut state, 1, "hello");
        state.begin_edit_last().expect("a message");
        assert!(state.cancel_edit());
        assert!(!state.cancel_edit());

        state.begin_edit_last().expect("a message");
        state.switch_to("lobby");
        state.switch_to("general");
        assert_eq!(state.editing(), None);

        state.begin_edit_last().expect("a message");
        state.apply(
            ServerFrame::Deleted {
                room: "general".to_owned(),
                seq: 2,
                target: 1,
                by: "bob".to_owned(),
            },
            Instant::now(),
        );
        assert_eq!(state.editing(), None);
    }

    #[test]
    fn changes_the_server_would_refuse_are_refused_before_they_are_sent() {
        let mut state = ChatState::new("alice");
        let now = Instant::now();
        state.apply(message("general", 1, "bob", "his"), now);
        state.apply(member("general", 2, "carol", MemberChangeBody::Joined), now);
        mine(&mut state, 3, "gone");
        state.apply(
            ServerFrame::Deleted {
                room: "general".to_owned(),
                seq: 4,
                target: 3,
                by: "alice".to_owned(),
            },
            now,
        );
        assert_eq!(state.edit(1, "mine now"), Err(ChangeError::NotMine(1)));
        assert_eq!(state.edit(2, "x"), Err(ChangeError::NotAMessage(2)));
        assert_eq!(state.delete(3), Err(ChangeError::Deleted(3)));
        assert_eq!(state.react(3, "👍", true), Err(ChangeError::Deleted(3)));
        assert_eq!(
            state.edit(1, " "),
            Err(ChangeError::Invalid(DomainError::MessageBlank))
        );
        assert_eq!(
            state.compose_reply(2, "hi"),
            Err(ChangeError::NotAMessage(2))
        );
        // A message this client does not hold is for the server to judge;
        // a moderator may delete anyone's.
        assert!(state.edit(40, "older").is_ok());
        assert!(matches!(
            state.delete(1),
            Ok(ClientFrame::Delete { seq: 1, .. })
        ));
    }

    #[test]
    fn the_room_on_screen_is_marked_read_once_after_a_burst_not_per_message() {
        let mut state = connected("alice");
        let start = Instant::now();
        for seq in 1..=3 {
            state.apply(message("general", seq, "bob", "x"), start);
            assert_eq!(state.read_mark_due(start), None, "not at once");
        }
        assert_eq!(
            state.read_mark_due(start + READ_MARK_AFTER),
            Some(ClientFrame::Read {
                room: "general".to_owned(),
                seq: 3
            })
        );
        assert_eq!(state.read_mark_due(start + READ_MARK_AFTER * 5), None);
        // A reaction counts as unread on the server, so it is marked too.
        state.apply(reaction(4, 1, "👍", "bob", true), start);
        let later = start + READ_MARK_AFTER * 6;
        assert_eq!(state.read_mark_due(later), None);
        assert_eq!(
            state.read_mark_due(later + READ_MARK_AFTER),
            Some(ClientFrame::Read {
                room: "general".to_owned(),
                seq: 4
            })
        );
    }

    #[test]
    fn a_room_is_marked_read_when_shown_and_not_while_elsewhere_or_offline() {
        let mut state = connected("alice");
        state.add_room("lobby", RoomKindBody::Public);
        let start = Instant::now();
        state.apply(message("lobby", 1, "bob", "psst"), start);
        assert_eq!(state.read_mark_due(start), None);
        assert_eq!(state.read_mark_due(start + READ_MARK_AFTER * 2), None);

        state.switch_to("lobby");
        state.on_disconnected("gone".to_owned(), Duration::from_secs(1), 1);
        let later = start + READ_MARK_AFTER * 3;
        assert_eq!(state.read_mark_due(later), None);
        assert_eq!(state.read_mark_due(later + READ_MARK_AFTER), None);

        state.on_connected();
        let back = later + READ_MARK_AFTER * 2;
        state.read_mark_due(back);
        assert_eq!(
            state.read_mark_due(back + READ_MARK_AFTER),
            Some(ClientFrame::Read {
                room: "lobby".to_owned(),
                seq: 1
            })
        );
    }

    fn room_body(name: &str, last_seq: i64, last_read_seq: i64) -> RoomBody {
        RoomBody {
            name: name.to_owned(),
            kind: RoomKindBody::Public,
            last_seq,
            last_read_seq,
            unread: last_seq - last_read_seq,
            member: true,
            visibility: chat_protocol::rest::VisibilityBody::Public,
            topic: None,
            role: None,
            encrypted: false,
        }
    }

    #[test]
    fn unread_counts_start_from_the_read_marks_the_server_kept() {
        let mut state = ChatState::new("alice");
        state.add_member_rooms(&[
            room_body("general", 3, 1),
            room_body("lobby", 4, 1),
            room_body("attic", 200, 10),
        ]);
        // lobby: 2 and 4 are bob's messages, 3 a membership change.
        let mut page = history("lobby", &[1, 2, 3, 4]);
        page[2].event = Some(MemberEventBody {
            change: MemberChangeBody::Joined,
            by: Some("carol".to_owned()),
            role: None,
            until: None,
            reason: None,
        });
        state.apply_history("lobby", page, false);
        // attic: the page does not reach back to the read mark.
        state.apply_history("attic", history("attic", &[151, 200]), true);
        state.count_unread();
        assert_eq!(state.room("lobby").expect("lobby").unread, 2);
        assert_eq!(state.room("attic").expect("attic").unread, 190);
        assert_eq!(state.room("general").expect("general").unread, 0);
        // The room on screen was read up to 1 and holds nothing newer.
        state.on_connected();
        assert_eq!(state.read_mark_due(Instant::now()), None);
    }

    fn members(names_and_reads: &[(&str, i64)]) -> Vec<MemberBody> {
        names_and_reads
            .iter()
            .map(|(username, last_read_seq)| MemberBody {
                username: (*username).to_owned(),
                role: chat_protocol::rest::RoleBody::Member,
                joined_at: at(0),
                muted_until: None,
                last_read_seq: *last_read_seq,
            })
            .collect()
    }

    fn read(username: &str, seq: i64) -> ServerFrame {
        ServerFrame::Read {
            room: "general".to_owned(),
            username: username.to_owned(),
            seq,
        }
    }

    fn seen_by(state: &ChatState) -> Option<(i64, Vec<String>)> {
        state
            .room("general")
            .expect("general")
            .seen_by(state.me())
            .map(|(seq, names)| (seq, names.into_iter().map(str::to_owned).collect()))
    }

    #[test]
    fn seen_by_names_who_read_the_last_message_but_me_and_its_author() {
        let mut state = ChatState::new("alice");
        let now = Instant::now();
        mine(&mut state, 1, "anyone?");
        state.apply(message("general", 2, "bob", "me"), now);
        assert_eq!(seen_by(&state), None, "members not loaded yet");
        state.set_members(
            "general",
            &members(&[("alice", 2), ("bob", 2), ("carol", 1), ("dave", 0)]),
        );
        assert_eq!(seen_by(&state), None, "only its author read it");
        state.apply(read("carol", 2), now);
        state.apply(read("dave", 5), now);
        state.apply(read("carol", 1), now);
        assert_eq!(
            seen_by(&state),
            Some((2, vec!["carol".to_owned(), "dave".to_owned()]))
        );
        // Someone who left is no longer listed.
        state.apply(member("general", 3, "dave", MemberChangeBody::Left), now);
        assert_eq!(seen_by(&state), Some((2, vec!["carol".to_owned()])));
    }

    #[test]
    fn seen_by_is_not_shown_in_a_room_with_many_members() {
        let mut state = ChatState::new("alice");
        state.apply(message("general", 1, "bob", "hello all"), Instant::now());
        let names: Vec<String> = (0..=SEEN_BY_MAX_MEMBERS)
            .map(|n| format!("user{n}"))
            .collect();
        let many: Vec<(&str, i64)> = names.iter().map(|name| (name.as_str(), 1)).collect();
        state.set_members("general", &members(&many));
        assert_eq!(seen_by(&state), None);
        state.set_members("general", &members(&many[..SEEN_BY_MAX_MEMBERS]));
        assert!(seen_by(&state).is_some());
    }

    fn found(room: &str, seq: i64, content: &str, highlights: &[(usize, usize)]) -> SearchResult {
        SearchResult {
            room: room.to_owned(),
            seq,
            username: "bob".to_owned(),
            created_at: at(0),
            content: content.to_owned(),
            highlights: highlights
                .iter()
                .map(|&(start, end)| HighlightBody { start, end })
                .collect(),
        }
    }

    fn context(room: &str, seqs: &[i64], has_more: bool) -> MessagePage {
        MessagePage {
            room: room.to_owned(),
            messages: history(room, seqs),
            has_more,
        }
    }

    #[test]
    fn search_results_are_listed_numbered_with_the_words_found_in_brackets() {
        let mut state = ChatState::new("alice");
        state.add_room("dm:alice:bob", RoomKindBody::Direct);
        let (id, params) = state.start_search("cafe", false);
        assert_eq!(params.q, "cafe");
        assert_eq!(params.room, None);
        state.apply_search_page(
            id,
            SearchBody {
                results: vec![
                    found("general", 12, "Café at noon?", &[(0, 4)]),
                    found("dm:alice:bob", 3, "the café was shut", &[(4, 8)]),
                ],
                next: Some(3),
            },
        );
        let time = clock(&at(0));
        let texts: Vec<String> = notice_texts(&state, "general")
            .into_iter()
            .map(|(text, is_error)| {
                assert!(!is_error, "{text}");
                text
            })
            .collect();
        assert_eq!(
            texts,
            [
                "messages with \"cafe\" in your rooms, newest first:".to_owned(),
                format!("1. general {time} #12 bob: [Café] at noon?"),
                format!("2. @bob {time} #3 bob: the [café] was shut"),
                "/goto <1-2> shows one in its room; /search more for older ones".to_owned(),
            ]
        );
    }

    #[test]
    fn search_more_numbers_on_and_says_when_there_is_nothing_older() {
        let mut state = ChatState::new("alice");
        state.add_room("den", RoomKindBody::Public);
        state.switch_to("den");
        assert_eq!(state.search_more(), Err(SearchError::NoSearch));
        let (id, params) = state.start_search("tea", true);
        assert_eq!(params.room.as_deref(), Some("den"));
        state.apply_search_page(
            id,
            SearchBody {
                results: vec![found("den", 9, "tea", &[(0, 3)])],
                next: Some(9),
            },
        );
        let (more_id, more) = state.search_more().expect("a next page");
        assert_eq!(
            (more_id, more.before, more.room.as_deref()),
            (id, Some(9), Some("den"))
        );
        state.apply_search_page(
            id,
            SearchBody {
                results: vec![found("den", 4, "more tea", &[(5, 8)])],
                next: None,
            },
        );
        let texts = notice_texts(&state, "den");
        let last = &texts[texts.len() - 2..];
        assert_eq!(
            last[0].0,
            format!("2. den {} #4 bob: more [tea]", clock(&at(0)))
        );
        assert_eq!(
            last[1].0,
            "/goto <1-2> shows one in its room; no older ones"
        );
        assert_eq!(
            state.search_more(),
            Err(SearchError::NoMore("tea".to_owned()))
        );
        assert_eq!(state.search_result(2), Ok(("den".to_owned(), 4)));
    }

    #[test]
    fn a_search_without_results_says_so_and_a_late_page_of_an_old_search_is_dropped() {
        let mut state = ChatState::new("alice");
        let (old, _) = state.start_search("tea", false);
        let (new, _) = state.start_search("coffee", true);
        state.apply_search_page(
            old,
            SearchBody {
                results: vec![found("general", 1, "tea", &[(0, 3)])],
                next: None,
            },
        );
        assert!(notice_texts(&state, "general").is_empty());
        assert!(state.search_result(1).is_err());
        state.apply_search_page(
            new,
            SearchBody {
                results: Vec::new(),
                next: None,
            },
        );
        assert_eq!(
            notice_texts(&state, "general"),
            [(
                "no messages found for \"coffee\" in general".to_owned(),
                false
            )]
        );
    }

    #[test]
    fn a_refused_search_shows_the_servers_reason_and_is_forgotten() {
        let mut state = ChatState::new("alice");
        let (id, _) = state.start_search("tea", false);
        state.search_failed(id, "a search needs at least one word");
        assert_eq!(
            notice_texts(&state, "general"),
            [(
                "search failed: a search needs at least one word".to_owned(),
                true
            )]
        );
        assert_eq!(state.search_more(), Err(SearchError::NoSearch));

        // A later page that fails can be asked for again.
        let (id, _) = state.start_search("tea", false);
        state.apply_search_page(
            id,
            SearchBody {
                results: vec![found("general", 5, "tea", &[(0, 3)])],
                next: Some(5),
            },
        );
        assert!(state.search_more().is_ok());
        state.search_failed(id, "the server answered 500");
        assert_eq!(
            state.search_more().map(|(_, params)| params.before),
            Ok(Some(5))
        );
    }

    #[test]
    fn goto_a_result_shows_its_room_with_the_message_marked_in_its_context() {
        let mut state = ChatState::new("alice");
        state.add_room("den", RoomKindBody::Public);
        state.apply_history("den", history("den", &[1, 2, 3, 4, 5, 6]), false);
        let (id, _) = state.start_search("m4", false);
        state.apply_search_page(
            id,
            SearchBody {
                results: vec![found("den", 4, "m4", &[(0, 2)])],
                next: None,
            },
        );
        assert_eq!(
            state.search_result(2),
            Err(SearchError::NoSuchResult {
                number: 2,
                count: 1
            })
        );
        let (room, seq) = state.search_result(1).expect("result 1");
        state.show_found(&room, seq, context(&room, &[1, 2, 3, 4], false));
        assert_eq!(state.active(), "den");
        assert_eq!(state.found(), Some(("den", 4)));
        assert_eq!(seqs(&state, "den"), [1, 2, 3, 4, 5, 6]);
        assert_eq!(state.room("den").map(Room::resume_seq), Some(6));
    }

    #[test]
    fn a_result_far_back_is_shown_without_making_a_gap_to_resume_from() {
        let mut state = ChatState::new("alice");
        state.apply_history("general", history("general", &[100, 101, 102]), true);
        state.show_found("general", 20, context("general", &[18, 19, 20], true));
        assert_eq!(seqs(&state, "general"), [18, 19, 20, 100, 101, 102]);
        let general = state.room("general").expect("general");
        // Resuming still starts after the newest page, not after #20: the
        // 79 messages between are not replayed on the next connection.
        assert_eq!(general.resume_seq(), 102);
        assert_eq!(general.oldest_seq(), Some(100));
        assert!(general.has_older);
        assert!(!general.holds(20) && general.holds(100));

        // History loaded back to them takes them into the run.
        state.apply_history(
            "general",
            history("general", &(20..100).collect::<Vec<_>>()),
            true,
        );
        let general = state.room("general").expect("general");
        assert!(general.holds(20));
        assert_eq!(general.oldest_seq(), Some(20));
        assert_eq!(general.resume_seq(), 102);
    }

    #[test]
    fn a_result_page_that_reaches_further_back_extends_the_history() {
        let mut state = ChatState::new("alice");
        state.apply_history("general", history("general", &[5, 6, 7]), true);
        state.show_found("general", 5, context("general", &[3, 4, 5], false));
        let general = state.room("general").expect("general");
        assert_eq!(general.oldest_seq(), Some(3));
        assert!(!general.has_older, "the page said there is nothing older");
        assert_eq!(general.resume_seq(), 7);
    }

    fn sealed(room: &str, seq: i64, username: &str, kind: MlsKindBody) -> ServerFrame {
        match message(room, seq, username, "AAECAw==") {
            ServerFrame::Message {
                username,
                content,
                timestamp,
                id,
                room,
                seq,
                ..
            } => ServerFrame::Message {
                mls: Some(kind),
                username,
                content,
                timestamp,
                id,
                room,
                seq,
                client_id: None,
                reply_to: None,
                edited_at: None,
                deleted: false,
            },
            other => other,
        }
    }

    const VAULT: &str = "dm:alice:bob";

    fn in_vault() -> ChatState {
        let mut state = connected("alice");
        state.add_room(VAULT, RoomKindBody::Direct);
        state.set_encrypted(VAULT, true);
        state.switch_to(VAULT);
        state
    }

    #[test]
    fn ciphertext_is_never_shown_and_what_the_device_reads_replaces_it() {
        let mut state = in_vault();
        let now = Instant::now();
        state.apply(sealed(VAULT, 1, "bob", MlsKindBody::Application), now);
        state.apply(sealed(VAULT, 2, "bob", MlsKindBody::Application), now);
        let line =
            |state: &ChatState, seq| state.room(VAULT).and_then(|r| r.lines.get(&seq)).cloned();
        assert_eq!(line(&state, 1).and_then(|l| l.content), None);
        state.reveal(VAULT, 1, Reading::Text("hello".to_owned()));
        state.reveal(VAULT, 2, Reading::Unreadable);
        assert_eq!(
            line(&state, 1).and_then(|l| l.content).as_deref(),
            Some("hello")
        );
        assert_eq!(line(&state, 2).and_then(|l| l.content), None);
        // A history page of the same room keeps its ciphertext out too.
        let mut item = history(VAULT, &[3]).remove(0);
        item.mls = Some(MlsKindBody::Application);
        item.content = Some("AAECAw==".to_owned());
        item.reply_to = Some(1);
        item.reply = Some(ReplyExcerpt {
            username: "bob".to_owned(),
            excerpt: Some("AAECAw==".to_owned()),
            deleted: false,
        });
        state.apply_history(VAULT, vec![item], false);
        let third = line(&state, 3);
        assert_eq!(third.as_ref().and_then(|l| l.content.clone()), None);
        assert_eq!(
            third.and_then(|l| l.reply).and_then(|reply| reply.excerpt),
            None,
            "the server's excerpt of an encrypted message is ciphertext"
        );
    }

    #[test]
    fn a_commit_is_a_change_of_the_group_not_an_unread_message_nor_something_to_answer() {
        let mut state = in_vault();
        state.switch_to("general");
        state.apply(sealed(VAULT, 1, "bob", MlsKindBody::Commit), Instant::now());
        state.reveal(
            VAULT,
            1,
            Reading::Change("bob added alice to the encrypted group".to_owned()),
        );
        let room = state.room(VAULT).cloned();
        let line = room.as_ref().and_then(|room| room.lines.get(&1));
        assert!(line.is_some_and(Line::is_commit));
        assert_eq!(
            line.and_then(|line| line.group_change.as_deref()),
            Some("bob added alice to the encrypted group")
        );
        assert_eq!(room.map(|room| room.unread), Some(0));
        state.switch_to(VAULT);
        assert_eq!(state.delete(1), Err(ChangeError::NotAMessage(1)));
    }

    #[test]
    fn an_item_seen_as_mls_marks_its_room_encrypted() {
        let mut state = connected("alice");
        state.add_room("vault", RoomKindBody::Public);
        assert!(!state.is_encrypted("vault"));
        state.apply(
            sealed("vault", 1, "bob", MlsKindBody::Application),
            Instant::now(),
        );
        assert!(state.is_encrypted("vault"));
    }

    #[test]
    fn a_message_in_an_encrypted_room_goes_out_sealed_and_is_resent_with_the_same_bytes() {
        let mut state = in_vault();
        let frame = state.compose_sealed("meet at noon", None, |room, client_id, text| {
            assert_eq!((room, text), (VAULT, "meet at noon"));
            Ok(format!("sealed:{client_id}"))
        });
        let Ok(ClientFrame::Message {
            mls,
            content,
            client_id,
            ..
        }) = frame
        else {
            panic!("a message frame, got {frame:?}");
        };
        assert_eq!(mls, Some(MlsKindBody::Application));
        assert_eq!(
            Some(content.clone()),
            client_id.map(|id| format!("sealed:{id}"))
        );
        // The pending line shows the text; a reconnect resends the sealed bytes.
        assert_eq!(
            state
                .pending_in(VAULT)
                .map(|p| p.content.clone())
                .collect::<Vec<_>>(),
            ["meet at noon"]
        );
        let resent: Vec<String> = state
            .on_connected()
            .into_iter()
            .filter_map(|frame| match frame {
                ClientFrame::Message { content, .. } => Some(content),
                _ => None,
            })
            .collect();
        assert_eq!(resent, [content]);
    }

    #[test]
    fn a_message_that_cannot_be_sealed_is_not_queued_and_says_why() {
        let mut state = in_vault();
        let refused = state.compose_sealed("hello", None, |_, _, _| Err("no group".to_owned()));
        assert_eq!(refused, Err(ChangeError::Sealing("no group".to_owned())));
        assert_eq!(state.pending_in(VAULT).count(), 0);
        assert!(matches!(
            state.compose_sealed(" ", None, |_, _, _| Ok(String::new())),
            Err(ChangeError::Invalid(_))
        ));
    }

    #[test]
    fn messages_of_an_encrypted_room_cannot_be_edited() {
        let mut state = in_vault();
        // My message, as the ack of a sealed send stores it: in clear.
        state.apply(message(VAULT, 1, "alice", "hi"), Instant::now());
        assert_eq!(state.edit(1, "changed"), Err(ChangeError::Encrypted));
        assert_eq!(state.begin_edit_last(), Err(ChangeError::Encrypted));
    }
}
