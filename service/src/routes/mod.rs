//! HTTP handlers, one module (and one `router()`) per area.

pub mod admin;
pub mod auth;
pub mod email;
pub mod meta;
pub mod users;
pub mod wellknown;

/// Every route template the service serves, as `RATE_LIMITING_ROUTES` names them (and
/// the `route` label of the request metrics). A name outside this list is refused at
/// start, so a misspelt route cannot silently go without its limit; a test requests
/// each one and checks the router reports that very template.
pub const TEMPLATES: &[&str] = &[
    "/",
    "/health",
    "/ready",
    "/metrics",
    "/.well-known/jwks.json",
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
    "/auth/register",
    "/auth/login",
    "/auth/refresh",
    "/auth/logout",
    "/auth/verify-email",
    "/auth/resend-verification",
    "/auth/password-reset",
    "/auth/password-reset/confirm",
    "/auth/change-password",
    "/users/me",
    "/oauth/authorize",
    "/oauth/token",
    "/oauth/introspect",
    "/oauth/revoke",
    "/oauth/clients",
    "/oauth/clients/{client_id}",
    "/userinfo",
];
