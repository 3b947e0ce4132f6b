//! `/auth/*`: registration, login, refresh and logout for first-party callers.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_store::now_ms;
use serde::{Deserialize, Serialize};

use crate::accounts::{self, NewRefresh, Rotation, User};
use crate::app::AppState;
use crate::ephemeral::ceil_secs;
use crate::error::{Error, Result};
use crate::extract::{ApiJson, Bearer};
use crate::routes::users::Profile;
use crate::tokens::{Grant, digest, random_token};
use crate::{limits, passwords};

/// The `client_id` of tokens issued by `/auth/login` and `/auth/refresh`: Latchkey's own
/// first-party API rather than a registered OAuth client.
pub const FIRST_PARTY_CLIENT_ID: &str = "latchkey";

/// Scope of first-party session tokens.
const FIRST_PARTY_SCOPE: &str = "profile email";

/// Longest input we are willing to feed argon2 at login (bytes); anything longer cannot
/// be a valid password and is refused without hashing.
const MAX_LOGIN_PASSWORD_BYTES: usize = passwords::MAX_LENGTH * 4;

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
    validate_username(&req.username, &mut problems);
    validate_email(&req.email, &mut problems);
    if req.full_name.chars().count() > 200 || req.full_name.chars().any(char::is_control) {
        problems
            .push("full_name must be at most 200 characters without control characters".to_owned());
    }
    if !problems.is_empty() {
        return Err(Error::Validation {
            message: "the registration is invalid".into(),
            details: problems,
        });
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
    accounts::create_user(&state.db, &user, now).await?;
    tracing::info!(user_id = user.id, "user registered");
    if state.settings.require_email_verification {
        crate::routes::email::send_verification(state.clone(), user.clone());
    }
    let mut response = (StatusCode::CREATED, Json(Profile::from(&user))).into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/users/me"));
    Ok(response)
}

fn validate_username(username: &str, problems: &mut Vec<String>) {
    let username = username.trim();
    let ok_chars = username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let starts_ok = username
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !(3..=64).contains(&username.len()) || !ok_chars || !starts_ok {
        problems.push(
            "username must be 3 to 64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
                .to_owned(),
        );
    }
}

pub(crate) fn validate_email(email: &str, problems: &mut Vec<String>) {
    let email = email.trim();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if !valid {
        problems.push("email must be an address like name@example.com".to_owned());
    }
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
    let user = check_login(&state, &req.username, req.password).await?;
    let family_id = uuid::Uuid::new_v4().to_string();
    start_session(&state, &user.id, &family_id).await
}

/// Checks a username (or email) and password: the one place every login path (this API,
/// the password grant, the login page) goes through. An unknown user is verified against
/// a dummy hash: same answer, same time. A locked account answers
/// [`Error::InvalidCredentials`] here; [`check_login`] tells the lockout apart.
pub async fn verify_login(state: &AppState, login: &str, password: String) -> Result<User> {
    check_login(state, login, password)
        .await
        .map_err(|err| match err {
            Error::LockedOut { .. } => Error::InvalidCredentials,
            other => other,
        })
}

/// [`verify_login`], but a locked account is [`Error::LockedOut`] (the same 401 body,
/// plus `Retry-After`), and too many attempts on one username are
/// [`Error::RateLimited`].
///
/// Failures are counted per normalized username, whether or not such a user exists, so
/// lockout reveals nothing about which accounts exist. While locked the password is not
/// checked at all, but the dummy hash is still verified so the answer takes as long.
pub async fn check_login(state: &AppState, login: &str, password: String) -> Result<User> {
    if password.len() > MAX_LOGIN_PASSWORD_BYTES || login.len() > 254 {
        return Err(Error::InvalidCredentials);
    }
    // The account's username when it exists, so its username and its email share one
    // count; otherwise what was typed, so unknown names are counted the same way.
    let user = accounts::find_by_login(&state.db, login).await?;
    let key = accounts::normalize(user.as_ref().map_or(login, |u| u.username.as_str()));
    limits::check_account(state, &key).await?;
    let policy = state.settings.lockout;
    if policy.enabled()
        && let Some(ms) = state.ephemeral.locked_for(&key, now_ms()).await?
    {
        state.hasher.verify(password, None).await?;
        metrics::counter!("latchkey_logins_total", "result" => "locked").increment(1);
        return Err(Error::LockedOut {
            retry_after: ceil_secs(ms).unsigned_abs().max(1),
        });
    }
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let matched = state.hasher.verify(password, stored).await?;
    let user = match user {
        Some(user) if matched => user,
        _ => {
            metrics::counter!("latchkey_logins_total", "result" => "failure").increment(1);
            if policy.enabled()
                && let Some(ms) = state
                    .ephemeral
                    .record_login_failure(&key, &policy, now_ms())
                    .await?
            {
                // No username: it may be a password typed into the wrong field.
                tracing::warn!(locked_for_ms = ms, "too many failed logins: account locked");
                metrics::counter!("latchkey_lockouts_total").increment(1);
                return Err(Error::LockedOut {
                    retry_after: ceil_secs(ms).unsigned_abs().max(1),
                });
            }
            return Err(Error::InvalidCredentials);
        }
    };
    if policy.enabled() {
        state.ephemeral.clear_login_failures(&key).await?;
    }
    if !user.is_active {
        metrics::counter!("latchkey_logins_total", "result" => "disabled").increment(1);
        return Err(Error::AccountDisabled);
    }
    // Only after the right password, so it tells nothing to someone who lacks it.
    if state.settings.require_email_verification && !user.email_verified {
        metrics::counter!("latchkey_logins_total", "result" => "unverified").increment(1);
        return Err(Error::EmailNotVerified);
    }
    metrics::counter!("latchkey_logins_total", "result" => "success").increment(1);
    Ok(user)
}

/// Issues a refresh token in `family_id` and an access token bound to it.
async fn start_session(state: &AppState, user_id: &str, family_id: &str) -> Result<TokenResponse> {
    let now = now_ms();
    let refresh_token = random_token(32)?;
    let hash = digest(&refresh_token);
    accounts::insert_refresh(
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
        return Err(Error::InvalidGrant("the refresh token is invalid"));
    }
    let now = now_ms();
    let successor = random_token(32)?;
    let rotation = accounts::rotate_refresh(
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
            let user = accounts::find_by_id(&state.db, &user_id).await?;
            if !user.is_some_and(|u| u.is_active) {
                accounts::revoke_family(&state.db, &family_id, now).await?;
                return Err(Error::InvalidGrant("the account is no longer active"));
            }
            metrics::counter!("latchkey_tokens_issued_total", "kind" => "refresh").increment(1);
            token_response(&state, &user_id, &family_id, successor).await
        }
        Rotation::Reused { .. } => Err(Error::InvalidGrant(
            "the refresh token was already used; the session has been revoked",
        )),
        Rotation::Invalid => Err(Error::InvalidGrant(
            "the refresh token is invalid, expired or revoked",
        )),
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
        accounts::revoke_family(&state.db, family_id, now).await?;
    }
    tracing::info!(user_id = claims.sub, "logged out");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(f: fn(&str, &mut Vec<String>), value: &str) -> usize {
        let mut out = Vec::new();
        f(value, &mut out);
        out.len()
    }

    #[test]
    fn usernames() {
        assert_eq!(problems(validate_username, "alice_01"), 0);
        assert_eq!(problems(validate_username, "al"), 1);
        assert_eq!(problems(validate_username, "_alice"), 1);
        assert_eq!(problems(validate_username, "ali ce"), 1);
        assert_eq!(problems(validate_username, "alice@example.com"), 1);
    }

    #[test]
    fn emails() {
        assert_eq!(problems(validate_email, "a@example.com"), 0);
        assert_eq!(problems(validate_email, "a@b@example.com"), 1);
        assert_eq!(problems(validate_email, "a@localhost"), 1);
        assert_eq!(problems(validate_email, "@example.com"), 1);
        assert_eq!(problems(validate_email, "a b@example.com"), 1);
    }
}
