//! "Unknown user" must cost what "wrong password" costs: both verify one argon2 hash.
//!
//! Wall-clock assertions would be flaky, so this counts the verifications instead, via
//! `latchkey_password_verifications_total`. It lives in its own test binary (its own
//! process, so its own metrics registry) and runs its cases one after another, so the
//! counter deltas are exactly this test's.

mod common;

use common::{Backend, TestServer};
use serde_json::{Value, json};

async fn mismatches(server: &TestServer) -> u64 {
    let text = server.metrics().await;
    let needle = "latchkey_password_verifications_total{result=\"mismatch\"} ";
    text.lines()
        .find_map(|line| line.strip_prefix(needle))
        .map_or(0, |v| v.trim().parse().expect("counter value"))
}

async fn failed_login(server: &TestServer, username: &str) -> Value {
    let response = server
        .post_json(
            "/auth/login",
            &json!({"username": username, "password": "whatever it is"}),
        )
        .await;
    assert_eq!(response.status(), 401);
    response.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_costs_one_hash_verification_like_a_wrong_password() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let server = TestServer::start(backend).await;
        server.register("oscar").await;

        let before = mismatches(&server).await;
        let unknown_body = failed_login(&server, "nobody-here").await;
        let after_unknown = mismatches(&server).await;
        let wrong_body = failed_login(&server, "oscar").await;
        let after_wrong = mismatches(&server).await;

        assert_eq!(unknown_body, wrong_body, "{backend:?}");
        assert_eq!(
            after_unknown - before,
            1,
            "{backend:?}: the unknown user was verified against the dummy hash"
        );
        assert_eq!(
            after_wrong - after_unknown,
            1,
            "{backend:?}: the wrong password was verified once, under the same label"
        );
        let text = server.metrics().await;
        assert!(
            !text.contains("unknown_user"),
            "{backend:?}: no metric label tells an unknown account from a wrong password"
        );
    }
}
