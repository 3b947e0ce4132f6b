//! Deleting what no longer matters, in small batches: expired refresh-token families,
//! spent and expired authorization codes, expired browser sessions and emailed tokens.
//!
//! Each call deletes at most `limit` rows of one table, the oldest first through the index
//! on `expires_at`, so no statement holds many locks or runs long whatever the backlog.
//! A pass resumes each statement where the previous one stopped ([`Deleted::reached`]):
//! the rows it walked past and kept (consumed tokens of a live family) are not walked
//! again, so a statement costs its batch however many rows are kept. Draining the
//! backlog of bench/prune.sh (1,000,000 rows, 100,000 kept) alone, 1,000 rows a
//! statement: 27 ms a statement on average, 36 ms over the last hundred. Without the
//! cursor every statement re-walks the kept rows before it: 53 ms, 108 ms. Without the
//! `ORDER BY` too, PostgreSQL chose a merge anti-join along the family index that
//! re-read every live row before the batch: 179 ms, 407 ms.
//!
//! The statements are planned for their values every time (`persistent(false)`: an
//! unnamed statement), never from a connection's cached prepared statement. After five
//! executions PostgreSQL may switch a prepared statement to its generic plan, and for
//! these the generic plan (made without knowing `now` or the cursor) hashes every live
//! row and sorts every expired one, where the plan for the actual values walks the
//! `expires_at` index for one batch: 620,000 rows into a 1,000,000-row backlog, 25 ms a
//! statement with its own plan, 360 ms with the generic one, 1 to 10 s beside the load
//! of bench/prune.sh. Planning takes about a millisecond.
//!
//! On PostgreSQL the rows are picked `FOR UPDATE SKIP LOCKED`: replicas pruning at once take
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

/// What one [`batch`] deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deleted {
    pub rows: u64,
    /// The latest `expires_at` deleted (`from` when none): where the pass's next
    /// statement starts.
    pub reached: i64,
}

/// Deletes up to `limit` rows of `table` that nothing needs at `now` (Unix ms), the
/// oldest first, among those expiring at `from` or later (`i64::MIN` for all; a pass
/// passes each statement's [`Deleted::reached`] to the next). Fewer than `limit` means
/// the backlog is gone (for this replica: rows another replica holds locked are left to
/// it, and a row that became prunable behind the cursor during the pass to the next
/// pass).
pub async fn batch(db: &Db, table: Table, now: i64, from: i64, limit: i64) -> Result<Deleted> {
    let lock = match db.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    // `>=`: rows expiring in the same millisecond as the last one deleted may remain.
    let sql = format!(
        "DELETE FROM {name} WHERE {key} IN \
         (SELECT r.{key} FROM {name} r WHERE {cond} AND r.expires_at >= $2 \
          ORDER BY r.expires_at LIMIT $3{lock}) \
         RETURNING expires_at",
        name = table.as_str(),
        key = table.key(),
        cond = table.prunable(),
    );
    // Built only from the static strings above: no input reaches the SQL text.
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .persistent(false)
        .bind(now)
        .bind(from)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    let mut done = Deleted {
        rows: 0,
        reached: from,
    };
    for row in rows {
        done.rows += 1;
        done.reached = done.reached.max(row.try_get::<i64, _>("expires_at")?);
    }
    Ok(done)
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
        .persistent(false)
        .bind(now)
        .fetch_optional(db.pool())
        .await?;
    Ok(match row {
        Some(row) => (now - row.try_get::<i64, _>("e")?).max(0),
        None => 0,
    })
}
