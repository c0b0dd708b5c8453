use actix_web::{HttpResponse, get};
use chat_protocol::rest::{ErrorBody, UserBody};

use crate::auth::CurrentUser;

/// The signed-in user.
#[utoipa::path(
    get,
    path = "/api/users/me",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserBody),
        (status = 401, body = ErrorBody)
    )
)]
#[get("/api/users/me")]
pub(crate) async fn me(CurrentUser(user): CurrentUser) -> HttpResponse {
    HttpResponse::Ok().json(UserBody {
        id: user.id.get(),
        username: user.username.as_str().to_owned(),
        created_at: user.created_at,
    })
}
