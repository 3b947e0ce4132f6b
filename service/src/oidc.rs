//! OpenID Connect on top of the OAuth server: discovery, `/userinfo`, and the user claims
//! shared by ID tokens and userinfo.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use latchkey_domain::{Error, scopes};
use latchkey_store::jwks;
use latchkey_store::keys::Alg;
use latchkey_store::protocol::{AuthMethod, GrantType};

use crate::error::Result;
use crate::extract::Bearer;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/userinfo", get(userinfo).post(userinfo))
}

/// The authorization-server metadata (RFC 8414), which is also the OpenID Provider
/// metadata (OpenID Connect Discovery 1.0 §3). `signing` are the algorithms of the
/// published keys; RS256 is always listed (Discovery §3: it MUST be).
pub fn metadata(issuer: &str, signing: &[Alg]) -> Value {
    let mut id_token_algs = vec![Alg::Rs256.as_str()];
    id_token_algs.extend(
        signing
            .iter()
            .filter(|a| **a != Alg::Rs256)
            .map(|a| a.as_str()),
    );
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "end_session_endpoint": format!("{issuer}/oauth/logout"),
        "scopes_supported": ["openid", "profile", "email", scopes::ADMIN],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GrantType::ALL.map(GrantType::as_str),
        "token_endpoint_auth_methods_supported": AuthMethod::ALL.map(AuthMethod::as_str),
        "token_endpoint_auth_signing_alg_values_supported": jwks::ASSERTION_ALGORITHMS,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": jwks::ASSERTION_ALGORITHMS,
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": jwks::ASSERTION_ALGORITHMS,
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": id_token_algs,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp", "sid",
                             "name", "preferred_username", "email", "email_verified"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    })
}

/// OpenID Connect Core §5.3: needs an access token with the `openid` scope.
#[utoipa::path(method(get, post), path = "/userinfo", tag = "oauth",
    security(("client_token" = []), ("user_token" = [])),
    responses(
        (status = 200, description = "The claims the token's scopes release.", body = crate::schemas::UserInfo),
        (status = 401, description = "`invalid_token`, with `WWW-Authenticate: Bearer`.", body = crate::error::Body,
            headers(("www-authenticate" = String))),
        (status = 403, description = "`insufficient_scope`: the token lacks `openid`.", body = crate::error::Body),
    ))]
async fn userinfo(State(state): State<AppState>, bearer: Bearer) -> Result<Response> {
    let claims = &bearer.0;
    if !scopes::contains(&claims.scope, scopes::OPENID) {
        return Err(Error::InsufficientScope("the access token lacks the openid scope").into());
    }
    let user = bearer.user(&state).await?;
    let mut body = json!({ "sub": user.id });
    scopes::add_user_claims(&mut body, &user, &claims.scope);
    let mut response = Json(body).into_response();
    crate::error::no_store(response.headers_mut());
    Ok(response)
}
