//! The connection pool and migrations.
//!
//! One [`sqlx::AnyPool`] serves both backends so every query is written once: the SQL is
//! kept portable (`$1` placeholders, which SQLite accepts too; `BIGINT` milliseconds for
//! times; `TEXT` ids) and only the DDL differs, in `migrations/postgres` and
//! `migrations/sqlite`.

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Connection, Executor};

use crate::{Error, Result};

/// Which database engine a [`Db`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The backend a database URL names, from its scheme alone.
    pub fn from_url(url: &str) -> Result<Self> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "sqlite" => Ok(Self::Sqlite),
            other => Err(Error::UnsupportedDatabase(other.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

/// A cheap-to-clone handle on the pool.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

impl Db {
    /// Opens a pool of at most `max_connections`.
    ///
    /// SQLite connections get WAL (readers never wait for the writer), a busy timeout
    /// (writers queue instead of failing with `SQLITE_BUSY`) and foreign keys on.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        install_default_drivers();
        let backend = Backend::from_url(url)?;
        let options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .after_release(move |conn, _meta| {
                Box::pin(async move {
                    if backend != Backend::Sqlite {
                        return Ok(true);
                    }
                    // A released connection holds no live transaction. If sqlx still
                    // counts one, a COMMIT or ROLLBACK failed (SQLITE_FULL, SQLITE_IOERR)
                    // and the connection's state is no longer known: SQLite may keep the
                    // transaction open, or have rolled it back itself, after which sqlx
                    // nests the next ones as savepoints that never commit. Either way
                    // every later write on it would be answered and then lost, while
                    // holding the write lock. Close it: closing rolls back what is open.
                    // The ping first runs the rollback a dropped transaction queued.
                    conn.ping().await?;
                    let clean = !conn.is_in_transaction();
                    if !clean {
                        tracing::warn!(
                            "closing a SQLite connection left inside a failed transaction"
                        );
                    }
                    Ok(clean)
                })
            });
        let pool = options.connect(url).await?;
        Ok(Self { pool, backend })
    }

    /// Applies every pending migration of this backend; safe to run from many replicas
    /// at once (sqlx takes a database lock on PostgreSQL).
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// A cheap query that proves the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether `err` is a unique-constraint violation, so callers can turn it into a domain
/// error (409) right at the query.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// The unique constraint a failed statement broke, named as PostgreSQL names it
/// (`users_email_key`). PostgreSQL reports the name itself; SQLite names the column
/// (`UNIQUE constraint failed: users.email_key`), which is spelled the same way here,
/// so callers match one name on both backends. `None` when `err` is not a unique
/// violation.
pub fn violated_unique_constraint(err: &sqlx::Error) -> Option<String> {
    let db_err = err.as_database_error()?;
    if db_err.kind() != sqlx::error::ErrorKind::UniqueViolation {
        return None;
    }
    if let Some(name) = db_err.constraint() {
        return Some(name.to_owned());
    }
    let message = db_err.message();
    // PostgreSQL through a driver that drops the field: `... unique constraint "name"`.
    if let Some((_, rest)) = message.split_once("unique constraint \"") {
        return rest.split('"').next().map(str::to_owned);
    }
    // SQLite: `UNIQUE constraint failed: table.column[, table.column]`.
    let (_, columns) = message.split_once("constraint failed: ")?;
    let first = columns.split(',').next()?.trim();
    Some(first.replace('.', "_"))
}
