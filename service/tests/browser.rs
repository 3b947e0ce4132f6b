//! The authorization endpoint in a real browser, on both backends: headless Chromium,
//! driven over WebDriver through chromedriver, signs in on the login page, approves or
//! denies on the consent page and lands on a loopback callback that the test serves, as
//! a client application's redirect endpoint would. The approved code is then exchanged
//! at the token endpoint like a confidential client does.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`), which `tests/scripts/services.sh` installs; without them the
//! test fails, it never skips. Everything listens on 127.0.0.1 only.
//!
//! Screenshots of the login and consent pages are written to each test's temporary
//! directory; set `LATCHKEY_TEST_SCREENSHOT_DIR` to keep copies (`<backend>-login.png`,
//! `<backend>-consent.png`).

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Backend, ISSUER, TestServer};
use fantoccini::{Client, ClientBuilder, Locator};
use latchkey_domain::clients::ClientInput;
use serde_json::{Value, json};
use tokio::sync::mpsc;

both_backends!(browser_signs_in_and_approves, browser_denies);

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Upper bound of every single wait: a WebDriver command, a page, the callback.
const WAIT: Duration = Duration::from_secs(20);
const CLIENT_ID: &str = "printer";
const SCOPE: &str = "openid profile photos";
const STATE: &str = "st-browser-1";

/// Awaits `step` for at most [`WAIT`]; a timeout or an error fails the test naming `what`.
async fn within<T, E: std::fmt::Debug>(what: &str, step: impl Future<Output = Result<T, E>>) -> T {
    match tokio::time::timeout(WAIT, step).await {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => panic!("{what}: {e:?}"),
        Err(_) => panic!("{what}: no answer within {WAIT:?}"),
    }
}

// === impl Driver ===

/// A chromedriver child process on a free loopback port.
///
/// It leads its own process group, which the Chromium it starts (and Chromium's helper
/// processes) join; dropping the `Driver` kills that whole group, also when the test
/// panics, so no browser outlives its test.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// Starts chromedriver, logging to `log`; fails the test if it is missing or never
    /// becomes ready.
    async fn start(log: &Path) -> Self {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(path).is_file(),
                "{path} is missing: the browser test needs Debian's chromium and \
                 chromium-driver packages; install them with `tests/scripts/services.sh ensure` \
                 (./test.sh does this)"
            );
        }
        let http = reqwest::Client::new();
        // The port is probed and then handed to chromedriver, so it can be lost to
        // another process in between: try again with a new one when chromedriver exits.
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("probe a free loopback port")
                .port();
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {CHROMEDRIVER}: {e}"));
            let mut driver = Self {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if matches!(driver.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                let status = http.get(format!("{}/status", driver.url)).send().await;
                if let Ok(response) = status {
                    let body: Value = response.json().await.unwrap_or_default();
                    if body["value"]["ready"] == true {
                        return driver;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if matches!(driver.child.try_wait(), Ok(None)) {
                panic!(
                    "chromedriver on {} not ready within {WAIT:?}; its log:\n{}",
                    driver.url,
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
        panic!(
            "chromedriver exited three times before it was ready; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The negative pid names the process group that chromedriver leads.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === impl Browser ===

/// Headless Chromium with a fresh profile, and the directory holding that profile, the
/// driver's log and the screenshots.
struct Browser {
    client: Client,
    // Declared before `dir`: the processes die before their files are removed.
    _driver: Driver,
    dir: tempfile::TempDir,
}

impl Browser {
    async fn launch() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let driver = Driver::start(&dir.path().join("chromedriver.log")).await;
        let profile = dir.path().join("profile");
        // The machine has no network: the last five flags keep Chromium from trying to
        // reach Google's services at all.
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1024,768",
                    format!("--user-data-dir={}", profile.display()),
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            },
            "timeouts": { "pageLoad": WAIT.as_millis(), "script": WAIT.as_millis(), "implicit": 0 },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let mut builder = ClientBuilder::rustls().expect("rustls for the WebDriver client");
        builder.capabilities(capabilities);
        let client = within("start a Chromium session", builder.connect(&driver.url)).await;
        Self {
            client,
            _driver: driver,
            dir,
        }
    }

    async fn goto(&self, url: &str) {
        within(&format!("open {url}"), self.client.goto(url)).await;
    }

    /// The first element matching `css`, waiting up to [`WAIT`] for it to appear.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        within(
            &format!("find {css}"),
            self.client
                .wait()
                .at_most(WAIT)
                .for_element(Locator::Css(css)),
        )
        .await
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        within(&format!("text of {css}"), element.text()).await
    }

    async fn texts(&self, css: &str) -> Vec<String> {
        let elements = within(
            &format!("find all {css}"),
            self.client.find_all(Locator::Css(css)),
        )
        .await;
        let mut texts = Vec::new();
        for element in elements {
            texts.push(within(&format!("text of {css}"), element.text()).await);
        }
        texts
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        within(&format!("type into {css}"), element.send_keys(text)).await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        within(&format!("click {css}"), element.click()).await;
    }

    async fn title(&self) -> String {
        within("page title", self.client.title()).await
    }

    /// Waits until the address bar starts with `prefix`; returns the whole URL.
    async fn wait_for_url(&self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = within("current URL", self.client.current_url()).await;
            if url.as_str().starts_with(prefix) {
                return url.into();
            }
            assert!(
                Instant::now() < deadline,
                "the browser did not reach {prefix} within {WAIT:?}; it is on {url}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG of the viewport as `<name>.png` in the test's directory, and a copy in
    /// `$LATCHKEY_TEST_SCREENSHOT_DIR` if that is set.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = within(&format!("screenshot {name}"), self.client.screenshot()).await;
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}: not a PNG");
        let path = self.dir.path().join(format!("{name}.png"));
        std::fs::write(&path, &png).expect("write screenshot");
        if let Some(keep) = std::env::var_os("LATCHKEY_TEST_SCREENSHOT_DIR") {
            std::fs::create_dir_all(&keep).expect("screenshot dir");
            std::fs::write(Path::new(&keep).join(format!("{name}.png")), &png)
                .expect("copy screenshot");
        }
        path
    }

    /// Ends the session, which quits Chromium; the driver goes when `self` drops.
    async fn close(self) {
        within("end the Chromium session", self.client.clone().close()).await;
    }
}

// === impl Callback ===

/// The client application's redirect endpoint, `http://127.0.0.1:<port>/callback`: it
/// answers `200 done` and hands each query string it receives to the test.
struct Callback {
    url: String,
    queries: mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Callback {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the callback server");
        let addr = listener.local_addr().expect("callback address");
        let (tx, queries) = mpsc::unbounded_channel();
        let router =
            axum::Router::new()
                .route(
                    "/callback",
                    axum::routing::get(
                        |State(tx): State<mpsc::UnboundedSender<String>>,
                         RawQuery(query): RawQuery| async move {
                            let _ = tx.send(query.unwrap_or_default());
                            "done"
                        },
                    ),
                )
                .with_state(tx);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url: format!("http://{addr}/callback"),
            queries,
            task,
        }
    }

    /// The parameters of the next request to the callback.
    async fn next(&mut self) -> HashMap<String, String> {
        let query = within("a request to the callback", async {
            self.queries.recv().await.ok_or("callback server gone")
        })
        .await;
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === the flows ===

fn pkce_pair() -> (String, String) {
    let verifier = latchkey_domain::tokens::random_token(48).expect("random");
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(hash.as_ref()))
}

/// A confidential, not first-party client (so consent is asked) redirecting to
/// `callback`; returns its secret.
async fn register_client(server: &TestServer, callback: &str) -> String {
    let strings = |items: &[&str]| Some(items.iter().map(|s| (*s).to_owned()).collect());
    let (record, secret) = server
        .client(ClientInput {
            client_id: Some(CLIENT_ID.into()),
            name: Some("Photo Printer".into()),
            grant_types: strings(&["authorization_code", "refresh_token"]),
            scopes: strings(&["openid", "profile", "email", "photos"]),
            redirect_uris: strings(&[callback]),
            ..ClientInput::default()
        })
        .await;
    assert!(!record.first_party && !record.public);
    secret.expect("a confidential client has a secret")
}

fn authorize_url(server: &TestServer, callback: &str, challenge: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", callback)
        .append_pair("scope", SCOPE)
        .append_pair("state", STATE)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    server.url(&format!("/oauth/authorize?{query}"))
}

/// From the login page on to the consent page; screenshots both when `shots` names the
/// backend.
async fn sign_in_to_consent(browser: &Browser, user: &str, password: &str, shots: Option<&str>) {
    assert_eq!(browser.title().await, "Sign in – Latchkey");
    assert_eq!(
        browser.text("h1").await,
        "Sign in to continue to Photo Printer"
    );
    if let Some(backend) = shots {
        browser.screenshot(&format!("{backend}-login")).await;
    }
    browser.type_into("#username", user).await;
    browser.type_into("#password", password).await;
    browser.click("form button[type=submit]").await;
    browser.find("button[value=approve]").await;
    assert_eq!(browser.title().await, "Approve access – Latchkey");
    assert_eq!(
        browser.text("h1").await,
        "Photo Printer wants to access your account"
    );
    assert_eq!(
        browser.texts("main ul li").await,
        [
            "Know who you are (your account id)",
            "See your name and username",
            "Access: photos",
        ]
    );
    if let Some(backend) = shots {
        browser.screenshot(&format!("{backend}-consent")).await;
    }
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

async fn browser_signs_in_and_approves(backend: Backend) {
    let server = TestServer::start(backend).await;
    let password = server.register("alice").await;
    let mut callback = Callback::start().await;
    let secret = register_client(&server, &callback.url).await;
    let (verifier, challenge) = pkce_pair();
    let browser = Browser::launch().await;

    browser
        .goto(&authorize_url(&server, &callback.url, &challenge))
        .await;
    sign_in_to_consent(&browser, "alice", &password, Some(backend_name(backend))).await;
    browser.click("button[value=approve]").await;

    browser.wait_for_url(&format!("{}?", callback.url)).await;
    assert_eq!(browser.text("body").await, "done");
    let params = callback.next().await;
    assert_eq!(params.get("state").map(String::as_str), Some(STATE));
    assert_eq!(params.get("iss").map(String::as_str), Some(ISSUER));
    assert!(!params.contains_key("error"), "{params:?}");
    let code = params.get("code").expect("a code at the callback");
    browser.close().await;

    let response = server
        .post_form(
            "/oauth/token",
            Some((CLIENT_ID, &secret)),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &callback.url),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.expect("token response");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], SCOPE);
    let access = tokens["access_token"].as_str().expect("an access token");
    let userinfo = server.get_with_token("/userinfo", access).await;
    assert_eq!(userinfo.status(), 200);
    let userinfo: Value = userinfo.json().await.expect("userinfo");
    assert_eq!(userinfo["preferred_username"], "alice");
}

async fn browser_denies(backend: Backend) {
    let server = TestServer::start(backend).await;
    let password = server.register("bob").await;
    let mut callback = Callback::start().await;
    register_client(&server, &callback.url).await;
    let (_, challenge) = pkce_pair();
    let browser = Browser::launch().await;

    browser
        .goto(&authorize_url(&server, &callback.url, &challenge))
        .await;
    sign_in_to_consent(&browser, "bob", &password, None).await;
    browser.click("button[value=deny]").await;

    browser.wait_for_url(&format!("{}?", callback.url)).await;
    let params = callback.next().await;
    assert_eq!(
        params.get("error").map(String::as_str),
        Some("access_denied")
    );
    assert_eq!(params.get("state").map(String::as_str), Some(STATE));
    assert_eq!(params.get("iss").map(String::as_str), Some(ISSUER));
    assert!(!params.contains_key("code"), "{params:?}");
    browser.close().await;
}
