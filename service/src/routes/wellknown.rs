//! `/.well-known/jwks.json` and the RFC 8414 metadata document.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/oauth-authorization-server", get(metadata))
}

fn public_cache(state: &AppState) -> HeaderValue {
    let value = format!("public, max-age={}", state.settings.jwks_max_age.as_secs());
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

/// RFC 8414 metadata, listing only what this service implements today.
async fn metadata(State(state): State<AppState>) -> Response {
    let issuer = &state.settings.issuer;
    let mut response = Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        // No authorization endpoint yet, so no response type is supported.
        "response_types_supported": [],
        "grant_types_supported": [],
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, public_cache(&state));
    response
}
