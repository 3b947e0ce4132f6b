//! User accounts and refresh-token families in the database.
//!
//! Queries are written once for both backends (see `latchkey_store::db`). Unique
//! violations become domain errors right at the query.

use latchkey_store::Db;
use latchkey_store::db::is_unique_violation;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{Error, Result};

/// A stored user. `password_hash` never leaves this crate's handlers.
#[derive(Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub full_name: String,
    pub password_hash: String,
    pub is_active: bool,
    pub email_verified: bool,
    pub created_at: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// `SELECT` of every user column with the given `WHERE` clause, as a static string
/// (sqlx only runs SQL it can see is not built from input).
macro_rules! select_user_where {
    ($condition:literal) => {
        concat!(
            "SELECT id, username, email, full_name, password_hash, is_active, email_verified, created_at \
             FROM users WHERE ",
            $condition
        )
    };
}

fn user_from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        full_name: row.try_get("full_name")?,
        password_hash: row.try_get("password_hash")?,
        is_active: get_bool(row, "is_active")?,
        email_verified: get_bool(row, "email_verified")?,
        created_at: row.try_get("created_at")?,
    })
}

/// A boolean column: `BOOLEAN` on PostgreSQL, `INTEGER` 0/1 on SQLite (the Any driver
/// cannot read SQLite's `BOOLEAN`).
fn get_bool(row: &AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    row.try_get::<bool, _>(column)
        .or_else(|_| row.try_get::<i64, _>(column).map(|v| v != 0))
}

/// The form of a username or email that uniqueness and look-ups use.
pub fn normalize(identifier: &str) -> String {
    identifier.trim().to_lowercase()
}

/// Inserts a new user; a taken username or email is a [`Error::Conflict`].
pub async fn create_user(db: &Db, user: &User, now: i64) -> Result<()> {
    let result = sqlx::query(
        "INSERT INTO users (id, username, username_key, email, email_key, full_name, password_hash, \
         is_active, email_verified, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(&user.id)
    .bind(&user.username)
    .bind(normalize(&user.username))
    .bind(&user.email)
    .bind(normalize(&user.email))
    .bind(&user.full_name)
    .bind(&user.password_hash)
    .bind(user.is_active)
    .bind(user.email_verified)
    .bind(now)
    .execute(db.pool())
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => {
            let message = e
                .as_database_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_default();
            Err(Error::Conflict(if message.contains("email_key") {
                "email"
            } else {
                "username"
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// Finds a user by username or, when `login` contains `@`, by email.
pub async fn find_by_login(db: &Db, login: &str) -> Result<Option<User>> {
    let sql = if login.contains('@') {
        select_user_where!("email_key = $1")
    } else {
        select_user_where!("username_key = $1")
    };
    let row = sqlx::query(sql)
        .bind(normalize(login))
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

pub async fn find_by_id(db: &Db, id: &str) -> Result<Option<User>> {
    let row = sqlx::query(select_user_where!("id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

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

pub async fn insert_refresh(db: &Db, token: &NewRefresh<'_>, now: i64) -> Result<()> {
    insert_refresh_on(db.pool(), token, now).await
}

async fn insert_refresh_on<'e, E>(executor: E, token: &NewRefresh<'_>, now: i64) -> Result<()>
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
    /// The token had already been used: its whole family is now revoked.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

/// Consumes the refresh token with digest `old_hash` and stores `new_hash` as its
/// successor in one transaction. The consuming `UPDATE ... WHERE used_at IS NULL` is the
/// single point of truth: of two concurrent refreshes with one token, exactly one wins
/// and the other is treated as reuse.
///
/// The token must belong to `client_id`; another client's token is [`Rotation::Invalid`]
/// and is not consumed.
pub async fn rotate_refresh(
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
        insert_refresh_on(&mut *tx, &successor, now).await?;
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
    let family_id: String = row.try_get("family_id")?;
    let revoked = revoke_family(db, &family_id, now).await?;
    tracing::warn!(family_id, revoked, "refresh token reused; family revoked");
    metrics::counter!("latchkey_refresh_reuse_total").increment(1);
    Ok(Rotation::Reused)
}

/// The scope of a live refresh token of `client_id`.
pub async fn refresh_scope(db: &Db, token_hash: &str, client_id: &str) -> Result<Option<String>> {
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
pub async fn refresh_family(db: &Db, token_hash: &str) -> Result<Option<(String, String)>> {
    let row = sqlx::query("SELECT family_id, client_id FROM refresh_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(db.pool())
        .await?;
    Ok(match row {
        Some(row) => Some((row.try_get("family_id")?, row.try_get("client_id")?)),
        None => None,
    })
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

/// Marks the user's email address as confirmed.
pub async fn set_email_verified<'e, E>(executor: E, user_id: &str, now: i64) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query("UPDATE users SET email_verified = $1, updated_at = $2 WHERE id = $3")
        .bind(true)
        .bind(now)
        .bind(user_id)
        .execute(executor)
        .await?;
    Ok(())
}

/// Replaces the user's password hash.
pub async fn set_password<'e, E>(executor: E, user_id: &str, hash: &str, now: i64) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(hash)
        .bind(now)
        .bind(user_id)
        .execute(executor)
        .await?;
    Ok(())
}

/// Revokes every live refresh token of the user (of every client), except those of
/// the family `keep` (the session that asked); returns how many were revoked.
pub async fn revoke_user_refresh<'e, E>(
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
