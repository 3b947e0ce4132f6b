//! The one mapping from errors to HTTP answers: [`Error`] for the API and
//! [`OAuthError`] for the OAuth endpoints (RFC 6749 §5.2, with its `WWW-Authenticate`
//! and no-store headers), both from the same domain outcomes.
//!
//! Every error answers `{"error": ..., "error_description": ...}` (RFC 6749 §5.2 style).
//! `into_response` has no side effects besides logging internal causes (once, through
//! [`latchkey_domain::log_failure`]); 5xx bodies never say anything internal.

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_domain::ephemeral::Decision;
use latchkey_domain::{Error as DomainError, OAuthCode};
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

/// The API's error body (`ApiError` in the OpenAPI document).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ApiError, no_recursion)]
pub struct Body<'a> {
    /// A stable code: `invalid_request`, `weak_password`, `already_exists`,
    /// `invalid_credentials`, `account_disabled`, `email_not_verified`, `invalid_token`,
    /// `invalid_grant`, `insufficient_scope`, `not_found`, `managed_by_operator`,
    /// `method_not_allowed`, `rate_limited`, `temporarily_unavailable`, `server_error`, or
    /// an RFC 6749 code.
    error: &'a str,
    /// For people, not programs; never internal details.
    error_description: String,
    /// Each problem of an invalid body (422 `invalid_request`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>, nullable = false)]
    details: Option<&'a [String]>,
    /// The password rules a weak password failed (422 `weak_password`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>, nullable = false)]
    failed_rules: Option<&'a [&'static str]>,
}

/// The status of an OAuth error: `invalid_client` answers 401, server faults 5xx, a
/// refusal 429, the rest 400 (RFC 6749 §5.2).
pub fn oauth_status(code: OAuthCode) -> StatusCode {
    match code {
        OAuthCode::InvalidClient => StatusCode::UNAUTHORIZED,
        OAuthCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        OAuthCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        OAuthCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        OAuthCode::InvalidRequest
        | OAuthCode::InvalidGrant
        | OAuthCode::UnauthorizedClient
        | OAuthCode::UnsupportedGrantType
        | OAuthCode::UnsupportedResponseType
        | OAuthCode::InvalidScope
        | OAuthCode::AccessDenied
        | OAuthCode::LoginRequired
        | OAuthCode::ConsentRequired => StatusCode::BAD_REQUEST,
    }
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
        DomainError::OAuth(e) => (oauth_status(e.code), e.code.as_str()),
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
            DomainError::LockedOut { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            DomainError::RateLimited(decision) => write_rate_headers(decision, headers),
            _ => {}
        }
        retry_later(status, headers);
        // Auth answers must never be cached by anyone.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// Seconds a 503 asks the caller to wait (`Retry-After`): about what a database restart
/// or a Redis reconnect takes.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Every 503 says when to come back: `Retry-After`, unless one is set already.
fn retry_later(status: StatusCode, headers: &mut HeaderMap) {
    if status == StatusCode::SERVICE_UNAVAILABLE && !headers.contains_key(header::RETRY_AFTER) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
}

// === RFC 6749 §5.2: the OAuth endpoints' answers ===

/// An RFC 6749 §5.2 error response. `invalid_client` answers 401 with
/// `WWW-Authenticate: Basic`; the rest 400, except server faults.
#[derive(Debug)]
pub struct OAuthError {
    pub code: OAuthCode,
    pub description: String,
    status: StatusCode,
    /// Further headers: `Retry-After` of a lockout, `RateLimit-*` of a refusal.
    /// Boxed: this error travels in every `Result` of the token endpoint.
    headers: Option<Box<HeaderMap>>,
}

impl OAuthError {
    pub fn new(code: OAuthCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            status: oauth_status(code),
            headers: None,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(OAuthCode::InvalidRequest, description)
    }

    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(OAuthCode::InvalidClient, description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(OAuthCode::InvalidGrant, description)
    }

    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(OAuthCode::UnauthorizedClient, description)
    }

    /// A body over `LATCHKEY_BODY_LIMIT`: `invalid_request`, with the status every other
    /// endpoint answers for it, 413.
    pub fn too_large() -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..Self::invalid_request("request body too large")
        }
    }
}

impl From<latchkey_domain::OAuthError> for OAuthError {
    fn from(err: latchkey_domain::OAuthError) -> Self {
        Self::new(err.code, err.description)
    }
}

/// Domain outcomes become the matching OAuth error; internals stay generic.
impl From<DomainError> for OAuthError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::OAuth(err) => err.into(),
            DomainError::BadRequest(d) => Self::invalid_request(d),
            DomainError::Validation { message, .. } => Self::invalid_request(message),
            DomainError::UnsupportedMediaType(d) => Self::invalid_request(d),
            DomainError::PayloadTooLarge => Self::too_large(),
            DomainError::InvalidCredentials => Self::invalid_grant("invalid username or password"),
            DomainError::LockedOut { retry_after } => {
                let mut headers = HeaderMap::new();
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                Self {
                    headers: Some(Box::new(headers)),
                    ..Self::invalid_grant("invalid username or password")
                }
            }
            DomainError::RateLimited(decision) => {
                let mut headers = HeaderMap::new();
                write_rate_headers(&decision, &mut headers);
                Self {
                    headers: Some(Box::new(headers)),
                    ..Self::new(
                        OAuthCode::RateLimited,
                        DomainError::RateLimited(decision).to_string(),
                    )
                }
            }
            DomainError::AccountDisabled => Self::invalid_grant("the account is disabled"),
            DomainError::EmailNotVerified => {
                Self::invalid_grant("the account's email address is not verified yet")
            }
            DomainError::InvalidGrant(d) => Self::invalid_grant(d),
            DomainError::AccountInactive => Self::invalid_grant("the user is no longer active"),
            DomainError::Unavailable(d) => Self::new(OAuthCode::TemporarilyUnavailable, d),
            other => {
                // The cause goes to the log; the client sees only "server_error".
                latchkey_domain::log_failure(&other);
                Self::new(OAuthCode::ServerError, "internal error")
            }
        }
    }
}

impl From<latchkey_store::Error> for OAuthError {
    fn from(err: latchkey_store::Error) -> Self {
        DomainError::from(err).into()
    }
}

/// An RFC 6749 §5.2 error body (`OAuthError` in the OpenAPI document).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OAuthError)]
pub struct OAuthBody<'a> {
    /// The RFC 6749 §5.2 code (or RFC 6750 / OpenID Connect's, and `rate_limited`).
    #[schema(value_type = crate::schemas::OAuthErrorCode)]
    error: &'a str,
    error_description: &'a str,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(OAuthBody {
                error: self.code.as_str(),
                error_description: &self.description,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(extra) = self.headers {
            headers.extend(*extra);
        }
        no_store(headers);
        retry_later(self.status, headers);
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="latchkey", charset="UTF-8""#),
            );
        }
        response
    }
}

/// RFC 6749 §5.1: token responses must not be cached.
pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
