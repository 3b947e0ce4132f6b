//! A real Kubernetes control plane (etcd + kube-apiserver) for one test.
//!
//! What controller-runtime's envtest does, in Rust: certificates from [`crate::certs`],
//! etcd and kube-apiserver on free loopback ports with RBAC on and the ServiceAccount
//! admission plugin off (no controller-manager runs to create tokens), a kubeconfig for
//! the admin user (`system:masters`), and readiness measured by `/readyz`. There is no
//! controller-manager and no scheduler: nothing garbage-collects owned objects and no
//! Pod ever runs, so tests check ownerReferences rather than cascading deletion.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::certs::{self, CertPaths};
use crate::process::ChildProcess;
use crate::{Error, Result, io, k8s_bin_dir, kubectl_path};

const READY_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);

/// A running etcd + kube-apiserver; both are killed when this is dropped.
#[derive(Debug)]
pub struct ControlPlane {
    // Field order is drop order: the API server goes before etcd, the directory last.
    apiserver: ChildProcess,
    etcd: ChildProcess,
    server: String,
    kubeconfig: PathBuf,
    certs: CertPaths,
    startup: Duration,
    /// The API server's arguments, so it can be restarted with other keys.
    api_args: Vec<String>,
    root: PathBuf,
    restarts: u32,
    dir: Option<tempfile::TempDir>,
}

/// What `kubectl` printed and how it exited.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlOutput {
    /// Panics with both streams unless kubectl succeeded; returns stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        assert!(
            self.success,
            "kubectl failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits until `/readyz` answers `ok`.
    pub async fn start() -> Result<Self> {
        let started = Instant::now();
        let bin = k8s_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("latchkey-controlplane-")
            .tempdir()
            .map_err(io("creating the control plane's directory"))?;
        let root = dir.path().to_owned();
        let cert_dir = root.join("certs");
        std::fs::create_dir_all(&cert_dir).map_err(io("creating the certificate directory"))?;
        let certs = certs::write_all(&cert_dir)?;

        let [etcd_port, etcd_peer_port, api_port] = free_ports()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let etcd_args = vec![
            "--name=latchkey-test".to_owned(),
            format!("--data-dir={}", root.join("etcd-data").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=latchkey-test={peer_url}"),
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        let mut etcd = ChildProcess::spawn(
            "etcd",
            &bin.join("etcd"),
            &etcd_args,
            &[],
            root.join("etcd.log"),
        )?;
        wait_for_etcd(&mut etcd, etcd_port).await?;

        let path = |p: &Path| p.display().to_string();
        let api_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--cert-dir={}", path(&cert_dir)),
            format!("--tls-cert-file={}", path(&certs.serving_cert)),
            format!("--tls-private-key-file={}", path(&certs.serving_key)),
            format!("--client-ca-file={}", path(&certs.ca_cert)),
            format!("--secure-port={api_port}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
            format!("--service-account-key-file={}", path(&certs.sa_pub)),
            format!("--service-account-signing-key-file={}", path(&certs.sa_key)),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--authorization-mode=RBAC".to_owned(),
            "--disable-admission-plugins=ServiceAccount".to_owned(),
            "--allow-privileged=true".to_owned(),
        ];
        let apiserver = ChildProcess::spawn(
            "kube-apiserver",
            &bin.join("kube-apiserver"),
            &api_args,
            &[],
            root.join("kube-apiserver.log"),
        )?;
        let api_args_kept = api_args.clone();

        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = root.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&server, &certs))
            .map_err(io("writing the kubeconfig"))?;

        let mut plane = Self {
            apiserver,
            etcd,
            server,
            kubeconfig,
            certs,
            startup: Duration::ZERO,
            api_args: api_args_kept,
            root,
            restarts: 0,
            dir: Some(dir),
        };
        plane.wait_for_apiserver().await?;
        plane.startup = started.elapsed();
        Ok(plane)
    }

    /// Restarts the API server (same port, same etcd) signing ServiceAccount tokens with
    /// a new key, the old public key still accepted — a cluster's key rotation. Waits
    /// until it is ready again.
    pub async fn rotate_service_account_key(&mut self) -> Result<()> {
        self.restarts += 1;
        let (private, public) = certs::write_service_account_key(
            &self.root.join("certs"),
            &format!("sa-{}", self.restarts),
        )?;
        let mut args: Vec<String> = self
            .api_args
            .iter()
            .filter(|a| !a.starts_with("--service-account-signing-key-file="))
            .cloned()
            .collect();
        args.push(format!("--service-account-key-file={}", public.display()));
        args.push(format!(
            "--service-account-signing-key-file={}",
            private.display()
        ));
        self.apiserver.kill();
        self.apiserver = ChildProcess::spawn(
            "kube-apiserver",
            &k8s_bin_dir()?.join("kube-apiserver"),
            &args,
            &[],
            self.root
                .join(format!("kube-apiserver-{}.log", self.restarts)),
        )?;
        self.api_args = args;
        self.wait_for_apiserver().await
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A kubeconfig (YAML) that authenticates with a bearer `token`, e.g. one a
    /// ServiceAccount got from the TokenRequest API, to act with exactly its RBAC.
    pub fn token_kubeconfig(&self, user: &str, token: &str) -> String {
        kubeconfig_for(&self.server, &self.certs, user, &format!("token: {token}"))
    }

    /// A kubeconfig for the admin user; set `KUBECONFIG` to it for other processes.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn certs(&self) -> &CertPaths {
        &self.certs
    }

    /// Time from [`start`](Self::start) to a ready API server.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// A client acting as the admin user.
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// A `kubectl` command bound to this control plane.
    pub fn kubectl_command(&self) -> Result<tokio::process::Command> {
        let mut cmd = tokio::process::Command::new(kubectl_path()?);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        Ok(cmd)
    }

    /// Runs `kubectl ARGS`.
    pub async fn kubectl(&self, args: &[&str]) -> Result<KubectlOutput> {
        let out = self
            .kubectl_command()?
            .args(args)
            .output()
            .await
            .map_err(io(format!("running kubectl {}", args.join(" "))))?;
        Ok(KubectlOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `kubectl apply -f PATH` (a file or a directory), then waits until every CRD the
    /// API server knows is Established.
    pub async fn apply_crds(&self, path: &Path) -> Result<()> {
        let path = path.display().to_string();
        let applied = self.kubectl(&["apply", "-f", &path]).await?;
        if !applied.success {
            return Err(Error::Environment(format!(
                "kubectl apply -f {path}: {}",
                applied.stderr
            )));
        }
        wait_for_crds_established(self.client().await?, READY_TIMEOUT).await
    }

    async fn wait_for_apiserver(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last: String;
        // The client is built once the kubeconfig exists; TLS to a port that is not
        // listening yet simply fails and is retried.
        let client = self.client().await?;
        loop {
            if let Some(status) = self.apiserver.exited() {
                return Err(not_ready(&self.apiserver, format!("exited with {status}")));
            }
            if let Some(status) = self.etcd.exited() {
                return Err(not_ready(&self.etcd, format!("exited with {status}")));
            }
            let request = http::Request::get("/readyz").body(Vec::new());
            match request {
                Ok(request) => match client.request_text(request).await {
                    Ok(body) if body.trim() == "ok" => return Ok(()),
                    Ok(body) => last = body,
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                return Err(not_ready(
                    &self.apiserver,
                    format!("/readyz not ok after {READY_TIMEOUT:?}: {last}"),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.apiserver.kill();
        self.etcd.kill();
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!(
                "control plane logs kept for the failed test: {}/{{kube-apiserver,etcd}}.log",
                kept.display()
            );
        }
    }
}

fn not_ready(process: &ChildProcess, reason: String) -> Error {
    Error::NotReady {
        component: process.name(),
        reason,
        log: process.log_path().display().to_string(),
        tail: process.log_tail(40),
    }
}

/// `N` distinct free loopback ports, never one this process handed out before (tests
/// run in parallel threads, and the kernel may offer a port again as soon as the probe
/// listener closes, before its new owner has bound it). Another process may still take
/// one before we use it (rare; the start then fails with the component's log).
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Probe listeners stay open until every port is chosen, so they differ.
    let mut listeners = Vec::new();
    let mut ports = [0u16; N];
    let mut chosen = 0;
    while chosen < N {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io("finding free ports"))?;
        let port = listener
            .local_addr()
            .map_err(io("finding free ports"))?
            .port();
        if handed_out.insert(port) {
            ports[chosen] = port;
            chosen += 1;
        }
        listeners.push(listener);
    }
    Ok(ports)
}

/// Polls etcd's `/health` over plain HTTP until it reports healthy.
async fn wait_for_etcd(etcd: &mut ChildProcess, port: u16) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last: String;
    loop {
        if let Some(status) = etcd.exited() {
            return Err(not_ready(etcd, format!("exited with {status}")));
        }
        match etcd_health(port).await {
            Ok(body) if body.contains(r#""health":"true""#) => return Ok(()),
            Ok(body) => last = body,
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            return Err(not_ready(
                etcd,
                format!("/health not healthy after {READY_TIMEOUT:?}: {last}"),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn etcd_health(port: u16) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

fn kubeconfig_yaml(server: &str, certs: &CertPaths) -> String {
    kubeconfig_for(
        server,
        certs,
        "admin",
        &format!(
            "client-certificate: {}\n    client-key: {}",
            certs.admin_cert.display(),
            certs.admin_key.display()
        ),
    )
}

/// A kubeconfig for `user`, whose credentials are the `user:` block's lines in `auth`.
fn kubeconfig_for(server: &str, certs: &CertPaths, user: &str, auth: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    {auth}
contexts:
- name: test
  context:
    cluster: test
    user: {user}
current-context: test
",
        ca = certs.ca_cert.display(),
    )
}

/// Waits until every CRD the API server knows has the condition `Established=True`.
///
/// Polled rather than `kubectl wait --for=condition=Established`: right after the
/// create, a CRD's status may have no conditions yet, and `kubectl wait` fails on that
/// at once ("status.conditions accessor error") instead of waiting.
pub async fn wait_for_crds_established(client: kube::Client, timeout: Duration) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client);
    let deadline = Instant::now() + timeout;
    loop {
        let crds = api.list(&Default::default()).await?;
        let pending: Vec<String> = crds
            .items
            .iter()
            .filter(|crd| {
                !crd.status
                    .as_ref()
                    .and_then(|status| status.conditions.as_ref())
                    .is_some_and(|conditions| {
                        conditions
                            .iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    })
            })
            .map(|crd| crd.metadata.name.clone().unwrap_or_default())
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Environment(format!(
                "CRDs not Established after {timeout:?}: {}",
                pending.join(", ")
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
