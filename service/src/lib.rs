//! Latchkey's HTTP service and its command line. The domain (login, sessions, accounts,
//! tokens, keys, passwords, clients, limits, mail) is `latchkey_domain`, the SQL
//! `latchkey_store`; this crate turns requests into domain calls and outcomes into
//! answers.
//!
//! # Layout
//! - [`config`]: every setting (flag or environment variable), and
//!   [`Settings`](config::Settings), the validated configuration everything else takes.
//! - [`audit`]: `latchkey audit`: the configuration rules, the probes and rules of a
//!   running instance, and the report, one module each.
//! - [`app`]: the router and its layers; [`App::build`](app::App::build) connects to
//!   everything and [`App::serve`](app::App::serve) runs until shutdown.
//! - [`state`]: [`AppState`](state::AppState), what every handler reads.
//! - [`middleware`]: per-IP rate limits (and which address counts) and request metrics.
//! - [`extract`]: extractors whose rejections speak our error format (JSON, bearer).
//! - [`error`]: the one mapping from errors to answers: the API's, and the OAuth
//!   endpoints' RFC 6749 §5.2 answers.
//! - [`routes`]: one module per area (`auth`, `email`, `users`, `admin`, `wellknown`,
//!   `meta`).
//! - [`oauth`]: the OAuth 2.0 endpoints (token, authorize, introspect, revoke).
//! - [`oidc`]: OpenID Connect discovery and `/userinfo` (the claims a scope releases are
//!   the domain's).
//! - [`schemas`]: the hand-built body shapes the OpenAPI document describes.
//! - [`openapi`]: the OpenAPI 3.1 document (`GET /openapi.json`) and the check that
//!   every route is in it.
//! - [`pages`]: the HTML pages (sign-in, consent, link answers) and their escaping.
//! - [`drain`]: the shutdown drain (`/ready` 503 and `Connection: close` after SIGTERM).
//! - [`telemetry`]: JSON logs and Prometheus metrics.
//!
//! Dependency direction: `main` (CLI) → `app` → `routes` → `oauth`, `oidc` → `pages`,
//! `extract`, `middleware` → `error`, `state` → `latchkey_domain` → `latchkey_store`;
//! `audit` and `telemetry` use only `config`. No module cycle
//! (`tests/scripts/modgraph.py service`).
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
pub mod openapi;
pub mod pages;
pub mod routes;
pub mod schemas;
pub mod state;
pub mod telemetry;
