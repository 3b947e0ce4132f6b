//! The operator's small HTTP listener: `/healthz` (the process answers), `/readyz` (the
//! database answers) and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::context::Context;

#[derive(Clone)]
struct HttpState {
    ctx: Arc<Context>,
    metrics: PrometheusHandle,
}

pub fn router(ctx: Arc<Context>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(HttpState { ctx, metrics })
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    match state.ctx.db.ping().await {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "database: unavailable")
        }
    }
}

async fn render_metrics(State(state): State<HttpState>) -> String {
    state.metrics.run_upkeep();
    state.metrics.render()
}
