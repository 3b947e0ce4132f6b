//! The OAuth 2.0 authorization server: `/oauth/token`, `/oauth/authorize`,
//! `/oauth/introspect`, `/oauth/revoke` (RFC 6749, 7636, 7662, 7009, 9700).
//!
//! # Layout
//! - [`form`]: strict `application/x-www-form-urlencoded` parsing (duplicates refused).
//! - [`client_auth`]: who the calling client is (Basic, post, or none for public clients).
//! - [`token`]: the token endpoint and its four grants.
//! - [`authorize`]: the authorization endpoint: validation, cookies and CSRF, and the
//!   redirect; its pages are in [`crate::pages`].
//! - [`introspect`]: introspection and revocation.
//!
//! Scope rules are the domain's (`latchkey_domain::scopes`); the RFC 6749 §5.2 answer
//! ([`OAuthError`]) is rendered with every other error, in [`crate::error`].

pub mod authorize;
pub mod client_auth;
pub mod form;
pub mod introspect;
pub mod logout;
pub mod token;

use axum::Router;

pub use crate::error::{OAuthError, no_store};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(token::router())
        .merge(authorize::router())
        .merge(introspect::router())
        .merge(logout::router())
}
