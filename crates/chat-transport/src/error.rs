use std::fmt;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use chat_domain::{DomainError, Refusal};
use chat_protocol::rest::ErrorBody;
use chat_protocol::ws::ErrorCode;
use chat_storage::StorageError;

/// The one error type of the HTTP routes. Each variant is an answer a client
/// can act on; [`ResponseError`] turns it into a status code and a
/// `{"detail": ...}` body, the shape the seed's clients expect.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is understood but refused (e.g. a taken name).
    #[error("{0}")]
    BadRequest(String),
    /// 401 with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: the thing already exists.
    #[error("{0}")]
    Conflict(String),
    /// 413: the request body is too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 422: the body or query does not validate.
    #[error("{0}")]
    Unprocessable(String),
    /// 422 with the `code` of the rule a value broke, as an `error` frame
    /// would carry it.
    #[error("{detail}")]
    Invalid {
        /// The stable code.
        code: ErrorCode,
        /// What is wrong, for people.
        detail: String,
    },
    /// Refused by a room's rules: 403, 404 or 409 as the refusal says, with
    /// its stable code.
    #[error("{detail}")]
    Refused {
        /// What the rules said.
        refusal: Refusal,
        /// The refusal in words, naming the room when the route knows it.
        detail: String,
    },
    /// 429 with `Retry-After`: too many requests from this client.
    #[error("{detail}")]
    TooManyRequests {
        /// What was refused.
        detail: String,
        /// Seconds until a retry can succeed.
        retry_after: u64,
    },
    /// 503: the database cannot be reached right now.
    #[error("service temporarily unavailable: the database cannot be reached")]
    Unavailable,
    /// 500: a fault of ours. The cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// A 500 caused by `error`.
    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> ApiError {
        ApiError::Internal(Box::new(error))
    }

    /// The credentials error every authenticated route gives.
    pub fn bad_token() -> ApiError {
        ApiError::Unauthorized("Could not validate credentials".to_owned())
    }

    /// A 422 for a value the domain's rules reject, with its code.
    pub fn invalid(error: DomainError) -> ApiError {
        ApiError::Invalid {
            code: ErrorCode::from(&error),
            detail: error.to_string(),
        }
    }

    /// A 422 with the code `invalid`.
    pub fn invalid_value(detail: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            code: ErrorCode::Invalid,
            detail: detail.into(),
        }
    }

    /// The stable code the error's body carries, if it has one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ApiError::Invalid { code, .. } => Some(*code),
            // Over the socket a state conflict is an invalid frame; a
            // REST answer says it with 409 alone.
            ApiError::Refused {
                refusal: Refusal::Conflict(_),
                ..
            } => None,
            ApiError::Refused { refusal, .. } => Some(ErrorCode::from(refusal)),
            _ => None,
        }
    }

    /// A 422 for a query string that does not parse.
    pub fn invalid_query(error: actix_web::error::QueryPayloadError) -> ApiError {
        ApiError::Unprocessable(format!("invalid query: {error}"))
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StorageError::Conflict(what) => ApiError::Conflict(format!("{what} already exists")),
            StorageError::Unavailable(_) => ApiError::Unavailable,
            StorageError::Refused(refusal) => ApiError::from(refusal),
            other => ApiError::internal(other),
        }
    }
}

impl From<chat_domain::Refusal> for ApiError {
    /// A refusal by the room's rules. Routes that know the room's name say
    /// it, and when a ban or a mute ends, through
    /// `access::for_route`; a room the caller may not see is 404
    /// with the same words as a room that does not exist.
    fn from(refusal: Refusal) -> Self {
        let detail = refusal.to_string();
        ApiError::Refused { refusal, detail }
    }
}

impl From<chat_auth::AuthError> for ApiError {
    fn from(error: chat_auth::AuthError) -> Self {
        match error {
            chat_auth::AuthError::InvalidToken | chat_auth::AuthError::ExpiredToken => {
                ApiError::bad_token()
            }
            other => ApiError::internal(other),
        }
    }
}

/// Writes an error and its whole chain of causes on one line.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) | ApiError::Invalid { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Refused { refusal, .. } => match refusal {
                Refusal::RoomNotFound | Refusal::MessageNotFound | Refusal::ReactionNotFound => {
                    StatusCode::NOT_FOUND
                }
                Refusal::Conflict(_)
                | Refusal::MessageDeleted
                | Refusal::TooManyReactions { .. }
                | Refusal::EncryptionRequired
                | Refusal::StaleEpoch { .. } => StatusCode::CONFLICT,
                Refusal::NotAMember
                | Refusal::Banned { .. }
                | Refusal::Muted { .. }
                | Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            },
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %Chain(cause.as_ref()), "request failed");
            }
            ApiError::Unavailable => tracing::warn!("request failed: database unavailable"),
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::Unavailable => {
                response.insert_header((header::RETRY_AFTER, "5"));
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            _ => {}
        }
        response.json(ErrorBody {
            detail: self.to_string(),
            code: self.code(),
        })
    }
}
