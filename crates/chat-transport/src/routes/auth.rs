use actix_web::{HttpRequest, HttpResponse, post, web};
use chat_domain::{Password, Username};
use chat_protocol::rest::{Credentials, ErrorBody, TokenBody, UserBody};
use chat_storage::StorageError;

use crate::error::ApiError;
use crate::state::AppState;

/// The one answer to every failed login, whatever the reason, so the
/// response does not tell which user names exist.
const BAD_LOGIN: &str = "Incorrect username or password";

/// Creates an account.
#[utoipa::path(
    post,
    path = "/api/auth/register",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 201, description = "registered", body = UserBody),
        (status = 400, description = "the name is taken", body = ErrorBody),
        (status = 429, description = "too many attempts from this address", body = ErrorBody),
        (status = 422, description = "the name or password breaks the rules", body = ErrorBody)
    )
)]
#[post("/api/auth/register")]
pub(crate) async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    state.admit(&req, |limits| &limits.register)?;
    let Credentials { username, password } = body.into_inner();
    let username = Username::parse(username).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let password = Password::parse(password).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let hash = state
        .hasher
        .hash(&password)
        .await
        .map_err(ApiError::internal)?;
    let user = match state.store.create_user(&username, &hash).await {
        Ok(user) => user,
        Err(StorageError::Conflict(_)) => {
            return Err(ApiError::BadRequest(
                "Username already registered".to_owned(),
            ));
        }
        Err(other) => return Err(other.into()),
    };
    tracing::info!(user = %user.username, id = %user.id, "user registered");
    Ok(HttpResponse::Created().json(UserBody {
        id: user.id.get(),
        username: user.username.as_str().to_owned(),
        created_at: user.created_at,
    }))
}

/// Exchanges a name and password for an access token.
#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "signed in", body = TokenBody),
        (status = 401, description = "wrong name or password", body = ErrorBody),
        (status = 429, description = "too many attempts from this address", body = ErrorBody)
    )
)]
#[post("/api/auth/login")]
pub(crate) async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    state.admit(&req, |limits| &limits.login)?;
    let Credentials { username, password } = body.into_inner();
    // A malformed name cannot belong to anyone, but it still costs a bcrypt
    // verification so its answer takes as long as any other failure.
    let user = match Username::parse(username) {
        Ok(name) => state.store.user_by_name(&name).await?,
        Err(_) => None,
    };
    let verified = state
        .hasher
        .verify(&password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await
        .map_err(ApiError::internal)?;
    let user = match user {
        Some(user) if verified => user,
        _ => return Err(ApiError::Unauthorized(BAD_LOGIN.to_owned())),
    };
    let issued = state.tokens.issue(&user.username)?;
    tracing::info!(user = %user.username, "user signed in");
    Ok(HttpResponse::Ok().json(TokenBody::bearer(issued.token)))
}
