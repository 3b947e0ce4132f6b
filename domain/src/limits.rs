//! The rate-limit policy: which limit applies per client IP and route, per account
//! (login attempts per username, [`check_account`]) and per OAuth client (token
//! endpoint, [`check_client`]). The counting itself is GCRA in
//! [`Ephemeral`](crate::ephemeral), shared by every replica through Redis; the per-IP
//! middleware that applies [`Limits::for_route`] is the service's.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use latchkey_store::now_ms;

use crate::Core;
use crate::error::{Error, Result};
pub use crate::rate::{Decision, Rate};

/// Every route template the HTTP service serves, as `RATE_LIMITING_ROUTES` names them (and
/// the `route` label of the request metrics). A name outside this list is refused at
/// start, so a misspelt route cannot silently go without its limit; a test requests
/// each one and checks the router reports that very template.
pub const ROUTES: &[&str] = &[
    "/",
    "/health",
    "/ready",
    "/openapi.json",
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
    "/oauth/logout",
    "/oauth/clients",
    "/oauth/clients/{client_id}",
    "/userinfo",
];

/// Probes are never limited: a limited `/ready` would take pods out of service under
/// load, exactly when they are needed. (`/metrics` is on its own listener, unlimited.)
pub const EXEMPT: [&str; 2] = ["/health", "/ready"];

/// The configured limits, resolved once. `None` rates are off.
#[derive(Debug, Default)]
pub struct Limits {
    pub default: Option<Rate>,
    /// Route template -> its rate (`None`: not limited), overriding `default`.
    pub routes: HashMap<String, Option<Rate>>,
    pub account: Option<Rate>,
    /// Password checks per client IP, every password route together.
    pub password: Option<Rate>,
    pub client: Option<Rate>,
    /// The proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
}

impl Limits {
    /// The per-IP rate of `route` (a route template), if it is limited.
    pub fn for_route(&self, route: &str) -> Option<Rate> {
        if EXEMPT.contains(&route) {
            return None;
        }
        self.routes.get(route).copied().unwrap_or(self.default)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// Counts a login attempt against the (normalized) username, known or not.
pub async fn check_account(core: &Core, login: &str) -> Result<()> {
    match core.limits.account {
        Some(rate) => check(core, "account", &format!("acct:{login}"), rate).await,
        None => Ok(()),
    }
}

/// Counts a password check against the client IP, one budget for every route that
/// checks a password (`/auth/login`, the password grant, the sign-in form of
/// `/oauth/authorize`, `/auth/change-password`), so the route with the loosest per-route
/// limit is no way around the login limit. No IP (served without connect info): no count.
pub async fn check_password_ip(core: &Core, ip: Option<IpAddr>) -> Result<()> {
    match (core.limits.password, ip) {
        (Some(rate), Some(ip)) => check(core, "password", &format!("pw:{ip}"), rate).await,
        _ => Ok(()),
    }
}

/// Counts a token request against the authenticated client.
pub async fn check_client(core: &Core, client_id: &str) -> Result<()> {
    match core.limits.client {
        Some(rate) => check(core, "client", &format!("client:{client_id}"), rate).await,
        None => Ok(()),
    }
}

async fn check(core: &Core, scope: &'static str, key: &str, rate: Rate) -> Result<()> {
    let decision = core.ephemeral.rate_limit(key, rate, now_ms()).await?;
    if decision.allowed {
        Ok(())
    } else {
        Err(refuse(scope, decision))
    }
}

/// A refusal of `scope` (`ip`, `account`, `client`): counted, then the error.
pub fn refuse(scope: &'static str, decision: Decision) -> Error {
    metrics::counter!("latchkey_rate_limited_total", "scope" => scope).increment(1);
    Error::RateLimited(decision)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn probes_are_exempt_and_routes_override() {
        let rate = |limit| Rate {
            limit,
            period: Duration::from_secs(60),
        };
        let limits = Limits {
            default: Some(rate(100)),
            routes: [
                ("/auth/login".to_owned(), Some(rate(5))),
                ("/oauth/token".to_owned(), None),
            ]
            .into(),
            ..Limits::default()
        };
        assert_eq!(limits.for_route("/ready"), None);
        assert_eq!(limits.for_route("/auth/login"), Some(rate(5)));
        assert_eq!(limits.for_route("/oauth/token"), None);
        assert_eq!(limits.for_route("/users/me"), Some(rate(100)));
    }
}
