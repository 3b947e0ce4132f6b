//! "Unknown user" must cost what "wrong password" costs: both verify one argon2 hash.
//!
//! Wall-clock assertions would be flaky, so this counts the verifications instead, via
//! `latchkey_password_verifications_total`. It lives in its own test binary (its own
//! process, so its own metrics registry) and runs its cases one after another, so the
//! counter deltas are exactly this test's.

mod common;

use common::{Backend, TestServer};
use serde_json::{Value, json};

async fn counter(server: &TestServer, result: &str) -> u64 {
    let text = server.get("/metrics").await.text().await.expect("metrics");
    let needle = format!("latchkey_password_verifications_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&needle))
        .map_or(0, |v| v.trim().parse().expect("counter value"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_costs_one_hash_verification_like_a_wrong_password() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let server = TestServer::start(backend).await;
        server.register("oscar").await;

        let before = (
            counter(&server, "unknown_user").await,
            counter(&server, "mismatch").await,
        );
        let response = server
            .post_json(
                "/auth/login",
                &json!({"username": "nobody-here", "password": "whatever it is"}),
            )
            .await;
        assert_eq!(response.status(), 401);
        let unknown_body: Value = response.json().await.expect("json");
        let response = server
            .post_json(
                "/auth/login",
                &json!({"username": "oscar", "password": "whatever it is"}),
            )
            .await;
        assert_eq!(response.status(), 401);
        let wrong_body: Value = response.json().await.expect("json");
        let after = (
            counter(&server, "unknown_user").await,
            counter(&server, "mismatch").await,
        );

        assert_eq!(unknown_body, wrong_body, "{backend:?}");
        assert_eq!(
            after.0 - before.0,
            1,
            "{backend:?}: the unknown user was verified against the dummy hash"
        );
        assert_eq!(
            after.1 - before.1,
            1,
            "{backend:?}: the wrong password was verified once"
        );
    }
}
