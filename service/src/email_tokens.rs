//! Single-use tokens sent by email (account activation, password reset) in the
//! `email_tokens` table.
//!
//! Only the SHA-256 digest of a token is stored; the token itself exists only in the
//! mail. A token is spent by one `UPDATE ... WHERE used_at IS NULL AND expires_at > now
//! RETURNING`, so of two concurrent uses exactly one wins (as with refresh tokens).

use latchkey_store::Db;
use sqlx::Row;

use crate::error::Result;
use crate::tokens::{digest, random_token};

/// What a token may be used for; a token of one purpose is never accepted for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    PasswordReset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
        }
    }
}

/// Creates a token for `user_id` valid until `expires_at`; returns the token (for the
/// link). Earlier unused tokens of the same purpose stay valid until they expire.
pub async fn issue(
    db: &Db,
    user_id: &str,
    purpose: Purpose,
    now: i64,
    expires_at: i64,
) -> Result<String> {
    let token = random_token(32)?;
    sqlx::query(
        "INSERT INTO email_tokens (token_hash, user_id, purpose, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(digest(&token))
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(now)
    .bind(expires_at)
    .execute(db.pool())
    .await?;
    Ok(token)
}

/// The user of a live (unused, unexpired) token, without spending it.
pub async fn peek(db: &Db, token: &str, purpose: Purpose, now: i64) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT user_id FROM email_tokens \
         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
    )
    .bind(digest(token))
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
pub async fn consume<'e, E>(
    executor: E,
    token: &str,
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
    .bind(digest(token))
    .bind(purpose.as_str())
    .fetch_optional(executor)
    .await?;
    Ok(match row {
        Some(row) => Some(row.try_get("user_id")?),
        None => None,
    })
}
