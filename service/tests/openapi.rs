//! `GET /openapi.json` against the running router: every documented operation is one
//! the router matches (by template and method), and the document is the one the crate
//! builds. The reverse direction (every route of the source is documented) is the unit
//! test in `src/openapi.rs`; conformance of the answers is `tests/schemathesis.rs`.

mod common;

use common::{Backend, TestServer};
use serde_json::Value;

#[tokio::test]
async fn every_documented_operation_is_served_by_the_router() {
    let server = TestServer::start(Backend::Sqlite).await;
    let response = server.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("content type")
            .starts_with("application/json")
    );
    let doc: Value = response.json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc,
        serde_json::to_value(latchkey::openapi::document()).expect("json")
    );

    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                operations.push((path.clone(), method.to_uppercase()));
            }
        }
    }
    assert!(operations.len() >= 34, "{operations:?}");
    for (path, method) in &operations {
        let concrete = path.replace("{client_id}", "no-such-client");
        let base = if path == "/metrics" {
            server.metrics_base()
        } else {
            server.base.clone()
        };
        let status = server
            .http
            .request(method.parse().expect("method"), format!("{base}{concrete}"))
            .send()
            .await
            .expect("request")
            .status();
        assert_ne!(status, 405, "{method} {path}");
        assert!(status.as_u16() < 500, "{method} {path}: {status}");
        if path == "/metrics" {
            assert_eq!(status, 200);
        }
    }
    // The metrics name each request's route template and method: the router matched
    // every documented operation (an unmatched path is counted as `unmatched`).
    let metrics = server.metrics().await;
    for (path, method) in operations.iter().filter(|(p, _)| p != "/metrics") {
        assert!(
            metrics.contains(&format!(r#"route="{path}",method="{method}""#)),
            "{method} {path} was not matched by the router"
        );
    }
    // `/metrics` is documented on the metrics listener only.
    assert_eq!(server.get("/metrics").await.status(), 404);
    let servers = &doc["paths"]["/metrics"]["servers"][0];
    assert_eq!(servers["url"], "http://{metrics_listen}");
}
