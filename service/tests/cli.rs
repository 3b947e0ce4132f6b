//! The `latchkey` command line, run as a real process: client management against a
//! running server's database, key generation, migrations and configuration errors.

mod common;

use std::process::{Command, Output};

use common::{Backend, TestServer};
use serde_json::Value;

both_backends!(
    client_commands_manage_working_credentials,
    scopes_may_be_given_space_separated,
);

fn latchkey(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .output()
        .expect("run latchkey")
}

fn stdout_json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json output")
}

/// `--scope "read write"` is two scopes, as OAuth writes them; repeated flags mix in.
async fn scopes_may_be_given_space_separated(backend: Backend) {
    let server = TestServer::start(backend).await;
    let db = server.database_url.clone();
    let created = stdout_json(&latchkey(&[
        "client",
        "create",
        "--database-url",
        &db,
        "--output",
        "json",
        "--client-id",
        "reports",
        "--scope",
        "invoices:read  invoices:write",
        "--scope",
        "audit",
    ]));
    assert_eq!(
        created["scopes"],
        serde_json::json!(["invoices:read", "invoices:write", "audit"])
    );
    let secret = created["client_secret"].as_str().expect("secret");
    let token = server
        .post_form(
            "/oauth/token",
            Some(("reports", secret)),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "invoices:write audit"),
            ],
        )
        .await;
    assert_eq!(token.status(), 200);
    // A scope that is not an RFC 6749 scope token is still refused.
    let bad = latchkey(&[
        "client",
        "create",
        "--database-url",
        &db,
        "--client-id",
        "bad",
        "--scope",
        "read \"quoted\"",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a valid scope"));
}

async fn client_commands_manage_working_credentials(backend: Backend) {
    let server = TestServer::start(backend).await;
    let db = server.database_url.clone();
    let created = stdout_json(&latchkey(&[
        "client",
        "create",
        "--database-url",
        &db,
        "--output",
        "json",
        "--client-id",
        "billing",
        "--grant-type",
        "client_credentials",
        "--scope",
        "invoices:read",
    ]));
    assert_eq!(created["client_id"], "billing");
    let secret = created["client_secret"]
        .as_str()
        .expect("secret printed once")
        .to_owned();
    assert_eq!(secret.len(), 43);
    let token = |secret: String| {
        let server = &server;
        async move {
            server
                .post_form(
                    "/oauth/token",
                    Some(("billing", &secret)),
                    &[("grant_type", "client_credentials")],
                )
                .await
                .status()
        }
    };
    assert_eq!(token(secret.clone()).await, 200);

    let listed = stdout_json(&latchkey(&[
        "client",
        "list",
        "--database-url",
        &db,
        "--output",
        "json",
    ]));
    assert_eq!(listed[0]["client_id"], "billing");
    assert!(listed[0].get("client_secret").is_none());

    // Rotation with an overlap: both secrets work; with none, only the new one.
    let rotated = stdout_json(&latchkey(&[
        "client",
        "rotate-secret",
        "billing",
        "--database-url",
        &db,
        "--output",
        "json",
        "--overlap",
        "1h",
    ]));
    let second = rotated["client_secret"]
        .as_str()
        .expect("new secret")
        .to_owned();
    assert_eq!(token(secret.clone()).await, 200);
    assert_eq!(token(second.clone()).await, 200);
    let rotated = stdout_json(&latchkey(&[
        "client",
        "rotate-secret",
        "billing",
        "--database-url",
        &db,
        "--output",
        "json",
        "--overlap",
        "0s",
    ]));
    let third = rotated["client_secret"]
        .as_str()
        .expect("new secret")
        .to_owned();
    assert_eq!(token(second).await, 401);
    assert_eq!(token(third).await, 200);

    // Invalid input is refused with every problem named.
    let bad = latchkey(&[
        "client",
        "create",
        "--database-url",
        &db,
        "--public",
        "--grant-type",
        "client_credentials",
        "--redirect-uri",
        "http://evil.example.com/cb",
    ]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("public clients cannot use client_credentials"),
        "{stderr}"
    );
    assert!(stderr.contains("http://evil.example.com/cb"), "{stderr}");

    let deleted = latchkey(&["client", "delete", "billing", "--database-url", &db]);
    assert!(deleted.status.success());
    assert_eq!(token(secret).await, 401);
}

#[test]
fn keys_generate_writes_a_secret_layout_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    let keys_arg = keys.display().to_string();
    let first = latchkey(&["keys", "generate", "--dir", &keys_arg]);
    assert!(first.status.success());
    let second = latchkey(&["keys", "generate", "--dir", &keys_arg, "--bits", "3072"]);
    assert!(second.status.success());
    let kids: Vec<String> = [&first, &second]
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .collect();
    let files = latchkey_store::keydir::read_pem_files(&keys).expect("read");
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.len(), 2);
    for kid in &kids {
        assert!(names.contains(&format!("{kid}.pem").as_str()), "{names:?}");
    }
    assert!(
        std::fs::symlink_metadata(keys.join("..data"))
            .expect("..data")
            .file_type()
            .is_symlink()
    );
    let replaced = latchkey(&["keys", "generate", "--dir", &keys_arg, "--replace"]);
    assert!(replaced.status.success());
    assert_eq!(
        latchkey_store::keydir::read_pem_files(&keys)
            .expect("read")
            .len(),
        1
    );
    assert!(
        !latchkey(&["keys", "generate", "--dir", &keys_arg, "--bits", "1024"])
            .status
            .success()
    );
    // One key of each other algorithm, parsed back as that algorithm; a bad name fails.
    for (name, alg) in [
        ("ES256", latchkey_store::keys::Alg::Es256),
        ("EdDSA", latchkey_store::keys::Alg::EdDsa),
    ] {
        let out = latchkey(&[
            "keys",
            "generate",
            "--dir",
            &keys_arg,
            "--algorithm",
            name,
            "--replace",
        ]);
        assert!(out.status.success(), "{name}");
        let files = latchkey_store::keydir::read_pem_files(&keys).expect("read");
        let key = latchkey_store::keys::KeyPair::from_pem(&files[0].name, &files[0].contents)
            .expect("a key");
        assert_eq!(key.alg(), alg);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), key.kid());
    }
    let bad = latchkey(&[
        "keys",
        "generate",
        "--dir",
        &keys_arg,
        "--algorithm",
        "HS256",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RS256, ES256 or EdDSA"));
}

#[test]
fn migrate_and_bad_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().display().to_string();
    let migrated = latchkey(&["migrate", "--data-dir", &data]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert!(String::from_utf8_lossy(&migrated.stdout).contains("migrations applied (sqlite)"));

    let bad = latchkey(&[
        "serve",
        "--data-dir",
        &data,
        "--jwt-algorithm",
        "HS256",
        "--access-token-ttl",
        "5s",
        "--key-bits",
        "1000",
    ]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    for needle in [
        "JWT_ALGORITHM",
        "OAUTH2_ACCESS_TOKEN_EXPIRES",
        "LATCHKEY_KEY_BITS",
    ] {
        assert!(stderr.contains(needle), "{needle} missing from: {stderr}");
    }
    let version = latchkey(&["version"]);
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("latchkey {}", env!("CARGO_PKG_VERSION"))
    );
}
