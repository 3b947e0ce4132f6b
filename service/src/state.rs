//! What every handler reads: [`AppState`], the domain's [`Core`] plus what only HTTP
//! needs. Built by [`app`](crate::app); used by the routes, the OAuth endpoints, OIDC,
//! the extractors and the middleware, none of which needs the app itself.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use latchkey_domain::Core;
use metrics_exporter_prometheus::PrometheusHandle;

/// Everything a handler needs: the domain's [`Core`] (reached through `Deref`, so a
/// handler writes `state.db`, `state.tokens`) and what only HTTP reads. Cheap to clone:
/// every field is a handle.
#[derive(Clone, Debug)]
pub struct AppState {
    pub core: Core,
    pub web: Arc<WebSettings>,
    pub metrics: PrometheusHandle,
}

impl Deref for AppState {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

/// The configuration values only the HTTP layer reads, resolved once.
#[derive(Debug)]
pub struct WebSettings {
    pub code_ttl: Duration,
    pub session_ttl: Duration,
    /// Whether the issuer is https:// (cookies get `Secure` and the `__Host-` prefix).
    pub secure_cookies: bool,
    pub jwks_max_age: Duration,
    pub redis_configured: bool,
    /// `GET /openapi.json`, serialised once (built by [`crate::openapi`], which names
    /// the handlers and so cannot be named by them).
    pub openapi_json: axum::body::Bytes,
}
