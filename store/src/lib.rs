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
    /// The pool had no free connection in time: the database is down or overloaded,
    /// which callers answer as unavailable rather than as an internal fault.
    pub fn is_pool_timeout(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::PoolTimedOut))
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

/// Milliseconds since the Unix epoch: the unit of every `*_at` column.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
