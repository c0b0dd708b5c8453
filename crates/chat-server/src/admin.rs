//! `chat-server admin`: what an operator does to rooms from the command
//! line, against the configured database, while nodes run.

use anyhow::{Context, bail};
use chat_domain::{Role, RoomName, Username};
use chat_storage::{Actor, MembershipOp};

use crate::Settings;

/// What `admin room set-role` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleOutcome {
    /// The change was recorded at this seq of the room.
    Changed { seq: i64 },
    /// The user already had the role.
    Unchanged,
}

/// Gives `user` the `role` in `room`, as the operator: the rules that bind
/// users do not apply, so this is how a room nobody owns (`general`, or a
/// room made before rooms had owners) gets an owner or moderators. A new
/// owner replaces the previous one, who stays on as a moderator; a user who
/// is not a member is added with the role.
///
/// The change is recorded in the room's sequence like any other, so every
/// node shows it. Roles are read from the database on every action, so
/// they take effect at once; a user added this way receives the room on
/// their next join or connection.
pub async fn set_role(
    settings: &Settings,
    room: &str,
    user: &str,
    role: Role,
) -> anyhow::Result<RoleOutcome> {
    let room_name = RoomName::parse(room).map_err(|error| anyhow::anyhow!("{room}: {error}"))?;
    let username = Username::parse(user).map_err(|error| anyhow::anyhow!("{user}: {error}"))?;
    let store = crate::open_store(settings).await?;
    let Some(found) = store.room_by_name(&room_name).await? else {
        bail!("there is no room named '{room_name}'");
    };
    let Some(member) = store.user_by_name(&username).await? else {
        bail!("there is no user named '{username}'");
    };
    let event = store
        .change_membership(
            found.id,
            &Actor::Operator,
            member.id,
            &MembershipOp::SetRole(role),
        )
        .await
        .with_context(|| format!("could not make {username} {role} of {room_name}"))?;
    Ok(match event {
        Some(event) => RoleOutcome::Changed {
            seq: event.seq.get(),
        },
        None => RoleOutcome::Unchanged,
    })
}
