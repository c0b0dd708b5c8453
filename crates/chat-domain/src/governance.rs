//! Who may do what in a room: visibility, roles, membership changes, and
//! the one rule that decides whether an action is allowed.
//!
//! Every route and frame that changes a room asks [`authorize`]; nothing
//! else in the server decides it.

use std::fmt;

use chrono::{DateTime, Utc};

/// Whether a room is listed and open to anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// Listed; anyone may join.
    Public,
    /// Seen only by its members; others are added by the owner or a
    /// moderator. To anyone else it does not exist.
    Private,
}

impl Visibility {
    /// The stable text form used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }

    /// The inverse of [`Visibility::as_str`].
    pub fn from_str_opt(value: &str) -> Option<Visibility> {
        match value {
            "public" => Some(Visibility::Public),
            "private" => Some(Visibility::Private),
            _ => None,
        }
    }
}

/// A member's role in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Takes part; may leave.
    Member,
    /// May add, kick, mute and ban members, and set the topic.
    Moderator,
    /// The creator: may do everything a moderator may, and make moderators,
    /// change the visibility and delete the room.
    Owner,
}

impl Role {
    /// The stable text form used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Owner => "owner",
        }
    }

    /// The inverse of [`Role::as_str`].
    pub fn from_str_opt(value: &str) -> Option<Role> {
        match value {
            "member" => Some(Role::Member),
            "moderator" => Some(Role::Moderator),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of membership, as it is recorded in the room's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberChange {
    /// The user joined a public room (or opened a direct conversation).
    Joined,
    /// The user left.
    Left,
    /// The owner or a moderator added the user.
    Added,
    /// The owner or a moderator removed the user; they may join again.
    Kicked,
    /// The owner or a moderator removed the user and barred their return.
    Banned,
    /// The bar was lifted.
    Unbanned,
    /// The user may read but not post.
    Muted,
    /// The user may post again.
    Unmuted,
    /// The user's role changed.
    Role,
}

impl MemberChange {
    /// Every change, in declaration order.
    pub const ALL: [MemberChange; 9] = [
        MemberChange::Joined,
        MemberChange::Left,
        MemberChange::Added,
        MemberChange::Kicked,
        MemberChange::Banned,
        MemberChange::Unbanned,
        MemberChange::Muted,
        MemberChange::Unmuted,
        MemberChange::Role,
    ];

    /// The stable text form used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberChange::Joined => "joined",
            MemberChange::Left => "left",
            MemberChange::Added => "added",
            MemberChange::Kicked => "kicked",
            MemberChange::Banned => "banned",
            MemberChange::Unbanned => "unbanned",
            MemberChange::Muted => "muted",
            MemberChange::Unmuted => "unmuted",
            MemberChange::Role => "role",
        }
    }

    /// The inverse of [`MemberChange::as_str`].
    pub fn from_str_opt(value: &str) -> Option<MemberChange> {
        MemberChange::ALL
            .into_iter()
            .find(|change| change.as_str() == value)
    }

    /// Whether the user is no longer a member afterwards.
    pub fn removes(self) -> bool {
        matches!(
            self,
            MemberChange::Left | MemberChange::Kicked | MemberChange::Banned
        )
    }

    /// Whether the user is a member afterwards who was not before.
    pub fn adds(self) -> bool {
        matches!(self, MemberChange::Joined | MemberChange::Added)
    }
}

/// What someone asks to do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Add another user to the room.
    Add,
    /// Remove a member.
    Kick,
    /// Remove a user and bar their return.
    Ban,
    /// Lift a ban.
    Unban,
    /// Stop a member from posting for a while.
    Mute,
    /// Let a muted member post again.
    Unmute,
    /// Give a member a role.
    SetRole(Role),
    /// Change the topic.
    SetTopic,
    /// Make the room public or private.
    SetVisibility,
    /// Delete the room and everything in it.
    DeleteRoom,
}

/// Why an action, a message or a look-up was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The room does not exist, or the caller may not know that it does.
    #[error("room not found")]
    RoomNotFound,
    /// The caller is not a member of the room.
    #[error("you are not a member of this room")]
    NotAMember,
    /// The caller is banned from the room.
    #[error("you are banned from this room")]
    Banned {
        /// When the ban ends; `None` for good.
        until: Option<DateTime<Utc>>,
    },
    /// The caller is muted in the room.
    #[error("you are muted in this room")]
    Muted {
        /// When they may post again.
        until: DateTime<Utc>,
    },
    /// The caller's role does not allow it.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The target user is not in the state the action needs (not a member,
    /// not banned, already a member...).
    #[error("{0}")]
    Conflict(&'static str),
    /// No message has that seq in the room (or it is not a message but a
    /// recorded change).
    #[error("no message has that seq in this room")]
    MessageNotFound,
    /// The message was deleted: it can be neither edited, deleted again
    /// nor reacted to.
    #[error("the message was deleted")]
    MessageDeleted,
    /// The caller has not reacted to the message with that reaction.
    #[error("you have not reacted to that message with that")]
    ReactionNotFound,
    /// The message has as many kinds of reaction as it may have; an
    /// existing kind can still be added to.
    #[error("a message has at most {max} kinds of reaction")]
    TooManyReactions {
        /// The limit.
        max: usize,
    },
    /// The room is end-to-end encrypted: the server takes MLS ciphertext
    /// there, never plaintext it could read.
    #[error("this room is end-to-end encrypted: plaintext is not accepted")]
    EncryptionRequired,
    /// An MLS commit was built on an epoch the room's group has left:
    /// another commit was accepted first.
    #[error("the group is at epoch {current}; process the commits since and commit again")]
    StaleEpoch {
        /// The epoch the next commit must build on.
        current: u64,
    },
}

/// A change to a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageAction {
    /// Replace its text.
    Edit,
    /// Delete it, leaving a tombstone.
    Delete,
    /// Add or remove one's own reaction.
    React,
}

/// Decides whether someone may change a message: its author may edit and
/// delete it; a room's owner and moderators may delete anyone's, but edit
/// only their own; every member may react to any message. `role` is the actor's role in the room (`None` when not
/// a member, or in a direct conversation, which has no roles).
pub fn authorize_message(
    action: MessageAction,
    role: Option<Role>,
    is_author: bool,
) -> Result<(), Refusal> {
    match action {
        _ if is_author => Ok(()),
        MessageAction::React => Ok(()),
        MessageAction::Edit => Err(Refusal::Forbidden("only its author may edit a message")),
        MessageAction::Delete if matches!(role, Some(Role::Owner | Role::Moderator)) => Ok(()),
        MessageAction::Delete => Err(Refusal::Forbidden(
            "only its author, the room's owner or a moderator may delete a message",
        )),
    }
}

/// Decides whether `actor` (their role in the room, `None` when not a
/// member) may do `action` to `target` (theirs). Direct conversations have
/// no roles: nothing here is allowed in them (see [`authorize_in`]).
pub fn authorize(action: Action, actor: Option<Role>, target: Option<Role>) -> Result<(), Refusal> {
    let Some(actor) = actor else {
        return Err(Refusal::NotAMember);
    };
    let owner_only = |allowed: bool, why: &'static str| {
        if allowed {
            Ok(())
        } else {
            Err(Refusal::Forbidden(why))
        }
    };
    match action {
        Action::SetTopic => owner_only(
            actor >= Role::Moderator,
            "only the owner or a moderator may change the topic",
        ),
        Action::SetVisibility => owner_only(
            actor == Role::Owner,
            "only the owner may change the visibility",
        ),
        Action::DeleteRoom => {
            owner_only(actor == Role::Owner, "only the owner may delete the room")
        }
        Action::SetRole(Role::Owner) => Err(Refusal::Forbidden(
            "ownership is given by an operator (chat-server admin room set-role)",
        )),
        Action::SetRole(_) => {
            owner_only(actor == Role::Owner, "only the owner may change roles")?;
            match target {
                None => Err(Refusal::Conflict("the user is not a member of this room")),
                Some(Role::Owner) => Err(Refusal::Forbidden("the owner's role cannot change")),
                Some(_) => Ok(()),
            }
        }
        Action::Add
        | Action::Kick
        | Action::Ban
        | Action::Unban
        | Action::Mute
        | Action::Unmute => {
            if actor < Role::Moderator {
                return Err(Refusal::Forbidden(
                    "only the owner or a moderator may do this",
                ));
            }
            // Nobody acts on the owner, and moderators not on each other.
            match target {
                Some(Role::Owner) => Err(Refusal::Forbidden("the owner cannot be moderated")),
                Some(Role::Moderator) if actor != Role::Owner => {
                    Err(Refusal::Forbidden("only the owner may act on a moderator"))
                }
                _ => Ok(()),
            }
        }
    }
}

/// [`authorize`] for a room of `kind`: a direct conversation has two
/// members and no roles, so no governing action applies to it.
pub fn authorize_in(
    kind: crate::RoomKind,
    action: Action,
    actor: Option<Role>,
    target: Option<Role>,
) -> Result<(), Refusal> {
    if kind == crate::RoomKind::Direct {
        return Err(Refusal::Forbidden(
            "a direct conversation has no owner or moderators",
        ));
    }
    authorize(action, actor, target)
}

/// Whether a ban ending at `until` (`None`: never) still holds at `now`.
pub fn ban_holds(until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    until.is_none_or(|until| until > now)
}

/// Whether a mute ending at `until` still holds at `now`.
pub fn mute_holds(until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    until.is_some_and(|until| until > now)
}

/// The most kinds of reaction one message may carry.
pub const MAX_REACTION_KINDS: usize = 20;

/// The longest a room topic may be, in characters.
pub const MAX_TOPIC_CHARS: usize = 256;

/// A room's topic: at most [`MAX_TOPIC_CHARS`] characters, trimmed; an
/// empty one clears it.
pub fn parse_topic(topic: &str) -> Result<Option<String>, crate::DomainError> {
    let trimmed = topic.trim();
    if trimmed.chars().count() > MAX_TOPIC_CHARS {
        return Err(crate::DomainError::TopicTooLong {
            max: MAX_TOPIC_CHARS,
        });
    }
    if trimmed.chars().any(char::is_control) {
        return Err(crate::DomainError::TopicCharacters);
    }
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

/// The longest a ban reason may be, in characters.
pub const MAX_REASON_CHARS: usize = 512;

/// A moderator's reason: at most [`MAX_REASON_CHARS`] characters,
/// trimmed; an empty one is none.
pub fn parse_reason(reason: &str) -> Result<Option<String>, crate::DomainError> {
    let trimmed = reason.trim();
    if trimmed.chars().count() > MAX_REASON_CHARS {
        return Err(crate::DomainError::ReasonTooLong {
            max: MAX_REASON_CHARS,
        });
    }
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authors_change_their_messages_and_moderators_only_delete_others() {
        for role in [
            None,
            Some(Role::Member),
            Some(Role::Moderator),
            Some(Role::Owner),
        ] {
            assert_eq!(authorize_message(MessageAction::Edit, role, true), Ok(()));
            assert_eq!(authorize_message(MessageAction::Delete, role, true), Ok(()));
            assert!(matches!(
                authorize_message(MessageAction::Edit, role, false),
                Err(Refusal::Forbidden(_))
            ));
        }
        for role in [Some(Role::Moderator), Some(Role::Owner)] {
            assert_eq!(
                authorize_message(MessageAction::Delete, role, false),
                Ok(())
            );
        }
        for role in [None, Some(Role::Member), Some(Role::Owner)] {
            assert_eq!(authorize_message(MessageAction::React, role, false), Ok(()));
        }
        for role in [None, Some(Role::Member)] {
            assert!(matches!(
                authorize_message(MessageAction::Delete, role, false),
                Err(Refusal::Forbidden(_))
            ));
        }
    }

    #[test]
    fn members_and_outsiders_may_not_moderate() {
        for action in [Action::Add, Action::Kick, Action::Ban, Action::Mute] {
            assert!(matches!(
                authorize(action, Some(Role::Member), None),
                Err(Refusal::Forbidden(_))
            ));
            assert_eq!(authorize(action, None, None), Err(Refusal::NotAMember));
        }
    }

    #[test]
    fn moderators_act_on_members_but_not_on_the_owner_or_each_other() {
        let m = Some(Role::Moderator);
        assert_eq!(authorize(Action::Kick, m, Some(Role::Member)), Ok(()));
        assert_eq!(authorize(Action::Ban, m, None), Ok(()));
        assert!(authorize(Action::Ban, m, Some(Role::Owner)).is_err());
        assert!(authorize(Action::Kick, m, Some(Role::Moderator)).is_err());
        assert!(authorize(Action::SetRole(Role::Moderator), m, Some(Role::Member)).is_err());
        assert!(authorize(Action::SetVisibility, m, None).is_err());
        assert!(authorize(Action::DeleteRoom, m, None).is_err());
        assert_eq!(authorize(Action::SetTopic, m, None), Ok(()));
    }

    #[test]
    fn the_owner_does_everything_but_act_on_themselves_or_give_ownership() {
        let o = Some(Role::Owner);
        assert_eq!(authorize(Action::Kick, o, Some(Role::Moderator)), Ok(()));
        assert_eq!(
            authorize(Action::SetRole(Role::Moderator), o, Some(Role::Member)),
            Ok(())
        );
        assert_eq!(authorize(Action::DeleteRoom, o, None), Ok(()));
        assert!(authorize(Action::Ban, o, Some(Role::Owner)).is_err());
        assert!(authorize(Action::SetRole(Role::Owner), o, Some(Role::Member)).is_err());
        assert!(matches!(
            authorize(Action::SetRole(Role::Member), o, None),
            Err(Refusal::Conflict(_))
        ));
    }

    #[test]
    fn direct_conversations_have_no_governance() {
        assert!(
            authorize_in(
                crate::RoomKind::Direct,
                Action::Kick,
                Some(Role::Owner),
                Some(Role::Member)
            )
            .is_err()
        );
    }

    #[test]
    fn bans_and_mutes_hold_until_their_end() {
        let now = Utc::now();
        let later = now + chrono::Duration::minutes(5);
        assert!(ban_holds(None, now));
        assert!(ban_holds(Some(later), now));
        assert!(!ban_holds(Some(now), now));
        assert!(mute_holds(Some(later), now));
        assert!(!mute_holds(None, now));
    }

    #[test]
    fn topics_and_reasons_are_trimmed_and_bounded() {
        assert_eq!(parse_topic("  hi  "), Ok(Some("hi".to_owned())));
        assert_eq!(parse_topic("   "), Ok(None));
        assert!(parse_topic(&"x".repeat(MAX_TOPIC_CHARS + 1)).is_err());
        assert!(parse_topic("a\nb").is_err());
        assert_eq!(parse_reason(""), Ok(None));
        assert!(parse_reason(&"x".repeat(MAX_REASON_CHARS + 1)).is_err());
    }

    #[test]
    fn changes_round_trip_through_their_names() {
        for change in MemberChange::ALL {
            assert_eq!(MemberChange::from_str_opt(change.as_str()), Some(change));
        }
        for role in [Role::Member, Role::Moderator, Role::Owner] {
            assert_eq!(Role::from_str_opt(role.as_str()), Some(role));
        }
    }
}
