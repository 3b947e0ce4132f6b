//! Account lockout and rate limits, on both backends, across two replicas sharing one
//! PostgreSQL database and one Redis, and with Redis stopped mid-test.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Shared, TestServer};
use latchkey_domain::clients::ClientInput;
use serde_json::{Value, json};

/// Flags that leave only what a test sets: lockout and every rate limit off.
const QUIET: [&str; 10] = [
    "--account-lockout-attempts",
    "0",
    "--rate-limiting-password",
    "off",
    "--rate-limiting-default",
    "off",
    "--rate-limiting-account",
    "off",
    "--rate-limiting-routes",
    "",
];

/// `QUIET`, except the flags `extra` sets, then `extra`.
fn flags<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = QUIET
        .chunks(2)
        .filter(|pair| !extra.contains(&pair[0]))
        .flatten()
        .copied()
        .collect();
    out.extend_from_slice(extra);
    out
}

async fn login(server: &TestServer, username: &str, password: &str) -> reqwest::Response {
    server
        .post_json(
            "/auth/login",
            &json!({ "username": username, "password": password }),
        )
        .await
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn retry_after(response: &reqwest::Response) -> Option<u64> {
    header(response, "retry-after").map(|v| v.parse().expect("Retry-After is seconds"))
}

/// A failed login: 401, the generic body; returns that body and the Retry-After.
async fn failed(response: reqwest::Response) -> (Value, Option<u64>) {
    assert_eq!(response.status(), 401);
    let retry = retry_after(&response);
    (response.json().await.expect("json"), retry)
}

/// Polls `login` with the right password until it succeeds; bounded.
async fn wait_for_unlock(server: &TestServer, username: &str, password: &str) -> Duration {
    let start = Instant::now();
    loop {
        let response = login(server, username, password).await;
        if response.status() == 200 {
            return start.elapsed();
        }
        assert_eq!(response.status(), 401);
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "still locked after 15s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn lockout_after_failures(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &flags(&[
            "--account-lockout-attempts",
            "3",
            "--account-lockout-duration",
            "2s",
        ]),
    )
    .await;
    let password = server.register("alice").await;
    let (wrong_body, retry) = failed(login(&server, "alice", "wrong password").await).await;
    assert_eq!(retry, None);
    assert_eq!(wrong_body["error"], "invalid_credentials");
    let (_, retry) = failed(login(&server, "alice", "wrong password").await).await;
    assert_eq!(retry, None);
    // The third failure locks: same body, plus Retry-After.
    let (body, retry) = failed(login(&server, "ALICE", "wrong password").await).await;
    assert_eq!(body, wrong_body);
    let retry = retry.expect("Retry-After on the locking failure");
    assert!((1..=2).contains(&retry), "{retry}");

    // Locked: the right password is refused exactly like a wrong one.
    let (body, retry) = failed(login(&server, "alice", &password).await).await;
    assert_eq!(body, wrong_body);
    assert!(retry.is_some());
    // The email is the same account.
    let (body, _) = failed(login(&server, "alice@example.com", &password).await).await;
    assert_eq!(body, wrong_body);

    // The password grant goes through the same check: invalid_grant with Retry-After.
    let secret = legacy_client(&server).await;
    let grant = server
        .post_form(
            "/oauth/token",
            Some(("legacy", &secret)),
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", &password),
            ],
        )
        .await;
    assert_eq!(grant.status(), 400);
    assert!(retry_after(&grant).is_some());
    let grant: Value = grant.json().await.expect("json");
    assert_eq!(grant["error"], "invalid_grant");

    // Unlocked after the duration.
    let waited = wait_for_unlock(&server, "alice", &password).await;
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

/// Registers a confidential client `legacy` allowed the password grant; its secret.
async fn legacy_client(server: &TestServer) -> String {
    let (_, secret) = server
        .client(ClientInput {
            client_id: Some("legacy".into()),
            grant_types: Some(vec!["password".into()]),
            scopes: Some(vec!["profile".into()]),
            ..ClientInput::default()
        })
        .await;
    secret.expect("confidential")
}

/// Registers a first-party client `web` for the login-page tests.
async fn web_client(server: &TestServer) {
    server
        .client(ClientInput {
            client_id: Some("web".into()),
            grant_types: Some(vec!["authorization_code".into()]),
            scopes: Some(vec!["read".into()]),
            redirect_uris: Some(vec!["https://app.example.com/callback".into()]),
            first_party: Some(true),
            ..ClientInput::default()
        })
        .await;
}

/// Opens the `/oauth/authorize` login page and submits it, as a browser would.
async fn submit_login_page(
    server: &TestServer,
    username: &str,
    password: &str,
) -> reqwest::Response {
    let query = [
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", "https://app.example.com/callback"),
        ("scope", "read"),
        ("state", "st"),
        // RFC 7636 appendix B.
        (
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        ("code_challenge_method", "S256"),
    ];
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let page = server.get(&format!("/oauth/authorize?{query}")).await;
    assert_eq!(page.status(), 200);
    let cookies: Vec<String> = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect();
    let html = page.text().await.expect("html");
    let mut form: Vec<(String, String)> = html
        .split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|chunk| {
            let name = chunk.split("name=\"").nth(1)?.split('"').next()?;
            let value = chunk.split("value=\"").nth(1)?.split('"').next()?;
            Some((name.to_owned(), value.replace("&amp;", "&")))
        })
        .collect();
    form.push(("username".into(), username.to_owned()));
    form.push(("password".into(), password.to_owned()));
    server
        .http
        .post(server.url("/oauth/authorize"))
        .header("cookie", cookies.join("; "))
        .form(&form)
        .send()
        .await
        .expect("post")
}

/// The login page of `/oauth/authorize` shows its one generic message while locked.
async fn login_page_while_locked(backend: Backend) {
    let server =
        TestServer::start_with(backend, &flags(&["--account-lockout-attempts", "2"])).await;
    let password = server.register("ivan").await;
    web_client(&server).await;
    let mut pages = Vec::new();
    for attempt in ["wrong password", "wrong password", password.as_str()] {
        let response = submit_login_page(&server, "ivan", attempt).await;
        assert_eq!(response.status(), 401);
        pages.push(response.text().await.expect("html"));
    }
    assert!(pages[0].contains("The username or password is incorrect."));
    // Locked: the right password gets the very same page as a wrong one (each page
    // load has its own CSRF token, so that is left out of the comparison).
    let without_csrf = |page: &str| {
        let (head, rest) = page
            .split_once("name=\"csrf_token\" value=\"")
            .expect("csrf field");
        format!("{head}{}", rest.split_once('"').expect("end of value").1)
    };
    assert_eq!(without_csrf(&pages[2]), without_csrf(&pages[0]));
}

/// Past the per-account limit the login page says so (429), not "try again later".
async fn login_page_over_the_account_limit(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &flags(&[
            "--account-lockout-attempts",
            "0",
            "--rate-limiting-account",
            "2 per minute",
        ]),
    )
    .await;
    server.register("judy").await;
    web_client(&server).await;
    for _ in 0..2 {
        assert_eq!(
            submit_login_page(&server, "judy", "wrong password")
                .await
                .status(),
            401
        );
    }
    let limited = submit_login_page(&server, "judy", "wrong password").await;
    assert_eq!(limited.status(), 429);
    assert!(
        limited
            .text()
            .await
            .expect("html")
            .contains("Too many sign-in attempts")
    );
}

async fn lockout_grows_on_repeat(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &flags(&[
            "--account-lockout-attempts",
            "2",
            "--account-lockout-duration",
            "2s",
        ]),
    )
    .await;
    let password = server.register("bob").await;
    for _ in 0..2 {
        login(&server, "bob", "wrong password").await;
    }
    let (_, first) = failed(login(&server, "bob", &password).await).await;
    assert!(first.expect("locked") <= 2);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Unlocked, but the next lockout in a row lasts twice as long.
    for _ in 0..2 {
        login(&server, "bob", "wrong password").await;
    }
    let (_, second) = failed(login(&server, "bob", &password).await).await;
    assert!(second.expect("locked") >= 3, "{second:?}");
}

async fn success_clears_failures(backend: Backend) {
    let server =
        TestServer::start_with(backend, &flags(&["--account-lockout-attempts", "3"])).await;
    let password = server.register("carol").await;
    for _ in 0..2 {
        assert_eq!(
            failed(login(&server, "carol", "nope nope").await).await.1,
            None
        );
    }
    assert_eq!(login(&server, "carol", &password).await.status(), 200);
    for _ in 0..2 {
        assert_eq!(
            failed(login(&server, "carol", "nope nope").await).await.1,
            None
        );
    }
    assert_eq!(login(&server, "carol", &password).await.status(), 200);
}

async fn unknown_usernames_lock_the_same_way(backend: Backend) {
    let server =
        TestServer::start_with(backend, &flags(&["--account-lockout-attempts", "2"])).await;
    server.register("dave").await;
    let (known, _) = failed(login(&server, "dave", "wrong password").await).await;
    let (unknown, retry) = failed(login(&server, "nobody", "wrong password").await).await;
    assert_eq!((&unknown, retry), (&known, None));
    let (unknown, retry) = failed(login(&server, "nobody", "wrong password").await).await;
    assert_eq!(unknown, known);
    let retry = retry.expect("an unknown username locks too");
    assert!(retry > 60, "default duration is 15m: {retry}");
}

async fn lockout_off(backend: Backend) {
    let server = TestServer::start_with(backend, &flags(&[])).await;
    let password = server.register("erin").await;
    for _ in 0..8 {
        assert_eq!(
            failed(login(&server, "erin", "wrong password").await)
                .await
                .1,
            None
        );
    }
    assert_eq!(login(&server, "erin", &password).await.status(), 200);
}

fn rate_headers(response: &reqwest::Response) -> (u64, u64, u64) {
    let get = |name| {
        header(response, name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .parse()
            .expect("number")
    };
    (
        get("ratelimit-limit"),
        get("ratelimit-remaining"),
        get("ratelimit-reset"),
    )
}

async fn rate_limit_per_ip(backend: Backend) {
    let server =
        TestServer::start_with(backend, &flags(&["--rate-limiting-default", "3 per 3s"])).await;
    for remaining in [2, 1, 0] {
        let response = server.get("/").await;
        assert_eq!(response.status(), 200);
        let (limit, left, reset) = rate_headers(&response);
        assert_eq!((limit, left), (3, remaining));
        assert!((1..=3).contains(&reset), "{reset}");
    }
    let refused = server.get("/").await;
    assert_eq!(refused.status(), 429);
    let retry = retry_after(&refused).expect("Retry-After");
    assert!((1..=3).contains(&retry), "{retry}");
    assert_eq!(rate_headers(&refused).0, 3);
    assert_eq!(rate_headers(&refused).1, 0);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"], "rate_limited");

    // Another route has its own bucket; probes are never limited.
    assert_eq!(server.get("/.well-known/jwks.json").await.status(), 200);
    for path in ["/health", "/ready"] {
        for _ in 0..5 {
            let response = server.get(path).await;
            assert_eq!(response.status(), 200, "{path}");
            assert!(header(&response, "ratelimit-limit").is_none());
        }
    }

    // Allowed again once an interval has passed.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let start = Instant::now();
    while server.get("/").await.status() == 429 {
        assert!(start.elapsed() < Duration::from_secs(5), "still limited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn route_and_account_limits(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &flags(&[
            "--rate-limiting-routes",
            "/auth/register=off,/auth/login=3 per minute",
            "--rate-limiting-account",
            "2 per minute",
        ]),
    )
    .await;
    // Per account: two attempts on one username, whatever the password.
    assert_eq!(
        login(&server, "frank", "wrong password").await.status(),
        401
    );
    assert_eq!(
        login(&server, "Frank", "wrong password").await.status(),
        401
    );
    let refused = login(&server, "frank", "wrong password").await;
    assert_eq!(refused.status(), 429);
    assert!(retry_after(&refused).is_some());
    // Per IP and route: the third login from this address is the last one.
    let response = login(&server, "grace", "wrong password").await;
    assert_eq!(response.status(), 429, "fourth login from one IP");
    // Other routes are not limited (the default is off).
    let response = server.get("/").await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "ratelimit-limit").is_none());
}

async fn token_endpoint_per_client(backend: Backend) {
    let server =
        TestServer::start_with(backend, &flags(&["--rate-limiting-client", "2 per minute"])).await;
    let mut clients = Vec::new();
    for id in ["svc-a", "svc-b"] {
        let (_, secret) = server
            .client(ClientInput {
                client_id: Some(id.into()),
                grant_types: Some(vec!["client_credentials".into()]),
                scopes: Some(vec!["read".into()]),
                ..ClientInput::default()
            })
            .await;
        clients.push((id, secret.expect("secret")));
    }
    let token = |i: usize| {
        let (id, secret) = &clients[i];
        server.post_form(
            "/oauth/token",
            Some((id, secret)),
            &[("grant_type", "client_credentials")],
        )
    };
    assert_eq!(token(0).await.status(), 200);
    assert_eq!(token(0).await.status(), 200);
    let refused = token(0).await;
    assert_eq!(refused.status(), 429);
    assert!(retry_after(&refused).is_some());
    assert_eq!(rate_headers(&refused).0, 2);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"], "rate_limited");
    // The other client has its own budget.
    assert_eq!(token(1).await.status(), 200);
    // Unauthenticated requests do not spend a client's budget.
    let bad = server
        .post_form(
            "/oauth/token",
            Some(("svc-b", "wrong")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(bad.status(), 401);
    assert_eq!(token(1).await.status(), 200);
}

async fn get_from(server: &TestServer, forwarded: &str) -> u16 {
    server
        .http
        .get(server.url("/"))
        .header("x-forwarded-for", forwarded)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

async fn forwarded_for_only_from_trusted_proxies(backend: Backend) {
    // The peer (127.0.0.1) is not trusted: X-Forwarded-For changes nothing.
    let server = TestServer::start_with(
        backend,
        &flags(&["--rate-limiting-default", "2 per minute"]),
    )
    .await;
    assert_eq!(get_from(&server, "192.0.2.1").await, 200);
    assert_eq!(get_from(&server, "192.0.2.2").await, 200);
    assert_eq!(get_from(&server, "192.0.2.3").await, 429);

    // Trusted: each forwarded client has its own budget; the right-most untrusted
    // address counts, not what the client wrote further left.
    let server = TestServer::start_with(
        backend,
        &flags(&[
            "--rate-limiting-default",
            "2 per minute",
            "--trusted-proxies",
            "127.0.0.1,10.0.0.0/8",
        ]),
    )
    .await;
    assert_eq!(get_from(&server, "192.0.2.1").await, 200);
    assert_eq!(get_from(&server, "198.51.100.7, 192.0.2.1").await, 200);
    assert_eq!(get_from(&server, "192.0.2.1, 10.1.2.3").await, 429);
    assert_eq!(get_from(&server, "192.0.2.2").await, 200);
    assert_eq!(get_from(&server, "192.0.2.2, 10.9.9.9").await, 200);
    assert_eq!(get_from(&server, "192.0.2.2").await, 429);
}

/// 20 wrong passwords at once: only as many are checked as the threshold allows. Each
/// attempt is counted before its password is verified, so the first four fail plainly,
/// the fifth locks, and the fifteen beyond are answered as locked (`Retry-After`)
/// without a check. Counting after the check let all twenty through (and locked, then
/// counted again from zero, so 16 plain failures), and accepted the right password
/// sent after 14 wrong ones in the same burst.
async fn concurrent_guesses_get_no_more_checks_than_the_threshold(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &flags(&[
            "--account-lockout-attempts",
            "5",
            "--account-lockout-duration",
            "1m",
        ]),
    )
    .await;
    let password = server.register("olga").await;
    let burst = (0..20).map(|i| {
        let server = &server;
        // Username and email alike: one account, one count.
        let name = if i % 2 == 0 {
            "olga"
        } else {
            "olga@example.com"
        };
        async move { failed(login(server, name, "wrong password").await).await }
    });
    let answers = futures::future::join_all(burst).await;
    let plain = answers.iter().filter(|(_, retry)| retry.is_none()).count();
    assert_eq!(
        plain, 4,
        "{backend:?}: failures answered without a lockout (the threshold is 5)"
    );
    let (_, retry) = failed(login(&server, "olga", &password).await).await;
    assert!(
        retry.is_some(),
        "{backend:?}: the right password after the burst is locked out"
    );
}

/// Every route that checks a password draws on one per-IP budget
/// (`RATE_LIMITING_PASSWORD`): the login form of `/oauth/authorize` and the password
/// grant are no way around the `/auth/login` limit.
async fn every_password_route_shares_one_budget(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &flags(&["--rate-limiting-password", "3 per minute"]),
    )
    .await;
    let password = server.register("pavel").await;
    web_client(&server).await;
    let secret = legacy_client(&server).await;
    let grant = |password: String| {
        let server = &server;
        let secret = secret.clone();
        async move {
            server
                .post_form(
                    "/oauth/token",
                    Some(("legacy", &secret)),
                    &[
                        ("grant_type", "password"),
                        ("username", "pavel"),
                        ("password", &password),
                    ],
                )
                .await
                .status()
        }
    };
    assert_eq!(
        login(&server, "pavel", "wrong password").await.status(),
        401
    );
    assert_eq!(grant("wrong password".into()).await, 400);
    assert_eq!(
        submit_login_page(&server, "pavel", "wrong password")
            .await
            .status(),
        401
    );
    // The budget of this IP is spent, on every route, even with the right password.
    let refused = login(&server, "pavel", &password).await;
    assert_eq!(refused.status(), 429, "{backend:?}: /auth/login");
    assert!(retry_after(&refused).is_some());
    assert_eq!(
        grant(password.clone()).await,
        429,
        "{backend:?}: password grant"
    );
    assert_eq!(
        submit_login_page(&server, "pavel", &password)
            .await
            .status(),
        429,
        "{backend:?}: login form"
    );
}

both_backends!(
    concurrent_guesses_get_no_more_checks_than_the_threshold,
    every_password_route_shares_one_budget,
    lockout_after_failures,
    login_page_while_locked,
    login_page_over_the_account_limit,
    lockout_grows_on_repeat,
    success_clears_failures,
    unknown_usernames_lock_the_same_way,
    lockout_off,
    rate_limit_per_ip,
    route_and_account_limits,
    token_endpoint_per_client,
    forwarded_for_only_from_trusted_proxies,
);

// === Two replicas, one PostgreSQL, one Redis ===

/// With limit N, requests spread over two replicas are allowed N times in all, not 2N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_enforce_one_limit() {
    const LIMIT: usize = 10;
    let rate = format!("{LIMIT} per minute");
    let extra = flags(&["--rate-limiting-default", &rate]);
    let a = TestServer::start_with(Backend::Postgres, &extra).await;
    let b = a.start_replica(&extra).await;

    // Alternating, one at a time.
    let mut allowed = 0;
    let mut first_refused = None;
    for i in 0..2 * LIMIT {
        let server = if i % 2 == 0 { &a } else { &b };
        match server.get("/").await.status().as_u16() {
            200 => allowed += 1,
            429 => {
                first_refused.get_or_insert(i + 1);
            }
            other => panic!("unexpected status {other}"),
        }
    }
    println!(
        "sequential: configured {LIMIT}, allowed {allowed} of {} across 2 replicas",
        2 * LIMIT
    );
    assert_eq!(allowed, LIMIT);
    assert_eq!(first_refused, Some(LIMIT + 1));

    // Concurrent, on another route (its own bucket): 3N requests at once.
    let requests = (0..3 * LIMIT).map(|i| {
        let server = if i % 2 == 0 { &a } else { &b };
        async move { server.get("/.well-known/jwks.json").await.status().as_u16() }
    });
    let statuses = futures::future::join_all(requests).await;
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    println!(
        "concurrent: configured {LIMIT}, allowed {allowed}, refused {refused} of {} across 2 replicas",
        3 * LIMIT
    );
    assert_eq!(allowed, LIMIT);
    assert_eq!(refused, 2 * LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_lockout() {
    let extra = flags(&["--account-lockout-attempts", "4"]);
    let a = TestServer::start_with(Backend::Postgres, &extra).await;
    let b = a.start_replica(&extra).await;
    let password = a.register("henry").await;
    for server in [&a, &b, &a] {
        assert_eq!(
            failed(login(server, "henry", "wrong password").await)
                .await
                .1,
            None
        );
    }
    // The fourth failure, on the other replica, locks the account for both.
    let (_, retry) = failed(login(&b, "henry", "wrong password").await).await;
    assert!(retry.is_some());
    for server in [&a, &b] {
        let (_, retry) = failed(login(server, "henry", &password).await).await;
        assert!(retry.is_some(), "locked on both replicas");
    }
    println!("lockout: configured 4 attempts, locked after 4 failures spread across 2 replicas");
}

// === Redis stopped mid-test ===

/// A redis-server of this test's own, on a free loopback port; killed on drop.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn status(server: &TestServer, path: &str) -> u16 {
    server.get(path).await.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_test() {
    let mut redis = OwnRedis::start();
    let shared = Shared {
        redis_url: Some(redis.url()),
        ..Shared::default()
    };
    let open_flags = flags(&["--rate-limiting-default", "3 per minute"]);
    let open = TestServer::start_shared(&open_flags, shared.clone()).await;
    let closed_flags = flags(&[
        "--rate-limiting-default",
        "3 per minute",
        "--rate-limiting-redis-failure",
        "closed",
    ]);
    let closed = TestServer::start_shared(&closed_flags, shared).await;
    assert_eq!(status(&open, "/ready").await, 200);
    assert_eq!(status(&open, "/").await, 200);
    assert_eq!(status(&closed, "/").await, 200);

    redis.stop();

    // Fail open: still served, now limited in process (a fresh budget of 3).
    let statuses: Vec<u16> = futures::future::join_all((0..5).map(|_| status(&open, "/"))).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
    // Fail closed: 503.
    assert_eq!(status(&closed, "/").await, 503);
    // Readiness says why; the metric counts it.
    let ready = open.get("/ready").await;
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["checks"]["redis"], "unavailable");
    let metrics = open.metrics().await;
    assert!(
        metrics.contains("latchkey_rate_limit_backend_errors_total"),
        "metric missing"
    );

    // Redis back (empty: no persistence): ready again, counting in Redis again.
    redis.restart();
    let start = Instant::now();
    while status(&open, "/ready").await != 200 {
        assert!(start.elapsed() < Duration::from_secs(20), "not ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let start = Instant::now();
    while status(&closed, "/").await != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "fail-closed never recovered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A fresh Redis: a fresh budget of 3.
    let after: Vec<u16> = [(); 4].iter().map(|_| 0).collect();
    let mut after = after;
    for slot in &mut after {
        *slot = status(&open, "/").await;
    }
    assert_eq!(after, [200, 200, 200, 429]);
}
