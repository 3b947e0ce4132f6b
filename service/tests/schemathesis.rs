//! Schemathesis (a property-based API tester no one here wrote) against the running
//! service, driven by `GET /openapi.json`: every check it has, including the response
//! conformance checks (status code, content type, headers and body schema of every
//! answer against the document), negative-data rejection and auth enforcement, with a
//! bounded number of examples per operation, on SQLite and on PostgreSQL + Redis.
//!
//! Schemathesis is installed by `tests/scripts/schemathesis.sh` (pinned, a venv under
//! `~/.cache/latchkey/schemathesis/<version>`), which this test runs itself; if it cannot
//! be installed the test fails, it never skips.
//!
//! `LATCHKEY_SCHEMATHESIS_EXAMPLES` sets the examples per operation (default 50);
//! `LATCHKEY_SCHEMATHESIS_REPORT_DIR` keeps the reports (JUnit and a cassette of every
//! request) in that directory.

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::{Backend, TestServer};
use latchkey_domain::clients::ClientInput;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    run(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    run(Backend::Postgres).await;
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The `st` executable of the pinned Schemathesis, installed when missing.
async fn schemathesis() -> PathBuf {
    let script = repo_root().join("tests/scripts/schemathesis.sh");
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} failed ({}): Schemathesis could not be installed, see above",
        script.display(),
        output.status
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let path = PathBuf::from(stdout.lines().last().expect("the path of st").trim());
    assert!(path.is_file(), "{} is not a file", path.display());
    path
}

/// Limits and lockout off, so that the generated requests reach the handlers instead of
/// a 429 (which the document allows everywhere) after the first few hundred.
const FLAGS: &[&str] = &[
    "--rate-limiting-default",
    "off",
    "--rate-limiting-routes",
    "",
    "--rate-limiting-account",
    "off",
    "--rate-limiting-password",
    "off",
    "--rate-limiting-client",
    "off",
    "--account-lockout-attempts",
    "0",
];

async fn run(backend: Backend) {
    let st = schemathesis().await;
    let server = TestServer::start_with(backend, FLAGS).await;

    // Credentials for the document's security schemes: a first-party session, and an
    // admin client (client_basic) with its client-credentials token (client_token).
    let session = server.register_and_login("schemathesis").await;
    let user_token = session["access_token"].as_str().expect("access token");
    let (admin, secret) = server
        .client(ClientInput {
            client_id: Some("schemathesis-admin".into()),
            grant_types: Some(vec!["client_credentials".into()]),
            scopes: Some(vec!["latchkey:admin".into(), "read".into()]),
            admin: Some(true),
            ..ClientInput::default()
        })
        .await;
    let secret = secret.expect("a confidential client");
    let response = server
        .post_form(
            "/oauth/token",
            Some((&admin.client_id, &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "latchkey:admin"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.expect("json");
    let client_token = token["access_token"].as_str().expect("access token");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[auth.openapi.user_token]
bearer = "{user_token}"

[auth.openapi.client_token]
bearer = "{client_token}"

[auth.openapi.client_basic]
username = "{}"
password = "{secret}"
"#,
            admin.client_id
        ),
    )
    .expect("config");
    let reports = std::env::var_os("LATCHKEY_SCHEMATHESIS_REPORT_DIR")
        .map_or_else(|| dir.path().join("reports"), PathBuf::from)
        .join(match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        });
    let examples =
        std::env::var("LATCHKEY_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "50".to_owned());

    let api = run_st(
        &st,
        &config,
        &reports.join("api"),
        &[
            &server.url("/openapi.json"),
            "--url",
            &server.base,
            "--exclude-path",
            "/metrics",
            // It would end the session whose token the other operations use; it runs
            // last, on its own.
            "--exclude-path",
            "/auth/logout",
            "--max-examples",
            &examples,
        ],
    )
    .await;
    let logout = run_st(
        &st,
        &config,
        &reports.join("logout"),
        &[
            &server.url("/openapi.json"),
            "--url",
            &server.base,
            "--include-path",
            "/auth/logout",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            &examples,
        ],
    )
    .await;
    // `/metrics`, on the server the document names for it: the metrics listener.
    let metrics = run_st(
        &st,
        &config,
        &reports.join("metrics"),
        &[
            &server.url("/openapi.json"),
            "--url",
            &server.metrics_base(),
            "--include-path",
            "/metrics",
            // No links lead from or to it.
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "5",
        ],
    )
    .await;
    assert!(
        api && logout && metrics,
        "Schemathesis found failures: see its output above"
    );
}

/// Runs `st run` with every check; its report goes to the test's output. `true` when it
/// found nothing.
async fn run_st(st: &PathBuf, config: &PathBuf, reports: &PathBuf, args: &[&str]) -> bool {
    let output = tokio::process::Command::new(st)
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .args(args)
        .args([
            "--checks",
            "all",
            // Schema-valid input an auth server refuses on its merits (a wrong password,
            // an unknown client, a code never issued) is not a failure.
            "--exclude-checks",
            "positive_data_acceptance",
            // One worker: CPython 3.11 can fail compiling generated code in two threads at
            // once ("AST constructor recursion depth mismatch"), a fault of the tool's
            // process, not of the API; both backends' runs go in parallel anyway.
            "--workers",
            "1",
            "--seed",
            "1",
            "--request-timeout",
            "20",
            "--max-redirects",
            "0",
            "--report",
            "junit,vcr",
            "--report-dir",
        ])
        .arg(reports)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", st.display()));
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output.status.success()
}
