//! Prometheus metrics. Labels are bounded: the controller name is a constant and error
//! kinds come from a `match` ([`Error::kind`]), never from a message.
//!
//! | metric | labels |
//! |---|---|
//! | `latchkey_operator_reconciles_total` | `controller`, `result` (`success`, `error`) |
//! | `latchkey_operator_reconcile_errors_total` | `controller`, `kind` |
//! | `latchkey_operator_reconcile_duration_seconds` | `controller` |
//! | `latchkey_operator_events_total` | `controller`, `reason` |

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::Error;

/// The process-wide recorder, installed on first use.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("latchkey_operator_reconcile_duration_seconds".to_owned()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ],
                )
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            metrics::describe_counter!(
                "latchkey_operator_reconciles_total",
                "Reconciles by controller and result."
            );
            metrics::describe_counter!(
                "latchkey_operator_reconcile_errors_total",
                "Failed reconciles by controller and error kind."
            );
            metrics::describe_histogram!(
                "latchkey_operator_reconcile_duration_seconds",
                metrics::Unit::Seconds,
                "Reconcile duration by controller."
            );
            metrics::describe_counter!(
                "latchkey_operator_events_total",
                "Kubernetes Events published, by controller and reason."
            );
            handle
        })
        .clone()
}

/// Records one reconcile.
pub fn reconciled(controller: &'static str, took: Duration, error: Option<&Error>) {
    let result = if error.is_some() { "error" } else { "success" };
    metrics::counter!("latchkey_operator_reconciles_total", "controller" => controller, "result" => result)
        .increment(1);
    metrics::histogram!("latchkey_operator_reconcile_duration_seconds", "controller" => controller)
        .record(took.as_secs_f64());
    if let Some(e) = error {
        metrics::counter!("latchkey_operator_reconcile_errors_total", "controller" => controller, "kind" => e.kind())
            .increment(1);
    }
}

/// Records a published Event; `reason` is one of the controller's constants.
pub fn event(controller: &'static str, reason: &'static str) {
    metrics::counter!("latchkey_operator_events_total", "controller" => controller, "reason" => reason)
        .increment(1);
}
