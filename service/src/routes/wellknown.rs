//! `/.well-known/jwks.json` and the RFC 8414 metadata document.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/openid-configuration", get(metadata))
}

fn public_cache(state: &AppState) -> HeaderValue {
    let value = format!("public, max-age={}", state.web.jwks_max_age.as_secs());
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("no-cache"))
}

/// The published keys, serialised once per key reload.
async fn jwks(State(state): State<AppState>) -> Response {
    let body = state.keys.current().jwks();
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    headers.insert(header::CACHE_CONTROL, public_cache(&state));
    response
}

/// RFC 8414 metadata; the same document serves OpenID Connect discovery.
async fn metadata(State(state): State<AppState>) -> Response {
    let mut response = Json(crate::oidc::metadata(&state.settings.issuer)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, public_cache(&state));
    response
}
