//! Test support: start the real service on port 0 against a real backend.
//!
//! - SQLite: a fresh file in a temporary directory, in-process revocation list.
//! - PostgreSQL + Redis: the servers `./test.sh` starts, named by
//!   `LATCHKEY_TEST_DATABASE_URL` and `LATCHKEY_TEST_REDIS_URL`. Each test gets its own
//!   database and its own Redis key prefix. Without those variables the test fails: a
//!   missing service is an error, never a skip.
#![allow(dead_code)]

use std::path::PathBuf;

use latchkey::config::Settings;
use latchkey_store::Db;
use latchkey_store::clients::ClientRecord;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named async test fn (taking a [`Backend`]) once per backend.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Postgres).await
                }
            )*
        }
    };
}

pub const ISSUER: &str = "http://latchkey.test";

/// A running service and what a test needs to poke at it.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub backend: Backend,
    pub keys_dir: PathBuf,
    /// `LATCHKEY_DATA_DIR` (the outbox is `outbox/` in it).
    pub data_dir: PathBuf,
    pub database_url: String,
    /// The Redis URL and key prefix (PostgreSQL backend), so a replica can share them.
    pub redis: Option<(String, String)>,
    /// A second handle on the service's database, for asserting what was stored.
    pub db: Db,
    /// Declared before `_dir`: the service stops before its directory goes.
    service: latchkey_testkit::Service,
    _dir: tempfile::TempDir,
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A fresh PostgreSQL database on the test server; returns its URL.
pub async fn fresh_postgres_database() -> String {
    latchkey_testkit::postgres::fresh_database()
        .await
        .expect("a fresh PostgreSQL database")
}

pub fn redis_url() -> String {
    std::env::var("LATCHKEY_TEST_REDIS_URL").expect(
        "LATCHKEY_TEST_REDIS_URL is not set: run ./test.sh, which starts PostgreSQL and Redis",
    )
}

/// What a server shares with others (PostgreSQL backend): its database, its Redis and
/// its key prefix. `None` fields get fresh ones.
#[derive(Clone, Debug, Default)]
pub struct Shared {
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub redis_prefix: Option<String>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, &[]).await
    }

    /// A second replica of this (PostgreSQL) server: the same database, the same Redis
    /// and the same key prefix, with its own listener, keys and in-process state.
    pub async fn start_replica(&self, extra: &[&str]) -> Self {
        assert_eq!(
            self.backend,
            Backend::Postgres,
            "replicas share PostgreSQL + Redis"
        );
        let (redis_url, prefix) = self.redis.clone().expect("a PostgreSQL server has Redis");
        let shared = Shared {
            database_url: Some(self.database_url.clone()),
            redis_url: Some(redis_url),
            redis_prefix: Some(prefix),
        };
        Self::start_shared(extra, shared).await
    }

    /// A PostgreSQL server with what `shared` names (e.g. a Redis of the test's own).
    pub async fn start_shared(extra: &[&str], shared: Shared) -> Self {
        Self::start_on(Backend::Postgres, extra, None, shared).await
    }

    /// Starts a server whose issuer is its own address, for clients that discover it.
    pub async fn start_with_issuer(backend: Backend) -> Self {
        Self::start_with_issuer_and(backend, &[]).await
    }

    /// [`TestServer::start_with_issuer`] with further command-line flags.
    pub async fn start_with_issuer_and(backend: Backend, extra: &[&str]) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        Self::start_on(backend, extra, Some(listener), Shared::default()).await
    }

    /// Starts a server; `extra` are further command-line flags (`--flag`, `value`).
    pub async fn start_with(backend: Backend, extra: &[&str]) -> Self {
        Self::start_on(backend, extra, None, Shared::default()).await
    }

    async fn start_on(
        backend: Backend,
        extra: &[&str],
        listener: Option<std::net::TcpListener>,
        shared: Shared,
    ) -> Self {
        // Server logs go to the test's captured output, shown when it fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("LATCHKEY_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let issuer = match &listener {
            Some(l) => format!("http://{}", l.local_addr().expect("addr")),
            None => ISSUER.to_owned(),
        };
        let mut args: Vec<String> = vec![
            "latchkey".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--issuer".into(),
            issuer,
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--log".into(),
            "warn".into(),
        ];
        let mut redis = None;
        let database_url = match backend {
            Backend::Sqlite => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("latchkey.db").display()
            ),
            Backend::Postgres => {
                let url = match shared.database_url {
                    Some(url) => url,
                    None => fresh_postgres_database().await,
                };
                let redis_url = shared.redis_url.unwrap_or_else(redis_url);
                let prefix = shared
                    .redis_prefix
                    .unwrap_or_else(|| format!("test:{}:", random_suffix()));
                args.extend([
                    "--database-url".into(),
                    url.clone(),
                    "--redis-url".into(),
                    redis_url.clone(),
                    "--redis-prefix".into(),
                    prefix.clone(),
                ]);
                redis = Some((redis_url, prefix));
                url
            }
        };
        if backend == Backend::Sqlite {
            std::fs::create_dir_all(&data_dir).expect("data dir");
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let settings = Settings::from_args(&args).unwrap_or_else(|e| panic!("test settings: {e}"));
        let keys_dir = settings.keys_dir();
        let service = latchkey_testkit::Service::start(&settings, listener)
            .await
            .expect("service starts");
        let db = Db::connect(&database_url, 2).await.expect("test db handle");
        Self {
            base: service.base.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            backend,
            keys_dir,
            data_dir,
            database_url,
            redis,
            db,
            service,
            _dir: dir,
        }
    }

    /// Sends the shutdown signal (what SIGTERM does in the binary) and returns the serving
    /// task, which ends once the drain and the requests in flight are done.
    pub fn signal_shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        self.service.shutdown().expect("the server is running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /metrics` on the metrics listener.
    pub async fn metrics_response(&self) -> reqwest::Response {
        let base = self
            .service
            .metrics_base
            .as_deref()
            .expect("a metrics listener");
        self.http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("request")
    }

    /// The metrics text of the metrics listener.
    pub async fn metrics(&self) -> String {
        let response = self.metrics_response().await;
        assert_eq!(response.status(), 200, "/metrics");
        response.text().await.expect("metrics")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// Registers an OAuth client directly in the database (as `latchkey client create`
    /// would); returns it with its secret, if confidential.
    pub async fn client(
        &self,
        input: latchkey_domain::clients::ClientInput,
    ) -> (ClientRecord, Option<String>) {
        let (record, secret) = latchkey_domain::clients::create(input, latchkey_store::now_ms())
            .expect("valid client");
        latchkey_store::clients::insert(&self.db, &record)
            .await
            .expect("insert client");
        (record, secret.map(|s| s.expose().to_owned()))
    }

    /// `POST` a form, optionally with HTTP Basic client credentials.
    pub async fn post_form(
        &self,
        path: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self.http.post(self.url(path)).form(form);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        request.send().await.expect("request")
    }

    /// Registers `username` with a strong password; returns the password.
    pub async fn register(&self, username: &str) -> String {
        let password = format!("{username}-is-not-my-password!");
        let password = password.replace(username, "correct-horse");
        let response = self
            .post_json(
                "/auth/register",
                &json!({
                    "username": username,
                    "email": format!("{username}@example.com"),
                    "password": password,
                    "full_name": "Test User",
                }),
            )
            .await;
        assert_eq!(
            response.status(),
            201,
            "register: {}",
            response.text().await.unwrap_or_default()
        );
        password
    }

    /// Registers and logs in; returns the token response body.
    pub async fn register_and_login(&self, username: &str) -> Value {
        let password = self.register(username).await;
        let response = self
            .post_json(
                "/auth/login",
                &json!({ "username": username, "password": password }),
            )
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }
}

impl TestServer {
    /// `http://127.0.0.1:<port>` of the metrics listener.
    pub fn metrics_base(&self) -> String {
        self.service
            .metrics_base
            .clone()
            .expect("a metrics listener")
    }
}

/// Carries an OAuth library's HTTP request over our reqwest client (`openidconnect`
/// re-exports the same `oauth2` types).
pub async fn library_http(
    http: reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut builder = oauth2::http::Response::builder().status(response.status().as_u16());
    for (name, value) in response.headers() {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    let body = response.bytes().await?.to_vec();
    Ok(builder.body(body).expect("response"))
}
