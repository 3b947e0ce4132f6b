//! Latchkey's domain: what the service does, with no HTTP in it. This crate does not
//! depend on axum or any HTTP type, so the compiler keeps it that way; the service
//! (`latchkey`) turns requests into calls here and outcomes into responses.
//!
//! # Layout
//! - [`Core`]: the handles every operation needs (database, keys, tokens, hasher,
//!   password policy, short-lived state, limits, mailer) and [`CoreSettings`].
//! - [`login`]: the one credential check (lockout included) of every login path.
//! - [`sessions`]: refresh-token families: start, rotate with reuse detection, revoke.
//! - [`accounts`]: what a valid username and address are; activation and reset mails.
//! - [`email_tokens`]: single-use emailed tokens (their digests are in the store).
//! - [`assertions`]: `private_key_jwt` client authentication (a client's own keys, or a
//!   Kubernetes ServiceAccount token); [`assertion_keys`]: the verifying keys.
//! - [`clients`]: creating, changing and validating OAuth clients (CLI and admin API).
//! - [`scopes`]: scope syntax and what a client may ask for.
//! - [`tokens`]: RS256 access tokens (RFC 9068) and opaque-token digests.
//! - [`keyring`]: which keys sign and verify, reloaded from the key directory and the
//!   `signing_keys` table.
//! - [`passwords`]: the password policy and argon2id, off the async runtime.
//! - [`prune`]: the background task that keeps the token tables bounded.
//! - [`ephemeral`]: revocation list, rate-limit and lockout counters (Redis or in-process).
//! - [`limits`]: the rate-limit policy: which limit applies, and the per-account and
//!   per-client checks.
//! - [`rate`]: a rate and the decision of one check (no dependency in the crate).
//! - [`mail`]: the messages and their delivery (SMTP, or the outbox folder).
//! - [`error`]: the one domain error, OAuth outcomes included.
//!
//! Dependency direction: `latchkey` (HTTP, CLI) → this crate → `latchkey_store` (SQL).
#![forbid(unsafe_code)]

pub mod accounts;
pub mod assertion_keys;
pub mod assertions;
pub mod clients;
pub mod email_tokens;
pub mod ephemeral;
pub mod error;
pub mod keyring;
pub mod limits;
pub mod login;
pub mod mail;
pub mod passwords;
pub mod prune;
pub mod rate;
pub mod scopes;
pub mod sessions;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use latchkey_store::Db;

pub use error::{Error, OAuthCode, OAuthError, Result};

/// Everything a domain operation needs. Cheap to clone: every field is a handle.
#[derive(Clone, Debug)]
pub struct Core {
    pub db: Db,
    pub keys: keyring::KeyRing,
    pub tokens: tokens::Tokens,
    pub hasher: passwords::Hasher,
    pub policy: passwords::Policy,
    pub ephemeral: ephemeral::Ephemeral,
    pub limits: Arc<limits::Limits>,
    pub mailer: mail::Mailer,
    pub settings: Arc<CoreSettings>,
}

/// The settings domain operations read, resolved once from the validated configuration.
#[derive(Debug)]
pub struct CoreSettings {
    /// The `iss` of every token and the base of every emailed link.
    pub issuer: String,
    /// Refresh-token lifetime (a client's own overrides it).
    pub refresh_ttl: Duration,
    pub lockout: ephemeral::LockoutPolicy,
    /// New accounts cannot log in before following the emailed link.
    pub require_email_verification: bool,
    pub email_verification_ttl: Duration,
    pub password_reset_ttl: Duration,
}

/// Logs the cause of an internal failure (never shown to a client); other errors are
/// outcomes, not faults, and are not logged. The one place such causes are written.
pub fn log_failure(err: &Error) {
    if let Error::Internal(cause) = err {
        // `{:#}` keeps the chain.
        tracing::error!(error = format!("{cause:#}"), "request failed");
    }
}
