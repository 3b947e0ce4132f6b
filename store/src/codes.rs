//! The `authorization_codes` table. Codes are looked up by the SHA-256 digest of the
//! value the user agent carries; the values themselves are never stored.

use sqlx::Row;

use crate::{Db, Result};

/// A code to store.
#[derive(Debug)]
pub struct NewCode<'a> {
    pub code_hash: &'a str,
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub redirect_uri: &'a str,
    /// Whether the authorization request named the redirect URI (then the token request
    /// must repeat it, RFC 6749 §4.1.3).
    pub redirect_given: bool,
    pub scope: &'a str,
    pub code_challenge: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub auth_time: i64,
    pub family_id: &'a str,
    pub expires_at: i64,
}

pub async fn insert(db: &Db, code: &NewCode<'_>, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO authorization_codes (code_hash, client_id, user_id, redirect_uri, redirect_given, \
         scope, code_challenge, nonce, auth_time, family_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(code.code_hash)
    .bind(code.client_id)
    .bind(code.user_id)
    .bind(code.redirect_uri)
    .bind(i64::from(code.redirect_given))
    .bind(code.scope)
    .bind(code.code_challenge)
    .bind(code.nonce)
    .bind(code.auth_time)
    .bind(code.family_id)
    .bind(now)
    .bind(code.expires_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A redeemed code.
#[derive(Debug, Clone)]
pub struct Code {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub redirect_given: bool,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub family_id: String,
    pub expires_at: i64,
}

/// What presenting a code did.
#[derive(Debug)]
pub enum Redemption {
    Redeemed(Code),
    /// Already used: what was issued from it must be revoked.
    Replayed {
        family_id: String,
        access_jti: Option<String>,
        access_exp: Option<i64>,
    },
    Unknown,
}

/// Marks the code used and returns it; exactly one of several concurrent redemptions
/// wins, the others see a replay.
pub async fn redeem(db: &Db, code_hash: &str, now: i64) -> Result<Redemption> {
    let row = sqlx::query(
        "UPDATE authorization_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL \
         RETURNING client_id, user_id, redirect_uri, redirect_given, scope, code_challenge, nonce, \
         auth_time, family_id, expires_at",
    )
    .bind(now)
    .bind(code_hash)
    .fetch_optional(db.pool())
    .await?;
    if let Some(row) = row {
        return Ok(Redemption::Redeemed(Code {
            client_id: row.try_get("client_id")?,
            user_id: row.try_get("user_id")?,
            redirect_uri: row.try_get("redirect_uri")?,
            redirect_given: row.try_get::<i64, _>("redirect_given")? != 0,
            scope: row.try_get("scope")?,
            code_challenge: row.try_get("code_challenge")?,
            nonce: row.try_get("nonce")?,
            auth_time: row.try_get("auth_time")?,
            family_id: row.try_get("family_id")?,
            expires_at: row.try_get("expires_at")?,
        }));
    }
    let row = sqlx::query(
        "SELECT family_id, access_jti, access_exp FROM authorization_codes WHERE code_hash = $1",
    )
    .bind(code_hash)
    .fetch_optional(db.pool())
    .await?;
    Ok(match row {
        Some(row) => Redemption::Replayed {
            family_id: row.try_get("family_id")?,
            access_jti: row.try_get("access_jti")?,
            access_exp: row.try_get("access_exp")?,
        },
        None => Redemption::Unknown,
    })
}

/// Remembers the access token issued from a code, so a replay can revoke it.
pub async fn record_issued(db: &Db, code_hash: &str, jti: &str, exp_ms: i64) -> Result<()> {
    sqlx::query(
        "UPDATE authorization_codes SET access_jti = $1, access_exp = $2 WHERE code_hash = $3",
    )
    .bind(jti)
    .bind(exp_ms)
    .bind(code_hash)
    .execute(db.pool())
    .await?;
    Ok(())
}
