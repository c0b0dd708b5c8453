//! Membership changes and removals in words, as the timeline shows them:
//! "bob was kicked by alice (spam)", "erin is now a moderator"; and the
//! start of a message a reply quotes.

use chat_protocol::rest::{MemberChangeBody, MemberEventBody, RoleBody};
use chat_protocol::ws::LeftReason;
use chrono::{DateTime, Local, Utc};

/// A time as the screen shows it, in local time: `12:30` today, with the
/// date on other days.
pub(crate) fn clock(timestamp: &DateTime<Utc>) -> String {
    let local = timestamp.with_timezone(&Local);
    if local.date_naive() == Local::now().date_naive() {
        local.format("%H:%M").to_string()
    } else {
        local.format("%b %d %H:%M").to_string()
    }
}

/// What happened to `username`, in a sentence without a final stop.
pub(crate) fn member_event(username: &str, event: &MemberEventBody) -> String {
    let by = by(event.by.as_deref());
    let until = until(event.until.as_ref());
    let reason = reason(event.reason.as_deref());
    match event.change {
        MemberChangeBody::Joined => format!("{username} joined"),
        MemberChangeBody::Left => format!("{username} left"),
        MemberChangeBody::Added => match event.role {
            Some(role @ (RoleBody::Moderator | RoleBody::Owner)) => {
                format!("{username} was added{by} as {}", role_name(role))
            }
            _ => format!("{username} was added{by}"),
        },
        MemberChangeBody::Kicked => format!("{username} was kicked{by}{reason}"),
        MemberChangeBody::Banned => format!("{username} was banned{by}{until}{reason}"),
        MemberChangeBody::Unbanned => format!("{username} was unbanned{by}"),
        MemberChangeBody::Muted => format!("{username} was muted{by}{until}{reason}"),
        MemberChangeBody::Unmuted => format!("{username} was unmuted{by}"),
        MemberChangeBody::Role => match event.role {
            Some(role) => format!("{username} is now {}", with_article(role)),
            None => format!("{username}'s role was changed{by}"),
        },
    }
}

/// The line shown when this user is taken out of `room` (its name as the
/// screen shows it); `event` is the recorded change behind it, when the
/// client received it.
pub(crate) fn removal(
    room: &str,
    reason: Option<LeftReason>,
    event: Option<&MemberEventBody>,
) -> String {
    // Without the event, who did it is not known.
    let by = event.map_or_else(String::new, |event| by(event.by.as_deref()));
    let until = until(event.and_then(|event| event.until.as_ref()));
    let why = self::reason(event.and_then(|event| event.reason.as_deref()));
    match reason {
        Some(LeftReason::Kicked) => format!("You were kicked from {room}{by}{why}"),
        Some(LeftReason::Banned) => format!("You were banned from {room}{by}{until}{why}"),
        Some(LeftReason::RoomDeleted) => format!("{room} was deleted"),
        Some(LeftReason::Left) | None => format!("You left {room}"),
    }
}

/// An `until` of an error or an event, as " until 12:30".
pub(crate) fn until(until: Option<&DateTime<Utc>>) -> String {
    until.map_or_else(String::new, |until| format!(" until {}", clock(until)))
}

fn by(by: Option<&str>) -> String {
    match by {
        Some(by) => format!(" by {by}"),
        // The server's operator acts without a user name.
        None => " by the operator".to_owned(),
    }
}

fn reason(reason: Option<&str>) -> String {
    reason.map_or_else(String::new, |reason| format!(" ({reason})"))
}

fn role_name(role: RoleBody) -> &'static str {
    match role {
        RoleBody::Owner => "owner",
        RoleBody::Moderator => "moderator",
        RoleBody::Member => "member",
    }
}

fn with_article(role: RoleBody) -> String {
    match role {
        RoleBody::Owner => "the owner".to_owned(),
        other => format!("a {}", role_name(other)),
    }
}

/// A role as the member list shows it.
pub(crate) fn role(role: RoleBody) -> &'static str {
    role_name(role)
}

/// The start of a text on one line: white space runs (new lines included)
/// become one space, and a text longer than `max` characters is cut after
/// a word where it can be, with an ellipsis.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let line = words.join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let cut: String = line.chars().take(max).collect();
    let cut = match cut.rfind(' ') {
        Some(space) if space > 0 => &cut[..space],
        _ => cut.as_str(),
    };
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn event(change: MemberChangeBody) -> MemberEventBody {
        MemberEventBody {
            change,
            by: Some("alice".to_owned()),
            role: None,
            until: None,
            reason: None,
        }
    }

    #[test]
    fn each_change_reads_as_a_sentence() {
        let kicked = MemberEventBody {
            reason: Some("spam".to_owned()),
            ..event(MemberChangeBody::Kicked)
        };
        assert_eq!(
            member_event("bob", &kicked),
            "bob was kicked by alice (spam)"
        );
        assert_eq!(
            member_event("carol", &event(MemberChangeBody::Joined)),
            "carol joined"
        );
        let promoted = MemberEventBody {
            role: Some(RoleBody::Moderator),
            ..event(MemberChangeBody::Role)
        };
        assert_eq!(member_event("erin", &promoted), "erin is now a moderator");
        assert_eq!(
            member_event("carol", &event(MemberChangeBody::Added)),
            "carol was added by alice"
        );
    }

    #[test]
    fn an_excerpt_is_one_line_cut_after_a_word() {
        assert_eq!(excerpt("tea or\ncoffee?", 40), "tea or coffee?");
        assert_eq!(
            excerpt("first words of a rather long message", 16),
            "first words of…"
        );
        assert_eq!(excerpt("unbreakablewordhere", 5), "unbre…");
    }

    #[test]
    fn a_mute_says_until_when_in_local_time() {
        let until = Utc
            .with_ymd_and_hms(2024, 1, 1, 12, 30, 0)
            .single()
            .expect("a valid date");
        let muted = MemberEventBody {
            until: Some(until),
            ..event(MemberChangeBody::Muted)
        };
        assert_eq!(
            member_event("dave", &muted),
            format!("dave was muted by alice until {}", clock(&until))
        );
    }

    #[test]
    fn the_operator_is_named_when_no_user_acted() {
        let kicked = MemberEventBody {
            by: None,
            ..event(MemberChangeBody::Kicked)
        };
        assert_eq!(
            member_event("bob", &kicked),
            "bob was kicked by the operator"
        );
    }

    #[test]
    fn a_removal_names_who_did_it_and_why() {
        let banned = MemberEventBody {
            reason: Some("flooding".to_owned()),
            ..event(MemberChangeBody::Banned)
        };
        assert_eq!(
            removal("lobby", Some(LeftReason::Banned), Some(&banned)),
            "You were banned from lobby by alice (flooding)"
        );
        assert_eq!(
            removal("lobby", Some(LeftReason::RoomDeleted), None),
            "lobby was deleted"
        );
        assert_eq!(removal("lobby", None, None), "You left lobby");
        assert_eq!(
            removal("lobby", Some(LeftReason::Kicked), None),
            "You were kicked from lobby"
        );
    }
}
