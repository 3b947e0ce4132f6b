//! A real single-node Kubernetes cluster — kubelet, containerd, runc, kube-proxy, CoreDNS
//! and a control plane — started by `tests/cluster/up.sh` once per test binary.
//!
//! The cluster is the machine's (one at a time: fixed network namespace, veth and
//! addresses, see `tests/cluster/lib.sh`), so it is shared by the tests of a binary and
//! each test works in namespaces of its own ([`Cluster::namespace`]). `up.sh` is given
//! this process's pid: its reaper runs `tests/cluster/down.sh` when the test binary
//! exits, however it exits.
//!
//! Handles are plain data (paths, URLs); each test builds its own `kube::Client` with
//! [`Cluster::client`], because a client belongs to the tokio runtime of the test that
//! made it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::controlplane::KubectlOutput;
use crate::{Error, Result, io};

/// Names the image manifest of `docker/build-images.sh` to import instead of building.
pub const IMAGES_ENV: &str = "LATCHKEY_CLUSTER_IMAGES";

/// A running cluster; see the module docs.
#[derive(Debug, Clone)]
pub struct Cluster {
    env: HashMap<String, String>,
    images: Vec<Image>,
    startup: Duration,
}

/// One image imported into the node's containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Fully qualified reference, e.g. `docker.io/library/latchkey:dev`.
    pub reference: String,
    /// The manifest digest (`sha256:…`).
    pub digest: String,
}

impl Image {
    /// The repository part of the reference (`docker.io/library/latchkey`).
    pub fn repository(&self) -> &str {
        self.reference
            .rsplit_once(':')
            .map_or(&*self.reference, |(repo, _)| repo)
    }

    /// The tag part of the reference (`dev`).
    pub fn tag(&self) -> &str {
        self.reference.rsplit_once(':').map_or("", |(_, tag)| tag)
    }
}

static SHARED: OnceLock<Mutex<Option<std::result::Result<Cluster, String>>>> = OnceLock::new();

impl Cluster {
    /// The cluster of this test binary, started by the first caller (the others wait).
    /// A failed start is remembered: every later caller fails with the same message
    /// instead of starting again.
    pub fn shared() -> Result<Cluster> {
        let cell = SHARED.get_or_init(|| Mutex::new(None));
        let mut guard = cell.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match guard.get_or_insert_with(|| Self::start().map_err(|e| e.to_string())) {
            Ok(cluster) => Ok(cluster.clone()),
            Err(message) => Err(Error::Environment(message.clone())),
        }
    }

    fn start() -> Result<Cluster> {
        let repo = repo_root();
        let script = repo.join("tests/cluster/up.sh");
        let log_path =
            std::env::temp_dir().join(format!("latchkey-cluster-up-{}.log", std::process::id()));
        let log = std::fs::File::create(&log_path)
            .map_err(io(format!("creating {}", log_path.display())))?;
        let started = Instant::now();
        let out = std::process::Command::new(&script)
            .env("LATCHKEY_CLUSTER_OWNER_PID", std::process::id().to_string())
            .stdin(std::process::Stdio::null())
            .stderr(log)
            .output()
            .map_err(io(format!("running {}", script.display())))?;
        let startup = started.elapsed();
        if !out.status.success() {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(Error::Environment(format!(
                "{} failed ({}); last lines of {}:\n{}",
                script.display(),
                out.status,
                log_path.display(),
                tail.join("\n")
            )));
        }
        let env = parse_exports(&String::from_utf8_lossy(&out.stdout));
        for key in [
            "KUBECONFIG",
            "LATCHKEY_CLUSTER_STATE_DIR",
            "LATCHKEY_CLUSTER_KUBECTL",
            "LATCHKEY_CLUSTER_IMAGES",
            "LATCHKEY_CLUSTER_DATABASE_URL",
            "LATCHKEY_CLUSTER_REDIS_URL",
            "LATCHKEY_CLUSTER_SMTP",
        ] {
            if !env.contains_key(key) {
                return Err(Error::Environment(format!(
                    "{} printed no {key}: see {}",
                    script.display(),
                    log_path.display()
                )));
            }
        }
        let manifest = &env["LATCHKEY_CLUSTER_IMAGES"];
        let images = std::fs::read_to_string(manifest)
            .map_err(io(format!("reading the image manifest {manifest}")))?;
        let images = parse_images(&images);
        Ok(Cluster {
            env,
            images,
            startup,
        })
    }

    /// How long `up.sh` took (builds cached: node Ready and CoreDNS Available).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    fn var(&self, key: &str) -> &str {
        self.env.get(key).map_or("", String::as_str)
    }

    /// The cluster-admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        Path::new(self.var("KUBECONFIG"))
    }

    /// The state directory (logs of every component under `log/`).
    pub fn state_dir(&self) -> &Path {
        Path::new(self.var("LATCHKEY_CLUSTER_STATE_DIR"))
    }

    /// The host side of the node's veth: where the external services listen.
    pub fn host_ip(&self) -> &str {
        self.var("LATCHKEY_CLUSTER_HOST_IP")
    }

    /// PostgreSQL on the host IP (superuser URL), reachable from the pods.
    pub fn database_url(&self) -> &str {
        self.var("LATCHKEY_CLUSTER_DATABASE_URL")
    }

    /// Redis on the host IP, reachable from the pods.
    pub fn redis_url(&self) -> &str {
        self.var("LATCHKEY_CLUSTER_REDIS_URL")
    }

    /// The SMTP sink (`HOST:PORT`) and the directory its messages land in.
    pub fn smtp(&self) -> (&str, &Path) {
        (
            self.var("LATCHKEY_CLUSTER_SMTP"),
            Path::new(self.var("LATCHKEY_CLUSTER_MAIL_DIR")),
        )
    }

    /// The images imported into the node.
    pub fn images(&self) -> &[Image] {
        &self.images
    }

    /// The imported image whose repository ends in `/NAME` (e.g. `latchkey-operator`).
    pub fn image(&self, name: &str) -> Result<&Image> {
        self.images
            .iter()
            .find(|image| image.repository().rsplit('/').next() == Some(name))
            .ok_or_else(|| {
                Error::Environment(format!(
                    "no image {name} in the manifest {}",
                    self.var("LATCHKEY_CLUSTER_IMAGES")
                ))
            })
    }

    /// A client acting as the cluster admin.
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = Kubeconfig::read_from(self.kubeconfig())?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// A `kubectl` command bound to this cluster as its admin.
    pub fn kubectl_command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.var("LATCHKEY_CLUSTER_KUBECTL"));
        cmd.env("KUBECONFIG", self.kubeconfig())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `kubectl ARGS`.
    pub async fn kubectl(&self, args: &[&str]) -> Result<KubectlOutput> {
        let out = self
            .kubectl_command()
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

    /// Creates a namespace `PREFIX-<random>` with the given labels and returns its name.
    /// Namespaces are not deleted by the test: the cluster goes when the binary exits.
    pub async fn namespace(&self, prefix: &str, labels: &[(&str, &str)]) -> Result<String> {
        use k8s_openapi::api::core::v1::Namespace;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("{prefix}-{}", &suffix[..8]);
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.clone());
        ns.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        let api: kube::Api<Namespace> = kube::Api::all(self.client().await?);
        api.create(&Default::default(), &ns).await?;
        Ok(name)
    }

    /// The last `lines` lines of a component's log (`kubelet`, `containerd`, …).
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        let path = self
            .state_dir()
            .join("log")
            .join(format!("{component}.log"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// The repository root (testkit lives one level below it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `export KEY=VALUE` lines (the last stdout lines of `up.sh`) as a map.
fn parse_exports(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The image manifest: `REFERENCE DIGEST ARCHIVE` per line, `#` comments.
fn parse_images(text: &str) -> Vec<Image> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some(Image {
                reference: fields.next()?.to_owned(),
                digest: fields.next()?.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_and_images_are_parsed() {
        let env = parse_exports("noise\nexport KUBECONFIG=/s/pki/admin.kubeconfig\nexport A=b=c\n");
        assert_eq!(env["KUBECONFIG"], "/s/pki/admin.kubeconfig");
        assert_eq!(env["A"], "b=c");
        let images = parse_images(
            "# name digest archive\ndocker.io/library/latchkey:dev sha256:ab /x/latchkey.oci.tar\n",
        );
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].repository(), "docker.io/library/latchkey");
        assert_eq!(images[0].tag(), "dev");
        assert_eq!(images[0].digest, "sha256:ab");
    }
}
