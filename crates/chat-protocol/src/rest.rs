//! JSON bodies of the REST API, request and response alike.
//!
//! The seed's endpoints (`/`, `/api/auth/*`, `/api/chat/messages`) keep the
//! shapes the original FastAPI backend produced; the rooms, health and
//! readiness bodies are new. Every error response carries an [`ErrorBody`].

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use chat_domain::{MemberChange, Role, RoomKind, Visibility};

/// How many messages a history or page request returns when it names no
/// `limit`.
pub const DEFAULT_LIMIT: i64 = 50;

/// The most messages one history or page request returns, whatever `limit`
/// it names.
pub const MAX_LIMIT: i64 = 200;

/// The limit a request gets: [`DEFAULT_LIMIT`] when none is given, otherwise
/// the given value brought into `1..=MAX_LIMIT`.
pub fn effective_limit(requested: Option<i64>) -> i64 {
    requested.map_or(DEFAULT_LIMIT, |limit| limit.clamp(1, MAX_LIMIT))
}

/// The body of `POST /api/auth/register` and `POST /api/auth/login`.
///
/// The fields are plain strings: whether they make a valid username and
/// password is the server's decision. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credentials {
    /// The name to register or log in as.
    pub username: String,
    /// The password, in clear text (the connection is expected to be TLS).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &format_args!("<redacted>"))
            .finish()
    }
}

/// A user: the `201` answer to a registration and the answer to
/// `GET /api/users/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserBody {
    /// The user's primary key.
    pub id: i64,
    /// The name as the user registered it.
    pub username: String,
    /// When the user registered.
    #[serde(with = "crate::timestamp")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: DateTime<Utc>,
}

/// The answer to a successful login or refresh. `Debug` never shows either
/// token.
///
/// The first two fields are the seed's, in its order. `refresh_token` and
/// `expires_in` are additions a seed client ignores; this server always
/// sends them, and a client reading another server's answer finds them
/// absent.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenBody {
    /// The JWT to send as `Authorization: Bearer <token>` or `?token=`.
    pub access_token: String,
    /// Always `"bearer"`.
    pub token_type: String,
    /// An opaque token for `POST /api/auth/refresh`, which answers a new
    /// access token and a new refresh token. Each refresh token works once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Seconds until the access token expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

impl TokenBody {
    /// A bearer token alone, in the seed's shape.
    pub fn bearer(access_token: impl Into<String>) -> TokenBody {
        TokenBody {
            access_token: access_token.into(),
            token_type: "bearer".to_owned(),
            refresh_token: None,
            expires_in: None,
        }
    }

    /// A bearer token with the refresh token that renews it and its
    /// lifetime in seconds.
    pub fn with_refresh(
        access_token: impl Into<String>,
        refresh_token: impl Into<String>,
        expires_in: u64,
    ) -> TokenBody {
        TokenBody {
            refresh_token: Some(refresh_token.into()),
            expires_in: Some(expires_in),
            ..TokenBody::bearer(access_token)
        }
    }
}

impl fmt::Debug for TokenBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBody")
            .field("access_token", &format_args!("<redacted>"))
            .field("token_type", &self.token_type)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// The body of `POST /api/auth/refresh`. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshRequest {
    /// The refresh token of the last login or refresh.
    pub refresh_token: String,
}

impl fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRequest")
            .field("refresh_token", &format_args!("<redacted>"))
            .finish()
    }
}

/// One message of the seed's `GET /api/chat/messages` list (the `general`
/// room), content decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryItem {
    /// The message's global primary key.
    pub id: i64,
    /// The sender's primary key.
    pub user_id: i64,
    /// The sender's name.
    pub username: String,
    /// The message text.
    pub content: String,
    /// When the message was stored.
    #[serde(with = "crate::timestamp")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: DateTime<Utc>,
}

/// The body of every error response, as FastAPI writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong, in words meant for the user.
    pub detail: String,
    /// A stable code to match on, the same as an `error` frame's, when the
    /// request was refused by a room's rules or carried a value the rules
    /// reject (`forbidden`, `not_found`, `deleted`, `invalid`...); absent
    /// for other errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::ws::ErrorCode>,
}

impl ErrorBody {
    /// An error body with the given text.
    pub fn new(detail: impl Into<String>) -> ErrorBody {
        ErrorBody {
            detail: detail.into(),
            code: None,
        }
    }
}

/// The answer to `GET /`: the service's name, version and main endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RootInfo {
    /// The service's name.
    pub message: String,
    /// The service's version.
    pub version: String,
    /// Where the main endpoints are.
    pub endpoints: Endpoints,
}

impl RootInfo {
    /// The root document with the seed's endpoint paths.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> RootInfo {
        RootInfo {
            message: name.into(),
            version: version.into(),
            endpoints: Endpoints::default(),
        }
    }
}

/// The paths listed by `GET /`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Endpoints {
    /// Registration.
    pub register: String,
    /// Login.
    pub login: String,
    /// The seed's message history.
    pub messages: String,
    /// The WebSocket.
    pub websocket: String,
}

impl Default for Endpoints {
    /// The seed's paths.
    fn default() -> Endpoints {
        Endpoints {
            register: "/api/auth/register".to_owned(),
            login: "/api/auth/login".to_owned(),
            messages: "/api/chat/messages".to_owned(),
            websocket: "/ws/chat".to_owned(),
        }
    }
}

/// The query of the seed's `GET /api/chat/messages?token=&limit=`.
///
/// `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct HistoryQuery {
    /// The JWT, for clients that cannot set an `Authorization` header. The
    /// header wins when both are present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// How many of the newest messages to return: 50 unless given, at most
    /// 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

impl HistoryQuery {
    /// The limit to apply, see [`effective_limit`].
    pub fn limit(&self) -> i64 {
        effective_limit(self.limit)
    }
}

impl fmt::Debug for HistoryQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = self.token.as_ref().map(|_| format_args!("<redacted>"));
        f.debug_struct("HistoryQuery")
            .field("token", &token)
            .field("limit", &self.limit)
            .finish()
    }
}

/// The query of `GET /api/rooms/{name}/messages?before=&after=&limit=`, a
/// cursor on the room's sequence numbers.
///
/// `before=N` asks for the newest `limit` messages with `seq < N`, `after=N`
/// for the oldest `limit` messages with `seq > N`, neither for the newest
/// page. Pages are always in ascending `seq` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PageQuery {
    /// Only messages with a smaller `seq`, newest first taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// Only messages with a greater `seq`, oldest first taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// Page size: 50 unless given, at most 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

impl PageQuery {
    /// The limit to apply, see [`effective_limit`].
    pub fn limit(&self) -> i64 {
        effective_limit(self.limit)
    }
}

/// A room's kind on the wire: `"public"` or `"direct"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RoomKindBody {
    /// Anyone may join.
    Public,
    /// A conversation between two users.
    Direct,
}

impl From<RoomKind> for RoomKindBody {
    fn from(kind: RoomKind) -> RoomKindBody {
        match kind {
            RoomKind::Public => RoomKindBody::Public,
            RoomKind::Direct => RoomKindBody::Direct,
        }
    }
}

impl From<RoomKindBody> for RoomKind {
    fn from(kind: RoomKindBody) -> RoomKind {
        match kind {
            RoomKindBody::Public => RoomKind::Public,
            RoomKindBody::Direct => RoomKind::Direct,
        }
    }
}

/// A room as one user sees it: an item of `GET /api/rooms` and the answer
/// to creating a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomBody {
    /// The room's name (lower case; `dm:<a>:<b>` for a direct conversation).
    pub name: String,
    /// Public room or direct conversation.
    pub kind: RoomKindBody,
    /// The `seq` of the room's newest message, 0 when it has none.
    pub last_seq: i64,
    /// The newest `seq` this user has read; 0 when they are not a member.
    pub last_read_seq: i64,
    /// How many messages this user has not read yet.
    pub unread: i64,
    /// Whether this user is a member of the room.
    pub member: bool,
    /// `public` (listed, anyone may join) or `private` (members only).
    /// Direct conversations are private.
    #[serde(default = "VisibilityBody::public_by_default")]
    pub visibility: VisibilityBody,
    /// The room's topic, if it has one.
    #[serde(default)]
    pub topic: Option<String>,
    /// This user's role, when they are a member.
    #[serde(default)]
    pub role: Option<RoleBody>,
    /// End-to-end encrypted (MLS): messages are ciphertext the server
    /// cannot read, and plaintext `message` frames are refused with
    /// `encryption_required`. Set at creation, never changed.
    #[serde(default)]
    pub encrypted: bool,
}

/// One room in full: the answer to `GET /api/rooms/{name}` and
/// `PATCH /api/rooms/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomDetail {
    /// The room's name.
    pub name: String,
    /// Public room or direct conversation.
    pub kind: RoomKindBody,
    /// `public` or `private`.
    pub visibility: VisibilityBody,
    /// The topic, if any.
    pub topic: Option<String>,
    /// The owner's name; `null` for a room nobody owns (such as `general`).
    pub owner: Option<String>,
    /// The caller's role; `null` when they are not a member.
    pub role: Option<RoleBody>,
    /// How many members the room has.
    pub member_count: i64,
    /// The `seq` of the room's newest event.
    pub last_seq: i64,
    /// End-to-end encrypted (MLS); set at creation, never changed.
    #[serde(default)]
    pub encrypted: bool,
}

/// Whether a room is listed: `"public"` or `"private"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VisibilityBody {
    /// Listed; anyone may join.
    Public,
    /// Seen by its members only; to anyone else it does not exist.
    Private,
}

impl VisibilityBody {
    fn public_by_default() -> VisibilityBody {
        VisibilityBody::Public
    }
}

impl From<Visibility> for VisibilityBody {
    fn from(value: Visibility) -> VisibilityBody {
        match value {
            Visibility::Public => VisibilityBody::Public,
            Visibility::Private => VisibilityBody::Private,
        }
    }
}

impl From<VisibilityBody> for Visibility {
    fn from(value: VisibilityBody) -> Visibility {
        match value {
            VisibilityBody::Public => Visibility::Public,
            VisibilityBody::Private => Visibility::Private,
        }
    }
}

/// A member's role: `"owner"`, `"moderator"` or `"member"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RoleBody {
    /// The creator: everything a moderator may do, and roles, visibility
    /// and deletion.
    Owner,
    /// Adds, kicks, mutes and bans members; sets the topic.
    Moderator,
    /// Takes part.
    Member,
}

impl From<Role> for RoleBody {
    fn from(value: Role) -> RoleBody {
        match value {
            Role::Owner => RoleBody::Owner,
            Role::Moderator => RoleBody::Moderator,
            Role::Member => RoleBody::Member,
        }
    }
}

impl From<RoleBody> for Role {
    fn from(value: RoleBody) -> Role {
        match value {
            RoleBody::Owner => Role::Owner,
            RoleBody::Moderator => Role::Moderator,
            RoleBody::Member => Role::Member,
        }
    }
}

/// What happened to a member, as `member` frames and history name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MemberChangeBody {
    /// Joined a public room.
    Joined,
    /// Left.
    Left,
    /// Added by the owner or a moderator.
    Added,
    /// Removed by the owner or a moderator.
    Kicked,
    /// Removed and barred by the owner or a moderator.
    Banned,
    /// Allowed back.
    Unbanned,
    /// May read but not post for a while.
    Muted,
    /// May post again.
    Unmuted,
    /// Given a new role.
    Role,
}

impl From<MemberChange> for MemberChangeBody {
    fn from(value: MemberChange) -> MemberChangeBody {
        match value {
            MemberChange::Joined => MemberChangeBody::Joined,
            MemberChange::Left => MemberChangeBody::Left,
            MemberChange::Added => MemberChangeBody::Added,
            MemberChange::Kicked => MemberChangeBody::Kicked,
            MemberChange::Banned => MemberChangeBody::Banned,
            MemberChange::Unbanned => MemberChangeBody::Unbanned,
            MemberChange::Muted => MemberChangeBody::Muted,
            MemberChange::Unmuted => MemberChangeBody::Unmuted,
            MemberChange::Role => MemberChangeBody::Role,
        }
    }
}

/// A membership change in a history page (the `member` frame's fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberEventBody {
    /// What happened to the member (the item's `username`).
    pub change: MemberChangeBody,
    /// Who did it; `null` for the server's operator.
    pub by: Option<String>,
    /// The role after a `role` change or an `added`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleBody>,
    /// When a `muted` or `banned` ends.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::option"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub until: Option<DateTime<Utc>>,
    /// The moderator's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of `POST /api/rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateRoomRequest {
    /// The room's name; the server validates and lower-cases it.
    pub name: String,
    /// `public` (the default) or `private`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<VisibilityBody>,
    /// An optional topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// `true` for an end-to-end encrypted room (MLS): the server relays and
    /// stores ciphertext only, refuses plaintext, and cannot search it.
    /// Fixed for the room's life. Default `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
}

/// The optional body of `POST /api/dm/{username}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OpenDirectRequest {
    /// `true` for an end-to-end encrypted conversation, `false` for a
    /// plaintext one; absent takes the conversation as it is (a new one is
    /// plaintext). A pair has one conversation, so asking for the other
    /// kind than the existing one is 409.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
}

/// The body of `PATCH /api/rooms/{name}`: what to change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateRoomRequest {
    /// The new topic (owner or moderator); an empty one clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The new visibility (owner only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<VisibilityBody>,
}

/// A member of a room: an item of `GET /api/rooms/{name}/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberBody {
    /// The member's name.
    pub username: String,
    /// Their role.
    pub role: RoleBody,
    /// When they became a member.
    #[serde(with = "crate::timestamp")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub joined_at: DateTime<Utc>,
    /// Until when they may not post; `null` when they may.
    #[serde(with = "crate::timestamp::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub muted_until: Option<DateTime<Utc>>,
    /// The newest seq they have marked read.
    pub last_read_seq: i64,
}

/// The body of `PUT /api/rooms/{name}/members/{username}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberRequest {
    /// The role to give (only the owner makes moderators); `member` when
    /// absent for someone added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleBody>,
}

/// The body of `PUT /api/rooms/{name}/bans/{username}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BanRequest {
    /// Why, shown to the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the ban ends; absent for good.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::option"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub until: Option<DateTime<Utc>>,
}

/// A ban: an item of `GET /api/rooms/{name}/bans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BanBody {
    /// The banned user.
    pub username: String,
    /// Who banned them; `null` for the operator or a deleted account.
    pub banned_by: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// When.
    #[serde(with = "crate::timestamp")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: DateTime<Utc>,
    /// When it ends; `null` for good.
    #[serde(with = "crate::timestamp::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub until: Option<DateTime<Utc>>,
}

/// The body of `PUT /api/rooms/{name}/mutes/{username}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MuteRequest {
    /// When the member may post again.
    #[serde(with = "crate::timestamp")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub until: DateTime<Utc>,
}

/// The body of `POST /api/rooms/{name}/read`: the newest seq the user has
/// seen in the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MarkReadRequest {
    /// Messages up to this seq count as read.
    pub seq: i64,
}

/// A stored message of a room, as the REST pages return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomMessage {
    /// The message's global primary key.
    pub id: i64,
    /// The room it was sent to.
    pub room: String,
    /// Its position in the room: 1, 2, 3... without gaps.
    pub seq: i64,
    /// The sender's primary key.
    pub user_id: i64,
    /// The sender's name.
    pub username: String,
    /// The text, or `null` when the stored row could not be decrypted with
    /// any configured key.
    pub content: Option<String>,
    /// The id the sender's client gave the message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// When the message was stored.
    #[serde(with = "crate::timestamp")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: DateTime<Utc>,
    /// Set for a membership change (then `username` is the member it
    /// concerns and `content` is `null`); absent for a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<MemberEventBody>,
    /// Set for a change to an earlier message (then `username` is who made
    /// it, and an edit's `content` is the text it set, empty once that
    /// message was deleted); absent for a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<MessageChangeBody>,
    /// When the text was last edited; absent when never.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::option"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub edited_at: Option<DateTime<Utc>>,
    /// `true` when the message was deleted: a tombstone, `content` `null`
    /// (absent otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Who deleted it (absent when not deleted, or when that account is
    /// gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
    /// When it was deleted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::option"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub deleted_at: Option<DateTime<Utc>>,
    /// The seq of the message of the same room this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    /// The message answered, as it is now: who wrote it and the start of
    /// its text, or that it was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<ReplyExcerpt>,
    /// The reactions to the message, in the order their kinds were first
    /// added (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionCount>,
    /// In an end-to-end encrypted room: `content` is the base64 of an MLS
    /// message, an `application` message (ciphertext) or a `commit` (a
    /// change to the group). Absent for plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mls: Option<crate::mls::MlsKindBody>,
}

/// What a change to an earlier message did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageChangeBody {
    /// `edited`, `deleted`, `reacted` or `unreacted`.
    pub kind: MessageChangeKind,
    /// The seq of the message changed.
    pub target: i64,
}

/// The kinds of change to an earlier message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MessageChangeKind {
    /// Its text was replaced.
    Edited,
    /// It was deleted.
    Deleted,
    /// A reaction was added (the change's `content` is the reaction).
    Reacted,
    /// A reaction was taken back (the change's `content` is the reaction).
    Unreacted,
}

/// One kind of reaction to a message, as a history page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReactionCount {
    /// The reaction.
    pub emoji: String,
    /// How many members reacted so.
    pub count: i64,
    /// Whether the caller is among them.
    pub me: bool,
}

/// What `PUT` and `DELETE` of a reaction answer: the message's reactions
/// as they are now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReactionsBody {
    /// The room.
    pub room: String,
    /// The message's seq.
    pub seq: i64,
    /// The seq at which the change was recorded; for a reaction the caller
    /// had made already, the seq that added it.
    pub change_seq: i64,
    /// Its reactions, in the order their kinds were first added.
    pub reactions: Vec<ReactionCount>,
}

/// The message a reply answers, as a history page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplyExcerpt {
    /// Its author.
    pub username: String,
    /// The first characters of its current text (at most
    /// [`REPLY_EXCERPT_CHARS`]); `null` when it was deleted or cannot be
    /// decrypted.
    pub excerpt: Option<String>,
    /// Whether it was deleted.
    pub deleted: bool,
}

/// The most characters of the answered message a [`ReplyExcerpt`] shows.
pub const REPLY_EXCERPT_CHARS: usize = 100;

/// The body of `PATCH /api/rooms/{name}/messages/{seq}`: the new text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EditRequest {
    /// The new text, under the same rules as a message's.
    pub content: String,
    /// Makes a resend idempotent, as for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// An earlier text of an edited message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionBody {
    /// The text; `null` when it cannot be decrypted.
    pub content: Option<String>,
    /// When it was written (sent, or edited to this text).
    #[serde(with = "crate::timestamp")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub written_at: DateTime<Utc>,
    /// The seq of the edit that replaced it.
    pub replaced_by: i64,
}

/// The answer to `GET /api/rooms/{name}/messages/{seq}/edits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EditsBody {
    /// The room.
    pub room: String,
    /// The message's seq.
    pub seq: i64,
    /// Its texts before the current one, newest first; empty when it was
    /// never edited, or was deleted (its texts are erased).
    pub versions: Vec<VersionBody>,
}

/// The query of `GET /api/search`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct SearchParams {
    /// The words to find, separated by spaces; every one must be in a
    /// message for it to be found. Case and accents do not matter; a word
    /// ending in `*` matches any word it begins (3 characters or more
    /// before the `*`). At most 8 words, 256 characters.
    pub q: String,
    /// Search this room only; every room the caller is a member of
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The `next` of the previous page: only older messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// Results per page: 20 unless given, at most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// Where a matching word is in a result's `content`: characters (Unicode
/// scalar values, as Python's `str` counts them) `start` to `end`, `end`
/// excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HighlightBody {
    pub start: usize,
    pub end: usize,
}

/// One message a search found, as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResult {
    /// The room it is in.
    pub room: String,
    /// Its seq in the room: `GET /api/rooms/{room}/messages?before=seq+1`
    /// shows it in its context.
    pub seq: i64,
    /// Its author.
    pub username: String,
    /// When it was sent.
    #[serde(with = "crate::timestamp")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: DateTime<Utc>,
    /// Its text now (an edited message is found by its current text).
    pub content: String,
    /// Where the words searched for are in `content`, in order.
    pub highlights: Vec<HighlightBody>,
}

/// The answer to `GET /api/search`: results newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchBody {
    pub results: Vec<SearchResult>,
    /// Pass as `before` for the next page; `null` when there is nothing
    /// older to find. A page may hold fewer than `limit` results and still
    /// have a next one.
    pub next: Option<i64>,
}

/// One page of a room's messages, in ascending `seq` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessagePage {
    /// The room the page belongs to.
    pub room: String,
    /// The messages, oldest first.
    pub messages: Vec<RoomMessage>,
    /// Whether more messages exist beyond this page in the direction of
    /// travel: older ones for `before` or no cursor, newer ones for `after`.
    pub has_more: bool,
}

/// The answer to the liveness probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthBody {
    /// `"ok"` while the process answers at all.
    pub status: String,
}

impl HealthBody {
    /// The process is alive.
    pub fn ok() -> HealthBody {
        HealthBody {
            status: "ok".to_owned(),
        }
    }
}

/// The answer to the readiness probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadyBody {
    /// `"ok"` when the server can take traffic, `"unavailable"` otherwise.
    pub status: String,
    /// `"ok"` when the database answered, `"unavailable"` otherwise.
    pub database: String,
    /// With several nodes: `"ok"` when events reach every node,
    /// `"unavailable"` when the broker is down and this node serves only its
    /// own sockets. Absent on a single node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// Database settings that break "acknowledged means durable" (e.g.
    /// PostgreSQL's `fsync = off`), one sentence each. They do not make the
    /// server unready. Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ReadyBody {
    /// Ready: the database answered.
    pub fn ok() -> ReadyBody {
        ReadyBody {
            status: "ok".to_owned(),
            database: "ok".to_owned(),
            broker: None,
            warnings: Vec::new(),
        }
    }

    /// Serving, but events do not reach the other nodes.
    pub fn broker_unavailable() -> ReadyBody {
        ReadyBody {
            status: "degraded".to_owned(),
            database: "ok".to_owned(),
            broker: Some("unavailable".to_owned()),
            warnings: Vec::new(),
        }
    }

    /// Not ready: the database did not answer.
    pub fn database_unavailable() -> ReadyBody {
        ReadyBody {
            status: "unavailable".to_owned(),
            database: "unavailable".to_owned(),
            broker: None,
            warnings: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use serde::de::DeserializeOwned;

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0)
            .single()
            .expect("a valid date")
            + Duration::microseconds(123_456)
    }

    /// Asserts that `value` serializes to exactly `json` and reads back
    /// equal.
    fn assert_golden<T>(value: &T, json: &str)
    where
        T: Serialize + DeserializeOwned + PartialEq + fmt::Debug,
    {
        assert_eq!(serde_json::to_string(value).expect("serializes"), json);
        let back: T = serde_json::from_str(json).expect(json);
        assert_eq!(&back, value);
    }

    fn room_message(content: Option<&str>, client_id: Option<&str>) -> RoomMessage {
        RoomMessage {
            mls: None,
            id: 8,
            room: "lobby".to_owned(),
            seq: 2,
            user_id: 1,
            username: "alice".to_owned(),
            content: content.map(str::to_owned),
            client_id: client_id.map(str::to_owned),
            created_at: at(),
            event: None,
            change: None,
            edited_at: None,
            deleted: false,
            deleted_by: None,
            deleted_at: None,
            reply_to: None,
            reply: None,
            reactions: Vec::new(),
        }
    }

    #[test]
    fn credentials_have_the_seed_shape() {
        let credentials = Credentials {
            username: "john".to_owned(),
            password: "secret123".to_owned(),
        };
        assert_golden(
            &credentials,
            r#"{"username":"john","password":"secret123"}"#,
        );
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let credentials = Credentials {
            username: "john".to_owned(),
            password: "hunter2-secret".to_owned(),
        };
        let debug = format!("{credentials:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("john"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn a_user_body_has_the_seed_register_shape() {
        let user = UserBody {
            id: 1,
            username: "john".to_owned(),
            created_at: at(),
        };
        assert_golden(
            &user,
            r#"{"id":1,"username":"john","created_at":"2024-01-01T12:00:00.123456+00:00"}"#,
        );
    }

    #[test]
    fn a_token_body_is_a_bearer_token_in_the_seed_shape() {
        let token = TokenBody::bearer("eyJ.payload.sig");
        assert_eq!(token.token_type, "bearer");
        assert_golden(
            &token,
            r#"{"access_token":"eyJ.payload.sig","token_type":"bearer"}"#,
        );
    }

    #[test]
    fn a_login_answer_adds_the_refresh_token_and_lifetime_after_the_seed_fields() {
        let token = TokenBody::with_refresh("eyJ.payload.sig", "r3fr3sh", 1_800);
        assert_golden(
            &token,
            r#"{"access_token":"eyJ.payload.sig","token_type":"bearer","refresh_token":"r3fr3sh","expires_in":1800}"#,
        );
        // A seed client reads the two fields it knows, as before.
        let seed: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&token).expect("serializes"))
                .expect("valid JSON");
        assert_eq!(seed["access_token"], "eyJ.payload.sig");
        assert_eq!(seed["token_type"], "bearer");
    }

    #[test]
    fn token_body_debug_hides_the_token() {
        let debug = format!("{:?}", TokenBody::bearer("eyJ.payload.sig"));
        assert!(!debug.contains("eyJ"), "{debug}");
        assert!(debug.contains("bearer"), "{debug}");
        let debug = format!(
            "{:?}",
            TokenBody::with_refresh("eyJ.payload.sig", "r3fr3sh", 60)
        );
        assert!(!debug.contains("eyJ"), "{debug}");
        assert!(!debug.contains("r3fr3sh"), "{debug}");
    }

    #[test]
    fn a_refresh_request_has_one_field_and_a_redacted_debug() {
        let request = RefreshRequest {
            refresh_token: "r3fr3sh".to_owned(),
        };
        assert_golden(&request, r#"{"refresh_token":"r3fr3sh"}"#);
        let debug = format!("{request:?}");
        assert!(!debug.contains("r3fr3sh"), "{debug}");
    }

    #[test]
    fn a_history_item_has_the_seed_shape() {
        let item = HistoryItem {
            id: 3,
            user_id: 1,
            username: "john".to_owned(),
            content: "Hello, world!".to_owned(),
            created_at: at(),
        };
        assert_golden(
            &item,
            r#"{"id":3,"user_id":1,"username":"john","content":"Hello, world!","created_at":"2024-01-01T12:00:00.123456+00:00"}"#,
        );
    }

    #[test]
    fn an_error_body_is_a_fastapi_detail() {
        assert_golden(
            &ErrorBody::new("Incorrect username or password"),
            r#"{"detail":"Incorrect username or password"}"#,
        );
    }

    #[test]
    fn the_root_document_lists_the_seed_paths() {
        assert_golden(
            &RootInfo::new("Chat Server", "0.1.0"),
            r#"{"message":"Chat Server","version":"0.1.0","endpoints":{"register":"/api/auth/register","login":"/api/auth/login","messages":"/api/chat/messages","websocket":"/ws/chat"}}"#,
        );
    }

    #[test]
    fn room_kinds_are_lower_case_words_and_convert_both_ways() {
        assert_golden(&RoomKindBody::Public, r#""public""#);
        assert_golden(&RoomKindBody::Direct, r#""direct""#);
        for kind in [RoomKind::Public, RoomKind::Direct] {
            let body = RoomKindBody::from(kind);
            assert_eq!(
                serde_json::to_string(&body).expect("serializes"),
                format!("\"{}\"", kind.as_str())
            );
            assert_eq!(RoomKind::from(body), kind);
        }
    }

    #[test]
    fn a_room_body_has_the_documented_shape() {
        let room = RoomBody {
            name: "lobby".to_owned(),
            kind: RoomKindBody::Public,
            last_seq: 42,
            last_read_seq: 40,
            unread: 2,
            member: true,
            visibility: VisibilityBody::Private,
            topic: Some("plans".to_owned()),
            role: Some(RoleBody::Owner),
            encrypted: true,
        };
        assert_golden(
            &room,
            r#"{"name":"lobby","kind":"public","last_seq":42,"last_read_seq":40,"unread":2,"member":true,"visibility":"private","topic":"plans","role":"owner","encrypted":true}"#,
        );
        // What a server of the previous release sends still reads.
        let older: RoomBody = serde_json::from_str(
            r#"{"name":"lobby","kind":"public","last_seq":1,"last_read_seq":0,"unread":1,"member":false}"#,
        )
        .expect("reads");
        assert_eq!(older.visibility, VisibilityBody::Public);
        assert_eq!((older.topic, older.role), (None, None));
        assert!(!older.encrypted);
    }

    #[test]
    fn a_create_room_request_needs_only_a_name() {
        assert_golden(
            &CreateRoomRequest {
                name: "lobby".to_owned(),
                visibility: None,
                topic: None,
                encrypted: false,
            },
            r#"{"name":"lobby"}"#,
        );
        assert_golden(
            &CreateRoomRequest {
                name: "lobby".to_owned(),
                visibility: Some(VisibilityBody::Private),
                topic: Some("plans".to_owned()),
                encrypted: true,
            },
            r#"{"name":"lobby","visibility":"private","topic":"plans","encrypted":true}"#,
        );
    }

    #[test]
    fn a_membership_change_in_history_carries_its_event() {
        let mut item = room_message(None, None);
        item.event = Some(MemberEventBody {
            change: MemberChangeBody::Banned,
            by: Some("carol".to_owned()),
            role: None,
            until: Some(at()),
            reason: Some("spam".to_owned()),
        });
        assert_golden(
            &item,
            r#"{"id":8,"room":"lobby","seq":2,"user_id":1,"username":"alice","content":null,"created_at":"2024-01-01T12:00:00.123456+00:00","event":{"change":"banned","by":"carol","until":"2024-01-01T12:00:00.123456+00:00","reason":"spam"}}"#,
        );
    }

    #[test]
    fn member_ban_and_mute_bodies_have_the_documented_shape() {
        assert_golden(
            &MemberBody {
                username: "bob".to_owned(),
                role: RoleBody::Moderator,
                joined_at: at(),
                muted_until: None,
                last_read_seq: 3,
            },
            r#"{"username":"bob","role":"moderator","joined_at":"2024-01-01T12:00:00.123456+00:00","muted_until":null,"last_read_seq":3}"#,
        );
        assert_golden(
            &BanRequest {
                reason: Some("spam".to_owned()),
                until: None,
            },
            r#"{"reason":"spam"}"#,
        );
        assert_golden(
            &MuteRequest { until: at() },
            r#"{"until":"2024-01-01T12:00:00.123456+00:00"}"#,
        );
        assert_golden(
            &UpdateRoomRequest {
                topic: Some(String::new()),
                visibility: None,
            },
            r#"{"topic":""}"#,
        );
    }

    #[test]
    fn a_room_message_leaves_out_a_missing_client_id() {
        assert_golden(
            &room_message(Some("hi"), None),
            r#"{"id":8,"room":"lobby","seq":2,"user_id":1,"username":"alice","content":"hi","created_at":"2024-01-01T12:00:00.123456+00:00"}"#,
        );
        assert_golden(
            &room_message(Some("hi"), Some("c-1")),
            r#"{"id":8,"room":"lobby","seq":2,"user_id":1,"username":"alice","content":"hi","client_id":"c-1","created_at":"2024-01-01T12:00:00.123456+00:00"}"#,
        );
    }

    #[test]
    fn an_undecryptable_room_message_has_null_content() {
        assert_golden(
            &room_message(None, None),
            r#"{"id":8,"room":"lobby","seq":2,"user_id":1,"username":"alice","content":null,"created_at":"2024-01-01T12:00:00.123456+00:00"}"#,
        );
    }

    #[test]
    fn a_message_page_has_the_documented_shape() {
        let page = MessagePage {
            room: "lobby".to_owned(),
            messages: vec![room_message(Some("hi"), Some("c-1"))],
            has_more: true,
        };
        assert_golden(
            &page,
            r#"{"room":"lobby","messages":[{"id":8,"room":"lobby","seq":2,"user_id":1,"username":"alice","content":"hi","client_id":"c-1","created_at":"2024-01-01T12:00:00.123456+00:00"}],"has_more":true}"#,
        );
    }

    #[test]
    fn health_and_readiness_bodies_have_the_documented_shape() {
        assert_golden(&HealthBody::ok(), r#"{"status":"ok"}"#);
        assert_golden(&ReadyBody::ok(), r#"{"status":"ok","database":"ok"}"#);
        assert_golden(
            &ReadyBody::broker_unavailable(),
            r#"{"status":"degraded","database":"ok","broker":"unavailable"}"#,
        );
        assert_golden(
            &ReadyBody::database_unavailable(),
            r#"{"status":"unavailable","database":"unavailable"}"#,
        );
    }

    #[test]
    fn query_parameters_are_all_optional() {
        let empty: PageQuery = serde_json::from_str("{}").expect("parses");
        assert_eq!(empty, PageQuery::default());
        let page: PageQuery =
            serde_json::from_str(r#"{"before":10,"limit":20,"other":1}"#).expect("parses");
        assert_eq!(
            page,
            PageQuery {
                before: Some(10),
                after: None,
                limit: Some(20)
            }
        );
        let history: HistoryQuery =
            serde_json::from_str(r#"{"token":"eyJ","limit":5}"#).expect("parses");
        assert_eq!(history.token.as_deref(), Some("eyJ"));
        assert_eq!(history.limit(), 5);
    }

    #[test]
    fn limits_default_to_50_and_are_capped_at_200() {
        assert_eq!(PageQuery::default().limit(), 50);
        assert_eq!(HistoryQuery::default().limit(), 50);
        let limit = |value| effective_limit(Some(value));
        assert_eq!(limit(1), 1);
        assert_eq!(limit(200), 200);
        assert_eq!(limit(201), 200);
        assert_eq!(limit(i64::MAX), 200);
        assert_eq!(limit(0), 1);
        assert_eq!(limit(-5), 1);
    }

    #[test]
    fn history_query_debug_hides_the_token() {
        let query = HistoryQuery {
            token: Some("eyJ.secret.sig".to_owned()),
            limit: None,
        };
        let debug = format!("{query:?}");
        assert!(!debug.contains("eyJ"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }
}
