//! `/auth/*` flows that go through the user's mailbox: account activation, password
//! reset, and changing the password while signed in.
//!
//! Requests that name an email address (resend, reset) answer 202 with one body
//! whatever the address: the look-up, the token and the mail all happen in a spawned
//! task, so neither the answer nor its timing says whether an account exists.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_store::now_ms;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use latchkey_domain::email_tokens::{self, Purpose};
use latchkey_domain::{Error, accounts, limits, login};
use latchkey_store::users;

use crate::error::Result;
use crate::extract::{ApiJson, Bearer, ClientAddr};
use crate::pages;
use crate::state::AppState;

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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EmailRequest {
    email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ResetConfirm {
    token: String,
    new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
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

// === activation ===

/// Spends an activation token and marks the address verified.
async fn verify(state: &AppState, token: &str) -> latchkey_domain::Result<()> {
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
#[utoipa::path(get, path = "/auth/verify-email", tag = "accounts",
    params(crate::schemas::LinkQuery),
    responses(
        (status = 200, description = "The address is verified.", content(
            (crate::schemas::LinkAnswer = "application/json"), (crate::schemas::Html = "text/html"))),
        (status = 400, description = "`invalid_token`: unknown, expired or already used.", content(
            (crate::error::Body = "application/json"), (crate::schemas::Html = "text/html"))),
    ))]
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

/// Spends an activation token (from the mail) and marks the address verified.
#[utoipa::path(post, path = "/auth/verify-email", tag = "accounts",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "The address is verified.", body = crate::schemas::Verified),
        (status = 400, description = "`invalid_token` (unknown, expired or already used), malformed JSON or a NUL character.", body = crate::error::Body),
        (status = 413, description = "The body is over LATCHKEY_BODY_LIMIT.", body = crate::error::Body),
        (status = 415, description = "Not `application/json`.", body = crate::error::Body),
        (status = 422, description = "Missing or unknown fields.", body = crate::error::Body),
    ))]
async fn verify_email(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Json<serde_json::Value>> {
    verify(&state, &req.token).await?;
    Ok(Json(json!({ "status": "email_verified" })))
}

/// Sends a new activation link to an unverified account.
///
/// Always 202 with one body, whatever the address.
#[utoipa::path(post, path = "/auth/resend-verification", tag = "accounts",
    request_body = EmailRequest,
    responses(
        (status = 202, description = "Accepted (whether or not the account exists).", body = crate::schemas::Accepted),
        (status = 400, description = "Malformed JSON, or a NUL character.", body = crate::error::Body),
        (status = 413, description = "The body is over LATCHKEY_BODY_LIMIT.", body = crate::error::Body),
        (status = 415, description = "Not `application/json`.", body = crate::error::Body),
        (status = 422, description = "Missing or unknown fields.", body = crate::error::Body),
    ))]
async fn resend_verification(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EmailRequest>,
) -> Result<Response> {
    let Some(email) = count_mail_request(&state, &req.email).await? else {
        return Ok(accepted());
    };
    tokio::spawn(async move {
        let outcome = match users::find_by_login(&state.db, &email).await {
            Ok(Some(user)) if user.is_active && !user.email_verified => {
                accounts::mail_link(&state, &user, Purpose::VerifyEmail).await
            }
            Ok(_) => Ok(()),
            Err(err) => Err(err.into()),
        };
        if let Err(err) = outcome {
            latchkey_domain::log_failure(&err);
        }
    });
    Ok(accepted())
}

/// Counts a request that mails `email` against the per-account limit (whether or not
/// the account exists); `None` when it cannot be an address at all.
async fn count_mail_request(state: &AppState, email: &str) -> Result<Option<String>> {
    let email = users::normalize(email);
    let mut problems = Vec::new();
    accounts::validate_email(&email, &mut problems);
    if !problems.is_empty() {
        return Ok(None);
    }
    limits::check_account(state, &format!("mail:{email}")).await?;
    Ok(Some(email))
}

// === password reset ===

/// Mails a reset link to the account with this address, if there is one.
///
/// Always 202 with one body, whatever the address.
#[utoipa::path(post, path = "/auth/password-reset", tag = "accounts",
    request_body = EmailRequest,
    responses(
        (status = 202, description = "Accepted (whether or not the account exists).", body = crate::schemas::Accepted),
        (status = 400, description = "Malformed JSON, or a NUL character.", body = crate::error::Body),
        (status = 413, description = "The body is over LATCHKEY_BODY_LIMIT.", body = crate::error::Body),
        (status = 415, description = "Not `application/json`.", body = crate::error::Body),
        (status = 422, description = "Missing or unknown fields.", body = crate::error::Body),
    ))]
async fn password_reset(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EmailRequest>,
) -> Result<Response> {
    let Some(email) = count_mail_request(&state, &req.email).await? else {
        return Ok(accepted());
    };
    tokio::spawn(async move {
        if let Err(err) = mail_reset(&state, &email).await {
            latchkey_domain::log_failure(&err);
        }
    });
    Ok(accepted())
}

async fn mail_reset(state: &AppState, email: &str) -> latchkey_domain::Result<()> {
    let Some(user) = users::find_by_login(&state.db, email).await? else {
        return Ok(());
    };
    if !user.is_active {
        return Ok(());
    }
    accounts::mail_link(state, &user, Purpose::PasswordReset).await
}

/// The link in the mail: says whether the token is still good, without spending it.
#[utoipa::path(get, path = "/auth/password-reset/confirm", tag = "accounts",
    params(crate::schemas::LinkQuery),
    responses(
        (status = 200, description = "The token is live.", content(
            (crate::schemas::LinkAnswer = "application/json"), (crate::schemas::Html = "text/html"))),
        (status = 400, description = "`invalid_token`: unknown, expired or already used.", content(
            (crate::error::Body = "application/json"), (crate::schemas::Html = "text/html"))),
    ))]
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
#[utoipa::path(post, path = "/auth/password-reset/confirm", tag = "accounts",
    request_body = ResetConfirm,
    responses(
        (status = 204, description = "The password is set; every refresh token of the user is revoked."),
        (status = 400, description = "`invalid_token`, malformed JSON or a NUL character.", body = crate::error::Body),
        (status = 413, description = "The body is over LATCHKEY_BODY_LIMIT.", body = crate::error::Body),
        (status = 415, description = "Not `application/json`.", body = crate::error::Body),
        (status = 422, description = "`weak_password` with `failed_rules`, or missing or unknown fields.", body = crate::error::Body),
    ))]
async fn confirm_reset(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ResetConfirm>,
) -> Result<StatusCode> {
    if req.token.is_empty() || req.token.len() > MAX_TOKEN_LEN {
        return Err(Error::InvalidLink.into());
    }
    let now = now_ms();
    let user = match email_tokens::peek(&state.db, &req.token, Purpose::PasswordReset, now).await? {
        Some(user_id) => users::find_by_id(&state.db, &user_id).await?,
        None => None,
    };
    let Some(user) = user.filter(|u| u.is_active) else {
        return Err(Error::InvalidLink.into());
    };
    // The policy first, so a weak password does not spend the token.
    state
        .policy
        .check(&req.new_password, &user.username, &user.email)?;
    let hash = state.hasher.hash(req.new_password).await?;

    let Some(revoked) =
        email_tokens::reset_password(&state.db, &req.token, &user.id, &hash, now_ms()).await?
    else {
        return Err(Error::InvalidLink.into());
    };
    if state.settings.lockout.enabled() {
        state
            .ephemeral
            .clear_login_failures(&users::normalize(&user.username))
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
#[utoipa::path(post, path = "/auth/change-password", tag = "accounts",
    request_body = ChangePassword,
    security(("user_token" = [])),
    responses(
        (status = 204, description = "Changed; the other sessions are revoked."),
        (status = 400, description = "Malformed JSON, or a NUL character.", body = crate::error::Body),
        (status = 401, description = "`invalid_token`, with `WWW-Authenticate: Bearer`.", body = crate::error::Body,
            headers(("www-authenticate" = String))),
        (status = 403, description = "`insufficient_scope` (a token issued to an OAuth client) or `invalid_credentials` (wrong current password).", body = crate::error::Body),
        (status = 413, description = "The body is over LATCHKEY_BODY_LIMIT.", body = crate::error::Body),
        (status = 415, description = "Not `application/json`.", body = crate::error::Body),
        (status = 422, description = "`weak_password` with `failed_rules`, or missing or unknown fields.", body = crate::error::Body),
    ))]
async fn change_password(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    bearer: Bearer,
    ApiJson(req): ApiJson<ChangePassword>,
) -> Result<StatusCode> {
    bearer.first_party()?;
    let user = bearer.user(&state).await?;
    login::confirm_password(&state, &user, req.current_password, ip).await?;
    state
        .policy
        .check(&req.new_password, &user.username, &user.email)?;
    let hash = state.hasher.hash(req.new_password).await?;
    let revoked = latchkey_store::credentials::change_password(
        &state.db,
        &user.id,
        &hash,
        bearer.0.sid.as_deref(),
        now_ms(),
    )
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
fn respond(
    headers: &HeaderMap,
    outcome: latchkey_domain::Result<&'static str>,
    status: &str,
) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if !wants_html {
        return match outcome {
            Ok(message) => Json(json!({ "status": status, "message": message })).into_response(),
            Err(err) => crate::error::Error(err).into_response(),
        };
    }
    let (code, message) = match outcome {
        Ok(message) => (StatusCode::OK, message.to_owned()),
        Err(err) => {
            latchkey_domain::log_failure(&err);
            let (status, _) = crate::error::status_and_code(&err);
            let message = if status.is_server_error() {
                "Something went wrong. Please try again later.".to_owned()
            } else {
                "This link is invalid, expired or already used. Ask for a new one.".to_owned()
            };
            (status, message)
        }
    };
    pages::link_answer(code, &message)
}
