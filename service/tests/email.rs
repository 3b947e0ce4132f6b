//! Email flows end to end: activation, password reset and change of password.
//!
//! Mail goes either through a real SMTP server on loopback (Python's aiosmtpd, run by
//! `tests/scripts/smtp_sink.py`, which `./test.sh` installs) or, in the embedded
//! default, to the outbox folder. Tests read the real messages (both the text and the
//! HTML part) and follow the links in them over HTTP.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Backend, ISSUER, TestServer};
use serde_json::{Value, json};

both_backends!(
    smtp_activation_gates_login,
    expired_and_reused_links_are_refused,
    password_reset_over_smtp,
    change_password_keeps_only_this_session,
    outbox_in_the_embedded_default,
    smtp_failure_does_not_fail_registration,
    only_the_newest_reset_link_works_and_a_change_ends_them,
);

// === SMTP sink ===

/// `tests/scripts/smtp_sink.py` on a free loopback port, killed on drop.
struct SmtpSink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpSink {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scripts/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(dir.path())
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the SMTP sink (./test.sh installs aiosmtpd)");
        let stdout = child.stdout.take().expect("sink stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the sink's first line");
        let sink = Self { child, port, dir };
        assert_eq!(
            line.trim(),
            "ready",
            "the SMTP sink did not start (is aiosmtpd installed? run ./test.sh)"
        );
        sink
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

// === reading mail ===

/// A received message, decoded.
#[derive(Debug)]
struct Mail {
    to: String,
    subject: String,
    text: String,
    html: String,
}

impl Mail {
    /// The one link in the mail, checked to be the same in the text and the HTML part,
    /// and rewritten from the issuer to the test server's address.
    fn link(&self, server: &TestServer) -> String {
        let in_text = self
            .text
            .split_whitespace()
            .find(|w| w.starts_with(ISSUER))
            .expect("a link in the text part")
            .to_owned();
        let in_html = self
            .html
            .split("href=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a link in the HTML part")
            .replace("&amp;", "&");
        assert_eq!(in_text, in_html, "text and HTML carry the same link");
        in_text.replacen(ISSUER, &server.base, 1)
    }

    fn token(&self, server: &TestServer) -> String {
        let link = self.link(server);
        link.split_once("token=")
            .expect("token in link")
            .1
            .to_owned()
    }
}

/// Waits until `dir` holds `count` `.eml` files; returns them parsed, oldest first.
async fn wait_for_mail(dir: &Path, count: usize) -> Vec<Mail> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        if files.len() >= count {
            files.sort();
            assert_eq!(files.len(), count, "more mail than expected in {dir:?}");
            return files
                .iter()
                .map(|f| parse_mail(&std::fs::read_to_string(f).expect("read mail")))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} mails in {dir:?}, found {}",
            files.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `dir` still holds exactly `count` mails a little later.
async fn assert_no_more_mail(dir: &Path, count: usize) {
    tokio::time::sleep(Duration::from_millis(700)).await;
    let found = std::fs::read_dir(dir)
        .map(|e| {
            e.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(found, count, "no further mail expected in {dir:?}");
}

/// Splits a header block from its body and unfolds the headers.
fn split_headers(raw: &str) -> (Vec<(String, String)>, String) {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    (headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

/// A `multipart/alternative` message with a `text/plain` and a `text/html` part.
fn parse_mail(raw: &str) -> Mail {
    let (headers, body) = split_headers(raw);
    let content_type = header(&headers, "content-type");
    assert!(
        content_type.starts_with("multipart/alternative"),
        "multipart/alternative, got {content_type}"
    );
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("boundary")
        .trim_matches('"')
        .split(['"', ';'])
        .next()
        .expect("boundary value")
        .to_owned();
    let (mut text, mut html) = (None, None);
    for part in body.split(&format!("--{boundary}")).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let (part_headers, part_body) = split_headers(part.trim_start_matches('\n'));
        let decoded = decode(
            header(&part_headers, "content-transfer-encoding"),
            &part_body,
        );
        let kind = header(&part_headers, "content-type");
        if kind.starts_with("text/plain") {
            text = Some(decoded);
        } else if kind.starts_with("text/html") {
            html = Some(decoded);
        }
    }
    Mail {
        to: header(&headers, "to").to_owned(),
        subject: header(&headers, "subject").to_owned(),
        text: text.expect("a text/plain part"),
        html: html.expect("a text/html part"),
    }
}

fn decode(encoding: &str, body: &str) -> String {
    match encoding.to_ascii_lowercase().as_str() {
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .expect("base64 part"),
            )
            .expect("utf-8 part")
        }
        "quoted-printable" => {
            let joined = body.replace("=\n", "");
            let bytes = joined.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'=' && i + 2 < bytes.len() {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                    out.push(u8::from_str_radix(hex, 16).expect("quoted-printable escape"));
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).expect("utf-8 part")
        }
        _ => body.to_owned(),
    }
}

// === helpers ===

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a much better passphrase 2026";

async fn register(server: &TestServer, username: &str) {
    let response = server
        .post_json(
            "/auth/register",
            &json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "password": PASSWORD,
                "full_name": "Test User",
            }),
        )
        .await;
    assert_eq!(response.status(), 201);
}

async fn login(server: &TestServer, username: &str, password: &str) -> (u16, Value) {
    let response = server
        .post_json(
            "/auth/login",
            &json!({ "username": username, "password": password }),
        )
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

async fn refresh(server: &TestServer, token: &Value) -> u16 {
    server
        .post_json("/auth/refresh", &json!({ "refresh_token": token }))
        .await
        .status()
        .as_u16()
}

async fn get_link(server: &TestServer, link: &str, accept: &str) -> (u16, String) {
    let response = server
        .http
        .get(link)
        .header("accept", accept)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

// === tests ===

async fn smtp_activation_gates_login(backend: Backend) {
    let sink = SmtpSink::start();
    let server = TestServer::start_with(backend, &["--smtp-url", &sink.url()]).await;
    register(&server, "alice").await;

    // Verification is on by default with SMTP: the right password gets a clear 403,
    // a wrong one the usual 401 (nothing to learn without the password).
    let (status, body) = login(&server, "alice", PASSWORD).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "email_not_verified");
    let (status, body) = login(&server, "alice", "not the password at all").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_credentials");

    let mails = wait_for_mail(sink.dir(), 1).await;
    let mail = &mails[0];
    assert!(mail.to.contains("alice@example.com"), "{}", mail.to);
    assert_eq!(mail.subject, "Confirm your email address");
    assert!(mail.text.contains("Hello Test User"));
    let link = mail.link(&server);
    assert!(link.contains("/auth/verify-email?token="), "{link}");

    // A browser follows the link: an HTML page.
    let (status, page) = get_link(&server, &link, "text/html").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("confirmed"), "{page}");
    let (status, _) = login(&server, "alice", PASSWORD).await;
    assert_eq!(status, 200);
    let me = server
        .get_with_token(
            "/users/me",
            login(&server, "alice", PASSWORD).await.1["access_token"]
                .as_str()
                .expect("token"),
        )
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(me["email_verified"], true);

    // A verified account gets no further activation mail, and an unknown address the
    // same answer.
    let known = server
        .post_json(
            "/auth/resend-verification",
            &json!({ "email": "alice@example.com" }),
        )
        .await;
    assert_eq!(known.status(), 202);
    let known: Value = known.json().await.expect("json");
    let unknown = server
        .post_json(
            "/auth/resend-verification",
            &json!({ "email": "nobody@example.com" }),
        )
        .await;
    assert_eq!(unknown.status(), 202);
    assert_eq!(unknown.json::<Value>().await.expect("json"), known);
    assert_no_more_mail(sink.dir(), 1).await;
}

async fn expired_and_reused_links_are_refused(backend: Backend) {
    let sink = SmtpSink::start();
    let server = TestServer::start_with(backend, &["--smtp-url", &sink.url()]).await;
    register(&server, "bob").await;
    let first = wait_for_mail(sink.dir(), 1).await.remove(0);

    // Expire the first link.
    sqlx::query("UPDATE email_tokens SET expires_at = $1")
        .bind(latchkey_store::now_ms() - 1)
        .execute(server.db.pool())
        .await
        .expect("expire tokens");
    let (status, body) = get_link(&server, &first.link(&server), "application/json").await;
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["error"], "invalid_token");
    assert!(
        body["error_description"]
            .as_str()
            .expect("description")
            .contains("expired or already used")
    );
    let (status, page) = get_link(&server, &first.link(&server), "text/html").await;
    assert_eq!(status, 400);
    assert!(page.contains("invalid, expired or already used"), "{page}");

    // Ask for a new one; it works once.
    let response = server
        .post_json(
            "/auth/resend-verification",
            &json!({ "email": "BOB@example.com" }),
        )
        .await;
    assert_eq!(response.status(), 202);
    let second = wait_for_mail(sink.dir(), 2).await.remove(1);
    let token = second.token(&server);
    let response = server
        .post_json("/auth/verify-email", &json!({ "token": token }))
        .await;
    assert_eq!(response.status(), 200);
    let (status, body) = get_link(&server, &second.link(&server), "application/json").await;
    assert_eq!(status, 400, "a used link: {body}");
    assert_eq!(login(&server, "bob", PASSWORD).await.0, 200);

    // A made-up token is refused the same way.
    let response = server
        .post_json("/auth/verify-email", &json!({ "token": "not-a-token" }))
        .await;
    assert_eq!(response.status(), 400);
}

async fn password_reset_over_smtp(backend: Backend) {
    let sink = SmtpSink::start();
    let server = TestServer::start_with(
        backend,
        &[
            "--smtp-url",
            &sink.url(),
            "--require-email-verification",
            "false",
            "--account-lockout-attempts",
            "3",
        ],
    )
    .await;
    register(&server, "carol").await;
    let (status, session) = login(&server, "carol", PASSWORD).await;
    assert_eq!(status, 200);

    // Same answer for an unknown address, and no mail for it.
    let unknown = server
        .post_json(
            "/auth/password-reset",
            &json!({ "email": "nobody@example.com" }),
        )
        .await;
    assert_eq!(unknown.status(), 202);
    let unknown: Value = unknown.json().await.expect("json");
    assert_no_more_mail(sink.dir(), 0).await;
    let known = server
        .post_json(
            "/auth/password-reset",
            &json!({ "email": "carol@example.com" }),
        )
        .await;
    assert_eq!(known.status(), 202);
    assert_eq!(known.json::<Value>().await.expect("json"), unknown);
    let mail = wait_for_mail(sink.dir(), 1).await.remove(0);
    assert_eq!(mail.subject, "Reset your password");
    assert!(mail.text.contains("30 minutes"), "{}", mail.text);
    let link = mail.link(&server);
    let token = mail.token(&server);

    // Lock the account with wrong passwords: the reset clears that too.
    for _ in 0..3 {
        login(&server, "carol", "not the password at all").await;
    }
    assert_eq!(login(&server, "carol", PASSWORD).await.0, 401, "locked");

    // The link says it is valid, without spending it.
    let (status, body) = get_link(&server, &link, "application/json").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = get_link(&server, &link, "application/json").await;
    assert_eq!(status, 200);

    // A weak password is refused like at registration and does not spend the token.
    let response = server
        .post_json(
            "/auth/password-reset/confirm",
            &json!({ "token": token, "new_password": "short" }),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "weak_password");
    assert!(
        body["failed_rules"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );

    let response = server
        .post_json(
            "/auth/password-reset/confirm",
            &json!({ "token": token, "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(response.status(), 204);

    // Every refresh token is gone; the old password no longer works, the new one does.
    assert_eq!(refresh(&server, &session["refresh_token"]).await, 401);
    assert_eq!(login(&server, "carol", PASSWORD).await.0, 401);
    assert_eq!(login(&server, "carol", NEW_PASSWORD).await.0, 200);

    // The token is spent.
    let response = server
        .post_json(
            "/auth/password-reset/confirm",
            &json!({ "token": token, "new_password": "yet another good passphrase" }),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_token");
    let (status, _) = get_link(&server, &link, "application/json").await;
    assert_eq!(status, 400);
}

async fn change_password_keeps_only_this_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    register(&server, "dave").await;
    let (_, this) = login(&server, "dave", PASSWORD).await;
    let (_, other) = login(&server, "dave", PASSWORD).await;
    let access = this["access_token"].as_str().expect("token");
    let change = |current: &'static str, new: &'static str| {
        server
            .http
            .post(server.url("/auth/change-password"))
            .bearer_auth(access)
            .json(&json!({ "current_password": current, "new_password": new }))
            .send()
    };

    let response = server
        .post_json(
            "/auth/change-password",
            &json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(response.status(), 401, "needs a bearer token");

    let response = change("not the password at all", NEW_PASSWORD)
        .await
        .expect("request");
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_credentials");
    assert_eq!(body["error_description"], "the current password is wrong");

    let response = change(PASSWORD, "dave").await.expect("request");
    assert_eq!(response.status(), 422);

    let response = change(PASSWORD, NEW_PASSWORD).await.expect("request");
    assert_eq!(response.status(), 204);
    assert_eq!(refresh(&server, &other["refresh_token"]).await, 401);
    assert_eq!(refresh(&server, &this["refresh_token"]).await, 200);
    assert_eq!(login(&server, "dave", PASSWORD).await.0, 401);
    assert_eq!(login(&server, "dave", NEW_PASSWORD).await.0, 200);
}

async fn outbox_in_the_embedded_default(backend: Backend) {
    // Without SMTP, verification is off: the README's register → login works.
    let server = TestServer::start(backend).await;
    let outbox = server.data_dir.join("outbox");
    register(&server, "erin").await;
    assert_eq!(login(&server, "erin", PASSWORD).await.0, 200);
    assert_no_more_mail(&outbox, 0).await;

    let response = server
        .post_json(
            "/auth/password-reset",
            &json!({ "email": "erin@example.com" }),
        )
        .await;
    assert_eq!(response.status(), 202);
    let mail = wait_for_mail(&outbox, 1).await.remove(0);
    assert!(mail.to.contains("erin@example.com"));
    let response = server
        .post_json(
            "/auth/password-reset/confirm",
            &json!({ "token": mail.token(&server), "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(login(&server, "erin", NEW_PASSWORD).await.0, 200);

    // Verification can be turned on without SMTP; the link is in the outbox.
    let server = TestServer::start_with(backend, &["--require-email-verification", "true"]).await;
    let outbox = server.data_dir.join("outbox");
    register(&server, "frank").await;
    assert_eq!(login(&server, "frank", PASSWORD).await.0, 403);
    let mail = wait_for_mail(&outbox, 1).await.remove(0);
    let (status, _) = get_link(&server, &mail.link(&server), "application/json").await;
    assert_eq!(status, 200);
    assert_eq!(login(&server, "frank", PASSWORD).await.0, 200);
}

async fn smtp_failure_does_not_fail_registration(backend: Backend) {
    // Nothing listens on this port: delivery fails, and is only logged.
    let url = format!("smtp://127.0.0.1:{}", free_port());
    let server = TestServer::start_with(backend, &["--smtp-url", &url]).await;
    register(&server, "grace").await;
    let response = server
        .post_json(
            "/auth/password-reset",
            &json!({ "email": "grace@example.com" }),
        )
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(login(&server, "grace", PASSWORD).await.0, 403);
}

/// The real binary in the embedded default: the outbox mail is logged, but no log line
/// carries its token (not even the request that follows the link).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_log_line_has_no_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["serve", "--listen", "127.0.0.1:0", "--issuer", ISSUER])
        .arg("--data-dir")
        .arg(&data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("SMTP_URL")
        .env("LATCHKEY_LOG", "info")
        .env("LATCHKEY_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .expect("run latchkey serve");
    let stderr = child.stderr.take().expect("stderr");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<String>();
    let collected = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<Value>(&line)
                && value["message"] == "listening"
                && let Some(addr) = value["addr"].as_str()
            {
                let _ = addr_tx.send(addr.to_owned());
            }
            collected.lock().expect("lock").push(line);
        }
    });
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(child);
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("no listening line: {:?}", lines.lock().expect("lock")));
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{base}/auth/register"))
        .json(&json!({
            "username": "heidi",
            "email": "heidi@example.com",
            "password": PASSWORD,
        }))
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), 201);
    let response = http
        .post(format!("{base}/auth/password-reset"))
        .json(&json!({ "email": "heidi@example.com" }))
        .send()
        .await
        .expect("reset");
    assert_eq!(response.status(), 202);

    let mail = wait_for_mail(&data_dir.join("outbox"), 1).await.remove(0);
    let link = mail
        .text
        .split_whitespace()
        .find(|w| w.starts_with(ISSUER))
        .expect("link")
        .to_owned();
    let token = link.split_once("token=").expect("token").1.to_owned();
    let response = http
        .get(link.replacen(ISSUER, &base, 1))
        .send()
        .await
        .expect("follow link");
    assert_eq!(response.status(), 200);

    let deadline = Instant::now() + Duration::from_secs(10);
    while !lines
        .lock()
        .expect("lock")
        .iter()
        .any(|l| l.contains("written to the outbox"))
    {
        assert!(Instant::now() < deadline, "no outbox log line");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the request log of the followed link arrive too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.0.kill();
    let _ = child.0.wait();
    let lines = lines.lock().expect("lock");
    let outbox_line = lines
        .iter()
        .find(|l| l.contains("written to the outbox"))
        .expect("outbox line");
    assert!(outbox_line.contains("password_reset"), "{outbox_line}");
    for line in lines.iter() {
        assert!(
            !line.contains(&token),
            "a log line carries the token: {line}"
        );
        assert!(
            !line.contains(PASSWORD),
            "a log line carries a password: {line}"
        );
    }
}

/// Issue 13, item 7: a user has one outstanding reset link; requesting another, resetting
/// or changing the password makes the earlier ones invalid.
async fn only_the_newest_reset_link_works_and_a_change_ends_them(backend: Backend) {
    let server = TestServer::start(backend).await;
    let outbox = server.data_dir.join("outbox");
    register(&server, "ivan").await;
    let request_link = |count: usize| {
        let (server, outbox) = (&server, outbox.clone());
        async move {
            let response = server
                .post_json(
                    "/auth/password-reset",
                    &json!({ "email": "ivan@example.com" }),
                )
                .await;
            assert_eq!(response.status(), 202);
            wait_for_mail(&outbox, count).await
        }
    };
    let confirm = |token: String, password: &'static str| {
        let server = &server;
        async move {
            server
                .post_json(
                    "/auth/password-reset/confirm",
                    &json!({ "token": token, "new_password": password }),
                )
                .await
                .status()
        }
    };
    let first = request_link(1).await.remove(0).token(&server);
    let second = request_link(2)
        .await
        .iter()
        .map(|m| m.token(&server))
        .find(|t| *t != first)
        .expect("a second link");
    // The first link died when the second was mailed.
    assert_eq!(confirm(first, NEW_PASSWORD).await, 400);
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM email_tokens WHERE purpose = 'password_reset'")
            .fetch_one(server.db.pool())
            .await
            .expect("count");
    assert_eq!(rows, 1, "one outstanding reset link");

    // A password change ends the outstanding link.
    let (status, tokens) = login(&server, "ivan", PASSWORD).await;
    assert_eq!(status, 200);
    let changed = server
        .http
        .post(server.url("/auth/change-password"))
        .bearer_auth(tokens["access_token"].as_str().expect("access token"))
        .json(&json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }))
        .send()
        .await
        .expect("request");
    assert_eq!(changed.status(), 204);
    assert_eq!(confirm(second, "yet another passphrase 2026").await, 400);
    assert_eq!(login(&server, "ivan", NEW_PASSWORD).await.0, 200);

    // A reset spends its link and leaves none behind.
    let third = request_link(3)
        .await
        .last()
        .map(|m| m.token(&server))
        .expect("a third link");
    assert_eq!(
        confirm(third.clone(), "yet another passphrase 2026").await,
        204
    );
    assert_eq!(confirm(third, "and one more passphrase 2026").await, 400);
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM email_tokens WHERE purpose = 'password_reset'")
            .fetch_one(server.db.pool())
            .await
            .expect("count");
    assert_eq!(rows, 0, "a reset deletes the user's reset links");
}
