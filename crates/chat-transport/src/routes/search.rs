//! Searching the messages of the caller's rooms: `GET /api/search`.
//!
//! The rooms searched are decided here, by the one access policy: the
//! rooms the caller is a member of now (public rooms joined, private rooms,
//! direct conversations), or the one room named, which the caller must be
//! a member of. A room left, or one the caller was kicked or banned from,
//! is not among them; nor is an end-to-end encrypted room, whose text the
//! server cannot read (naming one finds nothing). The index and the
//! matching live in the store.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, get, web};
use chat_domain::MessageId;
use chat_domain::search::SearchQuery;
use chat_protocol::rest::{ErrorBody, HighlightBody, SearchBody, SearchParams, SearchResult};

use super::rooms::parse_room;
use crate::access;
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::state::AppState;

/// Results per page unless the caller says.
const DEFAULT_LIMIT: i64 = 20;

/// Finds the messages that contain every word of `q`, newest first, in the
/// caller's rooms (or in `room`), with where the words are in each.
#[utoipa::path(
    get,
    path = "/api/search",
    tag = "messages",
    params(SearchParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SearchBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller is not a member of `room`, or is banned from it", body = ErrorBody),
        (status = 404, description = "no such `room`, or a private one the caller is not in; or search is turned off", body = ErrorBody),
        (status = 422, description = "an empty or too long query, a prefix under 3 characters, a bad cursor or limit", body = ErrorBody)
    )
)]
#[get("/api/search")]
pub(crate) async fn search(
    req: HttpRequest,
    state: web::Data<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<HttpResponse, ApiError> {
    let params = web::Query::<SearchParams>::from_query(req.query_string())
        .map_err(ApiError::invalid_query)?;
    if state.store.search_keys().is_none() {
        return Err(ApiError::NotFound(
            "search is turned off on this server".to_owned(),
        ));
    }
    let query = SearchQuery::parse(&params.q).map_err(ApiError::invalid)?;
    let max = i64::try_from(chat_storage::MAX_SEARCH_PAGE).unwrap_or(i64::MAX);
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::Unprocessable(format!(
            "limit must be between 1 and {max}"
        )));
    }
    let before = match params.before {
        Some(before) if before < 1 => {
            return Err(ApiError::Unprocessable(
                "before is the next of an earlier page, 1 or more".to_owned(),
            ));
        }
        before => before.map(MessageId),
    };
    let names: HashMap<_, _> = match &params.room {
        Some(name) => {
            let name = parse_room(name)?;
            let found = access::find_for_route(&state, &name, user.id).await?;
            found
                .member()
                .map_err(|refusal| access::for_route(&name, refusal))?;
            // The server cannot read an encrypted room: nothing to find.
            if found.0.room.encrypted {
                HashMap::new()
            } else {
                HashMap::from([(found.key().id, name.as_str().to_owned())])
            }
        }
        None => state
            .store
            .rooms_for(user.id)
            .await?
            .into_iter()
            .filter(|membership| !membership.room.encrypted)
            .map(|membership| (membership.room.id, membership.room.name.as_str().to_owned()))
            .collect(),
    };
    let rooms: Vec<_> = names.keys().copied().collect();
    let limit = usize::try_from(limit).unwrap_or(chat_storage::MAX_SEARCH_PAGE);
    let page = state.store.search(&rooms, &query, before, limit).await?;
    let results = page
        .hits
        .into_iter()
        .filter_map(|hit| {
            let room = names.get(&hit.message.room_id)?.clone();
            Some(SearchResult {
                room,
                seq: hit.message.seq.get(),
                username: hit.message.username.as_str().to_owned(),
                created_at: hit.message.created_at,
                content: hit.message.content?,
                highlights: hit
                    .highlights
                    .into_iter()
                    .map(|h| HighlightBody {
                        start: h.start,
                        end: h.end,
                    })
                    .collect(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(SearchBody {
        results,
        next: page.next.map(MessageId::get),
    }))
}
