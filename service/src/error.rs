//! The one mapping from domain errors to HTTP answers.
//!
//! Every error answers `{"error": ..., "error_description": ...}` (RFC 6749 §5.2 style).
//! `into_response` has no side effects besides logging internal causes (once, through
//! [`latchkey_domain::log_failure`]); 5xx bodies never say anything internal.

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_domain::Error as DomainError;
use latchkey_domain::ephemeral::Decision;
use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A domain error on its way out as an API answer.
#[derive(Debug)]
pub struct Error(pub DomainError);

impl From<DomainError> for Error {
    fn from(err: DomainError) -> Self {
        Self(err)
    }
}

impl From<latchkey_store::Error> for Error {
    fn from(err: latchkey_store::Error) -> Self {
        Self(err.into())
    }
}

impl From<anyhow::Error> for Error {
    fn from(err: anyhow::Error) -> Self {
        Self(err.into())
    }
}

impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Self {
        Self(match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                DomainError::UnsupportedMediaType("expected Content-Type: application/json")
            }
            JsonRejection::JsonDataError(e) => DomainError::Validation {
                message: "the request body does not match the expected fields".into(),
                details: vec![e.body_text()],
            },
            JsonRejection::JsonSyntaxError(_) => {
                DomainError::BadRequest("the request body is not valid JSON".into())
            }
            JsonRejection::BytesRejection(_) => DomainError::PayloadTooLarge,
            _ => DomainError::BadRequest("the request body could not be read".into()),
        })
    }
}

impl From<FormRejection> for Error {
    fn from(rejection: FormRejection) -> Self {
        Self(match rejection {
            FormRejection::InvalidFormContentType(_) => DomainError::UnsupportedMediaType(
                "expected Content-Type: application/x-www-form-urlencoded",
            ),
            FormRejection::BytesRejection(_) => DomainError::PayloadTooLarge,
            other => DomainError::BadRequest(format!("invalid form body: {}", other.body_text())),
        })
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

/// The status and `error` code of a domain error at the API (not the OAuth endpoints,
/// which answer RFC 6749 §5.2 codes: [`crate::oauth::OAuthError`]).
pub fn status_and_code(err: &DomainError) -> (StatusCode, &'static str) {
    match err {
        DomainError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        DomainError::Validation { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        DomainError::WeakPassword { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "weak_password"),
        DomainError::Conflict(_) => (StatusCode::CONFLICT, "already_exists"),
        DomainError::InvalidCredentials | DomainError::LockedOut { .. } => {
            (StatusCode::UNAUTHORIZED, "invalid_credentials")
        }
        DomainError::AccountDisabled => (StatusCode::FORBIDDEN, "account_disabled"),
        DomainError::EmailNotVerified => (StatusCode::FORBIDDEN, "email_not_verified"),
        DomainError::InvalidLink => (StatusCode::BAD_REQUEST, "invalid_token"),
        // 403: the bearer token itself is fine.
        DomainError::WrongPassword => (StatusCode::FORBIDDEN, "invalid_credentials"),
        DomainError::InvalidGrant(_) | DomainError::AccountInactive => {
            (StatusCode::UNAUTHORIZED, "invalid_grant")
        }
        DomainError::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
        DomainError::InsufficientScope(_) => (StatusCode::FORBIDDEN, "insufficient_scope"),
        DomainError::OAuth(e) => (crate::oauth::status_of(e.code), e.code),
        DomainError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        DomainError::ManagedElsewhere => (StatusCode::CONFLICT, "managed_by_operator"),
        DomainError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        DomainError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request"),
        DomainError::UnsupportedMediaType(_) => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request")
        }
        DomainError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        DomainError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
        DomainError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    }
}

/// `RateLimit-Limit`, `-Remaining`, `-Reset` (draft-ietf-httpapi-ratelimit-headers),
/// and `Retry-After` when refused.
pub fn write_rate_headers(decision: &Decision, headers: &mut HeaderMap) {
    headers.insert(
        HeaderName::from_static("ratelimit-limit"),
        HeaderValue::from(decision.limit),
    );
    headers.insert(
        HeaderName::from_static("ratelimit-remaining"),
        HeaderValue::from(decision.remaining),
    );
    headers.insert(
        HeaderName::from_static("ratelimit-reset"),
        HeaderValue::from(decision.reset_secs()),
    );
    if !decision.allowed {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(decision.retry_after_secs().max(1)),
        );
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let err = self.0;
        let (status, code) = status_and_code(&err);
        latchkey_domain::log_failure(&err);
        let body = Body {
            error: code,
            error_description: err.to_string(),
            details: match &err {
                DomainError::Validation { details, .. } if !details.is_empty() => Some(details),
                _ => None,
            },
            failed_rules: match &err {
                DomainError::WeakPassword { rules } => Some(rules),
                _ => None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &err {
            DomainError::InvalidToken(description) => {
                let value =
                    format!(r#"Bearer error="invalid_token", error_description="{description}""#);
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            DomainError::InsufficientScope(description) => {
                let value = format!(
                    r#"Bearer error="insufficient_scope", error_description="{description}""#
                );
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            DomainError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            DomainError::LockedOut { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            DomainError::RateLimited(decision) => write_rate_headers(decision, headers),
            _ => {}
        }
        // Auth answers must never be cached by anyone.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
