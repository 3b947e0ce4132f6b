//! What Latchkey's two binaries share: the database (every SQL statement lives here) and
//! its migrations, the signing-key format, and the on-disk key directory.
//!
//! # Layout
//! - [`db`]: one connection pool over PostgreSQL (production) or SQLite (the embedded
//!   default), chosen by the URL, and the migrations for both.
//! - [`users`]: accounts (a taken name is a typed error, by constraint name).
//! - [`refresh_tokens`]: refresh-token families and the atomic rotation step.
//! - [`codes`]: authorization codes, single-use.
//! - [`browser_sessions`]: sign-ins to the authorization endpoint's login page.
//! - [`email_tokens`]: single-use emailed tokens (activation, password reset).
//! - [`credentials`]: a password change or reset, across users, refresh tokens, reset
//!   links and browser sessions in one transaction.
//! - [`clients`]: OAuth 2.0 client records and their secret digests.
//! - [`jwks`]: the one check of a public JWK Set that verifies client assertions.
//! - [`federation`]: issuers whose tokens authenticate clients (the cluster's
//!   ServiceAccount issuer) and their keys.
//! - [`prune`]: batched deletes of expired and spent rows (what reuse detection needs
//!   stays).
//! - [`protocol`]: the protocol values every crate names: [`GrantType`](protocol::GrantType),
//!   [`AuthMethod`](protocol::AuthMethod).
//! - [`keys`]: RS256 key pairs: generation, PEM (PKCS#8), the public JWK and its RFC 7638
//!   thumbprint, which is the `kid`.
//! - [`keydir`]: a directory of private keys in the layout of a mounted Kubernetes Secret
//!   (`..data` symlink swap), read by the service and written by `keys generate`, the
//!   operator and the tests.
//! - [`signing_keys`]: the `signing_keys` table: which public keys are published and which
//!   one signs.
//!
//! Dependency direction: the service and the operator depend on this crate; it depends on
//! neither, and holds no HTTP or Kubernetes types.
#![forbid(unsafe_code)]

pub mod browser_sessions;
pub mod clients;
pub mod codes;
pub mod credentials;
pub mod db;
pub mod email_tokens;
pub mod federation;
pub mod jwks;
pub mod keydir;
pub mod keys;
pub mod protocol;
pub mod prune;
pub mod refresh_tokens;
pub mod signing_keys;
pub mod users;

pub use db::{Backend, Db};

/// Errors of the shared storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "unsupported database URL scheme {0:?} (expected postgres://, postgresql:// or sqlite:)"
    )]
    UnsupportedDatabase(String),
    #[error("key directory {path}: {source}")]
    KeyDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid key {name}: {reason}")]
    InvalidKey { name: String, reason: String },
    #[error("key generation failed")]
    KeyGeneration,
    #[error("{0} already exists")]
    Conflict(String),
    /// A unique field of a new row is taken (`"username"`, `"email"`).
    #[error("{0} is already registered")]
    Taken(&'static str),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The database cannot serve the statement right now, through no fault of the
    /// statement: no connection in time, the connection was lost (a restart, a network
    /// cut), the server is shutting down or starting up, or it is out of resources.
    /// Callers answer 503 (retry later), not 500. Whether the statement took effect is
    /// unknown when the connection was lost mid-way; it ran whole or not at all.
    pub fn is_unavailable(&self) -> bool {
        let Self::Database(err) = self else {
            return false;
        };
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => is_unavailable_code(db.as_ref()),
            _ => false,
        }
    }

    /// The database is out of space (PostgreSQL `53100`, SQLite `SQLITE_FULL`): reads go
    /// on, writes fail until space is freed.
    pub fn is_storage_full(&self) -> bool {
        let Self::Database(sqlx::Error::Database(db)) = self else {
            return false;
        };
        let Some(code) = db.code() else {
            return false;
        };
        if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
            sqlite_primary(&code) == Some(SQLITE_FULL)
        } else {
            code == "53100"
        }
    }

    /// PostgreSQL refused a text value it cannot store (SQLSTATE 22021, a NUL character):
    /// bad input, not a fault. The HTTP edges refuse NUL first; this is the backstop for
    /// any path they miss.
    pub fn is_unstorable_text(&self) -> bool {
        matches!(self, Self::Database(e) if e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|code| code == "22021"))
    }
}

const SQLITE_BUSY: i64 = 5;
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;

/// The primary result code of a SQLite (extended) result code.
fn sqlite_primary(code: &str) -> Option<i64> {
    code.parse::<i64>().ok().map(|c| c & 0xff)
}

/// Whether a database error means "not now" rather than "not this statement".
fn is_unavailable_code(err: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = err.code() else {
        return false;
    };
    if err
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .is_some()
    {
        // Busy beyond the busy timeout, an I/O error, or a full disk.
        return matches!(
            sqlite_primary(&code),
            Some(SQLITE_BUSY | SQLITE_IOERR | SQLITE_FULL)
        );
    }
    // PostgreSQL. Class 08: connection exception; class 53: insufficient resources (disk
    // full, out of memory, too many connections); 57P01-57P03: the server is shutting
    // down, crashed, or not accepting connections yet.
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P0")
}

/// Milliseconds since the Unix epoch: the unit of every `*_at` column.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
