//! The `federated_issuers` table: issuers whose tokens authenticate clients, with their
//! public keys. Today one row, [`KUBERNETES`]: the cluster's ServiceAccount issuer, which
//! the operator discovers from the API server (`/.well-known/openid-configuration`,
//! `/openid/v1/jwks`) and the service reads — the service itself never talks to
//! Kubernetes. A change notifies the signing-key channel, so replicas reload both at once.

use sqlx::Row;

use crate::{Db, Result};

/// The row of the cluster's ServiceAccount issuer.
pub const KUBERNETES: &str = "kubernetes";

/// One issuer as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederatedIssuer {
    pub name: String,
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// Its public keys, a JWK Set (JSON) as the issuer published it.
    pub jwks: String,
    pub updated_at: i64,
}

pub async fn get(db: &Db, name: &str) -> Result<Option<FederatedIssuer>> {
    let row =
        sqlx::query("SELECT name, issuer, jwks, updated_at FROM federated_issuers WHERE name = $1")
            .bind(name)
            .fetch_optional(db.pool())
            .await?;
    row.map(|row| {
        Ok(FederatedIssuer {
            name: row.try_get("name")?,
            issuer: row.try_get("issuer")?,
            jwks: row.try_get("jwks")?,
            updated_at: row.try_get("updated_at")?,
        })
    })
    .transpose()
}

/// Writes the issuer and its keys unless they are already stored as given; returns
/// whether anything changed (an unchanged refresh wakes no replica).
pub async fn put(db: &Db, name: &str, issuer: &str, jwks: &str, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO federated_issuers (name, issuer, jwks, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET issuer = excluded.issuer, jwks = excluded.jwks, \
         updated_at = excluded.updated_at \
         WHERE federated_issuers.issuer <> excluded.issuer OR federated_issuers.jwks <> excluded.jwks",
    )
    .bind(name)
    .bind(issuer)
    .bind(jwks)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}
