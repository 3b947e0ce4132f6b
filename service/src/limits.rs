//! Rate limits: per client IP and route (the [`by_ip`] middleware), per account (login
//! attempts per username, [`check_account`]) and per OAuth client (token endpoint,
//! [`check_client`]). The counting itself is GCRA in [`Ephemeral`](crate::ephemeral),
//! shared by every replica through Redis.
//!
//! The client IP is the socket peer, unless the peer is a trusted proxy
//! (`LATCHKEY_TRUSTED_PROXIES`): then it is the right-most `X-Forwarded-For` address that
//! is not itself a trusted proxy. Addresses further left were written by the client and
//! prove nothing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use latchkey_store::now_ms;

use crate::app::AppState;
use crate::config::{Config, Rate};
use crate::error::{Error, Result};

/// Probes and scrapes are never limited: a limited `/ready` would take pods out of
/// service under load, exactly when they are needed.
const EXEMPT: [&str; 3] = ["/health", "/ready", "/metrics"];

/// The configured limits, resolved once.
#[derive(Debug, Default)]
pub struct Limits {
    default: Option<Rate>,
    /// Route template -> its rate (`None`: not limited), overriding `default`.
    routes: HashMap<String, Option<Rate>>,
    account: Option<Rate>,
    client: Option<Rate>,
    trusted_proxies: Vec<IpNet>,
}

impl Limits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            default: config.rate_limit_default.0,
            routes: config.rate_limit_routes.0.iter().cloned().collect(),
            account: config.rate_limit_account.0,
            client: config.rate_limit_client.0,
            trusted_proxies: config.trusted_proxies.0.clone(),
        }
    }

    /// The per-IP rate of `route` (a route template), if it is limited.
    pub fn for_route(&self, route: &str) -> Option<Rate> {
        if EXEMPT.contains(&route) {
            return None;
        }
        self.routes.get(route).copied().unwrap_or(self.default)
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The address a request counts against (see the module docs).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusted(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // Garbage written by the hop before the last trusted one: stop there.
                break;
            };
            client = ip.to_canonical();
            if !self.trusted(client) {
                break;
            }
        }
        client
    }
}

/// Middleware: counts the request against its client IP and route; refuses with 429
/// beyond the limit and adds the `RateLimit-*` headers to every limited route's answer.
pub async fn by_ip(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(route) = request.extensions().get::<MatchedPath>().cloned() else {
        return next.run(request).await;
    };
    let Some(rate) = state.limits.for_route(route.as_str()) else {
        return next.run(request).await;
    };
    // Without a peer address (the router served without connect info) there is no
    // client to count against.
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return next.run(request).await;
    };
    let ip = state.limits.client_ip(peer.ip(), request.headers());
    let key = format!("ip:{}:{ip}", route.as_str());
    match state.ephemeral.rate_limit(&key, rate, now_ms()).await {
        Ok(decision) if decision.allowed => {
            let mut response = next.run(request).await;
            decision.write_headers(response.headers_mut());
            response
        }
        Ok(decision) => refuse("ip", decision).into_response(),
        Err(err) => err.into_response(),
    }
}

/// Counts a login attempt against the (normalized) username, known or not.
pub async fn check_account(state: &AppState, login: &str) -> Result<()> {
    match state.limits.account {
        Some(rate) => check(state, "account", &format!("acct:{login}"), rate).await,
        None => Ok(()),
    }
}

/// Counts a token request against the authenticated client.
pub async fn check_client(state: &AppState, client_id: &str) -> Result<()> {
    match state.limits.client {
        Some(rate) => check(state, "client", &format!("client:{client_id}"), rate).await,
        None => Ok(()),
    }
}

async fn check(state: &AppState, scope: &'static str, key: &str, rate: Rate) -> Result<()> {
    let decision = state.ephemeral.rate_limit(key, rate, now_ms()).await?;
    if decision.allowed {
        Ok(())
    } else {
        Err(refuse(scope, decision))
    }
}

fn refuse(scope: &'static str, decision: crate::ephemeral::Decision) -> Error {
    metrics::counter!("latchkey_rate_limited_total", "scope" => scope).increment(1);
    Error::RateLimited(decision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_proxy;

    fn limits(proxies: &[&str]) -> Limits {
        Limits {
            trusted_proxies: proxies
                .iter()
                .filter_map(|p| parse_proxy(p).expect("proxy"))
                .collect(),
            ..Limits::default()
        }
    }

    fn xff(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().expect("header"));
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let none = limits(&[]);
        assert_eq!(
            none.client_ip(ip("10.0.0.1"), &xff("1.2.3.4")),
            ip("10.0.0.1")
        );
        let trusted = limits(&["10.0.0.0/8"]);
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), &xff("6.6.6.6, 1.2.3.4, 10.0.0.2")),
            ip("1.2.3.4")
        );
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        assert_eq!(
            trusted.client_ip(ip("192.0.2.1"), &xff("1.2.3.4")),
            ip("192.0.2.1")
        );
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), &xff("1.2.3.4, garbage")),
            ip("10.0.0.1")
        );
        assert_eq!(
            trusted.client_ip(ip("::ffff:10.0.0.1"), &xff("1.2.3.4")),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn probes_are_exempt_and_routes_override() {
        let rate = |limit| Rate {
            limit,
            period: std::time::Duration::from_secs(60),
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
