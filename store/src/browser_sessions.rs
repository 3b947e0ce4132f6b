//! The `browser_sessions` table: who is signed in to the login page of
//! `/oauth/authorize`, by the SHA-256 digest of the session cookie.

use sqlx::Row;

use crate::{Db, Result};

pub async fn insert(
    db: &Db,
    id_hash: &str,
    user_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO browser_sessions (id_hash, user_id, auth_time, created_at, expires_at) \
         VALUES ($1, $2, $3, $3, $4)",
    )
    .bind(id_hash)
    .bind(user_id)
    .bind(now)
    .bind(expires_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The user and authentication time of a live session.
pub async fn find_live(db: &Db, id_hash: &str, now: i64) -> Result<Option<(String, i64)>> {
    let row = sqlx::query(
        "SELECT user_id, auth_time FROM browser_sessions WHERE id_hash = $1 AND expires_at > $2",
    )
    .bind(id_hash)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    Ok(match row {
        Some(row) => Some((row.try_get("user_id")?, row.try_get("auth_time")?)),
        None => None,
    })
}

/// Ends every browser session of `user_id` (a password reset or change); returns how
/// many there were.
pub(crate) async fn delete_for_user<'e, E>(executor: E, user_id: &str) -> Result<u64>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let done = sqlx::query("DELETE FROM browser_sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

/// Ends one browser session (sign-out); returns whether it existed.
pub async fn delete(db: &Db, id_hash: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM browser_sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}
