//! `/`, `/health`, `/ready` and `/openapi.json` on the API listener; `/metrics` on its
//! own listener ([`metrics_router`]).

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/openapi.json", get(openapi_json))
}

/// The metrics listener's router: `/metrics` only, no limits (scrapes are never
/// limited), and the API's security headers do not matter to a scraper.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { crate::error::Error(latchkey_domain::Error::NotFound) })
        .with_state(state)
}

/// What `/` answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceInfo {
    /// `latchkey`.
    name: &'static str,
    version: &'static str,
    issuer: String,
}

/// What `/health` answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// `ok`.
    status: &'static str,
}

/// What `/ready` answers, ready or not.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    status: ReadyStatus,
    checks: Checks,
}

/// A 503 of `/ready`: a failed check, or the shutdown drain ([`crate::drain`]).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum NotReady {
    Checked(Readiness),
    Draining(Draining),
}

/// `/ready` during the shutdown drain.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Draining {
    /// `draining`.
    status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    NotReady,
}

/// Each dependency's state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    database: CheckState,
    /// A key to sign with is loaded (`missing` otherwise).
    signing_key: CheckState,
    /// Only when REDIS_URL is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    redis: Option<CheckState>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    Ok,
    Unavailable,
    Missing,
}

/// Name, version and issuer of this service.
#[utoipa::path(get, path = "/", tag = "meta",
    responses((status = 200, description = "The service.", body = ServiceInfo)))]
async fn root(State(state): State<AppState>) -> Json<ServiceInfo> {
    Json(ServiceInfo {
        name: "latchkey",
        version: env!("CARGO_PKG_VERSION"),
        issuer: state.settings.issuer.clone(),
    })
}

/// Liveness: the process answers.
///
/// Checks no dependency, so a database outage does not make Kubernetes restart every
/// pod. Never rate limited.
#[utoipa::path(get, path = "/health", tag = "meta",
    responses((status = 200, description = "The process answers.", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers, Redis answers when configured, and a signing key is
/// loaded.
///
/// Each check is bounded so a hung dependency answers 503, not a timeout. During the
/// shutdown drain it answers 503. Never rate limited.
#[utoipa::path(get, path = "/ready", tag = "meta",
    responses(
        (status = 200, description = "Ready.", body = Readiness,
            headers(("cache-control" = String, description = "`no-store`"))),
        (status = 503, description = "Not ready: the failing check is named (or the shutdown drain has begun).", body = NotReady),
    ))]
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
    // Both checks at once: with both dependencies down the probe answers in one
    // timeout, not two.
    let (database, redis) = tokio::join!(
        async {
            matches!(
                tokio::time::timeout(CHECK_TIMEOUT, state.db.ping()).await,
                Ok(Ok(()))
            )
        },
        async {
            if state.web.redis_configured {
                Some(matches!(
                    tokio::time::timeout(CHECK_TIMEOUT, state.ephemeral.ping()).await,
                    Ok(Ok(()))
                ))
            } else {
                None
            }
        }
    );
    let signing_key = state.keys.current().signing.is_some();
    let ok = database && redis.unwrap_or(true) && signing_key;
    let word = |up: bool| {
        if up {
            CheckState::Ok
        } else {
            CheckState::Unavailable
        }
    };
    let checks = Checks {
        database: word(database),
        signing_key: if signing_key {
            CheckState::Ok
        } else {
            CheckState::Missing
        },
        redis: redis.map(word),
    };
    let (status, word) = if ok {
        (StatusCode::OK, ReadyStatus::Ready)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, ReadyStatus::NotReady)
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(Readiness {
            status: word,
            checks,
        }),
    )
}

/// This document: the OpenAPI 3.1 description of the whole HTTP API.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document.",
        content_type = "application/json", body = Object)))]
async fn openapi_json(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.web.openapi_json.clone(),
    )
        .into_response()
}

/// Prometheus metrics, on the metrics listener (`LATCHKEY_METRICS_LISTEN`) only.
///
/// The API listener answers 404 here: metrics follow what users do, so only the scraper
/// may read them. Never rate limited.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4.",
        content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
