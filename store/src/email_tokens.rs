//! Single-use tokens sent by email (account activation, password reset) in the
//! `email_tokens` table.
//!
//! Only the SHA-256 digest of a token is stored (the caller passes it); the token itself
//! exists only in the mail. A token is spent by one `UPDATE ... WHERE used_at IS NULL AND
//! expires_at > now RETURNING`, so of two concurrent uses exactly one wins (as with
//! refresh tokens). A user has at most one outstanding link per purpose: issuing one
//! deletes the earlier ones, and a password reset or change deletes every reset link
//! (so a link mailed before the change cannot undo it; see [`crate::credentials`]).

use sqlx::Row;

use crate::{Db, Result, users};

/// What a token may be used for; a token of one purpose is never accepted for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    PasswordReset,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
        }
    }
}

/// Stores a token (by its digest) for `user_id`, valid until `expires_at`, and deletes
/// the user's earlier tokens of the same purpose, in one transaction: only the newest
/// link works.
pub async fn insert(
    db: &Db,
    token_hash: &str,
    user_id: &str,
    purpose: Purpose,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    let mut tx = db.pool().begin().await?;
    delete_for_user(&mut *tx, user_id, purpose).await?;
    sqlx::query(
        "INSERT INTO email_tokens (token_hash, user_id, purpose, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(now)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes every token of `user_id` for `purpose`, used or not; returns how many.
pub(crate) async fn delete_for_user<'e, E>(
    executor: E,
    user_id: &str,
    purpose: Purpose,
) -> Result<u64>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let done = sqlx::query("DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2")
        .bind(user_id)
        .bind(purpose.as_str())
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

/// The user of a live (unused, unexpired) token, without spending it.
pub async fn peek(db: &Db, token_hash: &str, purpose: Purpose, now: i64) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT user_id FROM email_tokens \
         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
    )
    .bind(token_hash)
    .bind(purpose.as_str())
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    Ok(match row {
        Some(row) => Some(row.try_get("user_id")?),
        None => None,
    })
}

/// Spends a live token; returns its user, or `None` when it is unknown, expired or
/// already used.
pub(crate) async fn consume<'e, E>(
    executor: E,
    token_hash: &str,
    purpose: Purpose,
    now: i64,
) -> Result<Option<String>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "UPDATE email_tokens SET used_at = $1 \
         WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 \
         RETURNING user_id",
    )
    .bind(now)
    .bind(token_hash)
    .bind(purpose.as_str())
    .fetch_optional(executor)
    .await?;
    Ok(match row {
        Some(row) => Some(row.try_get("user_id")?),
        None => None,
    })
}

/// Spends an activation token and marks its user's address verified, in one
/// transaction; returns the user, or `None` when the token is not live.
pub async fn verify_email(db: &Db, token_hash: &str, now: i64) -> Result<Option<String>> {
    let mut tx = db.pool().begin().await?;
    let Some(user_id) = consume(&mut *tx, token_hash, Purpose::VerifyEmail, now).await? else {
        return Ok(None);
    };
    users::set_email_verified(&mut *tx, &user_id, now).await?;
    tx.commit().await?;
    Ok(Some(user_id))
}
