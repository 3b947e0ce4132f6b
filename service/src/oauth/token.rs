//! `POST /oauth/token` (RFC 6749 §3.2) with the `authorization_code` (+ PKCE, RFC 7636),
//! `client_credentials`, `refresh_token` and `password` grants.

use std::net::IpAddr;

use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_domain::sessions::{self, NewSession};
use latchkey_domain::tokens::{self, Grant, Issued, digest};
use latchkey_domain::{limits, login, scopes};
use latchkey_store::clients::ClientRecord;
use latchkey_store::codes::{self, Redemption};
use latchkey_store::now_ms;
use latchkey_store::protocol::GrantType;
use latchkey_store::users::{self, User};
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::form::Params;
use super::{OAuthError, client_auth, no_store};
use crate::extract::ClientAddr;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/oauth/token", post(token))
}

/// RFC 6749 §5.1 success body, plus `id_token` (OpenID Connect Core §3.1.3.3).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// An RFC 9068 JWT (`typ: at+jwt`), RS256.
    access_token: String,
    /// `Bearer`.
    token_type: &'static str,
    /// Seconds.
    expires_in: u64,
    /// When the client (or the first-party session) may refresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    refresh_token: Option<String>,
    /// The granted scopes, space-separated (absent when none).
    #[serde(skip_serializing_if = "String::is_empty")]
    scope: String,
    /// OpenID Connect: with the `openid` scope, from the authorization code grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    id_token: Option<String>,
}

impl TokenBody {
    pub fn new(issued: Issued, refresh_token: Option<String>, id_token: Option<String>) -> Self {
        Self {
            expires_in: u64::try_from(issued.claims.exp - issued.claims.iat).unwrap_or_default(),
            scope: issued.claims.scope,
            access_token: issued.token,
            token_type: "Bearer",
            refresh_token,
            id_token,
        }
    }
}

impl IntoResponse for TokenBody {
    fn into_response(self) -> Response {
        let mut response = Json(self).into_response();
        no_store(response.headers_mut());
        response
    }
}

/// The token endpoint (RFC 6749 §3.2).
///
/// Grants: `authorization_code` (+ PKCE), `client_credentials`, `refresh_token`,
/// `password` (clients registered for it). Clients authenticate as registered:
/// `client_secret_basic`, `client_secret_post`, `private_key_jwt` or `none` (public).
#[utoipa::path(post, path = "/oauth/token", tag = "oauth",
    security(("client_basic" = []), ()),
    request_body(content = crate::schemas::TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "RFC 6749 §5.1.", body = TokenBody,
            headers(("cache-control" = String, description = "`no-store`"), ("pragma" = String, description = "`no-cache`"))),
        (status = 400, description = "RFC 6749 §5.2 `invalid_request` (a missing or repeated parameter, a NUL, not a form body), and the endpoint's other refusals.", body = crate::error::OAuthBody,
            headers(("cache-control" = String, description = "`no-store`"))),
        (status = 401, description = "`invalid_client`, with `WWW-Authenticate: Basic`.", body = crate::error::OAuthBody,
            headers(("www-authenticate" = String))),
        (status = 413, description = "`invalid_request`: the body is over LATCHKEY_BODY_LIMIT.", body = crate::error::OAuthBody),
    ))]
async fn token(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    params: Params,
) -> Result<TokenBody, OAuthError> {
    let name = params.require("grant_type")?;
    let Some(grant_type) = GrantType::parse(name) else {
        return Err(OAuthError::new(
            latchkey_domain::OAuthCode::UnsupportedGrantType,
            format!("grant_type {name} is not supported"),
        ));
    };
    let client = client_auth::authenticate(&state, &headers, &params).await?;
    limits::check_client(&state, &client.client_id).await?;
    if !client.allows_grant(grant_type) {
        return Err(OAuthError::unauthorized_client(format!(
            "this client may not use the {grant_type} grant"
        )));
    }
    let result = match grant_type {
        GrantType::AuthorizationCode => authorization_code(&state, &client, &params).await,
        GrantType::ClientCredentials => client_credentials(&state, &client, &params).await,
        GrantType::RefreshToken => refresh_token(&state, &client, &params).await,
        GrantType::Password => password(&state, &client, &params, ip).await,
    };
    metrics::counter!(
        "latchkey_token_requests_total",
        "grant_type" => grant_type.as_str(),
        "result" => if result.is_ok() { "success" } else { "error" }
    )
    .increment(1);
    result
}

fn seconds(value: Option<i64>) -> Option<Duration> {
    value
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
}

/// Confidential clients only (RFC 6749 §4.4); no refresh token.
async fn client_credentials(
    state: &AppState,
    client: &ClientRecord,
    params: &Params,
) -> Result<TokenBody, OAuthError> {
    if client.public {
        return Err(OAuthError::unauthorized_client(
            "public clients cannot use client_credentials",
        ));
    }
    let scope = scopes::resolve(params.get("scope"), &client.scopes)?;
    let issued = state
        .tokens
        .issue(&Grant {
            sub: &client.client_id,
            client_id: &client.client_id,
            scope: &scope,
            sid: None,
            audience: client.audience.as_deref(),
            ttl: seconds(client.access_token_ttl),
        })
        .await?;
    Ok(TokenBody::new(issued, None, None))
}

/// Resource-owner password grant: only for clients registered for it, through the same
/// user checks as `/auth/login`.
async fn password(
    state: &AppState,
    client: &ClientRecord,
    params: &Params,
    ip: Option<IpAddr>,
) -> Result<TokenBody, OAuthError> {
    let username = params.require("username")?;
    let password = params.require("password")?.to_owned();
    let scope = scopes::resolve(params.get("scope"), &client.scopes)?;
    let user = login::check(state, username, password, ip).await?;
    let family_id = uuid::Uuid::new_v4().to_string();
    issue_for_user(state, client, &user, &scope, &family_id, None).await
}

/// Context for an ID token, present when the `openid` scope was granted through the
/// authorization endpoint.
struct IdTokenContext {
    nonce: Option<String>,
    auth_time: i64,
}

/// Access token, refresh token (when the client may refresh) and, for `openid`, an ID
/// token, for `user` in refresh family `family_id`.
async fn issue_for_user(
    state: &AppState,
    client: &ClientRecord,
    user: &User,
    scope: &str,
    family_id: &str,
    id_context: Option<IdTokenContext>,
) -> Result<TokenBody, OAuthError> {
    let issued = state
        .tokens
        .issue(&Grant {
            sub: &user.id,
            client_id: &client.client_id,
            scope,
            sid: Some(family_id),
            audience: client.audience.as_deref(),
            ttl: seconds(client.access_token_ttl),
        })
        .await?;
    let refresh_token = if client.allows_grant(GrantType::RefreshToken) {
        let session = NewSession {
            user_id: &user.id,
            client_id: &client.client_id,
            scope,
            family_id,
            refresh_ttl: seconds(client.refresh_token_ttl),
        };
        Some(sessions::start(state, &session, now_ms()).await?)
    } else {
        None
    };
    let id_token = match id_context {
        Some(context) if scopes::contains(scope, scopes::OPENID) => {
            Some(id_token(state, client, user, scope, &issued, family_id, context).await?)
        }
        _ => None,
    };
    Ok(TokenBody::new(issued, refresh_token, id_token))
}

/// OpenID Connect Core §2 ID token, with `at_hash` (§3.1.3.6) binding it to the access
/// token issued beside it, and `sid`, the session (refresh family) that logout with
/// this token as `id_token_hint` ends.
async fn id_token(
    state: &AppState,
    client: &ClientRecord,
    user: &User,
    scope: &str,
    access: &Issued,
    family_id: &str,
    context: IdTokenContext,
) -> Result<String, OAuthError> {
    let mut claims = serde_json::json!({
        "iss": state.tokens.issuer(),
        "sub": user.id,
        "aud": client.client_id,
        "azp": client.client_id,
        "iat": now_ms() / 1000,
        "exp": access.claims.exp,
        "auth_time": context.auth_time / 1000,
        "sid": family_id,
    });
    if let Some(nonce) = context.nonce {
        claims["nonce"] = nonce.into();
    }
    scopes::add_user_claims(&mut claims, user, scope);
    let signed = state
        .tokens
        .sign_for("JWT", |alg| {
            claims["at_hash"] = tokens::left_half_hash(alg, &access.token).into();
            claims
        })
        .await?;
    Ok(signed)
}

/// RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6). The code is consumed before anything else
/// is checked, so a failed attempt cannot be retried with the same code; a replay
/// revokes what the first redemption issued.
async fn authorization_code(
    state: &AppState,
    client: &ClientRecord,
    params: &Params,
) -> Result<TokenBody, OAuthError> {
    let code = params.require("code")?;
    let code_hash = digest(code);
    let now = now_ms();
    let redeemed = match codes::redeem(&state.db, &code_hash, now).await? {
        Redemption::Redeemed(redeemed) => redeemed,
        Redemption::Replayed {
            family_id,
            access_jti,
            access_exp,
        } => {
            let access = access_jti.as_deref().zip(access_exp);
            sessions::revoke(state, access, Some(&family_id), &client.client_id, now).await?;
            tracing::warn!(
                client_id = client.client_id,
                "authorization code replayed; tokens revoked"
            );
            metrics::counter!("latchkey_code_replays_total").increment(1);
            return Err(OAuthError::invalid_grant(
                "the authorization code was already used",
            ));
        }
        Redemption::Unknown => {
            return Err(OAuthError::invalid_grant(
                "the authorization code is invalid",
            ));
        }
    };
    if redeemed.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the authorization code was issued to another client",
        ));
    }
    if redeemed.expires_at <= now {
        return Err(OAuthError::invalid_grant(
            "the authorization code has expired",
        ));
    }
    match params.get("redirect_uri") {
        Some(uri) if uri != redeemed.redirect_uri => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        None if redeemed.redirect_given => {
            return Err(OAuthError::invalid_request("redirect_uri is required"));
        }
        _ => {}
    }
    verify_pkce(
        redeemed.code_challenge.as_deref(),
        params.get("code_verifier"),
    )?;

    let user = users::find_by_id(&state.db, &redeemed.user_id)
        .await?
        .filter(|u| u.is_active)
        .ok_or_else(|| OAuthError::invalid_grant("the user is no longer active"))?;
    let body = issue_for_user(
        state,
        client,
        &user,
        &redeemed.scope,
        &redeemed.family_id,
        Some(IdTokenContext {
            nonce: redeemed.nonce.clone(),
            auth_time: redeemed.auth_time,
        }),
    )
    .await?;
    if let Ok(claims) = state.tokens.verify_any_audience(&body.access_token).await {
        codes::record_issued(&state.db, &code_hash, &claims.jti, claims.exp * 1000).await?;
    }
    Ok(body)
}

/// `S256` only; a verifier without a challenge (or the reverse) fails, which also stops
/// PKCE downgrade (RFC 9700 §2.1.1).
fn verify_pkce(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), OAuthError> {
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(OAuthError::invalid_grant("code_verifier is required")),
        (None, Some(_)) => Err(OAuthError::invalid_grant(
            "code_verifier given but the authorization request had no code_challenge",
        )),
        (Some(challenge), Some(verifier)) => {
            let well_formed = (43..=128).contains(&verifier.len())
                && verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            if !well_formed {
                return Err(OAuthError::invalid_grant("code_verifier is malformed"));
            }
            let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
            let computed = URL_SAFE_NO_PAD.encode(hash.as_ref());
            if bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
                Ok(())
            } else {
                Err(OAuthError::invalid_grant(
                    "code_verifier does not match the code_challenge",
                ))
            }
        }
    }
}

/// RFC 6749 §6 with rotation, through the same session flow as `/auth/refresh`
/// ([`sessions::rotate`]): the scope may narrow for the new access token, never widen;
/// the successor refresh token keeps the original scope.
async fn refresh_token(
    state: &AppState,
    client: &ClientRecord,
    params: &Params,
) -> Result<TokenBody, OAuthError> {
    let presented = params.require("refresh_token")?;
    let rotated = sessions::rotate(
        state,
        &client.client_id,
        presented,
        params.get("scope"),
        seconds(client.refresh_token_ttl),
        now_ms(),
    )
    .await?;
    let issued = state
        .tokens
        .issue(&Grant {
            sub: &rotated.user.id,
            client_id: &client.client_id,
            scope: &rotated.scope,
            sid: Some(&rotated.family_id),
            audience: client.audience.as_deref(),
            ttl: seconds(client.access_token_ttl),
        })
        .await?;
    Ok(TokenBody::new(issued, Some(rotated.refresh_token), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(verify_pkce(Some(challenge), Some(verifier)).is_ok());
        assert!(verify_pkce(Some(challenge), Some(&verifier.replace('d', "e"))).is_err());
        assert!(verify_pkce(Some(challenge), None).is_err());
        assert!(verify_pkce(None, Some(verifier)).is_err());
        assert!(verify_pkce(Some(challenge), Some("short")).is_err());
        assert!(verify_pkce(None, None).is_ok());
    }
}
