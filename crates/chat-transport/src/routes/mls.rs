//! The directory of end-to-end encryption: devices and their MLS
//! KeyPackages (`/api/mls/...`).
//!
//! A client registers each of its devices, keeps a stock of KeyPackages
//! uploaded, and claims other users' packages to add them to an encrypted
//! room. Every object is checked here ([`crate::mls`]) before it is
//! stored; the store hands out each ordinary package once.
//!
//! The group of an encrypted room changes through commits, which go into
//! the room's sequence like messages (`POST /api/rooms/{room}/mls/commits`,
//! compare-and-swap on the epoch), and the Welcomes they make wait for the
//! devices they add (`/api/mls/welcomes`). The devices of a room's members
//! (`GET /api/rooms/{room}/mls/devices`) tell their clients which devices
//! the group should hold: a member's new device to add, a removed one to
//! take out.

use actix_web::{HttpResponse, delete, get, post, web};
use chat_domain::e2e::{
    DeviceId, MAX_DEVICES_PER_USER, MAX_KEY_PACKAGES_PER_UPLOAD, MAX_MLS_OBJECT_BYTES,
    MAX_USERS_PER_CLAIM,
};
use chat_domain::{MessageBody, Refusal, Role, RoomName, UserId, Username};
use chat_protocol::mls::{
    ClaimedKeyPackage, ClaimedKeyPackages, CommitAccepted, CommitUpload, DeviceBody,
    DeviceRegistration, DevicesBody, KeyPackageClaim, KeyPackageStock, KeyPackageUpload,
    WelcomeBody, WelcomesBody, WelcomesQuery, decode, encode,
};
use chat_protocol::rest::ErrorBody;
use chat_storage::{Device, NewCommit, NewKeyPackage, User};

use super::rooms::parse_room;
use crate::access;
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::fanout::RoomEvent;
use crate::frames;
use crate::hub::{Audience, ItemKind};
use crate::mls::{
    CommitRefusal, check_commit, check_device, check_key_package, device_id_of, fingerprint,
};
use crate::state::AppState;

/// The most bytes of the JSON body of a KeyPackage upload or a commit: a
/// hundred KeyPackages, or a commit with the GroupInfo of a large group
/// (its ratchet tree holds every member's keys) and a Welcome for many new
/// members. Other routes keep the server's general limit.
pub(crate) const MAX_MLS_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The routes whose bodies may be larger than the general limit allows,
/// each with a JSON limit of its own.
pub(crate) fn large_bodies(cfg: &mut web::ServiceConfig) {
    let json = || {
        web::JsonConfig::default()
            .limit(MAX_MLS_BODY_BYTES)
            .error_handler(crate::server::json_error)
    };
    cfg.service(
        web::resource("/api/mls/key-packages")
            .app_data(json())
            .route(web::post().to(upload_key_packages))
            .route(web::get().to(key_package_stock)),
    )
    .service(
        web::resource("/api/rooms/{room}/mls/commits")
            .app_data(json())
            .route(web::post().to(commit)),
    );
}

fn device_body(device: &Device, username: &Username) -> DeviceBody {
    DeviceBody {
        device_id: device.device_id.as_str().to_owned(),
        username: username.as_str().to_owned(),
        fingerprint: fingerprint(&device.signature_key),
        signature_key: encode(&device.signature_key),
        created_at: device.created_at,
    }
}

/// A base64 field holding at most [`MAX_MLS_OBJECT_BYTES`].
fn binary(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    let bytes = decode(text)
        .map_err(|_| ApiError::invalid_value(format!("{field} is not standard base64")))?;
    if bytes.len() > MAX_MLS_OBJECT_BYTES {
        return Err(ApiError::invalid_value(format!(
            "{field} is longer than {MAX_MLS_OBJECT_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

fn device_id(text: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(text).map_err(ApiError::invalid)
}

/// The caller's registered device `id`, or 404.
async fn own_device(state: &AppState, user: &User, id: &DeviceId) -> Result<Device, ApiError> {
    state
        .store
        .device(user.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("device '{id}' is not registered")))
}

/// The id in a query naming one of the caller's devices, once checked
/// that it is registered.
async fn own_device_id(
    state: &AppState,
    user: &User,
    query: &WelcomesQuery,
) -> Result<DeviceId, ApiError> {
    let id = device_id(&query.device_id)?;
    own_device(state, user, &id).await?;
    Ok(id)
}

fn stock_body(id: &DeviceId, stock: chat_storage::KeyPackageStock) -> KeyPackageStock {
    KeyPackageStock {
        device_id: id.as_str().to_owned(),
        available: i64::try_from(stock.available).unwrap_or(i64::MAX),
        last_resort: stock.last_resort,
    }
}

/// Registers one of the caller's devices: its MLS credential (a basic
/// credential naming the caller) and its Ed25519 signature key. The
/// device id is derived from the key (the first 16 bytes of its SHA-256
/// digest, in hex). Registering the same device again changes nothing.
#[utoipa::path(
    post,
    path = "/api/mls/devices",
    tag = "encryption",
    request_body = DeviceRegistration,
    security(("bearer" = [])),
    responses(
        (status = 201, body = DeviceBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "the caller has as many devices as allowed", body = ErrorBody),
        (status = 422, description = "not base64, not an Ed25519 key, a credential that does not name the caller, or a device id that is not the key's", body = ErrorBody)
    )
)]
#[post("/api/mls/devices")]
pub(crate) async fn register_device(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    body: web::Json<DeviceRegistration>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&body.device_id)?;
    let credential = binary("credential", &body.credential)?;
    let signature_key = binary("signature_key", &body.signature_key)?;
    check_device(&user.username, &credential, &signature_key).map_err(ApiError::invalid_value)?;
    if id.as_str() != device_id_of(&signature_key) {
        return Err(ApiError::invalid_value(
            "device_id is the first 16 bytes of the SHA-256 digest of signature_key, in hex",
        ));
    }
    let device = state
        .store
        .register_device(user.id, &id, &credential, &signature_key)
        .await?;
    Ok(HttpResponse::Created().json(device_body(&device, &user.username)))
}

/// The devices of a user, with their fingerprints: what a client adds to
/// an encrypted room, and what people compare to verify each other.
#[utoipa::path(
    get,
    path = "/api/mls/devices/{username}",
    tag = "encryption",
    params(("username" = String, Path, description = "whose devices")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = DevicesBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[get("/api/mls/devices/{username}")]
pub(crate) async fn devices(
    state: web::Data<AppState>,
    CurrentUser(_user): CurrentUser,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = Username::parse(username.into_inner()).map_err(ApiError::invalid)?;
    let owner = access::user_named(&state, &name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user '{name}' not found")))?;
    let devices = state.store.devices_of(owner.id).await?;
    Ok(HttpResponse::Ok().json(DevicesBody {
        devices: devices
            .iter()
            .map(|device| device_body(device, &owner.username))
            .collect(),
    }))
}

/// The devices of an encrypted room's members, by username, each
/// member's oldest first. A member's client compares them with the room's
/// group: a device that is not in the group yet (a member's new one) is
/// added with a claim naming it, and a device of the group that is no
/// longer listed (removed by its owner) is removed from the group.
#[utoipa::path(
    get,
    path = "/api/rooms/{room}/mls/devices",
    tag = "encryption",
    params(("room" = String, Path, description = "an encrypted room")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = DevicesBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "not a member, or banned", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the room is not end-to-end encrypted", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[get("/api/rooms/{room}/mls/devices")]
pub(crate) async fn room_devices(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    room: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (_, found) = encrypted_room_of_member(&state, &room, user.id).await?;
    let listed = state.store.room_devices(found.key().id).await?;
    Ok(HttpResponse::Ok().json(DevicesBody {
        devices: listed
            .iter()
            .map(|member| device_body(&member.device, &member.username))
            .collect(),
    }))
}

/// Removes one of the caller's devices (a lost or retired one) with every
/// KeyPackage it published: nobody can add it to a room any more.
#[utoipa::path(
    delete,
    path = "/api/mls/devices/{device_id}",
    tag = "encryption",
    params(("device_id" = String, Path, description = "the caller's device")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "removed"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "the caller has no such device", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[delete("/api/mls/devices/{device_id}")]
pub(crate) async fn remove_device(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&id)?;
    if !state.store.remove_device(user.id, &id).await? {
        return Err(ApiError::NotFound(format!(
            "device '{id}' is not registered"
        )));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// How many KeyPackages one of the caller's devices has waiting, so its
/// client knows when to upload more.
#[utoipa::path(
    get,
    path = "/api/mls/key-packages",
    tag = "encryption",
    params(WelcomesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyPackageStock),
        (status = 401, body = ErrorBody),
        (status = 404, description = "the caller has no such device", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
pub(crate) async fn key_package_stock(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    query: web::Query<WelcomesQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = own_device_id(&state, &user, &query).await?;
    let stock = state.store.key_package_stock(user.id, &id).await?;
    Ok(HttpResponse::Ok().json(stock_body(&id, stock)))
}

/// Adds KeyPackages to one of the caller's devices, and optionally
/// replaces its last-resort package. Each is checked: an MLS message
/// holding a KeyPackage with valid signatures, a lifetime that holds now,
/// the encrypted rooms' ciphersuite, and the device's credential and key
/// (and the last-resort extension on the last-resort one only). One bad
/// package refuses the whole upload.
#[utoipa::path(
    post,
    path = "/api/mls/key-packages",
    tag = "encryption",
    request_body = KeyPackageUpload,
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyPackageStock),
        (status = 401, body = ErrorBody),
        (status = 404, description = "the caller has no such device", body = ErrorBody),
        (status = 409, description = "the device would hold more unclaimed KeyPackages than allowed", body = ErrorBody),
        (status = 422, description = "a KeyPackage failed a check; `detail` says which and why", body = ErrorBody)
    )
)]
pub(crate) async fn upload_key_packages(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    body: web::Json<KeyPackageUpload>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&body.device_id)?;
    if body.key_packages.len() > MAX_KEY_PACKAGES_PER_UPLOAD {
        return Err(ApiError::invalid_value(format!(
            "an upload holds at most {MAX_KEY_PACKAGES_PER_UPLOAD} KeyPackages"
        )));
    }
    if body.key_packages.is_empty() && body.last_resort.is_none() {
        return Err(ApiError::invalid_value(
            "nothing to upload: give key_packages, last_resort or both",
        ));
    }
    let device = own_device(&state, &user, &id).await?;
    let check = |field: String, text: &str, last_resort: bool| {
        let bytes = binary(&field, text)?;
        let checked = check_key_package(&bytes, &user.username, &device.signature_key)
            .map_err(|why| ApiError::invalid_value(format!("{field}: {why}")))?;
        if checked.last_resort != last_resort {
            return Err(ApiError::invalid_value(if last_resort {
                format!("{field} lacks the last-resort extension")
            } else {
                format!("{field} is a last-resort KeyPackage; send it as last_resort")
            }));
        }
        Ok(NewKeyPackage {
            bytes,
            reference: checked.reference,
            not_after: checked.not_after,
        })
    };
    let packages = body
        .key_packages
        .iter()
        .enumerate()
        .map(|(index, text)| check(format!("key_packages[{index}]"), text, false))
        .collect::<Result<Vec<_>, _>>()?;
    let last_resort = body
        .last_resort
        .as_deref()
        .map(|text| check("last_resort".to_owned(), text, true))
        .transpose()?;
    let stock = state
        .store
        .add_key_packages(user.id, &id, &packages, last_resort.as_ref())
        .await?;
    Ok(HttpResponse::Ok().json(stock_body(&id, stock)))
}

/// Most device ids one claim may name: every device of as many users as a
/// claim may name.
const MAX_DEVICES_PER_CLAIM: usize = MAX_USERS_PER_CLAIM * MAX_DEVICES_PER_USER;

/// Claims one KeyPackage of every device of each user named, to add them
/// to an encrypted room; with `devices`, of those devices of theirs only
/// (a member's new device, added alone). An ordinary package is handed out
/// once, even to claims made at the same moment on several servers; a
/// device with none left gives its last-resort package; a device with
/// neither is left out, as is a device id that is none of theirs. Each
/// user named counts against the caller's rate limit, so that one account
/// cannot exhaust others' packages; a claim over it takes nothing.
#[utoipa::path(
    post,
    path = "/api/mls/key-packages/claim",
    tag = "encryption",
    request_body = KeyPackageClaim,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ClaimedKeyPackages),
        (status = 401, body = ErrorBody),
        (status = 404, description = "a user named does not exist", body = ErrorBody),
        (status = 422, description = "no user or too many users named, or `devices` given with no device, too many or a malformed device id; nothing was claimed", body = ErrorBody),
        (status = 429, description = "the caller claimed too many KeyPackages lately; nothing was claimed (`Retry-After` says when to try again)", body = ErrorBody)
    )
)]
#[post("/api/mls/key-packages/claim")]
pub(crate) async fn claim_key_packages(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    body: web::Json<KeyPackageClaim>,
) -> Result<HttpResponse, ApiError> {
    if body.users.is_empty() || body.users.len() > MAX_USERS_PER_CLAIM {
        return Err(ApiError::invalid_value(format!(
            "a claim names 1 to {MAX_USERS_PER_CLAIM} users"
        )));
    }
    // An empty list is refused rather than read as "no device" or "every
    // device": a client that means every device leaves the field out.
    let named: Option<Vec<DeviceId>> = body
        .devices
        .as_deref()
        .map(|ids| {
            if ids.is_empty() || ids.len() > MAX_DEVICES_PER_CLAIM {
                return Err(ApiError::invalid_value(format!(
                    "devices, when given, names 1 to {MAX_DEVICES_PER_CLAIM} devices"
                )));
            }
            ids.iter().map(|id| device_id(id)).collect()
        })
        .transpose()?;
    let mut owners: Vec<User> = Vec::with_capacity(body.users.len());
    for name in &body.users {
        let name = Username::parse(name.as_str()).map_err(ApiError::invalid)?;
        let owner = access::user_named(&state, &name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("user '{name}' not found")))?;
        if !owners.iter().any(|known| known.id == owner.id) {
            owners.push(owner);
        }
    }
    state.admit_claim(user.id, owners.len())?;
    let ids: Vec<_> = owners.iter().map(|owner| owner.id).collect();
    let claimed = state
        .store
        .claim_key_packages(&ids, named.as_deref())
        .await?;
    let key_packages = claimed
        .into_iter()
        .filter_map(|package| {
            let owner = owners.iter().find(|owner| owner.id == package.user_id)?;
            Some(ClaimedKeyPackage {
                username: owner.username.as_str().to_owned(),
                device_id: package.device_id.as_str().to_owned(),
                key_package: encode(&package.key_package),
                last_resort: package.last_resort,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(ClaimedKeyPackages { key_packages }))
}

/// The encrypted room named by a route, for one of its members: 403/404
/// as the room's access decides for anyone else, 409 for a plain room.
async fn encrypted_room_of_member(
    state: &AppState,
    room: &str,
    user: UserId,
) -> Result<(RoomName, access::Access), ApiError> {
    let name = parse_room(room)?;
    let found = access::find_for_route(state, &name, user).await?;
    found
        .member()
        .map_err(|refusal| access::for_route(&name, refusal))?;
    if !found.0.room.encrypted {
        return Err(access::for_route(
            &name,
            Refusal::Conflict("the room is not end-to-end encrypted"),
        ));
    }
    Ok((name, found))
}

/// Most bytes of a commit, a GroupInfo (it carries the whole ratchet tree)
/// or a Welcome.
const MAX_GROUP_OBJECT_BYTES: usize = 1024 * 1024;

/// A base64 field of a commit upload.
fn group_binary(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    let bytes = decode(text)
        .map_err(|_| ApiError::invalid_value(format!("{field} is not standard base64")))?;
    if bytes.len() > MAX_GROUP_OBJECT_BYTES {
        return Err(ApiError::invalid_value(format!(
            "{field} is longer than {MAX_GROUP_OBJECT_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

/// Takes a commit of an encrypted room's group into the room's sequence,
/// if it builds on the group's current epoch: the commit (an MLS public
/// message), the GroupInfo of the group after it (required) and the
/// Welcome for the devices it adds.
///
/// The server checks what it can without reading anything. It processes
/// the commit against the group's public state at its epoch (as it kept
/// it after the commit before) and learns from that whom the commit adds
/// and removes; the GroupInfo sent must show the group as the commit
/// leaves it, since it is handed out with the Welcome. The first commit of
/// a group, which the server has no state for yet, is checked through its
/// GroupInfo alone. Then: every device in the group after the commit
/// belongs to a member of the room, and a device of a member who is still
/// in the room is removed by that member or by a moderator. A commit on an
/// epoch the group has left is 409 `stale_epoch`: process the commits
/// since (they are in the room's sequence) and commit again.
#[utoipa::path(
    post,
    path = "/api/rooms/{room}/mls/commits",
    tag = "encryption",
    params(("room" = String, Path, description = "an encrypted room")),
    request_body = CommitUpload,
    security(("bearer" = [])),
    responses(
        (status = 201, body = CommitAccepted),
        (status = 401, body = ErrorBody),
        (status = 403, description = "not a member, banned, or removing a member without being a moderator", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`stale_epoch`: another commit was accepted on that epoch first; or the room is not encrypted, or its group has another id; or the group's state, kept by an earlier version of the server, can no longer be read (`detail` says why)", body = ErrorBody),
        (status = 422, description = "a commit, GroupInfo or Welcome that fails a check (a GroupInfo that does not show the group as the commit leaves it, a Welcome for a KeyPackage the commit does not add), or a group with users who are not members", body = ErrorBody)
    )
)]
pub(crate) async fn commit(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    room: web::Path<String>,
    body: web::Json<CommitUpload>,
) -> Result<HttpResponse, ApiError> {
    let (name, found) = encrypted_room_of_member(&state, &room, user.id).await?;
    let room = found.key();
    let commit = group_binary("commit", &body.commit)?;
    let group_info = body
        .group_info
        .as_deref()
        .map(|text| group_binary("group_info", text))
        .transpose()?
        .ok_or_else(|| ApiError::invalid_value("group_info is required with a commit"))?;
    let welcome = body
        .welcome
        .as_deref()
        .map(|text| group_binary("welcome", text))
        .transpose()?;
    // The commit is checked against the group at its epoch, as stored;
    // on any other epoch it is stale. Between this read and the storage's
    // compare-and-swap another commit may be accepted on the same epoch:
    // the swap then refuses this one as stale too.
    let stored = state.store.mls_group(room.id).await?;
    let current = stored.as_ref().map_or(0, |group| group.epoch);
    if body.epoch != current {
        return Err(access::for_route(&name, Refusal::StaleEpoch { current }));
    }
    // Reading the stored state and processing the commit verify
    // signatures and hash the ratchet tree: CPU work, done on the blocking
    // pool rather than on this async worker.
    let epoch = body.epoch;
    let judged = {
        let name = name.clone();
        web::block(move || {
            let stored = stored.map(|group| group.public_state);
            let checked = check_commit(
                &commit,
                epoch,
                stored.as_deref(),
                &group_info,
                welcome.as_deref(),
            )
            .map_err(|refusal| match refusal {
                CommitRefusal::OtherGroup => access::for_route(
                    &name,
                    Refusal::Conflict("the commit is for another group than the room's"),
                ),
                CommitRefusal::Invalid(why) => ApiError::invalid_value(why),
                CommitRefusal::Stuck(why) => ApiError::Conflict(why),
                CommitRefusal::Corrupt(why) => ApiError::internal(std::io::Error::other(format!(
                    "the stored state of the room's group: {why}"
                ))),
            })?;
            Ok::<_, ApiError>((checked, group_info, welcome))
        })
    };
    let (checked, group_info, welcome) = judged.await.map_err(ApiError::internal)??;

    // The group follows the room: nobody outside it is in the group.
    let members: Vec<Username> = state
        .store
        .room_members(room.id)
        .await?
        .into_iter()
        .map(|member| member.username)
        .collect();
    let in_room = |name: &Username| members.iter().any(|member| member.same_user(name));
    if let Some(stranger) = checked.members.iter().find(|name| !in_room(name)) {
        return Err(ApiError::invalid_value(format!(
            "'{stranger}' is not a member of '{name}': add them to the room first"
        )));
    }
    // Removing a device of someone who is still in the room is a
    // moderator's act, or their own.
    let moderator = found.role().is_some_and(|role| role >= Role::Moderator);
    if !moderator
        && checked
            .removed
            .iter()
            .any(|gone| in_room(gone) && !gone.same_user(&user.username))
    {
        return Err(access::for_route(
            &name,
            Refusal::Forbidden("only a moderator removes a member who is still in the room"),
        ));
    }

    let stored = state
        .store
        .append_commit(NewCommit {
            room_id: room.id,
            user_id: user.id,
            epoch,
            group_id: checked.group_id,
            commit: MessageBody::parse_with_limit(body.commit.clone(), 2 * MAX_GROUP_OBJECT_BYTES)
                .map_err(ApiError::invalid)?,
            group_info,
            public_state: checked.state,
            welcome: welcome.map(|welcome| (welcome, checked.welcomed)),
        })
        .await?;
    state.fanout.publish(RoomEvent {
        room: room.id,
        seq: Some(stored.seq),
        frame: frames::encode(&frames::message(name.as_str(), &stored)),
        audience: Audience::Everyone,
        kind: ItemKind::Message,
    });
    Ok(HttpResponse::Created().json(CommitAccepted {
        seq: stored.seq.get(),
        epoch: epoch + 1,
    }))
}

/// The Welcomes waiting for one of the caller's devices, oldest first:
/// each joins the group of an encrypted room the device was added to.
/// They stay until acknowledged with `DELETE /api/mls/welcomes/{id}`.
#[utoipa::path(
    get,
    path = "/api/mls/welcomes",
    tag = "encryption",
    params(WelcomesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = WelcomesBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "the caller has no such device", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[get("/api/mls/welcomes")]
pub(crate) async fn welcomes(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    query: web::Query<WelcomesQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = own_device_id(&state, &user, &query).await?;
    let waiting = state.store.welcomes_for(user.id, &id).await?;
    Ok(HttpResponse::Ok().json(WelcomesBody {
        welcomes: waiting
            .into_iter()
            .map(|welcome| WelcomeBody {
                id: welcome.id,
                room: welcome.room.as_str().to_owned(),
                welcome: encode(&welcome.welcome),
                group_info: welcome.group_info.as_ref().map(encode),
                created_at: welcome.created_at,
            })
            .collect(),
    }))
}

/// Acknowledges a Welcome one of the caller's devices has processed: it is
/// dropped.
#[utoipa::path(
    delete,
    path = "/api/mls/welcomes/{id}",
    tag = "encryption",
    params(("id" = i64, Path, description = "the Welcome"), WelcomesQuery),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "dropped"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such Welcome for that device of the caller", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[delete("/api/mls/welcomes/{id}")]
pub(crate) async fn acknowledge_welcome(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    welcome: web::Path<i64>,
    query: web::Query<WelcomesQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = own_device_id(&state, &user, &query).await?;
    if !state
        .store
        .acknowledge_welcome(user.id, &id, welcome.into_inner())
        .await?
    {
        return Err(ApiError::NotFound(
            "no such Welcome for that device".to_owned(),
        ));
    }
    Ok(HttpResponse::NoContent().finish())
}
