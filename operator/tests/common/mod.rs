//! One test's world: a real control plane with the chart's CRDs, a fresh PostgreSQL
//! database, and the real `latchkey-operator` binary pointed at both.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use latchkey_crds::OAuthClient;
use latchkey_store::Db;
use latchkey_store::clients::{self, ClientRecord};
use latchkey_testkit::ControlPlane;
use latchkey_testkit::process::ChildProcess;

pub const ISSUER: &str = "https://auth.latchkey.test";
pub const NS: &str = "shop";
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn example(name: &str) -> String {
    repo_root()
        .join("examples")
        .join(name)
        .display()
        .to_string()
}

pub struct Env {
    pub plane: ControlPlane,
    pub client: kube::Client,
    pub db: Db,
    pub database_url: String,
    pub operator: Option<ChildProcess>,
    pub operator_addr: String,
    pub operator_args: Vec<String>,
    pub http: reqwest::Client,
    /// `--lease-duration` of operators started from now on: a killed leader's successor
    /// waits at most this long.
    pub lease_duration: String,
    dir: tempfile::TempDir,
    restarts: u32,
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(op) = &self.operator
        {
            eprintln!(
                "--- last lines of the operator's log ---\n{}",
                op.log_tail(80)
            );
        }
    }
}

/// A TCP relay that can be cut like a network partition: after [`Relay::cut`] it passes
/// no more bytes but keeps every connection open, and accepts new ones that go nowhere,
/// so the client sees silence, not an error.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("relay bind");
        let addr = listener.local_addr().expect("relay addr");
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let cut = flag.clone();
                tokio::spawn(async move {
                    if cut.load(std::sync::atomic::Ordering::SeqCst) {
                        // Accepted, never answered: held open until the test ends.
                        let _held = down;
                        return std::future::pending::<()>().await;
                    }
                    let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    tokio::join!(pipe(dr, uw, cut.clone()), pipe(ur, dw, cut));
                });
            }
        });
        Self { addr, cut, task }
    }

    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` until either ends; once the relay is cut, holds both open and
/// passes nothing.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if cut.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Env {
    /// Control plane + CRDs + database + namespace `shop`; the operator is started with
    /// `extra` flags.
    pub async fn start(extra: &[&str]) -> Self {
        Self::start_with_lease(extra, "2s").await
    }

    /// [`Env::start`] with operators using `--lease-duration lease_duration`.
    pub async fn start_with_lease(extra: &[&str], lease_duration: &str) -> Self {
        let plane = ControlPlane::start().await.expect("control plane starts");
        plane
            .apply_crds(&repo_root().join("charts/latchkey/crds"))
            .await
            .expect("CRDs install");
        let client = plane.client().await.expect("client");
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(NS.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace");
        let database_url = latchkey_testkit::postgres::fresh_database()
            .await
            .expect("fresh database");
        let db = Db::connect(&database_url, 2).await.expect("db");
        let [port] = latchkey_testkit::free_ports().expect("port");
        let mut env = Self {
            plane,
            client,
            db,
            database_url,
            operator: None,
            operator_addr: format!("127.0.0.1:{port}"),
            operator_args: extra.iter().map(|s| (*s).to_owned()).collect(),
            http: reqwest::Client::new(),
            lease_duration: lease_duration.to_owned(),
            dir: tempfile::tempdir().expect("tempdir"),
            restarts: 0,
        };
        env.start_operator().await;
        env
    }

    /// Starts the operator binary and waits until `/healthz` answers.
    pub async fn start_operator(&mut self) {
        let addr = self.operator_addr.clone();
        let op = self.spawn_operator(&addr).await;
        self.operator = Some(op);
    }

    /// Starts one more operator process listening on `addr` (leader election decides
    /// which one reconciles) and waits until its `/healthz` answers.
    pub async fn spawn_operator(&mut self, addr: &str) -> ChildProcess {
        let kubeconfig = self.plane.kubeconfig().to_owned();
        self.spawn_operator_via(addr, &kubeconfig).await
    }

    /// [`Env::spawn_operator`], reaching the API server through `kubeconfig`.
    pub async fn spawn_operator_via(&mut self, addr: &str, kubeconfig: &Path) -> ChildProcess {
        let mut args = vec!["--listen".to_owned(), addr.to_owned()];
        // 1 s unless the test sets its own (clap refuses a flag given twice).
        if !self.operator_args.iter().any(|a| a == "--resync-interval") {
            args.extend(["--resync-interval".to_owned(), "1s".to_owned()]);
        }
        args.extend([
            "--lease-duration".to_owned(),
            self.lease_duration.clone(),
            "--log-format".to_owned(),
            "text".to_owned(),
            "--log".to_owned(),
            "info,latchkey_operator=debug".to_owned(),
        ]);
        args.extend(self.operator_args.iter().cloned());
        self.restarts += 1;
        let log = self
            .dir
            .path()
            .join(format!("operator-{}.log", self.restarts));
        let mut op = ChildProcess::spawn(
            "latchkey-operator",
            Path::new(env!("CARGO_BIN_EXE_latchkey-operator")),
            &args,
            &[
                ("KUBECONFIG", kubeconfig.as_os_str()),
                ("DATABASE_URL", self.database_url.as_ref()),
                ("LATCHKEY_ISSUER", ISSUER.as_ref()),
                ("NO_COLOR", "1".as_ref()),
            ],
            log,
        )
        .expect("operator starts");
        let url = format!("http://{addr}/healthz");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = op.exited() {
                panic!("operator exited with {status}:\n{}", op.log_tail(40));
            }
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return op;
            }
            assert!(
                Instant::now() < deadline,
                "operator /healthz never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the operator (SIGKILL: no graceful shutdown, like a crash or eviction).
    pub fn kill_operator(&mut self) {
        if let Some(mut op) = self.operator.take() {
            op.kill();
        }
    }

    pub fn operator_log(&self) -> String {
        self.operator
            .as_ref()
            .map(|op| std::fs::read_to_string(op.log_path()).unwrap_or_default())
            .unwrap_or_default()
    }

    pub async fn kubectl(&self, args: &[&str]) -> latchkey_testkit::KubectlOutput {
        self.plane.kubectl(args).await.expect("kubectl runs")
    }

    /// Writes `yaml` to a file and runs `kubectl apply -n shop -f` on it.
    pub async fn apply_yaml(&self, yaml: &str) -> latchkey_testkit::KubectlOutput {
        let path = self
            .dir
            .path()
            .join(format!("manifest-{}.yaml", uuid_like()));
        std::fs::write(&path, yaml).expect("write manifest");
        self.kubectl(&["apply", "-n", NS, "-f", &path.display().to_string()])
            .await
    }

    pub fn clients(&self) -> Api<OAuthClient> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub async fn oauth_client(&self, name: &str) -> Option<OAuthClient> {
        self.clients().get_opt(name).await.expect("get OAuthClient")
    }

    pub async fn secret(&self, name: &str) -> Option<Secret> {
        self.secrets().get_opt(name).await.expect("get Secret")
    }

    pub async fn row(&self, client_id: &str) -> Option<ClientRecord> {
        clients::get(&self.db, client_id).await.expect("read row")
    }

    /// Reasons of the Events about OAuthClient `name`.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        self.event_reasons_of("OAuthClient", name).await
    }

    /// Reasons of the Events about the `kind` named `name`.
    pub async fn event_reasons_of(&self, kind: &str, name: &str) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), NS);
        events
            .list(&ListParams::default())
            .await
            .expect("list events")
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.name.as_deref() == Some(name) && r.kind.as_deref() == Some(kind)
                })
            })
            .filter_map(|e| e.reason)
            .collect()
    }

    /// Starts the Latchkey service in-process on this test's database, with data in
    /// `data_dir` and `extra` flags (validated, as the binary validates them); it stops
    /// when the returned handle is dropped.
    pub async fn start_service(
        &self,
        data_dir: &Path,
        extra: &[&str],
    ) -> latchkey_testkit::Service {
        let mut args = vec!["--issuer", ISSUER, "--database-url", &self.database_url];
        args.extend_from_slice(extra);
        let settings = latchkey::config::Settings::for_test(data_dir, &args);
        latchkey_testkit::Service::start(&settings, None)
            .await
            .expect("service starts")
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.operator_addr))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }
}

/// Polls `f` every 100 ms until it returns `Some`, for at most [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A field of a Secret's data as text.
pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// The Ready condition as (status, reason, message).
pub fn ready(client: &OAuthClient) -> Option<(String, String, String)> {
    client
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub fn is_ready(client: &OAuthClient) -> bool {
    let generation = client.metadata.generation;
    ready(client).is_some_and(|(s, _, _)| s == "True")
        && client.status.as_ref().and_then(|s| s.observed_generation) == generation
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    )
}
