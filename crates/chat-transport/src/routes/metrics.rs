//! `GET /metrics`: the server's metrics for Prometheus to scrape.

use actix_web::{HttpResponse, get, web};

use crate::state::AppState;

/// The content type of Prometheus's text exposition format.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The server's metrics in Prometheus's text exposition format
/// (docs/OPERATIONS.md lists them).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses(
        (status = 200, description = "the metrics, in Prometheus's text format", body = String, content_type = "text/plain")
    )
)]
#[get("/metrics")]
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(EXPOSITION)
        .body(crate::metrics::render(&state))
}
