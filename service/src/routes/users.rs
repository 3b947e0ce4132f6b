//! `/users/me`.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use latchkey_store::users::User;

use crate::error::Result;
use crate::extract::Bearer;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/users/me", get(me))
}

/// What a user may see of their own account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub id: String,
    pub username: String,
    pub email: String,
    pub full_name: String,
    pub email_verified: bool,
    pub is_active: bool,
    /// RFC 3339.
    pub created_at: String,
}

impl From<&User> for Profile {
    fn from(user: &User) -> Self {
        let created_at = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(user.created_at) * 1_000_000,
        )
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
        Self {
            id: user.id.clone(),
            username: user.username.clone(),
            email: user.email.clone(),
            full_name: user.full_name.clone(),
            email_verified: user.email_verified,
            is_active: user.is_active,
            created_at,
        }
    }
}

/// The signed-in user's own account.
#[utoipa::path(get, path = "/users/me", tag = "accounts",
    security(("user_token" = [])),
    responses(
        (status = 200, description = "The profile.", body = Profile,
            headers(("cache-control" = String, description = "`no-store`"))),
        (status = 401, description = "`invalid_token`, with `WWW-Authenticate: Bearer`.", body = crate::error::Body,
            headers(("www-authenticate" = String))),
        (status = 403, description = "`insufficient_scope`: a token issued to an OAuth client (it reads /userinfo).", body = crate::error::Body),
    ))]
async fn me(State(state): State<AppState>, bearer: Bearer) -> Result<Response> {
    bearer.first_party()?;
    let user = bearer.user(&state).await?;
    let mut response = Json(Profile::from(&user)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
