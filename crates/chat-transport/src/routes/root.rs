use actix_web::{HttpResponse, get};
use chat_protocol::rest::RootInfo;

/// The service's name, as `GET /` reports it.
pub(crate) const SERVICE_NAME: &str = "Chat Server";

/// What this server is and where its endpoints are.
#[utoipa::path(get, path = "/", tag = "meta", responses((status = 200, body = RootInfo)))]
#[get("/")]
pub(crate) async fn root() -> HttpResponse {
    HttpResponse::Ok().json(RootInfo::new(SERVICE_NAME, env!("CARGO_PKG_VERSION")))
}
