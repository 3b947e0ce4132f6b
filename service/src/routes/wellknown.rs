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
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
}

fn public_cache(state: &AppState) -> HeaderValue {
    let value = format!("public, max-age={}", state.web.jwks_max_age.as_secs());
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("no-cache"))
}

/// The published keys (RFC 7517), serialised once per key reload.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses((status = 200, description = "Every key that signs or may still have signed a live token.",
        content_type = "application/jwk-set+json", body = crate::schemas::Jwks,
        headers(("cache-control" = String, description = "`public, max-age=<LATCHKEY_JWKS_MAX_AGE>`")))))]
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

/// RFC 8414 authorization-server metadata.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "The metadata.", body = crate::schemas::ServerMetadata,
        headers(("cache-control" = String)))))]
async fn metadata(State(state): State<AppState>) -> Response {
    let keys = state.keys.current();
    let document = crate::oidc::metadata(&state.settings.issuer, keys.algorithms());
    let mut response = Json(document).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, public_cache(&state));
    response
}

/// OpenID Connect Discovery 1.0 §4: the same document as the RFC 8414 metadata.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses((status = 200, description = "The metadata.", body = crate::schemas::ServerMetadata,
        headers(("cache-control" = String)))))]
async fn openid_configuration(state: State<AppState>) -> Response {
    metadata(state).await
}
