//! `GET /metrics`: the server's metrics for Prometheus to scrape, on the
//! main listener or on one of its own (`TransportConfig::metrics_bind`),
//! behind a bearer token when one is configured.

use actix_web::{HttpRequest, HttpResponse, get, web};
use secrecy::{ExposeSecret, SecretString};

use crate::auth::bearer_token;
use crate::error::ApiError;
use crate::state::AppState;

/// The content type of Prometheus's text exposition format.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The server's metrics in Prometheus's text exposition format
/// (docs/OPERATIONS.md lists them). When the server is configured with a
/// metrics token (`CHAT_METRICS_TOKEN`), only requests that carry it as a
/// bearer token are answered.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses(
        (status = 200, description = "the metrics, in Prometheus's text format", body = String, content_type = "text/plain"),
        (status = 401, description = "a metrics token is configured, and the request does not carry it", body = chat_protocol::rest::ErrorBody)
    )
)]
#[get("/metrics")]
pub(crate) async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(token) = &state.config.metrics_token
        && !carries(&req, token)
    {
        return Err(ApiError::Unauthorized(
            "the metrics token is missing or wrong".to_owned(),
        ));
    }
    Ok(HttpResponse::Ok()
        .content_type(EXPOSITION)
        .body(crate::metrics::render(&state)))
}

/// Whether `req` carries `token` as its bearer token. Compared in time that
/// does not depend on where the two first differ.
fn carries(req: &HttpRequest, token: &SecretString) -> bool {
    let expected = token.expose_secret().as_bytes();
    bearer_token(req).is_some_and(|given| {
        let given = given.as_bytes();
        given.len() == expected.len()
            && given
                .iter()
                .zip(expected)
                .fold(0u8, |differ, (a, b)| differ | (a ^ b))
                == 0
    })
}
