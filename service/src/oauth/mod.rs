//! The OAuth 2.0 authorization server: `/oauth/token`, `/oauth/authorize`,
//! `/oauth/introspect`, `/oauth/revoke` (RFC 6749, 7636, 7662, 7009, 9700).
//!
//! # Layout
//! - [`form`]: strict `application/x-www-form-urlencoded` parsing (duplicates refused).
//! - [`client_auth`]: who the calling client is (Basic, post, or none for public clients).
//! - [`token`]: the token endpoint and its four grants.
//! - [`authorize`]: the authorization endpoint: validation, cookies and CSRF, and the
//!   redirect; its pages are in [`crate::pages`].
//! - [`introspect`]: introspection and revocation.
//!
//! Scope rules are the domain's (`latchkey_domain::scopes`).

pub mod authorize;
pub mod client_auth;
pub mod form;
pub mod introspect;
pub mod token;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_domain::Error;
use serde::Serialize;

use crate::app::AppState;
use crate::error::write_rate_headers;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(token::router())
        .merge(authorize::router())
        .merge(introspect::router())
}

/// The status of an RFC 6749 §5.2 error code: `invalid_client` answers 401, server
/// faults 5xx, a refusal 429, the rest 400.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "invalid_client" => StatusCode::UNAUTHORIZED,
        "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
        "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// An RFC 6749 §5.2 error response. `invalid_client` answers 401 with
/// `WWW-Authenticate: Basic`; the rest 400, except server faults.
#[derive(Debug)]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
    status: StatusCode,
    /// Further headers: `Retry-After` of a lockout, `RateLimit-*` of a refusal.
    /// Boxed: this error travels in every `Result` of the token endpoint.
    headers: Option<Box<HeaderMap>>,
}

impl OAuthError {
    pub fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            status: status_of(code),
            headers: None,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }

    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new("invalid_client", description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }

    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new("unauthorized_client", description)
    }
}

impl From<latchkey_domain::OAuthError> for OAuthError {
    fn from(err: latchkey_domain::OAuthError) -> Self {
        Self::new(err.code, err.description)
    }
}

/// Domain outcomes become the matching OAuth error; internals stay generic.
impl From<Error> for OAuthError {
    fn from(err: Error) -> Self {
        match err {
            Error::OAuth(err) => err.into(),
            Error::BadRequest(d) => Self::invalid_request(d),
            Error::Validation { message, .. } => Self::invalid_request(message),
            Error::UnsupportedMediaType(d) => Self::invalid_request(d),
            Error::PayloadTooLarge => Self::invalid_request("request body too large"),
            Error::InvalidCredentials => Self::invalid_grant("invalid username or password"),
            Error::LockedOut { retry_after } => {
                let mut headers = HeaderMap::new();
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                Self {
                    headers: Some(Box::new(headers)),
                    ..Self::invalid_grant("invalid username or password")
                }
            }
            Error::RateLimited(decision) => {
                let mut headers = HeaderMap::new();
                write_rate_headers(&decision, &mut headers);
                Self {
                    headers: Some(Box::new(headers)),
                    ..Self::new("rate_limited", Error::RateLimited(decision).to_string())
                }
            }
            Error::AccountDisabled => Self::invalid_grant("the account is disabled"),
            Error::EmailNotVerified => {
                Self::invalid_grant("the account's email address is not verified yet")
            }
            Error::InvalidGrant(d) => Self::invalid_grant(d),
            Error::AccountInactive => Self::invalid_grant("the user is no longer active"),
            Error::Unavailable(d) => Self::new("temporarily_unavailable", d),
            other => {
                // The cause goes to the log; the client sees only "server_error".
                latchkey_domain::log_failure(&other);
                Self::new("server_error", "internal error")
            }
        }
    }
}

impl From<latchkey_store::Error> for OAuthError {
    fn from(err: latchkey_store::Error) -> Self {
        Error::from(err).into()
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.code,
                error_description: &self.description,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(extra) = self.headers {
            headers.extend(*extra);
        }
        no_store(headers);
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
