//! Shutdown that loses no request behind a Service: after SIGTERM the service keeps
//! serving for a drain period in which `/ready` answers 503 and every response closes
//! its keep-alive connection (`Connection: close`). Callers then reconnect — to another
//! pod, once the endpoint is gone — after a complete response, instead of racing the
//! close of an idle connection as they do when a server simply stops. After the drain,
//! axum's graceful shutdown finishes the requests still in flight.
//!
//! In Kubernetes the chart's `preStop` sleep comes first (the endpoint leaves every
//! node's proxy rules while the pod still serves normally), then SIGTERM starts this
//! drain for the connections that were already open.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Whether the service is draining; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Drain(Arc<AtomicBool>);

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Resolves `period` after `signal`: the future to hand axum's graceful shutdown.
    pub fn after(
        &self,
        signal: impl Future<Output = ()> + Send + 'static,
        period: Duration,
    ) -> impl Future<Output = ()> + Send + 'static {
        let flag = self.0.clone();
        async move {
            signal.await;
            if period.is_zero() {
                return;
            }
            flag.store(true, Ordering::Relaxed);
            tracing::info!(seconds = period.as_secs_f64(), "draining connections");
            tokio::time::sleep(period).await;
        }
    }
}

/// Middleware: while draining, `/ready` is 503 and every response closes its connection.
pub async fn close_connections(
    State(drain): State<Drain>,
    request: Request,
    next: Next,
) -> Response {
    if !drain.is_draining() {
        return next.run(request).await;
    }
    let mut response = if request.uri().path() == "/ready" {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "draining" })),
        )
            .into_response()
    } else {
        next.run(request).await
    };
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
