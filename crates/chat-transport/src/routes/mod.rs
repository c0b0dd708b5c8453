//! The REST routes. Each module is one area of the API; `configure` mounts
//! them all.

pub(crate) mod auth;
pub(crate) mod changes;
pub(crate) mod chat;
pub(crate) mod docs;
pub(crate) mod health;
pub(crate) mod members;
pub(crate) mod metrics;
pub(crate) mod mls;
pub(crate) mod rooms;
pub(crate) mod root;
pub(crate) mod search;
pub(crate) mod users;

use actix_web::web;

/// Mounts every REST route.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(root::root)
        .service(docs::redoc)
        .service(docs::redoc_js)
        .service(health::health)
        .service(health::ready)
        .service(auth::register)
        .service(auth::login)
        .service(auth::refresh)
        .service(auth::logout)
        .service(chat::history)
        .service(users::me)
        .service(mls::register_device)
        .service(mls::devices)
        .service(mls::room_devices)
        .service(mls::remove_device)
        .service(mls::claim_key_packages)
        .configure(mls::large_bodies)
        .service(mls::welcomes)
        .service(mls::acknowledge_welcome)
        .service(rooms::list)
        .service(rooms::create)
        .service(rooms::show)
        .service(rooms::update)
        .service(rooms::remove)
        .service(members::list)
        .service(members::put)
        .service(members::kick)
        .service(members::bans)
        .service(members::ban)
        .service(members::unban)
        .service(members::mute)
        .service(members::unmute)
        .service(rooms::join)
        .service(rooms::leave)
        .service(rooms::messages)
        .service(changes::edit)
        .service(changes::remove)
        .service(changes::edits)
        .service(search::search)
        .service(changes::react)
        .service(changes::unreact)
        .service(rooms::mark_read)
        .service(rooms::open_direct);
}
