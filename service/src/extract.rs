//! Extractors whose rejections speak our error format.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use latchkey_domain::tokens::AccessClaims;
use latchkey_store::users::{self, User};

use crate::error::Error;
use crate::state::AppState;

impl Bearer {
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

/// `axum::Json`, but a bad body answers our JSON error (400/413/415/422), never text.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(Error))]
pub struct ApiJson<T>(pub T);

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
