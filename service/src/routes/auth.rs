//! `/auth/*`: registration, login, refresh and logout for first-party callers.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_domain::sessions::{self, NewSession};
use latchkey_domain::tokens::Grant;
use latchkey_domain::{Error, accounts, login};
use latchkey_store::now_ms;
use latchkey_store::users::{self, User};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::Result;
use crate::extract::{ApiJson, Bearer, ClientAddr};
use crate::oauth::token::TokenBody;
use crate::routes::users::Profile;
use crate::state::AppState;

pub use latchkey_domain::tokens::FIRST_PARTY_CLIENT_ID;

/// Scope of first-party session tokens.
const FIRST_PARTY_SCOPE: &str = "profile email";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    username: String,
    email: String,
    password: String,
    /// At most 200 characters, no control characters.
    #[serde(default)]
    full_name: String,
}

/// Creates an account.
///
/// Usernames are 3–64 characters of letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit; the password must pass the configured policy.
#[utoipa::path(post, path = "/auth/register", tag = "accounts",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Created.", body = Profile,
            headers(("location" = String, description = "`/users/me`"))),
        (status = 400, description = "Malformed JSON, or a NUL character.", body = crate::error::Body),
        (status = 409, description = "`already_exists`: the username or email is taken (case-insensitive).", body = crate::error::Body),
        (status = 413, description = "The body is over LATCHKEY_BODY_LIMIT.", body = crate::error::Body),
        (status = 415, description = "Not `application/json`.", body = crate::error::Body),
        (status = 422, description = "`invalid_request` with `details`, or `weak_password` with `failed_rules`.", body = crate::error::Body),
    ))]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    /// A username or an email address.
    #[serde(alias = "email")]
    username: String,
    password: String,
}

/// Signs in with a username (or email address) and password.
///
/// Unknown users and wrong passwords answer alike; repeated failures lock the account
/// for a while (401 with `Retry-After`).
#[utoipa::path(post, path = "/auth/login", tag = "accounts",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "A first-party session (RFC 6749 §5.1 shape).", body = TokenBody,
            headers(("cache-control" = String, description = "`no-store`"))),
        (status = 400, description = "Malformed JSON, or a NUL character.", body = crate::error::Body),
        (status = 401, description = "`invalid_credentials` (a locked account too, with `Retry-After`).", body = crate::error::Body),
        (status = 403, description = "`account_disabled` or `email_not_verified`.", body = crate::error::Body),
        (status = 413, description = "The body is over LATCHKEY_BODY_LIMIT.", body = crate::error::Body),
        (status = 415, description = "Not `application/json`.", body = crate::error::Body),
        (status = 422, description = "Missing or unknown fields.", body = crate::error::Body),
    ))]
async fn login(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<TokenBody> {
    let user = login::check(&state, &req.username, req.password, ip).await?;
    let family_id = uuid::Uuid::new_v4().to_string();
    let refresh_token = sessions::start(
        &state,
        &NewSession {
            user_id: &user.id,
            client_id: FIRST_PARTY_CLIENT_ID,
            scope: FIRST_PARTY_SCOPE,
            family_id: &family_id,
            refresh_ttl: None,
        },
        now_ms(),
    )
    .await?;
    token_response(&state, &user.id, &family_id, refresh_token).await
}

/// The access token of a first-party session, beside its refresh token (RFC 6749 §5.1).
async fn token_response(
    state: &AppState,
    user_id: &str,
    family_id: &str,
    refresh_token: String,
) -> Result<TokenBody> {
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
    Ok(TokenBody::new(issued, Some(refresh_token), None))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

/// Rotates a refresh token ([`sessions::rotate`], the flow of the `refresh_token` grant
/// too). Presenting an already-used token revokes its whole family: the legitimate
/// holder and the thief both lose the session.
#[utoipa::path(post, path = "/auth/refresh", tag = "accounts",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "The rotated session: a new access token and refresh token.", body = TokenBody),
        (status = 400, description = "Malformed JSON, or a NUL character.", body = crate::error::Body),
        (status = 401, description = "`invalid_grant`: unknown, expired, revoked or reused (reuse revokes the session).", body = crate::error::Body),
        (status = 413, description = "The body is over LATCHKEY_BODY_LIMIT.", body = crate::error::Body),
        (status = 415, description = "Not `application/json`.", body = crate::error::Body),
        (status = 422, description = "Missing or unknown fields.", body = crate::error::Body),
    ))]
async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<TokenBody> {
    let rotated = sessions::rotate(
        &state,
        FIRST_PARTY_CLIENT_ID,
        &req.refresh_token,
        None,
        None,
        now_ms(),
    )
    .await?;
    token_response(
        &state,
        &rotated.user.id,
        &rotated.family_id,
        rotated.refresh_token,
    )
    .await
}

/// Ends the session: revokes the access token's `jti` until it expires and the refresh
/// family it belongs to.
#[utoipa::path(post, path = "/auth/logout", tag = "accounts",
    security(("user_token" = []), ("client_token" = [])),
    responses(
        (status = 204, description = "Signed out."),
        (status = 401, description = "`invalid_token`, with `WWW-Authenticate: Bearer`.", body = crate::error::Body,
            headers(("www-authenticate" = String))),
    ))]
async fn logout(State(state): State<AppState>, Bearer(claims): Bearer) -> Result<StatusCode> {
    sessions::revoke(
        &state,
        Some((&claims.jti, claims.exp * 1000)),
        claims.sid.as_deref(),
        &claims.client_id,
        now_ms(),
    )
    .await?;
    tracing::info!(user_id = claims.sub, "logged out");
    Ok(StatusCode::NO_CONTENT)
}
