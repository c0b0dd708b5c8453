use actix_web::{HttpResponse, get, web};
use chat_protocol::rest::{HealthBody, ReadyBody};

use crate::fanout::FanoutStatus;
use crate::state::AppState;

/// The process is up and serving.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, body = HealthBody)))]
#[get("/health")]
pub(crate) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(HealthBody {
        status: "ok".to_owned(),
    })
}

/// The server can do its work: the database answers. Database settings
/// that break "acknowledged means durable" are listed in `warnings`,
/// without making the server unready.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "meta",
    responses(
        (status = 200, description = "ready", body = ReadyBody),
        (status = 503, description = "the database cannot be reached", body = ReadyBody)
    )
)]
#[get("/ready")]
pub(crate) async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping().await {
        Ok(()) => {
            let mut body = match state.fanout.status() {
                FanoutStatus::Ok => ReadyBody::ok(),
                // This node still serves its own sockets; say so, but stay
                // in the load balancer's rotation.
                FanoutStatus::Degraded(reason) => {
                    tracing::warn!(%reason, "fan-out degraded");
                    ReadyBody::broker_unavailable()
                }
            };
            match state.store.durability_warnings().await {
                Ok(warnings) => body.warnings = warnings,
                Err(error) => {
                    tracing::warn!(error = %crate::error::Chain(&error), "could not read the database's durability settings");
                }
            }
            HttpResponse::Ok().json(body)
        }
        Err(error) => {
            tracing::warn!(error = %crate::error::Chain(&error), "readiness check failed");
            HttpResponse::ServiceUnavailable().json(ReadyBody::database_unavailable())
        }
    }
}
