//! Extractors whose rejections speak our error format.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;

use latchkey_domain::tokens::AccessClaims;
use latchkey_store::users::{self, User};

use crate::error::Error;
use crate::state::AppState;

/// The client IP the request counts against (see [`crate::middleware`]), or `None` when
/// the router was served without connect info (tests driving it in process).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ClientAddr>().and_then(|c| c.0)))
    }
}

impl Bearer {
    /// Refuses a token issued to a registered client (403 `insufficient_scope`): the
    /// account endpoints (`/users/me`, `/auth/change-password`) are Latchkey's own API,
    /// for tokens of `/auth/login`. A client reads the claims its scopes release at
    /// `/userinfo`.
    pub fn first_party(&self) -> Result<(), Error> {
        if self.0.is_first_party() {
            Ok(())
        } else {
            Err(Error(latchkey_domain::Error::InsufficientScope(
                "this endpoint takes a first-party token (from /auth/login); OAuth clients use /userinfo",
            )))
        }
    }

    /// The active user the token was issued for. A valid token whose user is gone or
    /// disabled is no longer a valid credential.
    pub async fn user(&self, state: &AppState) -> latchkey_domain::Result<User> {
        users::find_by_id(&state.db, &self.0.sub)
            .await?
            .filter(|u| u.is_active)
            .ok_or(latchkey_domain::Error::InvalidToken(
                "the token's user no longer exists or is disabled",
            ))
    }
}

/// `axum::Json`, but a bad body answers our JSON error (400/413/415/422), never text,
/// and a string holding a NUL character (`\u0000`) is refused with 400: no storage takes
/// it, and both backends must answer alike.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(Error(latchkey_domain::Error::UnsupportedMediaType(
                "expected Content-Type: application/json",
            )));
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|_| Error(latchkey_domain::Error::PayloadTooLarge))?;
        if has_escaped_nul(&body) {
            return Err(Error(latchkey_domain::Error::BadRequest(
                "the request body contains a NUL character".into(),
            )));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&body)?;
        Ok(Self(value))
    }
}

/// `application/json` or `application/<something>+json`, as `axum::Json` accepts.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .is_some_and(|t| {
            t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
        })
}

/// Whether JSON text escapes a NUL (`\u0000`) in a string: the only way JSON can carry
/// one. An escaped backslash followed by `u0000` (`\\u0000`) is text, not a NUL.
fn has_escaped_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json[i + 1..].starts_with(b"u0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// The verified claims of the request's `Authorization: Bearer` access token. Any
/// problem answers 401 with `WWW-Authenticate: Bearer error="invalid_token"`.
#[derive(Debug)]
pub struct Bearer(pub AccessClaims);

impl FromRequestParts<AppState> for Bearer {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let invalid = |why| Error(latchkey_domain::Error::InvalidToken(why));
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(invalid("no bearer token in the Authorization header"))?;
        let value = value
            .to_str()
            .map_err(|_| invalid("the Authorization header is malformed"))?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or(invalid("the Authorization header is malformed"))?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(invalid("the Authorization header is not a Bearer token"));
        }
        Ok(state.tokens.verify(token.trim()).await.map(Bearer)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_nul_is_found_and_escaped_backslashes_are_not() {
        assert!(has_escaped_nul(br#"{"username":"a\u0000b"}"#));
        assert!(has_escaped_nul(br#"{"a\u0000":1}"#));
        assert!(!has_escaped_nul(br#"{"username":"a\\u0000b"}"#));
        assert!(has_escaped_nul(br#"{"username":"a\\\u0000b"}"#));
        assert!(has_escaped_nul(br#"{"username":"\u00001"}"#));
        assert!(!has_escaped_nul(br#"{"username":"plain"}"#));
        assert!(!has_escaped_nul(br#"{"username":"ends with \"#));
    }
}
