//! The `users` table: accounts, their password hashes and whether their address is
//! confirmed.
//!
//! A taken username or email is [`Error::Taken`], told apart by the unique constraint
//! the insert broke (see [`violated_unique_constraint`]).

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::violated_unique_constraint;
use crate::{Db, Error, Result};

/// A stored user. `password_hash` never leaves the service's handlers.
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

/// Inserts a new user; a taken username or email is [`Error::Taken`].
pub async fn insert(db: &Db, user: &User, now: i64) -> Result<()> {
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
        Err(e) => match violated_unique_constraint(&e).as_deref() {
            Some("users_email_key") => Err(Error::Taken("email")),
            Some(_) => Err(Error::Taken("username")),
            None => Err(e.into()),
        },
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

/// Marks the user's email address as confirmed.
pub(crate) async fn set_email_verified<'e, E>(executor: E, user_id: &str, now: i64) -> Result<()>
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
pub(crate) async fn set_password<'e, E>(
    executor: E,
    user_id: &str,
    hash: &str,
    now: i64,
) -> Result<()>
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
