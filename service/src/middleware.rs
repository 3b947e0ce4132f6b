//! Middleware of the whole router: per-IP rate limits ([`by_ip`]) and request metrics
//! ([`record_metrics`]).
//!
//! The client IP is the socket peer, unless the peer is a trusted proxy
//! (`LATCHKEY_TRUSTED_PROXIES`): then it is the right-most `X-Forwarded-For` address that
//! is not itself a trusted proxy. Addresses further left were written by the client and
//! prove nothing.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use latchkey_domain::limits::{self, Limits};
use latchkey_store::now_ms;

use crate::error::{Error, write_rate_headers};
use crate::extract::ClientAddr;
use crate::state::AppState;

/// Which address a request counts against: the HTTP half of the domain's [`Limits`].
pub trait ClientIp {
    /// The address a request from `peer` with `headers` counts against (see the module
    /// docs).
    fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr;
}

impl ClientIp for Limits {
    fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
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

/// Counts the request against its client IP and route; refuses with 429 beyond the
/// limit and adds the `RateLimit-*` headers to every limited route's answer.
/// The client IP is also left in the request's extensions ([`ClientAddr`]) for the
/// limits counted further in (password checks).
pub async fn by_ip(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    // Without a peer address (the router served without connect info) there is no
    // client to count against.
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return next.run(request).await;
    };
    let ip = state.limits.client_ip(peer.ip(), request.headers());
    request.extensions_mut().insert(ClientAddr(Some(ip)));
    let Some(route) = request.extensions().get::<MatchedPath>().cloned() else {
        return next.run(request).await;
    };
    let Some(rate) = state.limits.for_route(route.as_str()) else {
        return next.run(request).await;
    };
    let key = format!("ip:{}:{ip}", route.as_str());
    match state.ephemeral.rate_limit(&key, rate, now_ms()).await {
        Ok(decision) if decision.allowed => {
            let mut response = next.run(request).await;
            write_rate_headers(&decision, response.headers_mut());
            response
        }
        Ok(decision) => Error::from(limits::refuse("ip", decision)).into_response(),
        Err(err) => Error::from(err).into_response(),
    }
}

/// Request count and latency by route template, method and status: all bounded label
/// sets (unmatched paths share one label).
pub async fn record_metrics(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("route", route),
        ("method", method.to_owned()),
        ("status", status),
    ];
    metrics::counter!("latchkey_http_requests_total", &labels).increment(1);
    metrics::histogram!("latchkey_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
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
}
