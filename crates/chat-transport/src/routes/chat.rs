use actix_web::{HttpResponse, get, web};
use chat_protocol::rest::{ErrorBody, HistoryItem, HistoryQuery};

use chat_domain::RoomName;

use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::frames;
use crate::state::AppState;

/// The seed's history: the newest `limit` messages of `general`, oldest
/// first. A `limit` above the server's maximum is lowered to it, as the
/// seed's clients never expected a refusal here.
#[utoipa::path(
    get,
    path = "/api/chat/messages",
    tag = "chat",
    params(HistoryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<HistoryItem>),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller is banned from `general`", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[get("/api/chat/messages")]
pub(crate) async fn history(
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let _timer = crate::metrics::history_timer("/api/chat/messages");
    // A user banned from `general` may not read it here either.
    let general = RoomName::general();
    crate::access::find_for_route(&state, &general, user.id)
        .await?
        .readable()
        .map_err(|refusal| crate::access::for_route(&general, refusal))?;
    let limit = query.limit.unwrap_or(50);
    if limit < 1 {
        return Err(ApiError::Unprocessable(
            "limit must be at least 1".to_owned(),
        ));
    }
    let limit = limit.min(state.config.history_max_limit);
    let messages = state.store.latest(state.general.id, limit).await?;
    let items: Vec<HistoryItem> = messages.into_iter().map(frames::history_item).collect();
    Ok(HttpResponse::Ok().json(items))
}
