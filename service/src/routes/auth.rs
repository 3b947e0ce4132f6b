//! `/auth/*`: registration, login, refresh and logout for first-party callers.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_store::now_ms;
use serde::{Deserialize, Serialize};

use latchkey_domain::tokens::{Grant, digest, random_token};
use latchkey_domain::{Error, accounts, login, sessions};
use latchkey_store::refresh_tokens::{self, NewRefresh, Rotation};
use latchkey_store::users::{self, User};

use crate::app::AppState;
use crate::error::Result;
use crate::extract::{ApiJson, Bearer};
use crate::routes::users::Profile;

/// The `client_id` of tokens issued by `/auth/login` and `/auth/refresh`: Latchkey's own
/// first-party API rather than a registered OAuth client.
pub const FIRST_PARTY_CLIENT_ID: &str = "latchkey";

/// Scope of first-party session tokens.
const FIRST_PARTY_SCOPE: &str = "profile email";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    username: String,
    email: String,
    password: String,
    #[serde(default)]
    full_name: String,
}

async fn register(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Response> {
    let mut problems = Vec::new();
    accounts::validate_username(&req.username, &mut problems);
    accounts::validate_email(&req.email, &mut problems);
    if req.full_name.chars().count() > 200 || req.full_name.chars().any(char::is_control) {
        problems
            .push("full_name must be at most 200 characters without control characters".to_owned());
    }
    if !problems.is_empty() {
        return Err(Error::Validation {
            message: "the registration is invalid".into(),
            details: problems,
        }
        .into());
    }
    state
        .policy
        .check(&req.password, &req.username, &req.email)?;

    let now = now_ms();
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        username: req.username.trim().to_owned(),
        email: req.email.trim().to_owned(),
        full_name: req.full_name.trim().to_owned(),
        password_hash: state.hasher.hash(req.password).await?,
        is_active: true,
        email_verified: false,
        created_at: now,
    };
    users::insert(&state.db, &user, now).await?;
    tracing::info!(user_id = user.id, "user registered");
    if state.settings.require_email_verification {
        accounts::send_verification(state.core.clone(), user.clone());
    }
    let mut response = (StatusCode::CREATED, Json(Profile::from(&user))).into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/users/me"));
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    /// A username or an email address.
    #[serde(alias = "email")]
    username: String,
    password: String,
}

/// The body of a successful login or refresh (RFC 6749 §5.1 shape).
#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
    scope: String,
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        let mut response = Json(self).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }
}

async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<TokenResponse> {
    let user = login::check(&state, &req.username, req.password).await?;
    let family_id = uuid::Uuid::new_v4().to_string();
    start_session(&state, &user.id, &family_id).await
}

/// Issues a refresh token in `family_id` and an access token bound to it.
async fn start_session(state: &AppState, user_id: &str, family_id: &str) -> Result<TokenResponse> {
    let now = now_ms();
    let refresh_token = random_token(32)?;
    let hash = digest(&refresh_token);
    refresh_tokens::insert(
        &state.db,
        &NewRefresh {
            token_hash: &hash,
            family_id,
            user_id,
            client_id: FIRST_PARTY_CLIENT_ID,
            scope: FIRST_PARTY_SCOPE,
            expires_at: refresh_expiry(state, now),
        },
        now,
    )
    .await?;
    metrics::counter!("latchkey_tokens_issued_total", "kind" => "refresh").increment(1);
    token_response(state, user_id, family_id, refresh_token).await
}

fn refresh_expiry(state: &AppState, now: i64) -> i64 {
    now + i64::try_from(state.settings.refresh_ttl.as_millis()).unwrap_or(i64::MAX / 4)
}

async fn token_response(
    state: &AppState,
    user_id: &str,
    family_id: &str,
    refresh_token: String,
) -> Result<TokenResponse> {
    let issued = state
        .tokens
        .issue(&Grant {
            sub: user_id,
            client_id: FIRST_PARTY_CLIENT_ID,
            scope: FIRST_PARTY_SCOPE,
            sid: Some(family_id),
            ..Grant::default()
        })
        .await?;
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: state.tokens.ttl().as_secs(),
        refresh_token,
        scope: issued.claims.scope,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

/// Rotates a refresh token. Presenting an already-used token revokes its whole family:
/// the legitimate holder and the thief both lose the session.
async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<TokenResponse> {
    if req.refresh_token.is_empty() || req.refresh_token.len() > 512 {
        return Err(Error::InvalidGrant("the refresh token is invalid").into());
    }
    let now = now_ms();
    let successor = random_token(32)?;
    let rotation = sessions::rotate_refresh(
        &state.db,
        FIRST_PARTY_CLIENT_ID,
        &digest(&req.refresh_token),
        &digest(&successor),
        refresh_expiry(&state, now),
        now,
    )
    .await?;
    match rotation {
        Rotation::Rotated {
            family_id, user_id, ..
        } => {
            let user = users::find_by_id(&state.db, &user_id).await?;
            if !user.is_some_and(|u| u.is_active) {
                refresh_tokens::revoke_family(&state.db, &family_id, now).await?;
                return Err(Error::InvalidGrant("the account is no longer active").into());
            }
            metrics::counter!("latchkey_tokens_issued_total", "kind" => "refresh").increment(1);
            token_response(&state, &user_id, &family_id, successor).await
        }
        Rotation::Reused { .. } => Err(Error::InvalidGrant(
            "the refresh token was already used; the session has been revoked",
        )
        .into()),
        Rotation::Invalid => {
            Err(Error::InvalidGrant("the refresh token is invalid, expired or revoked").into())
        }
    }
}

/// Ends the session: revokes the access token's `jti` until it expires and the refresh
/// family it belongs to.
async fn logout(State(state): State<AppState>, Bearer(claims): Bearer) -> Result<StatusCode> {
    let now = now_ms();
    state
        .ephemeral
        .revoke_jti(&claims.jti, claims.exp * 1000, now)
        .await?;
    if let Some(family_id) = &claims.sid {
        refresh_tokens::revoke_family(&state.db, family_id, now).await?;
    }
    tracing::info!(user_id = claims.sub, "logged out");
    Ok(StatusCode::NO_CONTENT)
}
