//! Deleting what no longer matters, in small batches: expired refresh-token families,
//! spent and expired authorization codes, expired browser sessions and emailed tokens.
//!
//! Each call deletes at most `limit` rows of one table, chosen through an index on
//! `expires_at`, so no statement holds many locks or runs long whatever the backlog. On
//! PostgreSQL the rows are picked `FOR UPDATE SKIP LOCKED`: replicas pruning at once take
//! disjoint batches instead of waiting on each other. What reuse detection still needs
//! stays: a refresh token is deleted only once every token of its family has expired (a
//! consumed token presented again, while its family lives, revokes the family), and an
//! authorization code only once the access token issued from it has expired too (a code
//! replayed within that time revokes that token).

use sqlx::Row;

use crate::{Backend, Db, Result};

/// The tables pruned, in the order a pass visits them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    RefreshTokens,
    AuthorizationCodes,
    BrowserSessions,
    EmailTokens,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Self::RefreshTokens,
        Self::AuthorizationCodes,
        Self::BrowserSessions,
        Self::EmailTokens,
    ];

    /// The table's name (and the `table` label of the pruning metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RefreshTokens => "refresh_tokens",
            Self::AuthorizationCodes => "authorization_codes",
            Self::BrowserSessions => "browser_sessions",
            Self::EmailTokens => "email_tokens",
        }
    }

    /// The condition on a row `r` of this table that nothing needs it at `$1` (Unix ms).
    fn prunable(self) -> &'static str {
        match self {
            Self::RefreshTokens => {
                "r.expires_at < $1 AND NOT EXISTS (SELECT 1 FROM refresh_tokens l \
                 WHERE l.family_id = r.family_id AND l.expires_at >= $1)"
            }
            Self::AuthorizationCodes => {
                "r.expires_at < $1 AND (r.access_exp IS NULL OR r.access_exp < $1)"
            }
            Self::BrowserSessions | Self::EmailTokens => "r.expires_at < $1",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::RefreshTokens | Self::EmailTokens => "token_hash",
            Self::AuthorizationCodes => "code_hash",
            Self::BrowserSessions => "id_hash",
        }
    }
}

/// Deletes up to `limit` rows of `table` that nothing needs at `now` (Unix ms); returns
/// how many. Fewer than `limit` means the backlog is gone (for this replica: rows
/// another replica holds locked are left to it).
pub async fn batch(db: &Db, table: Table, now: i64, limit: i64) -> Result<u64> {
    let lock = match db.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "DELETE FROM {name} WHERE {key} IN \
         (SELECT r.{key} FROM {name} r WHERE {cond} LIMIT $2{lock})",
        name = table.as_str(),
        key = table.key(),
        cond = table.prunable(),
    );
    // Built only from the static strings above: no input reaches the SQL text.
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(limit)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

/// How long the oldest prunable row of `table` has waited past its expiry (ms), 0 when
/// none: the pruning lag. Walks the `expires_at` index from the oldest row to the first
/// prunable one.
pub async fn lag_ms(db: &Db, table: Table, now: i64) -> Result<i64> {
    let sql = format!(
        "SELECT r.expires_at AS e FROM {name} r WHERE {cond} ORDER BY r.expires_at LIMIT 1",
        name = table.as_str(),
        cond = table.prunable(),
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .fetch_optional(db.pool())
        .await?;
    Ok(match row {
        Some(row) => (now - row.try_get::<i64, _>("e")?).max(0),
        None => 0,
    })
}
