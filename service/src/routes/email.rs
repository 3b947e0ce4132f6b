//! `/auth/*` flows that go through the user's mailbox: account activation, password
//! reset, and changing the password while signed in.
//!
//! Requests that name an email address (resend, reset) answer 202 with one body
//! whatever the address: the look-up, the token and the mail all happen in a spawned
//! task, so neither the answer nor its timing says whether an account exists.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_store::now_ms;
use serde::Deserialize;
use serde_json::json;

use crate::accounts::{self, User};
use crate::app::AppState;
use crate::email_tokens::{self, Purpose};
use crate::error::{Error, Result};
use crate::extract::{ApiJson, Bearer};
use crate::{limits, mail, passwords};

/// Longest token accepted from a link (ours are 43 characters).
const MAX_TOKEN_LEN: usize = 128;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/auth/verify-email",
            get(verify_email_link).post(verify_email),
        )
        .route("/auth/resend-verification", post(resend_verification))
        .route("/auth/password-reset", post(password_reset))
        .route(
            "/auth/password-reset/confirm",
            get(check_reset_link).post(confirm_reset),
        )
        .route("/auth/change-password", post(change_password))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    token: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailRequest {
    email: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetConfirm {
    token: String,
    new_password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// The one answer of resend and reset requests.
fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "status": "accepted",
            "message": "if an account with this email address exists, a message is on its way",
        })),
    )
        .into_response()
}

fn link(state: &AppState, path: &str, token: &str) -> String {
    format!("{}{path}?token={token}", state.settings.issuer)
}

fn ttl_ms(ttl: std::time::Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4)
}

// === activation ===

/// Issues an activation token for `user` and mails the link, in the background.
pub fn send_verification(state: AppState, user: User) {
    tokio::spawn(async move {
        if let Err(err) = mail_verification(&state, &user).await {
            let _ = err.into_response(); // logs the cause
        }
    });
}

async fn mail_verification(state: &AppState, user: &User) -> Result<()> {
    mail_link(state, user, Purpose::VerifyEmail).await
}

/// Issues a single-use token for `purpose` (stored as a digest) and mails `user` the
/// link that carries it.
async fn mail_link(state: &AppState, user: &User, purpose: Purpose) -> Result<()> {
    type Compose = fn(&str, &str, &str, &str, &str) -> mail::Mail;
    let (ttl, path, compose): (_, _, Compose) = match purpose {
        Purpose::VerifyEmail => (
            state.settings.email_verification_ttl,
            "/auth/verify-email",
            mail::verify_email,
        ),
        Purpose::PasswordReset => (
            state.settings.password_reset_ttl,
            "/auth/password-reset/confirm",
            mail::password_reset,
        ),
    };
    let now = now_ms();
    let token = email_tokens::issue(&state.db, &user.id, purpose, now, now + ttl_ms(ttl)).await?;
    let link = link(state, path, &token);
    state.mailer.spawn(compose(
        &user.id,
        &user.email,
        display_name(user),
        &link,
        &mail::describe(ttl),
    ));
    Ok(())
}

fn display_name(user: &User) -> &str {
    if user.full_name.is_empty() {
        &user.username
    } else {
        &user.full_name
    }
}

/// Spends an activation token and marks the address verified.
async fn verify(state: &AppState, token: &str) -> Result<()> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(Error::InvalidLink);
    }
    let Some(user_id) = email_tokens::verify_email(&state.db, token, now_ms()).await? else {
        return Err(Error::InvalidLink);
    };
    tracing::info!(user_id, "email address verified");
    Ok(())
}

/// The link in the mail: a browser gets a small page, anything else JSON.
async fn verify_email_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let token = query_token(query.as_deref());
    let outcome = verify(&state, &token).await;
    respond(
        &headers,
        outcome.map(|()| "Your email address is confirmed. You can sign in now."),
        "email_verified",
    )
}

async fn verify_email(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Json<serde_json::Value>> {
    verify(&state, &req.token).await?;
    Ok(Json(json!({ "status": "email_verified" })))
}

/// Sends a new activation link to an unverified account. Always 202.
async fn resend_verification(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EmailRequest>,
) -> Result<Response> {
    let Some(email) = count_mail_request(&state, &req.email).await? else {
        return Ok(accepted());
    };
    tokio::spawn(async move {
        match accounts::find_by_login(&state.db, &email).await {
            Ok(Some(user)) if user.is_active && !user.email_verified => {
                if let Err(err) = mail_verification(&state, &user).await {
                    let _ = err.into_response();
                }
            }
            Ok(_) => {}
            Err(err) => {
                let _ = Error::from(err).into_response();
            }
        }
    });
    Ok(accepted())
}

/// Counts a request that mails `email` against the per-account limit (whether or not
/// the account exists); `None` when it cannot be an address at all.
async fn count_mail_request(state: &AppState, email: &str) -> Result<Option<String>> {
    let email = accounts::normalize(email);
    let mut problems = Vec::new();
    crate::routes::auth::validate_email(&email, &mut problems);
    if !problems.is_empty() {
        return Ok(None);
    }
    limits::check_account(state, &format!("mail:{email}")).await?;
    Ok(Some(email))
}

// === password reset ===

/// Mails a reset link to the account with this address, if there is one. Always 202.
async fn password_reset(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EmailRequest>,
) -> Result<Response> {
    let Some(email) = count_mail_request(&state, &req.email).await? else {
        return Ok(accepted());
    };
    tokio::spawn(async move {
        if let Err(err) = mail_reset(&state, &email).await {
            let _ = err.into_response();
        }
    });
    Ok(accepted())
}

async fn mail_reset(state: &AppState, email: &str) -> Result<()> {
    let Some(user) = accounts::find_by_login(&state.db, email).await? else {
        return Ok(());
    };
    if !user.is_active {
        return Ok(());
    }
    mail_link(state, &user, Purpose::PasswordReset).await
}

/// The link in the mail: says whether the token is still good, without spending it.
async fn check_reset_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let token = query_token(query.as_deref());
    let outcome = if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        Err(Error::InvalidLink)
    } else {
        match email_tokens::peek(&state.db, &token, Purpose::PasswordReset, now_ms()).await {
            Ok(Some(_)) => Ok(
                "This link is valid. Send the new password with POST /auth/password-reset/confirm.",
            ),
            Ok(None) => Err(Error::InvalidLink),
            Err(err) => Err(err),
        }
    };
    respond(&headers, outcome, "valid")
}

/// Sets a new password with a reset token: the token is spent, every refresh token of
/// the user revoked and the lockout counters cleared. Following the link also proves
/// the address, so it counts as verified.
async fn confirm_reset(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ResetConfirm>,
) -> Result<StatusCode> {
    if req.token.is_empty() || req.token.len() > MAX_TOKEN_LEN {
        return Err(Error::InvalidLink);
    }
    let now = now_ms();
    let user = match email_tokens::peek(&state.db, &req.token, Purpose::PasswordReset, now).await? {
        Some(user_id) => accounts::find_by_id(&state.db, &user_id).await?,
        None => None,
    };
    let Some(user) = user.filter(|u| u.is_active) else {
        return Err(Error::InvalidLink);
    };
    // The policy first, so a weak password does not spend the token.
    state
        .policy
        .check(&req.new_password, &user.username, &user.email)?;
    let hash = state.hasher.hash(req.new_password).await?;

    let Some(revoked) =
        email_tokens::reset_password(&state.db, &req.token, &user.id, &hash, now_ms()).await?
    else {
        return Err(Error::InvalidLink);
    };
    if state.settings.lockout.enabled() {
        state
            .ephemeral
            .clear_login_failures(&accounts::normalize(&user.username))
            .await?;
    }
    tracing::info!(
        user_id = user.id,
        revoked,
        "password reset; refresh tokens revoked"
    );
    Ok(StatusCode::NO_CONTENT)
}

// === change password ===

/// A signed-in user changes the password; every other session's refresh tokens are
/// revoked, the calling session keeps working.
async fn change_password(
    State(state): State<AppState>,
    bearer: Bearer,
    ApiJson(req): ApiJson<ChangePassword>,
) -> Result<StatusCode> {
    let user = bearer.user(&state).await?;
    let key = accounts::normalize(&user.username);
    limits::check_account(&state, &key).await?;
    if req.current_password.len() > passwords::MAX_LENGTH * 4
        || !state
            .hasher
            .verify(req.current_password, Some(user.password_hash.clone()))
            .await?
    {
        return Err(Error::WrongPassword);
    }
    state
        .policy
        .check(&req.new_password, &user.username, &user.email)?;
    let hash = state.hasher.hash(req.new_password).await?;
    let revoked =
        accounts::change_password(&state.db, &user.id, &hash, bearer.0.sid.as_deref(), now_ms())
            .await?;
    tracing::info!(
        user_id = user.id,
        revoked,
        "password changed; other sessions revoked"
    );
    Ok(StatusCode::NO_CONTENT)
}

// === answers for links ===

/// The `token` parameter of a link's query string (empty when absent).
fn query_token(query: Option<&str>) -> String {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// A page for browsers (`Accept: text/html`), our JSON otherwise.
fn respond(headers: &HeaderMap, outcome: Result<&'static str>, status: &str) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if !wants_html {
        return match outcome {
            Ok(message) => Json(json!({ "status": status, "message": message })).into_response(),
            Err(err) => err.into_response(),
        };
    }
    let (code, message) = match outcome {
        Ok(message) => (StatusCode::OK, message.to_owned()),
        Err(err) => {
            let response = err.into_response(); // logs a 5xx cause
            let message = if response.status().is_server_error() {
                "Something went wrong. Please try again later.".to_owned()
            } else {
                "This link is invalid, expired or already used. Ask for a new one.".to_owned()
            };
            (response.status(), message)
        }
    };
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Latchkey</title></head>\
         <body><p>{}</p></body></html>\n",
        mail::escape(&message)
    );
    let mut response = (code, Html(page)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
