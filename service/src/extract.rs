//! Extractors whose rejections speak our error format.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::error::Error;
use crate::tokens::AccessClaims;

impl Bearer {
    /// The active user the token was issued for. A valid token whose user is gone or
    /// disabled is no longer a valid credential.
    pub async fn user(&self, state: &AppState) -> Result<crate::accounts::User, Error> {
        crate::accounts::find_by_id(&state.db, &self.0.sub)
            .await?
            .filter(|u| u.is_active)
            .ok_or(Error::InvalidToken(
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
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(Error::InvalidToken(
                "no bearer token in the Authorization header",
            ))?;
        let value = value
            .to_str()
            .map_err(|_| Error::InvalidToken("the Authorization header is malformed"))?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or(Error::InvalidToken("the Authorization header is malformed"))?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(Error::InvalidToken(
                "the Authorization header is not a Bearer token",
            ));
        }
        state.tokens.verify(token.trim()).await.map(Bearer)
    }
}
