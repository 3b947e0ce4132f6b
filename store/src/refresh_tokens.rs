//! The `refresh_tokens` table: refresh tokens by digest, grouped in families (one per
//! sign-in; rotation adds the successor to the family).
//!
//! The rules (rotate on use, revoke the family when a used token comes back) are the
//! domain's session flow; this module holds the queries, including the one atomic step
//! reuse detection rests on.

use sqlx::Row;

use crate::{Db, Result};

/// A refresh token to store; only its digest is kept.
#[derive(Debug)]
pub struct NewRefresh<'a> {
    pub token_hash: &'a str,
    pub family_id: &'a str,
    pub user_id: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub expires_at: i64,
}

pub async fn insert(db: &Db, token: &NewRefresh<'_>, now: i64) -> Result<()> {
    insert_on(db.pool(), token, now).await
}

async fn insert_on<'e, E>(executor: E, token: &NewRefresh<'_>, now: i64) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, client_id, scope, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(token.token_hash)
    .bind(token.family_id)
    .bind(token.user_id)
    .bind(token.client_id)
    .bind(token.scope)
    .bind(now)
    .bind(token.expires_at)
    .execute(executor)
    .await?;
    Ok(())
}

/// What presenting a refresh token did.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live; it is now consumed and its successor stored.
    Rotated {
        family_id: String,
        user_id: String,
        client_id: String,
        scope: String,
    },
    /// The token had already been used (nothing was changed: revoking the family is
    /// the caller's decision).
    Reused { family_id: String },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Consumes the refresh token with digest `old_hash` and stores `new_hash` as its
/// successor in one transaction. The consuming `UPDATE ... WHERE used_at IS NULL` is the
/// single point of truth: of two concurrent refreshes with one token, exactly one wins
/// and the other sees [`Rotation::Reused`].
///
/// The token must belong to `client_id`; another client's token is [`Rotation::Invalid`]
/// and is not consumed.
pub async fn rotate(
    db: &Db,
    client_id: &str,
    old_hash: &str,
    new_hash: &str,
    new_expires_at: i64,
    now: i64,
) -> Result<Rotation> {
    let mut tx = db.pool().begin().await?;
    let consumed = sqlx::query(
        "UPDATE refresh_tokens SET used_at = $1 \
         WHERE token_hash = $2 AND client_id = $3 AND used_at IS NULL AND revoked_at IS NULL \
         AND expires_at > $1 \
         RETURNING family_id, user_id, client_id, scope",
    )
    .bind(now)
    .bind(old_hash)
    .bind(client_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = consumed {
        let family_id: String = row.try_get("family_id")?;
        let user_id: String = row.try_get("user_id")?;
        let client_id: String = row.try_get("client_id")?;
        let scope: String = row.try_get("scope")?;
        let successor = NewRefresh {
            token_hash: new_hash,
            family_id: &family_id,
            user_id: &user_id,
            client_id: &client_id,
            scope: &scope,
            expires_at: new_expires_at,
        };
        insert_on(&mut *tx, &successor, now).await?;
        tx.commit().await?;
        return Ok(Rotation::Rotated {
            family_id,
            user_id,
            client_id,
            scope,
        });
    }
    tx.rollback().await?;

    let existing =
        sqlx::query("SELECT family_id, used_at FROM refresh_tokens WHERE token_hash = $1")
            .bind(old_hash)
            .fetch_optional(db.pool())
            .await?;
    let Some(row) = existing else {
        return Ok(Rotation::Invalid);
    };
    let used_at: Option<i64> = row.try_get("used_at")?;
    if used_at.is_none() {
        return Ok(Rotation::Invalid);
    }
    Ok(Rotation::Reused {
        family_id: row.try_get("family_id")?,
    })
}

/// The scope of a live refresh token of `client_id`.
pub async fn live_scope(db: &Db, token_hash: &str, client_id: &str) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT scope FROM refresh_tokens WHERE token_hash = $1 AND client_id = $2 \
         AND used_at IS NULL AND revoked_at IS NULL",
    )
    .bind(token_hash)
    .bind(client_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(match row {
        Some(row) => Some(row.try_get("scope")?),
        None => None,
    })
}

/// The family and client of a refresh token, if it exists.
pub async fn family(db: &Db, token_hash: &str) -> Result<Option<(String, String)>> {
    let row = sqlx::query("SELECT family_id, client_id FROM refresh_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(db.pool())
        .await?;
    Ok(match row {
        Some(row) => Some((row.try_get("family_id")?, row.try_get("client_id")?)),
        None => None,
    })
}

/// A live refresh token, as introspection describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRefresh {
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// The unused, unrevoked, unexpired refresh token with this digest.
pub async fn find_live(db: &Db, token_hash: &str, now: i64) -> Result<Option<LiveRefresh>> {
    let row = sqlx::query(
        "SELECT user_id, client_id, scope, created_at, expires_at FROM refresh_tokens \
         WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(LiveRefresh {
        user_id: row.try_get("user_id")?,
        client_id: row.try_get("client_id")?,
        scope: row.try_get("scope")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    }))
}

/// Revokes every live token of a family; returns how many were revoked.
pub async fn revoke_family(db: &Db, family_id: &str, now: i64) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(family_id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

/// Revokes every live refresh token of the user (of every client), except those of
/// the family `keep`; returns how many were revoked.
pub(crate) async fn revoke_for_user<'e, E>(
    executor: E,
    user_id: &str,
    keep: Option<&str>,
    now: i64,
) -> Result<u64>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let done = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 \
         WHERE user_id = $2 AND revoked_at IS NULL AND family_id <> $3",
    )
    .bind(now)
    .bind(user_id)
    .bind(keep.unwrap_or(""))
    .execute(executor)
    .await?;
    Ok(done.rows_affected())
}
