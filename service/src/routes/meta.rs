//! `/`, `/health` and `/ready` on the API listener; `/metrics` on its own listener
//! ([`metrics_router`]).

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/ready", get(ready))
}

/// The metrics listener's router: `/metrics` only, no limits (scrapes are never
/// limited), and the API's security headers do not matter to a scraper.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { crate::error::Error(latchkey_domain::Error::NotFound) })
        .with_state(state)
}

async fn root(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "name": "latchkey",
        "version": env!("CARGO_PKG_VERSION"),
        "issuer": state.settings.issuer,
    }))
}

/// Liveness: the process answers. Checks no dependency, so a database outage does not
/// make Kubernetes restart every pod.
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers, Redis answers when configured, and a signing key is
/// loaded. Each check is bounded so a hung dependency answers 503, not a timeout.
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
    let database = matches!(
        tokio::time::timeout(CHECK_TIMEOUT, state.db.ping()).await,
        Ok(Ok(()))
    );
    let redis = if state.web.redis_configured {
        Some(matches!(
            tokio::time::timeout(CHECK_TIMEOUT, state.ephemeral.ping()).await,
            Ok(Ok(()))
        ))
    } else {
        None
    };
    let signing_key = state.keys.current().signing.is_some();
    let ok = database && redis.unwrap_or(true) && signing_key;
    let word = |up: bool| if up { "ok" } else { "unavailable" };
    let mut checks = json!({
        "database": word(database),
        "signing_key": if signing_key { "ok" } else { "missing" },
    });
    if let Some(redis) = redis {
        checks["redis"] = json!(word(redis));
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "status": if ok { "ready" } else { "not_ready" }, "checks": checks })),
    )
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
