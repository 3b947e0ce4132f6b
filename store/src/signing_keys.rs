//! The `signing_keys` table: the public half of every key that signs, will sign, or
//! signed tokens that may still be alive.
//!
//! Rows are written by whoever manages the keys: the operator in Kubernetes, or the
//! service itself in the embedded default ([`publish_active`]). The service reads them to
//! build JWKS and its verifier set, and to pick the key it signs with.

use sqlx::Row;

use crate::keys::PublicJwk;
use crate::{Backend, Db, Error, Result};

/// The PostgreSQL channel a trigger notifies on every change to the table (migration
/// `20261128000005`), so replicas reload at once rather than at their next interval.
pub const CHANGES_CHANNEL: &str = "latchkey_signing_keys";

/// A connection listening for changes to the table; `None` for SQLite, which has one
/// process and no notifications. Opens its own connection (not one from the pool).
pub async fn listen_for_changes(db: &Db, url: &str) -> Result<Option<ChangeListener>> {
    if db.backend() != Backend::Postgres {
        return Ok(None);
    }
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen(CHANGES_CHANNEL).await?;
    Ok(Some(ChangeListener { listener }))
}

/// See [`listen_for_changes`].
#[derive(Debug)]
pub struct ChangeListener {
    listener: sqlx::postgres::PgListener,
}

impl ChangeListener {
    /// Returns when the table changed, or when the connection was lost (changes may
    /// have been missed): either way, reload. The next call reconnects; an error means
    /// reconnecting failed.
    pub async fn changed(&mut self) -> Result<()> {
        self.listener.try_recv().await?;
        Ok(())
    }
}

/// Where a key is in its life (see the rotation protocol in ARCHITECTURE.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Published in JWKS, not signing yet.
    Next,
    /// May sign; the newest Active key a replica holds is the one it signs with.
    Active,
    /// No longer signs; still verifies until `expires_at`.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "next" => Ok(Self::Next),
            "active" => Ok(Self::Active),
            "retired" => Ok(Self::Retired),
            other => Err(Error::Corrupt(format!("signing key state {other:?}"))),
        }
    }
}

/// One published key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub kid: String,
    pub algorithm: String,
    pub jwk: PublicJwk,
    pub state: KeyState,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// Every key that verifiers must know at `now`: Next, Active, and Retired keys whose
/// `expires_at` has not passed. Active keys come first, newest activation first, so the
/// first one a replica holds is the one it signs with.
pub async fn published(db: &Db, now: i64) -> Result<Vec<SigningKeyRow>> {
    let rows = sqlx::query(
        "SELECT kid, algorithm, public_jwk, state, created_at, activated_at, retired_at, expires_at \
         FROM signing_keys \
         WHERE expires_at IS NULL OR expires_at > $1 \
         ORDER BY CASE state WHEN 'active' THEN 0 WHEN 'next' THEN 1 ELSE 2 END, \
                  activated_at DESC, created_at DESC, kid",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(parse_row).collect()
}

fn parse_row(row: &sqlx::any::AnyRow) -> Result<SigningKeyRow> {
    let kid: String = row.try_get("kid")?;
    let jwk_text: String = row.try_get("public_jwk")?;
    let jwk: PublicJwk = serde_json::from_str(&jwk_text)
        .map_err(|e| Error::Corrupt(format!("public_jwk of {kid}: {e}")))?;
    if jwk.kid != kid {
        return Err(Error::Corrupt(format!(
            "public_jwk of {kid} names {}",
            jwk.kid
        )));
    }
    let state: String = row.try_get("state")?;
    Ok(SigningKeyRow {
        algorithm: row.try_get("algorithm")?,
        jwk,
        state: KeyState::parse(&state)?,
        created_at: row.try_get("created_at")?,
        activated_at: row.try_get("activated_at")?,
        retired_at: row.try_get("retired_at")?,
        expires_at: row.try_get("expires_at")?,
        kid,
    })
}

/// The row of `kid`, whatever its state or expiry.
pub async fn get(db: &Db, kid: &str) -> Result<Option<SigningKeyRow>> {
    let row = sqlx::query(
        "SELECT kid, algorithm, public_jwk, state, created_at, activated_at, retired_at, expires_at \
         FROM signing_keys WHERE kid = $1",
    )
    .bind(kid)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(parse_row).transpose()
}

/// Writes `row` (insert, or overwrite state and times of the same `kid`). Used by the
/// operator, which owns the rows of its `SigningKey`s; idempotent.
pub async fn upsert(db: &Db, row: &SigningKeyRow) -> Result<()> {
    let jwk_text = serde_json::to_string(&row.jwk).map_err(|e| Error::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO signing_keys \
             (kid, algorithm, public_jwk, state, created_at, activated_at, retired_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (kid) DO UPDATE SET algorithm = excluded.algorithm, \
             public_jwk = excluded.public_jwk, state = excluded.state, \
             created_at = excluded.created_at, activated_at = excluded.activated_at, \
             retired_at = excluded.retired_at, expires_at = excluded.expires_at",
    )
    .bind(&row.kid)
    .bind(&row.algorithm)
    .bind(jwk_text)
    .bind(row.state.as_str())
    .bind(row.created_at)
    .bind(row.activated_at)
    .bind(row.retired_at)
    .bind(row.expires_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Deletes the row of `kid`: the key leaves JWKS at every replica's next reload. Returns
/// whether a row was deleted.
pub async fn delete(db: &Db, kid: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
        .bind(kid)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Publishes `jwk` as an Active key unless its `kid` is already known (whatever its
/// state). Returns whether a row was added. Used where the service manages its own keys.
pub async fn publish_active(db: &Db, jwk: &PublicJwk, now: i64) -> Result<bool> {
    let jwk_text = serde_json::to_string(jwk).map_err(|e| Error::Corrupt(e.to_string()))?;
    let done = sqlx::query(
        "INSERT INTO signing_keys (kid, algorithm, public_jwk, state, created_at, activated_at) \
         VALUES ($1, $2, $3, 'active', $4, $4) ON CONFLICT (kid) DO NOTHING",
    )
    .bind(&jwk.kid)
    .bind(&jwk.alg)
    .bind(jwk_text)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}
