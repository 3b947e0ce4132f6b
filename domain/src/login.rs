//! Login: the one credential check every login path goes through (`/auth/login`, the
//! password grant, the login page of `/oauth/authorize`), with lockout.

use std::net::IpAddr;

use latchkey_store::{now_ms, users};

use crate::Core;
use crate::ephemeral::{Attempt, ceil_secs};
use crate::error::{Error, Result};
use crate::{limits, passwords};

/// Longest input we are willing to feed argon2 at login (bytes); anything longer cannot
/// be a valid password and is refused without hashing.
pub const MAX_PASSWORD_BYTES: usize = passwords::MAX_LENGTH * 4;

/// Checks a username (or email) and password. An unknown user is verified against a
/// dummy hash: same answer, same time. A locked account answers
/// [`Error::InvalidCredentials`] here; [`check`] tells the lockout apart.
pub async fn verify(
    core: &Core,
    login: &str,
    password: String,
    ip: Option<IpAddr>,
) -> Result<users::User> {
    check(core, login, password, ip)
        .await
        .map_err(|err| match err {
            Error::LockedOut { .. } => Error::InvalidCredentials,
            other => other,
        })
}

/// Confirms the current password of a signed-in `user` (a password change): under the
/// same per-IP and per-account limits as a login, refused as [`Error::WrongPassword`].
pub async fn confirm_password(
    core: &Core,
    user: &users::User,
    password: String,
    ip: Option<IpAddr>,
) -> Result<()> {
    limits::check_password_ip(core, ip).await?;
    limits::check_account(core, &users::normalize(&user.username)).await?;
    if password.len() > MAX_PASSWORD_BYTES
        || !core
            .hasher
            .verify(password, Some(user.password_hash.clone()))
            .await?
    {
        return Err(Error::WrongPassword);
    }
    Ok(())
}

/// [`verify`], but a locked account is [`Error::LockedOut`] (the same 401 body, plus
/// `Retry-After`), and too many attempts are [`Error::RateLimited`]: from one client IP
/// on every password route together (`RATE_LIMITING_PASSWORD`), or on one account.
///
/// Failures are counted per account (its username, whether the username or the email
/// was typed), or per normalized name typed when no such user exists, so lockout
/// reveals nothing about which accounts exist. Each attempt is counted before the
/// password is checked: a burst of concurrent guesses gets no more checks than the
/// lockout threshold, across replicas. While locked the password is not checked at all,
/// but the dummy hash is still verified so the answer takes as long.
pub async fn check(
    core: &Core,
    login: &str,
    password: String,
    ip: Option<IpAddr>,
) -> Result<users::User> {
    if password.len() > MAX_PASSWORD_BYTES || login.len() > 254 {
        return Err(Error::InvalidCredentials);
    }
    limits::check_password_ip(core, ip).await?;
    // The account's username when it exists, so its username and its email share one
    // count; otherwise what was typed, so unknown names are counted the same way.
    let user = users::find_by_login(&core.db, login).await?;
    let key = users::normalize(user.as_ref().map_or(login, |u| u.username.as_str()));
    limits::check_account(core, &key).await?;
    let policy = core.settings.lockout;
    let attempt = if policy.enabled() {
        core.ephemeral.begin_login(&key, &policy, now_ms()).await?
    } else {
        Attempt::Proceed(0)
    };
    let n = match attempt {
        Attempt::Proceed(n) => n,
        Attempt::Locked(ms) | Attempt::Exhausted(ms) => {
            core.hasher.verify(password, None).await?;
            metrics::counter!("latchkey_logins_total", "result" => "locked").increment(1);
            return Err(Error::LockedOut {
                retry_after: ceil_secs(ms).unsigned_abs().max(1),
            });
        }
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let matched = core.hasher.verify(password, stored).await?;
    let user = match user {
        Some(user) if matched => user,
        _ => {
            metrics::counter!("latchkey_logins_total", "result" => "failure").increment(1);
            if policy.enabled()
                && let Some(ms) = core
                    .ephemeral
                    .login_failed(&key, n, &policy, now_ms())
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
        core.ephemeral.clear_login_failures(&key).await?;
    }
    if !user.is_active {
        metrics::counter!("latchkey_logins_total", "result" => "disabled").increment(1);
        return Err(Error::AccountDisabled);
    }
    // Only after the right password, so it tells nothing to someone who lacks it.
    if core.settings.require_email_verification && !user.email_verified {
        metrics::counter!("latchkey_logins_total", "result" => "unverified").increment(1);
        return Err(Error::EmailNotVerified);
    }
    metrics::counter!("latchkey_logins_total", "result" => "success").increment(1);
    Ok(user)
}
