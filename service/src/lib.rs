//! Latchkey's HTTP service.
//!
//! # Layout
//! - [`audit`]: `latchkey audit`, the rules that flag weak settings in a configuration
//!   and in a running instance.
//! - [`config`]: every setting (flag or environment variable) and its validation.
//! - [`app`]: state, router, middleware; [`App::build`](app::App::build) connects to
//!   everything and [`App::serve`](app::App::serve) runs until shutdown.
//! - [`routes`]: one module per area (`auth`, `email`, `users`, `wellknown`, `meta`).
//! - [`oauth`]: the OAuth 2.0 authorization server (token, authorize, introspect, revoke).
//! - [`client_admin`]: creating and validating OAuth clients (CLI and admin API).
//! - [`accounts`]: users and refresh-token families in the database.
//! - [`email_tokens`]: single-use emailed tokens (activation, password reset).
//! - [`mail`]: the messages and their delivery (SMTP, or the outbox folder).
//! - [`passwords`]: the password policy and argon2id, off the async runtime.
//! - [`keyring`]: which keys sign and verify, reloaded from the key directory and the
//!   `signing_keys` table.
//! - [`tokens`]: RS256 access tokens (RFC 9068) and opaque-token digests.
//! - [`ephemeral`]: revocation list, rate-limit and lockout counters (Redis or in-process).
//! - [`limits`]: which rate limits apply to a request, and the client IP it counts against.
//! - [`error`]: the one error type and its JSON mapping.
//! - [`telemetry`]: JSON logs and Prometheus metrics.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod app;
pub mod audit;
pub mod client_admin;
pub mod config;
pub mod drain;
pub mod email_tokens;
pub mod ephemeral;
pub mod error;
pub mod extract;
pub mod keyring;
pub mod limits;
pub mod mail;
pub mod oauth;
pub mod oidc;
pub mod passwords;
pub mod routes;
pub mod telemetry;
pub mod tokens;
