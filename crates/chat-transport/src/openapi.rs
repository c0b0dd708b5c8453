//! The OpenAPI description of every REST route, served as JSON and through
//! Swagger UI and ReDoc.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;
use crate::session;

/// The API document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Chat Server",
        description = "A real-time chat server: accounts, rooms, direct conversations and history over REST; live messages over the WebSocket at `/ws/chat` (its frames are described in docs/PROTOCOL.md). Messages are encrypted at rest."
    ),
    paths(
        routes::root::root,
        routes::health::health,
        routes::health::ready,
        routes::metrics::metrics,
        routes::auth::register,
        routes::auth::login,
        routes::auth::refresh,
        routes::auth::logout,
        routes::chat::history,
        routes::users::me,
        routes::rooms::list,
        routes::rooms::create,
        routes::rooms::show,
        routes::rooms::update,
        routes::rooms::remove,
        routes::rooms::join,
        routes::rooms::leave,
        routes::rooms::messages,
        routes::changes::edit,
        routes::changes::remove,
        routes::changes::edits,
        routes::changes::react,
        routes::changes::unreact,
        routes::search::search,
        routes::rooms::mark_read,
        routes::rooms::open_direct,
        routes::members::list,
        routes::members::put,
        routes::members::kick,
        routes::members::bans,
        routes::members::ban,
        routes::members::unban,
        routes::members::mute,
        routes::members::unmute,
        routes::mls::register_device,
        routes::mls::devices,
        routes::mls::room_devices,
        routes::mls::remove_device,
        routes::mls::key_package_stock,
        routes::mls::upload_key_packages,
        routes::mls::claim_key_packages,
        routes::mls::commit,
        routes::mls::welcomes,
        routes::mls::acknowledge_welcome,
        session::upgrade,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts, sign-in sessions, access and refresh tokens"),
        (name = "chat", description = "The seed-compatible chat: history of `general` and the WebSocket"),
        (name = "rooms", description = "Rooms, direct conversations and their history"),
        (name = "members", description = "A room's members, roles, bans and mutes"),
        (name = "messages", description = "Changing stored messages: edits, deletions, reactions and earlier texts; searching them"),
        (name = "users", description = "The signed-in user"),
        (name = "encryption", description = "End-to-end encrypted rooms (MLS, RFC 9420): devices and their KeyPackages. The server stores public MLS objects only and never decrypts"),
        (name = "meta", description = "Service information and probes")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The access token from /api/auth/login or /api/auth/refresh. The seed's `?token=` query parameter is accepted too.",
                    ))
                    .build(),
            ),
        );
    }
}
