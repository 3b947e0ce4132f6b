//! The service's one error type and its HTTP mapping.
//!
//! Every error answers `{"error": ..., "error_description": ...}` (RFC 6749 §5.2 style).
//! `into_response` has no side effects besides logging 5xx causes; 5xx bodies never say
//! anything internal.

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed: bad JSON, wrong content type, missing fields.
    #[error("{0}")]
    BadRequest(String),
    /// The request is well-formed but its values are not acceptable.
    #[error("{message}")]
    Validation {
        message: String,
        details: Vec<String>,
    },
    /// The password fails the strength policy; `rules` names each failed rule.
    #[error("the password does not meet the password policy")]
    WeakPassword { rules: Vec<&'static str> },
    #[error("{0} is already registered")]
    Conflict(&'static str),
    /// Wrong username or password. One message for both, so it cannot tell them apart.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Too many failed logins: answered exactly like [`Error::InvalidCredentials`], plus
    /// `Retry-After` (whole seconds), so it says nothing about whether the account exists.
    #[error("invalid username or password")]
    LockedOut { retry_after: u64 },
    #[error("the account is disabled")]
    AccountDisabled,
    /// The password was right but the account's email address is not confirmed yet.
    #[error(
        "the email address is not verified yet; follow the link in the mail or ask for a new one at /auth/resend-verification"
    )]
    EmailNotVerified,
    /// An emailed link whose token is unknown, expired or already used.
    #[error("the link is invalid, expired or already used")]
    InvalidLink,
    /// A signed-in user's current password, given to change it, is wrong: 403, since
    /// the bearer token itself is fine.
    #[error("the current password is wrong")]
    WrongPassword,
    /// A refresh token that is unknown, expired, revoked or reused.
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// A missing, malformed, expired or revoked bearer token (RFC 6750 §3.1).
    #[error("{0}")]
    InvalidToken(&'static str),
    /// A valid token without the scope this resource needs (RFC 6750 §3.1): 403.
    #[error("{0}")]
    InsufficientScope(&'static str),
    #[error("not found")]
    NotFound,
    /// The resource is managed by the operator (an `OAuthClient`); change it there.
    #[error(
        "this client is managed by the Kubernetes operator; change its OAuthClient resource instead"
    )]
    ManagedElsewhere,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(&'static str),
    /// A rate limit was exceeded: 429 with `Retry-After` and `RateLimit-*`.
    #[error("too many requests; retry after {} seconds", .0.retry_after_secs())]
    RateLimited(crate::ephemeral::Decision),
    /// The service cannot do this right now (no signing key, database down).
    #[error("{0}")]
    Unavailable(&'static str),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<latchkey_store::Error> for Error {
    fn from(err: latchkey_store::Error) -> Self {
        match err {
            latchkey_store::Error::Database(err) => err.into(),
            latchkey_store::Error::Taken(field) => Self::Conflict(field),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut => Self::Unavailable("the database is not answering"),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                Self::UnsupportedMediaType("expected Content-Type: application/json")
            }
            JsonRejection::JsonDataError(e) => Self::Validation {
                message: "the request body does not match the expected fields".into(),
                details: vec![e.body_text()],
            },
            JsonRejection::JsonSyntaxError(_) => {
                Self::BadRequest("the request body is not valid JSON".into())
            }
            JsonRejection::BytesRejection(_) => Self::PayloadTooLarge,
            _ => Self::BadRequest("the request body could not be read".into()),
        }
    }
}

impl From<FormRejection> for Error {
    fn from(rejection: FormRejection) -> Self {
        match rejection {
            FormRejection::InvalidFormContentType(_) => Self::UnsupportedMediaType(
                "expected Content-Type: application/x-www-form-urlencoded",
            ),
            FormRejection::BytesRejection(_) => Self::PayloadTooLarge,
            other => Self::BadRequest(format!("invalid form body: {}", other.body_text())),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_rules: Option<&'a [&'static str]>,
}

impl Error {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::Validation { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            Self::WeakPassword { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "weak_password"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "already_exists"),
            Self::InvalidCredentials | Self::LockedOut { .. } => {
                (StatusCode::UNAUTHORIZED, "invalid_credentials")
            }
            Self::AccountDisabled => (StatusCode::FORBIDDEN, "account_disabled"),
            Self::EmailNotVerified => (StatusCode::FORBIDDEN, "email_not_verified"),
            Self::InvalidLink => (StatusCode::BAD_REQUEST, "invalid_token"),
            Self::WrongPassword => (StatusCode::FORBIDDEN, "invalid_credentials"),
            Self::InvalidGrant(_) => (StatusCode::UNAUTHORIZED, "invalid_grant"),
            Self::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Self::InsufficientScope(_) => (StatusCode::FORBIDDEN, "insufficient_scope"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::ManagedElsewhere => (StatusCode::CONFLICT, "managed_by_operator"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request")
            }
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(cause) = &self {
            // The cause goes to the log (never to the client); `{:#}` keeps the chain.
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let body = Body {
            error: code,
            error_description: self.to_string(),
            details: match &self {
                Self::Validation { details, .. } if !details.is_empty() => Some(details),
                _ => None,
            },
            failed_rules: match &self {
                Self::WeakPassword { rules } => Some(rules),
                _ => None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::InvalidToken(description) => {
                let value =
                    format!(r#"Bearer error="invalid_token", error_description="{description}""#);
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Self::InsufficientScope(description) => {
                let value = format!(
                    r#"Bearer error="insufficient_scope", error_description="{description}""#
                );
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Self::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::LockedOut { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            Self::RateLimited(decision) => decision.write_headers(headers),
            _ => {}
        }
        // Auth answers must never be cached by anyone.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
