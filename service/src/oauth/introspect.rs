//! `POST /oauth/introspect` (RFC 7662) and `POST /oauth/revoke` (RFC 7009).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_store::clients::{self, ClientRecord};
use latchkey_store::now_ms;
use latchkey_store::refresh_tokens;
use serde_json::{Value, json};

use super::form::Params;
use latchkey_domain::sessions;
use latchkey_domain::tokens::digest;
use latchkey_store::users;

use super::{OAuthError, client_auth, no_store};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth/introspect", post(introspect))
        .route("/oauth/revoke", post(revoke))
}

fn inactive() -> Value {
    json!({ "active": false })
}

/// Any confidential client may introspect, but only what concerns it (RFC 7662 §4): an
/// access token issued to it or naming its client id as audience, a refresh token issued
/// to it; a client marked `resource_server` sees every access token (never other
/// clients' refresh tokens, which only their own client ever presents). Unknown,
/// expired, revoked, malformed or someone else's tokens are all `{"active": false}`,
/// whatever the hint says; the hint only picks which kind is tried first.
#[utoipa::path(post, path = "/oauth/introspect", tag = "oauth",
    security(("client_basic" = []), ()),
    request_body(content = crate::schemas::TokenHintForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "RFC 7662 §2.2.", body = crate::schemas::Introspection),
        (status = 400, description = "RFC 6749 §5.2 `invalid_request` (a missing or repeated parameter, a NUL, not a form body), and the endpoint's other refusals.", body = crate::error::OAuthBody,
            headers(("cache-control" = String, description = "`no-store`"))),
        (status = 401, description = "`invalid_client`, with `WWW-Authenticate: Basic`.", body = crate::error::OAuthBody,
            headers(("www-authenticate" = String))),
        (status = 413, description = "`invalid_request`: the body is over LATCHKEY_BODY_LIMIT.", body = crate::error::OAuthBody),
    ))]
async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, OAuthError> {
    let client = client_auth::authenticate(&state, &headers, &params).await?;
    if client.public {
        return Err(OAuthError::unauthorized_client(
            "public clients cannot introspect tokens",
        ));
    }
    let token = params.require("token")?;
    let refresh_first = params.get("token_type_hint") == Some("refresh_token");
    let body = if refresh_first {
        match describe_refresh(&state, &client, token).await? {
            Some(body) => body,
            None => describe_access(&state, &client, token)
                .await?
                .unwrap_or_else(inactive),
        }
    } else {
        match describe_access(&state, &client, token).await? {
            Some(body) => body,
            None => describe_refresh(&state, &client, token)
                .await?
                .unwrap_or_else(inactive),
        }
    };
    let mut response = Json(body).into_response();
    no_store(response.headers_mut());
    Ok(response)
}

async fn username_of(state: &AppState, sub: &str) -> Result<Option<String>, OAuthError> {
    Ok(users::find_by_id(&state.db, sub).await?.map(|u| u.username))
}

async fn describe_access(
    state: &AppState,
    client: &ClientRecord,
    token: &str,
) -> Result<Option<Value>, OAuthError> {
    if token.split('.').count() != 3 {
        return Ok(None);
    }
    let claims = match state.tokens.verify_any_audience(token).await {
        Ok(claims) => claims,
        Err(latchkey_domain::Error::Unavailable(d)) => {
            return Err(OAuthError::new(
                latchkey_domain::OAuthCode::TemporarilyUnavailable,
                d,
            ));
        }
        Err(_) => return Ok(None),
    };
    let concerns_caller = client.resource_server
        || claims.client_id == client.client_id
        || claims.aud == client.client_id;
    if !concerns_caller {
        return Ok(None);
    }
    // The token of a client that was disabled since is no longer active.
    if clients::get(&state.db, &claims.client_id)
        .await?
        .is_some_and(|c| c.disabled)
    {
        return Ok(None);
    }
    let mut body = json!({
        "active": true,
        "token_type": "Bearer",
        "scope": claims.scope,
        "client_id": claims.client_id,
        "sub": claims.sub,
        "aud": claims.aud,
        "iss": claims.iss,
        "jti": claims.jti,
        "iat": claims.iat,
        "nbf": claims.iat,
        "exp": claims.exp,
    });
    if let Some(username) = username_of(state, &claims.sub).await? {
        body["username"] = username.into();
    }
    Ok(Some(body))
}

async fn describe_refresh(
    state: &AppState,
    client: &ClientRecord,
    token: &str,
) -> Result<Option<Value>, OAuthError> {
    if token.len() > 512 {
        return Ok(None);
    }
    let Some(live) = refresh_tokens::find_live(&state.db, &digest(token), now_ms()).await? else {
        return Ok(None);
    };
    if live.client_id != client.client_id {
        return Ok(None);
    }
    let created = live.created_at;
    let mut body = json!({
        "active": true,
        "token_type": "refresh_token",
        "scope": live.scope,
        "client_id": live.client_id,
        "sub": live.user_id,
        "iss": state.tokens.issuer(),
        "iat": created / 1000,
        "nbf": created / 1000,
        "exp": live.expires_at / 1000,
    });
    if let Some(username) = username_of(state, &live.user_id).await? {
        body["username"] = username.into();
    }
    Ok(Some(body))
}

/// RFC 7009: always 200 for a well-formed request from an authenticated client, whether
/// or not the token existed. Only the client the token was issued to can revoke it.
#[utoipa::path(post, path = "/oauth/revoke", tag = "oauth",
    security(("client_basic" = []), ()),
    request_body(content = crate::schemas::TokenHintForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or there was nothing of this client's to revoke (no body)."),
        (status = 400, description = "RFC 6749 §5.2 `invalid_request` (a missing or repeated parameter, a NUL, not a form body), and the endpoint's other refusals.", body = crate::error::OAuthBody,
            headers(("cache-control" = String, description = "`no-store`"))),
        (status = 401, description = "`invalid_client`, with `WWW-Authenticate: Basic`.", body = crate::error::OAuthBody,
            headers(("www-authenticate" = String))),
        (status = 413, description = "`invalid_request`: the body is over LATCHKEY_BODY_LIMIT.", body = crate::error::OAuthBody),
    ))]
async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, OAuthError> {
    let client = client_auth::authenticate(&state, &headers, &params).await?;
    let token = params.require("token")?;
    let now = now_ms();
    if token.len() <= 512
        && let Some((family_id, owner)) = refresh_tokens::family(&state.db, &digest(token)).await?
    {
        if owner == client.client_id {
            // The family's access tokens go with it (RFC 7009 §2.1).
            sessions::revoke(&state, None, Some(&family_id), &client.client_id, now).await?;
        }
    } else if token.split('.').count() == 3
        && let Ok(claims) = state.tokens.verify_any_audience(token).await
        && claims.client_id == client.client_id
    {
        state
            .ephemeral
            .revoke_jti(&claims.jti, claims.exp * 1000, now)
            .await?;
    }
    let mut response = StatusCode::OK.into_response();
    no_store(response.headers_mut());
    Ok(response)
}
