//! Faults under load, nothing lost.
//!
//! Each test runs a bounded load of mixed requests (registrations, logins, refreshes,
//! client credentials, introspection) against real `latchkey` processes, injects one
//! fault, restores what it broke, and then checks:
//!
//! - every answer was a 2xx or a documented refusal: a 503 with `Retry-After` while a
//!   dependency is gone, never a 500, never a hang past the request timeout;
//! - every 2xx is in the database: each registered user exists, each refresh token
//!   handed out is stored, no refresh token was accepted twice (a retry of a token whose
//!   answer was lost is refused, which is the point of rotation);
//! - the service recovered by itself, without a restart.
//!
//! The tests own their PostgreSQL and Redis (testkit's [`PostgresServer`] and
//! [`RedisServer`]) so they can stop and kill them; the shared servers of `./test.sh`
//! are not touched. Each test prints what it measured: requests sent, failures by
//! status, recovery time.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey_domain::clients::ClientInput;
use latchkey_store::Db;
use latchkey_store::keys::KeyPair;
use latchkey_store::signing_keys::{self, KeyState, SigningKeyRow};
use latchkey_testkit::{PostgresServer, RedisServer, ServiceProcess, StopMode};
use serde_json::{Value, json};
use sqlx::Row as _;

/// `--request-timeout` of every replica: no answer may take longer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a test waits for any one condition before it fails.
const PATIENCE: Duration = Duration::from_secs(60);
/// Concurrent callers.
const WORKERS: usize = 12;
/// A hard bound on the requests of one test, whatever happens.
const MAX_REQUESTS: usize = 20_000;
/// Successful requests before the fault, and again after recovery.
const WARM_UP: usize = 400;
const CLIENT_ID: &str = "faults-svc";

// === The load ===

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Op {
    Register,
    Login,
    Refresh,
    ClientCredentials,
    Introspect,
}

impl Op {
    /// Whether the request writes to the database.
    fn writes(self) -> bool {
        matches!(self, Self::Register | Self::Login | Self::Refresh)
    }
}

/// One request and what came of it.
#[derive(Clone, Debug)]
struct Outcome {
    op: Op,
    replica: usize,
    /// The HTTP status; 0 when no answer arrived (see `transport`).
    status: u16,
    transport: Option<&'static str>,
    retry_after: bool,
    /// `error` of an error body.
    error: Option<String>,
    /// When the request was sent, since the load started.
    at: Duration,
    latency: Duration,
    username: Option<String>,
    /// The refresh token presented (refresh).
    presented: Option<String>,
    /// The refresh token handed out (login, refresh).
    issued: Option<String>,
    /// `active` of an introspection answer.
    active: Option<bool>,
}

impl Outcome {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn ended(&self) -> Duration {
        self.at + self.latency
    }

    fn label(&self) -> String {
        match self.transport {
            Some(kind) => format!("no answer ({kind})"),
            None => self.status.to_string(),
        }
    }
}

/// The load: `WORKERS` callers, each running sessions (register, log in, then refresh,
/// client credentials and introspection in turn) against the replicas in rotation.
struct Load {
    bases: Vec<String>,
    /// Which replicas get new requests (a load balancer's endpoints).
    in_rotation: Vec<AtomicBool>,
    http: reqwest::Client,
    client_secret: String,
    started: Instant,
    stop: AtomicBool,
    next: AtomicUsize,
    sent: AtomicUsize,
    outcomes: Mutex<Vec<Outcome>>,
}

/// What a request sends.
enum Call<'a> {
    Json(&'a str, Value),
    Token(&'a [(&'a str, &'a str)]),
    Introspect(&'a str),
}

impl Load {
    fn start(
        bases: Vec<String>,
        client_secret: String,
    ) -> (Arc<Self>, Vec<tokio::task::JoinHandle<()>>) {
        let load = Arc::new(Self {
            in_rotation: bases.iter().map(|_| AtomicBool::new(true)).collect(),
            bases,
            http: reqwest::Client::builder()
                // A hang shows as a timeout, not as a test that never ends.
                .timeout(REQUEST_TIMEOUT + Duration::from_secs(5))
                .build()
                .expect("client"),
            client_secret,
            started: Instant::now(),
            stop: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            sent: AtomicUsize::new(0),
            outcomes: Mutex::new(Vec::new()),
        });
        let workers = (0..WORKERS)
            .map(|w| tokio::spawn(worker(load.clone(), w)))
            .collect();
        (load, workers)
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.sent.load(Ordering::Relaxed) >= MAX_REQUESTS
    }

    fn take_out_of_rotation(&self, replica: usize) {
        self.in_rotation[replica].store(false, Ordering::SeqCst);
    }

    fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().expect("outcomes").clone()
    }

    /// How many outcomes match `f`.
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes
            .lock()
            .expect("outcomes")
            .iter()
            .filter(|o| f(o))
            .count()
    }

    /// Waits until `f` holds of the outcomes so far.
    async fn until(&self, what: &str, f: impl Fn(&[Outcome]) -> bool) {
        let started = Instant::now();
        loop {
            if f(&self.outcomes.lock().expect("outcomes")) {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "load: {what} did not happen within {PATIENCE:?}\n{}",
                summary(&self.outcomes())
            );
            assert!(
                !self.stopped(),
                "load: stopped before {what}\n{}",
                summary(&self.outcomes())
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for `n` more successful requests than there are now.
    async fn more_successes(&self, n: usize) {
        let from = self.count(Outcome::ok);
        self.until(&format!("{n} more successes"), |all| {
            all.iter().filter(|o| o.ok()).count() >= from + n
        })
        .await;
    }

    /// The next replica in rotation, round robin.
    fn pick(&self) -> usize {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.bases.len();
            if self.in_rotation[i].load(Ordering::SeqCst) {
                return i;
            }
        }
    }

    async fn send(&self, op: Op, call: Call<'_>) -> (Outcome, Option<Value>) {
        let replica = self.pick();
        let base = &self.bases[replica];
        let request = match call {
            Call::Json(path, body) => self.http.post(format!("{base}{path}")).json(&body),
            Call::Token(form) => self
                .http
                .post(format!("{base}/oauth/token"))
                .basic_auth(CLIENT_ID, Some(&self.client_secret))
                .form(form),
            Call::Introspect(token) => self
                .http
                .post(format!("{base}/oauth/introspect"))
                .basic_auth(CLIENT_ID, Some(&self.client_secret))
                .form(&[("token", token)]),
        };
        self.sent.fetch_add(1, Ordering::Relaxed);
        let at = self.now();
        let sent = Instant::now();
        let mut outcome = Outcome {
            op,
            replica,
            status: 0,
            transport: None,
            retry_after: false,
            error: None,
            at,
            latency: Duration::ZERO,
            username: None,
            presented: None,
            issued: None,
            active: None,
        };
        let body = match request.send().await {
            Ok(response) => {
                outcome.status = response.status().as_u16();
                outcome.retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s > 0));
                match response.json::<Value>().await {
                    Ok(body) => Some(body),
                    // An answer that is not JSON: the status tells.
                    Err(e) if e.is_decode() => None,
                    // The answer broke off.
                    Err(e) => {
                        outcome.transport = Some(if e.is_timeout() { "timeout" } else { "body" });
                        None
                    }
                }
            }
            Err(e) => {
                outcome.transport = Some(if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "request"
                });
                None
            }
        };
        outcome.latency = sent.elapsed();
        if !outcome.ok() {
            outcome.error = body
                .as_ref()
                .and_then(|b| b["error"].as_str())
                .map(str::to_owned);
        }
        (outcome, body)
    }

    fn record(&self, outcome: Outcome) {
        self.outcomes.lock().expect("outcomes").push(outcome);
    }
}

/// Refreshes, client-credentials grants and introspections per session, in turn.
const STEPS_PER_SESSION: usize = 12;

async fn worker(load: Arc<Load>, w: usize) {
    let mut sessions = 0usize;
    let mut user: Option<(String, String)> = None;
    let mut refresh: Option<String> = None;
    let mut access: Option<String> = None;
    let mut step = 0usize;
    while !load.stopped() {
        let Some((username, password)) = user.clone() else {
            sessions += 1;
            let username = format!("w{w}s{sessions}");
            // Never containing the username, which the password policy refuses.
            let password = format!("correct-horse-battery-{sessions}-{}", w * 7 + 3);
            let (mut outcome, _) = load
                .send(
                    Op::Register,
                    Call::Json(
                        "/auth/register",
                        json!({
                            "username": username,
                            "email": format!("{username}@example.com"),
                            "password": password,
                        }),
                    ),
                )
                .await;
            outcome.username = Some(username.clone());
            // Not registered (or not known to be): the next session takes a new name.
            let registered = outcome.ok();
            if registered {
                user = Some((username, password));
                step = 0;
            }
            load.record(outcome);
            if !registered {
                read_between(&load, access.as_deref()).await;
            }
            continue;
        };
        let Some(token) = refresh.clone() else {
            let (mut outcome, body) = load
                .send(
                    Op::Login,
                    Call::Json(
                        "/auth/login",
                        json!({ "username": username, "password": password }),
                    ),
                )
                .await;
            outcome.username = Some(username);
            if outcome.ok() {
                let issued = body.as_ref().and_then(|b| b["refresh_token"].as_str());
                outcome.issued = issued.map(str::to_owned);
                refresh = outcome.issued.clone();
            }
            let logged_in = outcome.ok();
            load.record(outcome);
            if !logged_in {
                read_between(&load, access.as_deref()).await;
            }
            continue;
        };
        match step % 3 {
            0 => {
                let (mut outcome, body) = load
                    .send(
                        Op::Refresh,
                        Call::Json("/auth/refresh", json!({ "refresh_token": token })),
                    )
                    .await;
                outcome.presented = Some(token);
                if outcome.ok() {
                    let issued = body.as_ref().and_then(|b| b["refresh_token"].as_str());
                    outcome.issued = issued.map(str::to_owned);
                    refresh = outcome.issued.clone();
                } else if outcome.status == 401 {
                    // Consumed already (an answer lost to the fault): log in again.
                    refresh = None;
                }
                // Otherwise retry the same token, as a client that got no answer does.
                load.record(outcome);
            }
            1 => {
                let (outcome, body) = load
                    .send(
                        Op::ClientCredentials,
                        Call::Token(&[("grant_type", "client_credentials")]),
                    )
                    .await;
                if let Some(t) = body.as_ref().and_then(|b| b["access_token"].as_str())
                    && outcome.ok()
                {
                    access = Some(t.to_owned());
                }
                load.record(outcome);
            }
            _ => {
                if let Some(token) = access.clone() {
                    let (mut outcome, body) =
                        load.send(Op::Introspect, Call::Introspect(&token)).await;
                    if outcome.ok() {
                        outcome.active = body.as_ref().and_then(|b| b["active"].as_bool());
                    }
                    load.record(outcome);
                }
            }
        }
        step += 1;
        if step >= STEPS_PER_SESSION {
            user = None;
            refresh = None;
        }
    }
}

/// After a refused registration or login, the introspection of the worker's last access
/// token: the traffic that needs no write goes on while writes fail, as other callers'
/// would, instead of every worker retrying its write in a loop.
async fn read_between(load: &Load, access: Option<&str>) {
    if let Some(token) = access {
        let (mut outcome, body) = load.send(Op::Introspect, Call::Introspect(token)).await;
        if outcome.ok() {
            outcome.active = body.as_ref().and_then(|b| b["active"].as_bool());
        }
        load.record(outcome);
    }
}

// === What the answers must say, and what the database must hold ===

/// Counts by operation and answer, for the report.
fn summary(outcomes: &[Outcome]) -> String {
    let mut table: BTreeMap<(Op, String), usize> = BTreeMap::new();
    for o in outcomes {
        *table.entry((o.op, o.label())).or_default() += 1;
    }
    let failed: BTreeMap<String, usize> =
        outcomes
            .iter()
            .filter(|o| !o.ok())
            .fold(BTreeMap::new(), |mut m, o| {
                *m.entry(o.label()).or_default() += 1;
                m
            });
    let mut text = format!(
        "sent {}, failed {} {failed:?}\n",
        outcomes.len(),
        outcomes.iter().filter(|o| !o.ok()).count()
    );
    for ((op, label), n) in table {
        text.push_str(&format!("  {op:?} {label}: {n}\n"));
    }
    text
}

/// Problems with the answers themselves, whatever the fault.
fn check_answers(outcomes: &[Outcome], problems: &mut Vec<String>) {
    for o in outcomes {
        if o.status >= 500 && o.status != 503 {
            problems.push(format!("{:?} answered {} ({:?})", o.op, o.status, o.error));
        }
        if o.status == 503 && !o.retry_after {
            problems.push(format!("{:?} answered 503 without Retry-After", o.op));
        }
        if o.status == 408 || o.latency > REQUEST_TIMEOUT || o.transport == Some("timeout") {
            problems.push(format!("{:?} took {:?} ({})", o.op, o.latency, o.label()));
        }
        if o.op == Op::Introspect && o.ok() && o.active != Some(true) {
            problems.push("a fresh client-credentials token introspected inactive".into());
        }
    }
    // A refresh token is accepted at most once; a refused one was presented before
    // (the retry of an attempt whose answer was lost).
    let mut tried: HashSet<&str> = HashSet::new();
    let mut accepted: HashSet<&str> = HashSet::new();
    let mut by_time: Vec<&Outcome> = outcomes.iter().filter(|o| o.op == Op::Refresh).collect();
    by_time.sort_by_key(|o| o.at);
    for o in by_time {
        let token = o.presented.as_deref().unwrap_or_default();
        if o.ok() && !accepted.insert(token) {
            problems.push("a refresh token was accepted twice".into());
        }
        if o.status == 401 && !tried.contains(token) {
            problems.push("a refresh token was refused at its first presentation".into());
        }
        tried.insert(token);
    }
}

/// Every 2xx is in the database.
async fn check_ledger(db: &Db, outcomes: &[Outcome], problems: &mut Vec<String>) {
    let mut checked = 0usize;
    for o in outcomes.iter().filter(|o| o.ok()) {
        if o.op == Op::Register {
            let username = o.username.as_deref().unwrap_or_default();
            let user = latchkey_store::users::find_by_login(db, username)
                .await
                .expect("read users");
            if user.is_none() {
                problems.push(format!(
                    "registration of {username} answered 2xx but is lost"
                ));
            }
            checked += 1;
        }
        if let Some(issued) = &o.issued {
            if stored_refresh(db, issued).await.is_none() {
                problems.push(format!(
                    "{:?} handed out a refresh token that is not stored",
                    o.op
                ));
            }
            checked += 1;
        }
        if o.op == Op::Refresh {
            let presented = o.presented.as_deref().unwrap_or_default();
            if !matches!(stored_refresh(db, presented).await, Some(Some(_))) {
                problems.push("a refresh was accepted but its token is not marked used".into());
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "nothing to check in the database");
}

/// `Some(used_at)` of a stored refresh token.
async fn stored_refresh(db: &Db, token: &str) -> Option<Option<i64>> {
    let row = sqlx::query("SELECT used_at FROM refresh_tokens WHERE token_hash = $1")
        .bind(latchkey_domain::tokens::digest(token))
        .fetch_optional(db.pool())
        .await
        .expect("read refresh_tokens")?;
    Some(row.try_get::<Option<i64>, _>("used_at").expect("used_at"))
}

/// Answers of the window `[from, to)` (by when they were sent or answered).
fn overlapping(outcomes: &[Outcome], from: Duration, to: Duration) -> Vec<&Outcome> {
    outcomes
        .iter()
        .filter(|o| o.ended() >= from && o.at < to)
        .collect()
}

/// After recovery every answer is a success, but for the refusal of a refresh token
/// whose earlier presentation got no answer.
fn check_recovered(outcomes: &[Outcome], since: Duration, problems: &mut Vec<String>) {
    let retried: HashSet<&str> = outcomes
        .iter()
        .filter(|o| o.op == Op::Refresh && !o.ok() && o.at < since)
        .filter_map(|o| o.presented.as_deref())
        .collect();
    for o in outcomes.iter().filter(|o| o.at >= since && !o.ok()) {
        let retry = o.op == Op::Refresh
            && o.status == 401
            && o.presented.as_deref().is_some_and(|t| retried.contains(t));
        if !retry {
            problems.push(format!(
                "after recovery: {:?} at replica {} answered {} ({:?})",
                o.op,
                o.replica,
                o.label(),
                o.error
            ));
        }
    }
}

fn assert_no_problems(what: &str, problems: &[String], outcomes: &[Outcome]) {
    if problems.is_empty() {
        return;
    }
    let mut counted: BTreeMap<&str, usize> = BTreeMap::new();
    for p in problems {
        *counted.entry(p.as_str()).or_default() += 1;
    }
    panic!("{what}: {counted:#?}\n{}", summary(outcomes));
}

// === The replicas ===

/// PostgreSQL, Redis and two `latchkey` processes sharing them and one key directory.
struct Fleet {
    replicas: Vec<ServiceProcess>,
    db: Db,
    client_secret: String,
    redis: RedisServer,
    pg: PostgresServer,
    _dir: tempfile::TempDir,
}

/// The `latchkey` binary: cargo's, or `LATCHKEY_TEST_SERVICE_BIN` (a copy, when other
/// builds share the target directory and may replace cargo's while tests run).
fn binary() -> PathBuf {
    std::env::var_os("LATCHKEY_TEST_SERVICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_latchkey")))
}

/// Flags every replica of these tests runs with: limits on (so Redis is on every
/// request's path) but far above the load, a key reload interval only notifications
/// can beat.
fn common_flags(dir: &Path, i: usize) -> Vec<String> {
    [
        "--issuer",
        "http://latchkey.test",
        "--log",
        "info,sqlx=warn",
        "--request-timeout",
        &format!("{}s", REQUEST_TIMEOUT.as_secs()),
        "--keys-reload-interval",
        "1h",
        "--rate-limiting-default",
        "100000 per minute",
        "--rate-limiting-routes",
        "/=5 per minute,/auth/login=100000 per minute,/auth/register=100000 per minute",
        "--rate-limiting-password",
        "100000 per minute",
        "--rate-limiting-account",
        "100000 per minute",
        "--rate-limiting-client",
        "100000 per minute",
        "--data-dir",
        &dir.join(format!("data-{i}")).display().to_string(),
        "--keys-dir",
        &dir.join("keys").display().to_string(),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

impl Fleet {
    async fn start(extra: &[&str]) -> Self {
        let pg = PostgresServer::start_new().await.expect("PostgreSQL");
        let redis = RedisServer::start_new().await.expect("Redis");
        let database_url = pg.fresh_database().await.expect("a database");
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = "faults:";
        let mut replicas = Vec::new();
        // One after the other: the first generates the shared key.
        for i in 0..2 {
            let mut args = common_flags(dir.path(), i);
            args.extend(
                [
                    "--database-url",
                    &database_url,
                    "--redis-url",
                    &redis.url(),
                    "--redis-prefix",
                    prefix,
                ]
                .into_iter()
                .map(str::to_owned),
            );
            args.extend(extra.iter().map(|s| (*s).to_owned()));
            let log = dir.path().join(format!("latchkey-{i}.log"));
            replicas.push(
                ServiceProcess::start(&binary(), &args, log)
                    .await
                    .expect("a replica starts"),
            );
        }
        let db = Db::connect(&database_url, 4).await.expect("test db handle");
        let client_secret = create_client(&db).await;
        Self {
            replicas,
            db,
            client_secret,
            redis,
            pg,
            _dir: dir,
        }
    }

    fn bases(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.base.clone()).collect()
    }

    fn logs(&self) -> String {
        self.replicas
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "--- replica {i} ({}) ---\n{}\n",
                    r.log_path().display(),
                    errors_in_log(r.log_path())
                )
            })
            .collect()
    }
}

/// The error and warning lines of a replica's log (the last 30).
fn errors_in_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains("\"level\":\"WARN\""))
        .collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A confidential client for the client-credentials grant and introspection.
async fn create_client(db: &Db) -> String {
    let input = ClientInput {
        client_id: Some(CLIENT_ID.into()),
        grant_types: Some(vec!["client_credentials".into()]),
        scopes: Some(vec!["read".into()]),
        ..ClientInput::default()
    };
    let (record, secret) =
        latchkey_domain::clients::create(input, latchkey_store::now_ms()).expect("valid client");
    latchkey_store::clients::insert(db, &record)
        .await
        .expect("insert client");
    secret.expect("a confidential client").expose().to_owned()
}

/// `/ready` of `base`: its status, over a fresh connection.
async fn ready(base: &str) -> Option<u16> {
    reqwest::Client::new()
        .get(format!("{base}/ready"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Waits until every replica's `/ready` answers `status`; returns how long it took.
async fn until_ready_is(bases: &[String], status: u16, what: &str) -> Duration {
    let started = Instant::now();
    for base in bases {
        while ready(base).await != Some(status) {
            assert!(
                started.elapsed() < PATIENCE,
                "{base}/ready never answered {status} ({what})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    started.elapsed()
}

/// Stops the load and returns everything it recorded.
async fn finish(load: &Load, workers: Vec<tokio::task::JoinHandle<()>>) -> Vec<Outcome> {
    load.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    load.outcomes()
}

// === PostgreSQL restarted ===

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_fast_restart_under_load() {
    postgres_restart(StopMode::Fast).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_immediate_restart_under_load() {
    postgres_restart(StopMode::Immediate).await;
}

async fn postgres_restart(mode: StopMode) {
    let mut fleet = Fleet::start(&[]).await;
    let bases = fleet.bases();
    let (load, workers) = Load::start(bases.clone(), fleet.client_secret.clone());
    load.more_successes(WARM_UP).await;

    let fault = load.now();
    fleet.pg.stop(mode).await.expect("pg_ctl stop");
    let not_ready = until_ready_is(&bases, 503, "database stopped").await;
    // Requests meet the gap at both replicas: they are refused, not held.
    load.until(
        "a 503 from each replica while the database is down",
        |all| {
            (0..bases.len()).all(|r| {
                all.iter()
                    .any(|o| o.replica == r && o.at >= fault && o.status == 503)
            })
        },
    )
    .await;
    let restored = load.now();
    fleet.pg.start().await.expect("PostgreSQL starts again");
    let ready_again = until_ready_is(&bases, 200, "database back").await;
    load.until(
        "a refresh accepted by each replica after the restart",
        |all| {
            (0..bases.len()).all(|r| {
                all.iter()
                    .any(|o| o.replica == r && o.at >= restored && o.op == Op::Refresh && o.ok())
            })
        },
    )
    .await;
    let recovered = load.now();

    // Key changes reach every replica by notification again: the reload interval is an
    // hour, and the second change comes once the listener is back for sure.
    let (first, second) = key_changes_arrive(&fleet.db, &bases).await;

    load.more_successes(WARM_UP).await;
    let outcomes = finish(&load, workers).await;

    let gap = overlapping(&outcomes, fault, recovered);
    let mut problems = Vec::new();
    check_answers(&outcomes, &mut problems);
    for o in &outcomes {
        if o.transport.is_some() {
            problems.push(format!("{:?}: no answer ({})", o.op, o.label()));
        }
        if o.at + o.latency < fault && !o.ok() {
            problems.push(format!(
                "before the fault: {:?} answered {}",
                o.op,
                o.label()
            ));
        }
        if !o.ok() && o.status != 503 && !(o.op == Op::Refresh && o.status == 401) {
            problems.push(format!("{:?} answered {} ({:?})", o.op, o.label(), o.error));
        }
    }
    check_recovered(&outcomes, recovered, &mut problems);
    check_ledger(&fleet.db, &outcomes, &mut problems).await;
    let slowest_503 = gap
        .iter()
        .filter(|o| o.status == 503)
        .map(|o| o.latency)
        .max()
        .unwrap_or_default();
    eprintln!(
        "PostgreSQL stop -m {mode:?}: {}\
         /ready false after {not_ready:?}; database down for {:?}; /ready true {ready_again:?} \
         after the start; writes at both replicas {:?} after the start; slowest 503 \
         {slowest_503:?}; key change seen {first:?} after recovery, the next one {second:?}\n\
         during the gap: {}",
        summary(&outcomes),
        restored - fault,
        recovered - restored,
        summary(&gap.into_iter().cloned().collect::<Vec<_>>()),
    );
    assert_no_problems(
        &format!("PostgreSQL stop -m {mode:?}\n{}", fleet.logs()),
        &problems,
        &outcomes,
    );
    assert!(
        second < Duration::from_secs(2),
        "a key change took {second:?} to reach the replicas: notifications are not back"
    );
}

/// Publishes a Next key, then another, each time waiting until every replica's JWKS
/// shows it; returns how long each took.
async fn key_changes_arrive(db: &Db, bases: &[String]) -> (Duration, Duration) {
    let mut took = Vec::new();
    for _ in 0..2 {
        let key = KeyPair::generate(2048).expect("key");
        let now = latchkey_store::now_ms();
        let row = SigningKeyRow {
            kid: key.kid().to_owned(),
            algorithm: "RS256".into(),
            jwk: key.jwk().clone(),
            state: KeyState::Next,
            created_at: now,
            activated_at: None,
            retired_at: None,
            expires_at: None,
        };
        let started = Instant::now();
        signing_keys::upsert(db, &row).await.expect("publish a key");
        for base in bases {
            while !jwks_kids(base).await.contains(key.kid()) {
                assert!(
                    started.elapsed() < PATIENCE,
                    "{base} never showed the new key {}",
                    key.kid()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        took.push(started.elapsed());
    }
    (took[0], took[1])
}

async fn jwks_kids(base: &str) -> HashSet<String> {
    let Ok(response) = reqwest::get(format!("{base}/.well-known/jwks.json")).await else {
        return HashSet::new();
    };
    let jwks: Value = response.json().await.unwrap_or_default();
    jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

// === Redis killed ===

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_under_load_fail_open() {
    redis_killed("open").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_under_load_fail_closed() {
    redis_killed("closed").await;
}

/// `GET /` alternately at each replica until one is refused: with the limit in Redis
/// (`/=5 per minute`), both replicas together allow 5.
async fn shared_root_budget(bases: &[String]) -> Vec<u16> {
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let response = http
            .get(format!("{}/", bases[i % bases.len()]))
            .send()
            .await
            .expect("GET /");
        statuses.push(response.status().as_u16());
    }
    statuses
}

async fn redis_killed(policy: &str) {
    let mut fleet = Fleet::start(&["--rate-limiting-redis-failure", policy]).await;
    let bases = fleet.bases();
    assert_eq!(
        shared_root_budget(&bases).await,
        [200, 200, 200, 200, 200, 429],
        "one budget for both replicas"
    );
    let (load, workers) = Load::start(bases.clone(), fleet.client_secret.clone());
    load.more_successes(WARM_UP).await;

    let fault = load.now();
    fleet.redis.kill();
    let not_ready = until_ready_is(&bases, 503, "Redis killed").await;
    load.until("500 requests while Redis is gone", |all| {
        all.iter().filter(|o| o.at >= fault).count() >= 500
    })
    .await;
    let restored = load.now();
    fleet.redis.start().await.expect("Redis starts again");
    let ready_again = until_ready_is(&bases, 200, "Redis back").await;
    load.until(
        "every kind of request served by each replica after the restart",
        |all| {
            (0..bases.len()).all(|r| {
                [
                    Op::Register,
                    Op::Login,
                    Op::Refresh,
                    Op::ClientCredentials,
                    Op::Introspect,
                ]
                .iter()
                .all(|op| {
                    all.iter()
                        .any(|o| o.replica == r && o.at >= restored && o.op == *op && o.ok())
                })
            })
        },
    )
    .await;
    let recovered = load.now();
    load.more_successes(WARM_UP).await;
    let outcomes = finish(&load, workers).await;

    // Counting in Redis again: one budget for both replicas, not one each.
    let after = shared_root_budget(&bases).await;

    let outage = overlapping(&outcomes, fault, recovered);
    let mut problems = Vec::new();
    check_answers(&outcomes, &mut problems);
    for o in &outcomes {
        if o.transport.is_some() || (!o.ok() && o.status != 503) {
            problems.push(format!("{:?} answered {} ({:?})", o.op, o.label(), o.error));
        }
        if o.ended() < fault && !o.ok() {
            problems.push(format!(
                "before the fault: {:?} answered {}",
                o.op,
                o.label()
            ));
        }
    }
    if policy == "open" {
        // Limits and lockout fall back to this replica's memory; only the revocation
        // list (what introspection consults) fails closed.
        for o in &outage {
            if !o.ok() && o.op != Op::Introspect {
                problems.push(format!("fail open: {:?} answered {}", o.op, o.label()));
            }
        }
    } else {
        let refused = outage.iter().filter(|o| o.status == 503).count();
        if refused == 0 {
            problems.push("fail closed, yet nothing was refused while Redis was gone".into());
        }
    }
    check_recovered(&outcomes, recovered, &mut problems);
    check_ledger(&fleet.db, &outcomes, &mut problems).await;
    if after != [200, 200, 200, 200, 200, 429] {
        problems.push(format!(
            "after the restart, GET / at both replicas: {after:?}"
        ));
    }
    eprintln!(
        "Redis SIGKILL, RATE_LIMITING_REDIS_FAILURE={policy}: {}\
         /ready false after {not_ready:?}; Redis down for {:?}; /ready true {ready_again:?} \
         after the restart; every request kind served again {:?} after the restart\n\
         during the outage: {}",
        summary(&outcomes),
        restored - fault,
        recovered - restored,
        summary(&outage.into_iter().cloned().collect::<Vec<_>>()),
    );
    assert_no_problems(
        &format!("Redis killed, {policy}\n{}", fleet.logs()),
        &problems,
        &outcomes,
    );
}

// === A replica killed or stopped ===

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_sigkilled_under_load() {
    let mut fleet = Fleet::start(&[]).await;
    let bases = fleet.bases();
    let (load, workers) = Load::start(bases.clone(), fleet.client_secret.clone());
    load.more_successes(WARM_UP).await;

    let fault = load.now();
    assert!(fleet.replicas[0].signal("KILL"));
    // The load balancer notices at once (in Kubernetes: the endpoint goes when the
    // readiness probe fails); what was in flight at the killed replica is lost.
    load.take_out_of_rotation(0);
    let removed = load.now();
    let started = Instant::now();
    while fleet.replicas[0].exited().is_none() {
        assert!(started.elapsed() < PATIENCE, "SIGKILL did not kill");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    load.more_successes(WARM_UP).await;
    let outcomes = finish(&load, workers).await;

    let mut problems = Vec::new();
    check_answers(&outcomes, &mut problems);
    let lost: Vec<&Outcome> = outcomes.iter().filter(|o| o.transport.is_some()).collect();
    for o in &lost {
        if o.replica != 0 || o.at > removed {
            problems.push(format!(
                "{:?} at replica {} sent {:?} after the kill got no answer",
                o.op,
                o.replica,
                o.at.saturating_sub(fault)
            ));
        }
    }
    // The survivor took over the sessions the killed replica served, including tokens
    // whose rotation it committed but could not answer: the retry of such a token is
    // reuse, refused with 401 (the client logs in again).
    let lost_refresh: HashSet<&str> = lost
        .iter()
        .filter(|o| o.op == Op::Refresh)
        .filter_map(|o| o.presented.as_deref())
        .collect();
    let retry = |o: &Outcome| {
        o.op == Op::Refresh
            && o.status == 401
            && o.presented
                .as_deref()
                .is_some_and(|t| lost_refresh.contains(t))
    };
    for o in outcomes.iter().filter(|o| o.transport.is_none() && !o.ok()) {
        if !retry(o) {
            problems.push(format!("{:?} answered {} ({:?})", o.op, o.label(), o.error));
        }
    }
    for o in outcomes.iter().filter(|o| o.at > removed) {
        if o.replica != 1 || (!o.ok() && !retry(o)) {
            problems.push(format!(
                "after the kill: {:?} at replica {} answered {}",
                o.op,
                o.replica,
                o.label()
            ));
        }
    }
    check_ledger(&fleet.db, &outcomes, &mut problems).await;
    let after = outcomes.iter().filter(|o| o.at > removed).count();
    let retried = outcomes.iter().filter(|o| retry(o)).count();
    eprintln!(
        "replica SIGKILL: {}in flight at the killed replica and lost: {}; the survivor \
         served {after} requests after it; retries of a lost refresh refused as reuse: \
         {retried}",
        summary(&outcomes),
        lost.len(),
    );
    assert_no_problems(
        &format!("replica killed\n{}", fleet.logs()),
        &problems,
        &outcomes,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_sigtermed_under_load_drains() {
    const DRAIN: Duration = Duration::from_secs(2);
    let mut fleet = Fleet::start(&["--shutdown-drain", "2s"]).await;
    let bases = fleet.bases();
    let (load, workers) = Load::start(bases.clone(), fleet.client_secret.clone());
    load.more_successes(WARM_UP).await;

    let signal = load.now();
    let signalled = Instant::now();
    assert!(fleet.replicas[0].signal("TERM"));
    // The readiness probe fails, then the endpoint goes: until then requests still go
    // to the draining replica, which must answer them all.
    while ready(&bases[0]).await != Some(503) {
        assert!(
            signalled.elapsed() < DRAIN,
            "/ready did not turn 503 while draining"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let unready = load.now();
    load.take_out_of_rotation(0);
    let removed = load.now();
    let status = loop {
        if let Some(status) = fleet.replicas[0].exited() {
            break status;
        }
        assert!(
            signalled.elapsed() < DRAIN + REQUEST_TIMEOUT,
            "the replica did not exit after the drain"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let exited = signalled.elapsed();
    load.more_successes(WARM_UP).await;
    let outcomes = finish(&load, workers).await;

    let mut problems = Vec::new();
    check_answers(&outcomes, &mut problems);
    for o in outcomes.iter().filter(|o| !o.ok()) {
        problems.push(format!(
            "{:?} at replica {} answered {} ({:?})",
            o.op,
            o.replica,
            o.label(),
            o.error
        ));
    }
    if !status.success() {
        problems.push(format!("the stopped replica exited with {status}"));
    }
    if exited < DRAIN {
        problems.push(format!(
            "the replica exited after {exited:?}, before its drain"
        ));
    }
    check_ledger(&fleet.db, &outcomes, &mut problems).await;
    let in_flight = outcomes
        .iter()
        .filter(|o| o.replica == 0 && o.at < signal && o.ended() > signal)
        .count();
    let during = outcomes
        .iter()
        .filter(|o| o.replica == 0 && o.at >= signal)
        .count();
    eprintln!(
        "replica SIGTERM (drain {DRAIN:?}): {}in flight at the signal {in_flight}, sent to it \
         after the signal {during}, all answered; /ready 503 {:?} after the signal, out of \
         rotation {:?}, exited ({status}) {exited:?} after the signal",
        summary(&outcomes),
        unready - signal,
        removed - signal,
    );
    assert_no_problems(
        &format!("replica stopped\n{}", fleet.logs()),
        &problems,
        &outcomes,
    );
    assert!(in_flight + during > 0, "the drain was not exercised");
}

// === SQLite: the disk fills up ===

/// A tmpfs of `size` mounted on `path`; unmounted when dropped, whatever happened.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).expect("mount point");
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs on {} failed ({status}): this test needs root",
            path.display()
        );
        Self {
            path: path.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a process being killed): detach it now, freed when unused.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status();
        }
    }
}

/// Writes `path` until the filesystem has no space left; returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = file.sync_all();
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_disk_full_under_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Declared before the service: dropped (unmounted) after it has been killed.
    let _mount = Tmpfs::mount(&data, "24m");
    let mut args = common_flags(dir.path(), 0);
    // The embedded default: the SQLite file in the data directory, on the tmpfs.
    let at = args
        .iter()
        .position(|a| a == "--data-dir")
        .expect("--data-dir");
    args[at + 1] = data.display().to_string();
    let mut service = ServiceProcess::start(&binary(), &args, dir.path().join("latchkey.log"))
        .await
        .expect("the service starts");
    let db_url = format!("sqlite://{}", data.join("latchkey.db").display());
    let db = Db::connect(&db_url, 2).await.expect("test db handle");
    let client_secret = create_client(&db).await;
    let bases = vec![service.base.clone()];
    let (load, workers) = Load::start(bases.clone(), client_secret);
    load.more_successes(WARM_UP).await;

    let fault = load.now();
    let filler = data.join("filler");
    let filled = fill(&filler);
    load.until("a write refused for want of space", |all| {
        all.iter()
            .any(|o| o.at >= fault && o.op.writes() && o.status == 503)
    })
    .await;
    // Reads go on meanwhile.
    let refused_at = load.now();
    load.until("reads served while the disk is full", |all| {
        all.iter()
            .filter(|o| o.at >= refused_at && !o.op.writes() && o.ok())
            .count()
            >= 100
    })
    .await;
    let restored = load.now();
    std::fs::remove_file(&filler).expect("free the space");
    load.until("a registration accepted after space returned", |all| {
        all.iter()
            .any(|o| o.at >= restored && o.op == Op::Register && o.ok())
    })
    .await;
    let recovered = load.now();
    load.more_successes(WARM_UP).await;
    let outcomes = finish(&load, workers).await;

    let full = overlapping(&outcomes, fault, recovered);
    let mut problems = Vec::new();
    check_answers(&outcomes, &mut problems);
    for o in &outcomes {
        if o.transport.is_some() || (!o.ok() && o.status != 503) {
            let allowed_retry = o.op == Op::Refresh && o.status == 401;
            if !allowed_retry {
                problems.push(format!("{:?} answered {} ({:?})", o.op, o.label(), o.error));
            }
        }
        if o.status == 503 && o.error.as_deref() != Some("temporarily_unavailable") {
            problems.push(format!("a 503 said {:?}", o.error));
        }
    }
    for o in &full {
        if !o.op.writes() && !o.ok() {
            problems.push(format!(
                "disk full: the read {:?} answered {}",
                o.op,
                o.label()
            ));
        }
    }
    check_recovered(&outcomes, recovered, &mut problems);

    // Stop the service, then check the file and what it holds.
    assert!(service.signal("TERM"));
    let started = Instant::now();
    while service.exited().is_none() {
        assert!(started.elapsed() < PATIENCE, "the service did not stop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(db.pool())
        .await
        .expect("integrity_check");
    check_ledger(&db, &outcomes, &mut problems).await;
    db.close().await;
    let log = errors_in_log(service.log_path());
    // Connections a failed COMMIT/ROLLBACK left inside a transaction, which the pool
    // closed instead of reusing (what lost answered writes before it did).
    let closed = std::fs::read_to_string(service.log_path())
        .unwrap_or_default()
        .matches("closing a SQLite connection left inside a failed transaction")
        .count();
    eprintln!(
        "SQLite disk full ({filled} bytes of filler): {}disk full for {:?}; writes accepted \
         {:?} after space returned; connections closed after a failed transaction: \
         {closed}; integrity_check: {integrity}\nwhile full: {}",
        summary(&outcomes),
        restored - fault,
        recovered - restored,
        summary(&full.into_iter().cloned().collect::<Vec<_>>()),
    );
    assert_no_problems(&format!("disk full\n{log}"), &problems, &outcomes);
    assert_eq!(integrity, "ok");
    drop(service);
}
