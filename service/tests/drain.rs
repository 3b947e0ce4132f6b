//! Shutdown drain (LATCHKEY_SHUTDOWN_DRAIN): after the signal the service keeps serving
//! with `/ready` 503 and `Connection: close` on every response, then stops.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestServer};
use serde_json::Value;

fn closes(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("connection")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
}

#[tokio::test]
async fn after_the_signal_the_service_drains_then_stops() {
    let mut server = TestServer::start_with(Backend::Sqlite, &["--shutdown-drain", "2s"]).await;
    let before = server.get("/ready").await;
    assert_eq!(before.status(), 200);
    assert!(!closes(&before), "keep-alive before the signal");

    let task = server.signal_shutdown();
    let signalled = Instant::now();
    // A new connection per request: each draining response closes its own.
    let ready = loop {
        let response = reqwest::Client::new()
            .get(server.url("/ready"))
            .send()
            .await
            .expect("/ready while draining");
        if response.status() == 503 {
            break response;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "/ready never turned 503"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(closes(&ready), "a draining response closes its connection");
    let body: Value = ready.json().await.expect("JSON");
    assert_eq!(body["status"], "draining");

    let health = reqwest::Client::new()
        .get(server.url("/health"))
        .send()
        .await
        .expect("/health while draining");
    assert_eq!(health.status(), 200, "other routes still answer");
    assert!(closes(&health));

    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the server stops after the drain")
        .expect("serving task");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "stopped before the drain period: {:?}",
        signalled.elapsed()
    );
}
