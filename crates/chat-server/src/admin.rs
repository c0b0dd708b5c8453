//! `chat-server admin`: what an operator does to accounts, sessions and
//! rooms from the command line, against the configured database, while
//! nodes run.
//!
//! Every action is one of `chat_transport::operator`'s: it changes the
//! database, then publishes what a node would (the end of a session, a
//! membership change, a room's deletion) into
//! [`chat_transport::operator::Announcements`], which are sent to the nodes
//! over Redis when REDIS_URL is set. Without Redis, a node finds the change
//! in the database within CHAT_RECHECK_SECS (its sockets) or at once (every
//! request checks its session).
//!
//! Output is a table, or JSON with `--json`. A name that does not exist is
//! an error (and a non-zero exit), and changes nothing.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use chat_domain::{Role, RoomName, Username};
use chat_storage::{Room, RoomKey, Store, User};
use chat_transport::operator::{self, Announcements};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::{AdminCommand, RoomAdmin, SessionsAdmin, Settings, UserAdmin};

/// What `admin room set-role` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleOutcome {
    /// The change was recorded at this seq of the room.
    Changed { seq: i64 },
    /// The user already had the role.
    Unchanged,
}

/// How the result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns, for people.
    Table,
    /// One JSON document, for scripts.
    Json,
}

/// An opened database and what the action publishes.
struct Admin<'a> {
    settings: &'a Settings,
    store: Store,
    announcements: Announcements,
}

impl<'a> Admin<'a> {
    async fn open(settings: &'a Settings) -> anyhow::Result<Admin<'a>> {
        Ok(Admin {
            settings,
            store: crate::open_store(settings).await?,
            announcements: Announcements::new(),
        })
    }

    async fn user(&self, name: &str) -> anyhow::Result<User> {
        let username = Username::parse(name).map_err(|error| anyhow::anyhow!("{name}: {error}"))?;
        match self.store.user_by_name(&username).await? {
            Some(user) => Ok(user),
            None => bail!("there is no user named '{username}'"),
        }
    }

    async fn room(&self, name: &str) -> anyhow::Result<Room> {
        let room_name =
            RoomName::parse(name).map_err(|error| anyhow::anyhow!("{name}: {error}"))?;
        match self.store.room_by_name(&room_name).await? {
            Some(room) => Ok(room),
            None => bail!("there is no room named '{room_name}'"),
        }
    }

    /// Sends what the action published to the other nodes, when there is
    /// Redis. The change is stored whatever happens here: a failure is a
    /// warning, and the nodes find the change in the database.
    async fn announce(&self) {
        if self.announcements.is_empty() {
            return;
        }
        let Some(url) = self
            .settings
            .redis_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
        else {
            return;
        };
        match self
            .announcements
            .send(url, &self.settings.redis_namespace)
            .await
        {
            Ok(sent) => tracing::debug!(sent, "told the nodes through Redis"),
            Err(error) => tracing::warn!(
                error = %format!("{:#}", anyhow::Error::new(error)),
                "could not tell the nodes through Redis; each finds the change in the database \
                 within CHAT_RECHECK_SECS"
            ),
        }
    }
}

/// Runs an admin command; returns what to print.
pub async fn run(
    settings: &Settings,
    command: &AdminCommand,
    format: Format,
) -> anyhow::Result<String> {
    let admin = Admin::open(settings).await?;
    let value = match command {
        AdminCommand::User(command) => user_command(&admin, command).await?,
        AdminCommand::Sessions(SessionsAdmin::Revoke { user }) => {
            let user = admin.user(user).await?;
            let ended = operator::revoke_sessions(&admin.store, &admin.announcements, &user)
                .await
                .with_context(|| format!("could not end the sessions of {}", user.username))?;
            admin.announce().await;
            Report::Done(
                format!(
                    "{}: {ended} session(s) ended, their sockets closed",
                    user.username
                ),
                json!({"user": user.username.as_str(), "sessions_ended": ended}),
            )
        }
        AdminCommand::Room(command) => room_command(&admin, command).await?,
    };
    Ok(value.render(format))
}

/// What a command prints, in both forms.
enum Report {
    /// A change: one sentence, or its JSON.
    Done(String, Value),
    /// A listing: headers and rows, or its JSON.
    Table(Vec<&'static str>, Vec<Vec<String>>, Value),
    /// One item: `field: value` lines, then tables, or its JSON.
    Item(Vec<(&'static str, String)>, Vec<(String, Report)>, Value),
}

impl Report {
    fn render(self, format: Format) -> String {
        match (self, format) {
            (
                Report::Done(_, value) | Report::Table(_, _, value) | Report::Item(_, _, value),
                Format::Json,
            ) => {
                format!("{value:#}\n")
            }
            (Report::Done(text, _), Format::Table) => format!("{text}\n"),
            (Report::Table(headers, rows, _), Format::Table) => table(&headers, &rows),
            (Report::Item(fields, parts, _), Format::Table) => {
                let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
                let mut out = String::new();
                for (name, value) in fields {
                    let _ = writeln!(out, "{name:width$}  {value}");
                }
                for (title, part) in parts {
                    let _ = write!(out, "\n{title}:\n{}", part.render(Format::Table));
                }
                out
            }
        }
    }
}

/// Left-aligned columns two spaces apart, headers in capitals.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let mut text = String::new();
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(text, "{cell:width$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row.clone());
    }
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    out
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn json_time(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |at| Value::String(at.to_rfc3339()))
}

/// `active`, `disabled` or `deleted`.
fn status(user: &User) -> &'static str {
    if user.deleted_at.is_some() {
        "deleted"
    } else if user.disabled_at.is_some() {
        "disabled"
    } else {
        "active"
    }
}

async fn user_command(admin: &Admin<'_>, command: &UserAdmin) -> anyhow::Result<Report> {
    let store = &admin.store;
    let fanout = &admin.announcements;
    Ok(match command {
        UserAdmin::List => {
            let users = store.list_users().await?;
            let rows = users
                .iter()
                .map(|summary| {
                    vec![
                        summary.user.id.to_string(),
                        summary.user.username.as_str().to_owned(),
                        status(&summary.user).to_owned(),
                        summary.open_sessions.to_string(),
                        summary.rooms.to_string(),
                        time(summary.user.created_at),
                    ]
                })
                .collect();
            let value = users
                .iter()
                .map(|summary| {
                    json!({
                        "id": summary.user.id.get(),
                        "username": summary.user.username.as_str(),
                        "status": status(&summary.user),
                        "open_sessions": summary.open_sessions,
                        "rooms": summary.rooms,
                        "created_at": json_time(Some(summary.user.created_at)),
                        "disabled_at": json_time(summary.user.disabled_at),
                        "deleted_at": json_time(summary.user.deleted_at),
                    })
                })
                .collect();
            Report::Table(
                vec!["id", "name", "status", "sessions", "rooms", "created"],
                rows,
                Value::Array(value),
            )
        }
        UserAdmin::Show { user } => {
            let user = admin.user(user).await?;
            let Some(details) = store.user_details(user.id).await? else {
                bail!("there is no user named '{}'", user.username);
            };
            let user = &details.user;
            let sessions = Report::Table(
                vec!["session", "signed in", "expires"],
                details
                    .sessions
                    .iter()
                    .map(|s| vec![s.id.to_string(), time(s.created_at), time(s.expires_at)])
                    .collect(),
                Value::Null,
            );
            let rooms = Report::Table(
                vec!["room", "role"],
                details
                    .rooms
                    .iter()
                    .map(|(room, role)| vec![room.as_str().to_owned(), role.as_str().to_owned()])
                    .collect(),
                Value::Null,
            );
            let value = json!({
                "id": user.id.get(),
                "username": user.username.as_str(),
                "status": status(user),
                "created_at": json_time(Some(user.created_at)),
                "disabled_at": json_time(user.disabled_at),
                "deleted_at": json_time(user.deleted_at),
                "messages": details.messages,
                "sessions": details.sessions.iter().map(|s| json!({
                    "id": s.id.to_string(),
                    "created_at": json_time(Some(s.created_at)),
                    "expires_at": json_time(Some(s.expires_at)),
                })).collect::<Vec<_>>(),
                "rooms": details.rooms.iter().map(|(room, role)| json!({
                    "room": room.as_str(),
                    "role": role.as_str(),
                })).collect::<Vec<_>>(),
            });
            Report::Item(
                vec![
                    ("id", user.id.to_string()),
                    ("name", user.username.as_str().to_owned()),
                    ("status", status(user).to_owned()),
                    ("created", time(user.created_at)),
                    ("messages", details.messages.to_string()),
                ],
                vec![
                    ("open sessions".to_owned(), sessions),
                    ("rooms".to_owned(), rooms),
                ],
                value,
            )
        }
        UserAdmin::Disable { user } => {
            let user = admin.user(user).await?;
            if user.deleted_at.is_some() {
                bail!("{} is deleted; there is nothing to disable", user.username);
            }
            let (changed, ended) = operator::disable_user(store, fanout, &user)
                .await
                .with_context(|| format!("could not disable {}", user.username))?;
            admin.announce().await;
            let text = if changed {
                format!(
                    "{} is disabled: {ended} session(s) ended, sign-ins refused",
                    user.username
                )
            } else {
                format!(
                    "{} was already disabled; {ended} session(s) ended",
                    user.username
                )
            };
            Report::Done(
                text,
                json!({
                    "user": user.username.as_str(),
                    "status": "disabled",
                    "changed": changed,
                    "sessions_ended": ended,
                }),
            )
        }
        UserAdmin::Enable { user } => {
            let user = admin.user(user).await?;
            if user.deleted_at.is_some() {
                bail!("{} is deleted; it cannot be enabled", user.username);
            }
            let changed = store.enable_user(user.id).await?;
            let text = if changed {
                format!("{} is enabled: it may sign in again", user.username)
            } else {
                format!("{} was not disabled; nothing changed", user.username)
            };
            Report::Done(
                text,
                json!({"user": user.username.as_str(), "status": "active", "changed": changed}),
            )
        }
        UserAdmin::Delete {
            user,
            erase_messages,
        } => {
            let user = admin.user(user).await?;
            let deleted = operator::delete_user(store, fanout, &user, *erase_messages)
                .await
                .with_context(|| format!("could not delete {}", user.username))?;
            admin.announce().await;
            let erased = if *erase_messages {
                format!(
                    ", the text of {} message(s) in {} room(s) erased",
                    deleted.erased,
                    deleted.erased_in.len()
                )
            } else {
                String::new()
            };
            Report::Done(
                format!(
                    "{} is deleted: {} session(s) ended{erased}",
                    user.username,
                    deleted.sessions.len()
                ),
                json!({
                    "user": user.username.as_str(),
                    "status": "deleted",
                    "sessions_ended": deleted.sessions.len(),
                    "messages_erased": deleted.erased,
                }),
            )
        }
    })
}

async fn room_command(admin: &Admin<'_>, command: &RoomAdmin) -> anyhow::Result<Report> {
    let store = &admin.store;
    let fanout = &admin.announcements;
    Ok(match command {
        RoomAdmin::List => {
            let rooms = store.list_rooms().await?;
            let owner = |overview: &chat_storage::RoomOverview| {
                overview.owner.as_ref().map(|name| name.as_str().to_owned())
            };
            let rows = rooms
                .iter()
                .map(|overview| {
                    vec![
                        overview.room.id.to_string(),
                        overview.room.name.as_str().to_owned(),
                        overview.room.kind.as_str().to_owned(),
                        overview.room.visibility.as_str().to_owned(),
                        overview.members.to_string(),
                        owner(overview).unwrap_or_else(|| "-".to_owned()),
                        overview.room.last_seq.get().to_string(),
                    ]
                })
                .collect();
            let value = rooms
                .iter()
                .map(|overview| {
                    json!({
                        "id": overview.room.id.get(),
                        "name": overview.room.name.as_str(),
                        "kind": overview.room.kind.as_str(),
                        "visibility": overview.room.visibility.as_str(),
                        "members": overview.members,
                        "owner": owner(overview),
                        "last_seq": overview.room.last_seq.get(),
                        "created_at": json_time(Some(overview.room.created_at)),
                    })
                })
                .collect();
            Report::Table(
                vec![
                    "id",
                    "name",
                    "kind",
                    "visibility",
                    "members",
                    "owner",
                    "last seq",
                ],
                rows,
                Value::Array(value),
            )
        }
        RoomAdmin::Show { room } => {
            let room = admin.room(room).await?;
            let members = store.room_members(room.id).await?;
            let bans = store.room_bans(room.id).await?;
            let value = json!({
                "id": room.id.get(),
                "name": room.name.as_str(),
                "kind": room.kind.as_str(),
                "visibility": room.visibility.as_str(),
                "topic": room.topic,
                "last_seq": room.last_seq.get(),
                "created_at": json_time(Some(room.created_at)),
                "members": members.iter().map(|m| json!({
                    "username": m.username.as_str(),
                    "role": m.role.as_str(),
                    "muted_until": json_time(m.muted_until),
                })).collect::<Vec<_>>(),
                "bans": bans.iter().map(|b| json!({
                    "username": b.username.as_str(),
                    "until": json_time(b.until),
                })).collect::<Vec<_>>(),
            });
            Report::Item(
                vec![
                    ("id", room.id.to_string()),
                    ("name", room.name.as_str().to_owned()),
                    ("kind", room.kind.as_str().to_owned()),
                    ("visibility", room.visibility.as_str().to_owned()),
                    ("topic", room.topic.clone().unwrap_or_default()),
                    ("last seq", room.last_seq.get().to_string()),
                    ("created", time(room.created_at)),
                ],
                vec![
                    (
                        "members".to_owned(),
                        Report::Table(
                            vec!["name", "role", "muted until"],
                            members
                                .iter()
                                .map(|m| {
                                    vec![
                                        m.username.as_str().to_owned(),
                                        m.role.as_str().to_owned(),
                                        m.muted_until.map(time).unwrap_or_default(),
                                    ]
                                })
                                .collect(),
                            Value::Null,
                        ),
                    ),
                    (
                        "bans".to_owned(),
                        Report::Table(
                            vec!["name", "until"],
                            bans.iter()
                                .map(|b| {
                                    vec![
                                        b.username.as_str().to_owned(),
                                        b.until.map_or_else(|| "for good".to_owned(), time),
                                    ]
                                })
                                .collect(),
                            Value::Null,
                        ),
                    ),
                ],
                value,
            )
        }
        RoomAdmin::Delete { room } => {
            let room = admin.room(room).await?;
            let deleted = operator::delete_room(store, fanout, &RoomKey::from(&room))
                .await
                .with_context(|| format!("could not delete {}", room.name))?;
            admin.announce().await;
            if !deleted {
                bail!("there is no room named '{}'", room.name);
            }
            Report::Done(
                format!("{} is deleted, with its messages", room.name),
                json!({"room": room.name.as_str(), "deleted": true}),
            )
        }
        RoomAdmin::SetOwner { room, user } => role_report(admin, room, user, Role::Owner).await?,
        RoomAdmin::SetRole { room, user, role } => role_report(admin, room, user, *role).await?,
    })
}

async fn role_report(
    admin: &Admin<'_>,
    room: &str,
    user: &str,
    role: Role,
) -> anyhow::Result<Report> {
    let (room, user, outcome) = change_role(admin, room, user, role).await?;
    let (text, seq) = match outcome {
        RoleOutcome::Changed { seq } => (
            format!(
                "{} is now {role} of {} (recorded at seq {seq})",
                user.username, room.name
            ),
            Some(seq),
        ),
        RoleOutcome::Unchanged => (
            format!(
                "{} already is {role} of {}; nothing changed",
                user.username, room.name
            ),
            None,
        ),
    };
    Ok(Report::Done(
        text,
        json!({
            "room": room.name.as_str(),
            "user": user.username.as_str(),
            "role": role.as_str(),
            "changed": seq.is_some(),
            "seq": seq,
        }),
    ))
}

async fn change_role(
    admin: &Admin<'_>,
    room: &str,
    user: &str,
    role: Role,
) -> anyhow::Result<(Room, User, RoleOutcome)> {
    let room = admin.room(room).await?;
    let user = admin.user(user).await?;
    if user.deleted_at.is_some() {
        bail!("{} is deleted; it cannot be given a role", user.username);
    }
    let event = operator::set_role(
        &admin.store,
        &admin.announcements,
        &RoomKey::from(&room),
        &user,
        role,
    )
    .await
    .with_context(|| format!("could not make {} {role} of {}", user.username, room.name))?;
    admin.announce().await;
    let outcome = match event {
        Some(event) => RoleOutcome::Changed {
            seq: event.seq.get(),
        },
        None => RoleOutcome::Unchanged,
    };
    Ok((room, user, outcome))
}

/// Gives `user` the `role` in `room`, as the operator: the rules that bind
/// users do not apply, so this is how a room nobody owns (`general`, or a
/// room made before rooms had owners) gets an owner or moderators. A new
/// owner replaces the previous one, who stays on as a moderator; a user who
/// is not a member is added with the role.
///
/// The change is recorded in the room's sequence like any other and sent to
/// every node through Redis when there is one; roles are read from the
/// database on every action, so they take effect at once.
pub async fn set_role(
    settings: &Settings,
    room: &str,
    user: &str,
    role: Role,
) -> anyhow::Result<RoleOutcome> {
    let admin = Admin::open(settings).await?;
    Ok(change_role(&admin, room, user, role).await?.2)
}
