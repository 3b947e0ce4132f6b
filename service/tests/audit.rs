//! `latchkey audit`, run as a real process: the embedded default, a production-like
//! configuration, JSON output, exit codes, and `--url` against a running server.

mod common;

use std::process::Output;

use common::{Backend, TestServer};
use serde_json::Value;

both_backends!(url_probe_reports_a_running_instance);

/// Runs `latchkey audit` with `args` and a fresh data directory, outside any
/// `DATABASE_URL` / `REDIS_URL` the test environment may have.
async fn audit(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data").display().to_string();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("audit")
        .args(["--data-dir", &data])
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .output()
        .await
        .expect("run latchkey audit")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The severity of finding `id` in a JSON report, if present.
fn severity<'a>(report: &'a Value, id: &str) -> Option<&'a str> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["id"] == id)
        .and_then(|f| f["severity"].as_str())
}

fn ids(report: &Value) -> Vec<&str> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect()
}

#[tokio::test]
async fn embedded_default_is_flagged_as_development_mode() {
    let output = audit(&[]).await;
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.starts_with("SEVERITY"), "{table}");
    let dev = table
        .lines()
        .find(|l| l.contains("dev-mode"))
        .expect("dev-mode row");
    assert!(dev.starts_with("HIGH"), "{table}");
    assert!(table.contains("DATABASE_URL"), "{table}");
    assert!(table.contains("no-redis"), "{table}");

    assert_eq!(audit(&["--fail-on", "never"]).await.status.code(), Some(0));
    assert_eq!(audit(&["--fail-on", "medium"]).await.status.code(), Some(2));

    let output = audit(&["--output", "json", "--fail-on", "never"]).await;
    assert_eq!(output.status.code(), Some(0));
    let report = json(&output);
    assert_eq!(severity(&report, "dev-mode"), Some("high"));
    assert_eq!(severity(&report, "no-redis"), Some("medium"));
    assert!(report["summary"]["high"].as_u64().expect("count") >= 1);
    let first = &report["findings"][0];
    for field in ["severity", "id", "message", "remediation"] {
        assert!(first[field].is_string(), "{field}: {first}");
    }
}

#[tokio::test]
async fn production_like_configuration_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    let key = latchkey_store::keys::KeyPair::generate(3072).expect("key");
    let files = [latchkey_store::keydir::KeyFile {
        name: format!("{}.pem", key.kid()),
        contents: key.to_pem().expect("pem").into_bytes(),
    }];
    latchkey_store::keydir::write_atomic(&keys, &files, "stamp").expect("write keys");
    let keys = keys.display().to_string();
    let production = [
        "--database-url",
        "postgres://latchkey:pw@db.internal:5432/latchkey?sslmode=verify-full",
        "--redis-url",
        "rediss://:pw@redis.internal:6379/0",
        "--issuer",
        "https://auth.example.com",
        "--manage-keys",
        "false",
        "--keys-dir",
        &keys,
    ];
    let output = audit(&production).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut json_args = production.to_vec();
    json_args.extend(["--output", "json", "--fail-on", "low"]);
    let output = audit(&json_args).await;
    let report = json(&output);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["summary"]["high"], 0);
    assert_eq!(report["summary"]["medium"], 0);
    assert_eq!(ids(&report), ["redis-failure-open"], "{report:#}");

    // One weak setting more: a 13-hour access token is high and fails the command.
    let mut weak = production.to_vec();
    weak.extend(["--access-token-ttl", "13h", "--output", "json"]);
    let output = audit(&weak).await;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(severity(&json(&output), "access-token-ttl"), Some("high"));
}

#[tokio::test]
async fn an_invalid_configuration_is_an_error() {
    let output = audit(&["--jwt-algorithm", "HS256"]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("JWT_ALGORITHM"), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_url_is_a_high_finding() {
    // Port 1 on loopback: nothing listens there.
    let output = audit(&["--url", "http://127.0.0.1:1", "--output", "json"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(severity(&json(&output), "live-unreachable"), Some("high"));
}

async fn url_probe_reports_a_running_instance(backend: Backend) {
    // Issuer = its own loopback address: http is fine there; HSTS is not expected.
    let server = TestServer::start_with_issuer(backend).await;
    let output = audit(&[
        "--issuer",
        &server.base,
        "--url",
        &server.base,
        "--output",
        "json",
        "--fail-on",
        "never",
    ])
    .await;
    assert_eq!(output.status.code(), Some(0));
    let report = json(&output);
    assert_eq!(
        severity(&report, "live-hsts-missing"),
        Some("info"),
        "{report:#}"
    );
    // The server generated a 2048-bit key and publishes it.
    assert_eq!(
        severity(&report, "live-key-size-2048"),
        Some("info"),
        "{report:#}"
    );
    for absent in [
        "live-unreachable",
        "live-url-http",
        "live-issuer-http",
        "live-issuer-mismatch",
        "live-issuer-differs-from-url",
        "live-header-missing",
        "live-cors-wildcard",
        "live-jwks-empty",
        "issuer-http",
    ] {
        assert_eq!(severity(&report, absent), None, "{absent}: {report:#}");
    }

    // Audited with settings that are not the instance's: the issuers differ.
    let output = audit(&["--url", &server.base, "--output", "json"]).await;
    assert_eq!(
        severity(&json(&output), "live-issuer-mismatch"),
        Some("medium")
    );

    // A server with a public http issuer and wildcard CORS.
    let open = TestServer::start_with(backend, &["--cors-origins", "*"]).await;
    let output = audit(&[
        "--issuer",
        common::ISSUER,
        "--cors-origins",
        "*",
        "--url",
        &open.base,
        "--output",
        "json",
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    let report = json(&output);
    assert_eq!(severity(&report, "issuer-http"), Some("high"), "{report:#}");
    assert_eq!(
        severity(&report, "cors-wildcard"),
        Some("medium"),
        "{report:#}"
    );
    assert_eq!(
        severity(&report, "live-issuer-http"),
        Some("high"),
        "{report:#}"
    );
    assert_eq!(
        severity(&report, "live-cors-wildcard"),
        Some("medium"),
        "{report:#}"
    );
    assert_eq!(
        severity(&report, "live-issuer-differs-from-url"),
        Some("info"),
        "{report:#}"
    );
}
