//! What Latchkey's two binaries share: the database and its migrations, the signing-key
//! format, and the on-disk key directory.
//!
//! # Layout
//! - [`db`]: one connection pool over PostgreSQL (production) or SQLite (the embedded
//!   default), chosen by the URL, and the migrations for both.
//! - [`clients`]: OAuth 2.0 client records and their secret digests.
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

pub mod clients;
pub mod db;
pub mod keydir;
pub mod keys;
pub mod signing_keys;

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
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Milliseconds since the Unix epoch: the unit of every `*_at` column.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
