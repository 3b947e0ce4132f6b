//! The transactions that change a user's credentials across tables: a password change
//! and a reset each set the hash, revoke refresh tokens, delete the user's reset links
//! and end every browser session, all or nothing. Here rather than in `users` or
//! `email_tokens`, which they both use.

use crate::email_tokens::{self, Purpose};
use crate::{Db, Result, browser_sessions, refresh_tokens, users};

/// Replaces the password and, in one transaction, revokes every refresh token of the
/// user except those of the family `keep` (the session that asked), deletes every
/// password-reset link of the user and ends every browser session (sign-in at
/// `/oauth/authorize`); returns how many refresh tokens were revoked.
pub async fn change_password(
    db: &Db,
    user_id: &str,
    hash: &str,
    keep: Option<&str>,
    now: i64,
) -> Result<u64> {
    let mut tx = db.pool().begin().await?;
    users::set_password(&mut *tx, user_id, hash, now).await?;
    let revoked = refresh_tokens::revoke_for_user(&mut *tx, user_id, keep, now).await?;
    email_tokens::delete_for_user(&mut *tx, user_id, Purpose::PasswordReset).await?;
    browser_sessions::delete_for_user(&mut *tx, user_id).await?;
    tx.commit().await?;
    Ok(revoked)
}

/// Spends a reset token of `user_id` and, in the same transaction, sets the new password
/// hash, marks the address verified (following the link proves it), revokes every
/// refresh token of the user, deletes the user's other reset links and ends every
/// browser session (sign-in at `/oauth/authorize`). `None` (and nothing changed) when
/// the token is not live or belongs to someone else; otherwise how many refresh tokens
/// were revoked.
pub async fn reset_password(
    db: &Db,
    token_hash: &str,
    user_id: &str,
    password_hash: &str,
    now: i64,
) -> Result<Option<u64>> {
    let mut tx = db.pool().begin().await?;
    match email_tokens::consume(&mut *tx, token_hash, Purpose::PasswordReset, now).await? {
        Some(owner) if owner == user_id => {}
        _ => return Ok(None),
    }
    users::set_password(&mut *tx, user_id, password_hash, now).await?;
    users::set_email_verified(&mut *tx, user_id, now).await?;
    let revoked = refresh_tokens::revoke_for_user(&mut *tx, user_id, None, now).await?;
    email_tokens::delete_for_user(&mut *tx, user_id, Purpose::PasswordReset).await?;
    browser_sessions::delete_for_user(&mut *tx, user_id).await?;
    tx.commit().await?;
    Ok(Some(revoked))
}
