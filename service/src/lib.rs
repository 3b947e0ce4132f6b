//! Latchkey's HTTP service and its command line. The domain (login, sessions, accounts,
//! tokens, keys, passwords, clients, limits, mail) is `latchkey_domain`, the SQL
//! `latchkey_store`; this crate turns requests into domain calls and outcomes into
//! answers.
//!
//! # Layout
//! - [`config`]: every setting (flag or environment variable) and its validation.
//! - [`audit`]: `latchkey audit`, the rules that flag weak settings in a configuration
//!   and in a running instance.
//! - [`app`]: state, router and its layers; [`App::build`](app::App::build) connects to
//!   everything and [`App::serve`](app::App::serve) runs until shutdown.
//! - [`middleware`]: per-IP rate limits (and which address counts) and request metrics.
//! - [`extract`]: extractors whose rejections speak our error format (JSON, bearer).
//! - [`error`]: the one mapping from domain errors to API answers.
//! - [`routes`]: one module per area (`auth`, `email`, `users`, `admin`, `wellknown`,
//!   `meta`).
//! - [`oauth`]: the OAuth 2.0 endpoints (token, authorize, introspect, revoke) and their
//!   RFC 6749 §5.2 answers.
//! - [`oidc`]: OpenID Connect discovery, `/userinfo` and the user claims.
//! - [`pages`]: the HTML pages (sign-in, consent, link answers) and their escaping.
//! - [`drain`]: the shutdown drain (`/ready` 503 and `Connection: close` after SIGTERM).
//! - [`telemetry`]: JSON logs and Prometheus metrics.
//!
//! Dependency direction: `main` (CLI) → `app` → `routes`, `oauth`, `oidc` → `pages`,
//! `extract`, `error` → `latchkey_domain` → `latchkey_store`.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod config;
pub mod drain;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod oauth;
pub mod oidc;
pub mod pages;
pub mod routes;
pub mod telemetry;
