//! Test support for Latchkey's integration tests: real components, never fakes.
//!
//! # Layout
//! - [`controlplane`]: a real etcd + kube-apiserver (built by `tests/controlplane/build.sh`)
//!   on free loopback ports, envtest-style, with a kubeconfig, a `kube::Client` and
//!   `kubectl`; everything is killed when the [`ControlPlane`] is dropped, also when the
//!   test panics.
//! - [`cluster`]: a real single-node cluster (kubelet, containerd, kube-proxy, CoreDNS)
//!   started by `tests/cluster/up.sh` once per test binary and torn down when it exits;
//!   each test takes namespaces of its own.
//! - [`certs`]: the CA, serving and client certificates and the service-account key the
//!   control plane needs, generated with rcgen.
//! - [`postgres`]: a fresh database per test on the PostgreSQL server `./test.sh` starts,
//!   or a server of the test's own that it can stop (`pg_ctl stop -m fast|immediate`)
//!   and start again.
//! - [`redis`]: a Redis server of the test's own that it can kill and start again.
//! - [`service`]: the Latchkey service in-process, built from validated settings, or the
//!   binary as a child process that a test can signal or kill.
//! - [`process`]: a child process whose output goes to a log file and which dies with its
//!   owner.
//!
//! Configuration comes from the environment `./test.sh` sets up. A missing variable is a
//! test failure with a message saying how to set it: a test never passes because a
//! component is missing.
#![forbid(unsafe_code)]

pub mod certs;
pub mod cluster;
pub mod controlplane;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod service;

pub use cluster::Cluster;
pub use controlplane::{ControlPlane, KubectlOutput, free_ports};
pub use postgres::{PostgresServer, StopMode};
pub use redis::RedisServer;
pub use service::{Service, ServiceProcess};

use std::path::PathBuf;

/// Names the directory holding `kube-apiserver`, `etcd` and `kubectl`.
pub const BIN_DIR_ENV: &str = "LATCHKEY_TEST_K8S_BIN_DIR";
/// Optionally names the `kubectl` to use (default: the one in [`BIN_DIR_ENV`]).
pub const KUBECTL_ENV: &str = "LATCHKEY_TEST_KUBECTL";
/// Names the directory holding `helm` (and the ServiceMonitor CRD), built by
/// `tests/helm/build.sh`.
pub const HELM_BIN_DIR_ENV: &str = "LATCHKEY_TEST_HELM_BIN_DIR";
/// Names the PostgreSQL server (an admin URL) tests create their databases on.
pub const DATABASE_URL_ENV: &str = "LATCHKEY_TEST_DATABASE_URL";

/// Why test infrastructure could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Environment(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{component} did not become ready: {reason}\n--- last lines of {log} ---\n{tail}")]
    NotReady {
        component: &'static str,
        reason: String,
        log: String,
        tail: String,
    },
    #[error("kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("database: {0}")]
    Database(#[from] latchkey_store::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The directory with the control-plane binaries, from [`BIN_DIR_ENV`].
pub fn k8s_bin_dir() -> Result<PathBuf> {
    let dir = std::env::var_os(BIN_DIR_ENV).ok_or_else(|| {
        Error::Environment(format!(
            "{BIN_DIR_ENV} is not set: run ./test.sh, or export \
             {BIN_DIR_ENV}=$(tests/controlplane/build.sh | tail -1)"
        ))
    })?;
    let dir = PathBuf::from(dir);
    for bin in ["etcd", "kube-apiserver"] {
        if !dir.join(bin).is_file() {
            return Err(Error::Environment(format!(
                "{BIN_DIR_ENV}={} has no {bin}: run tests/controlplane/build.sh",
                dir.display()
            )));
        }
    }
    Ok(dir)
}

/// The `kubectl` binary: [`KUBECTL_ENV`], else `kubectl` in [`BIN_DIR_ENV`].
pub fn kubectl_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(KUBECTL_ENV) {
        return Ok(PathBuf::from(path));
    }
    let path = k8s_bin_dir()?.join("kubectl");
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Environment(format!(
            "no kubectl at {}: set {KUBECTL_ENV} or run tests/controlplane/build.sh",
            path.display()
        )))
    }
}

/// The directory with `helm` and the ServiceMonitor CRD, from [`HELM_BIN_DIR_ENV`].
pub fn helm_bin_dir() -> Result<PathBuf> {
    let dir = std::env::var_os(HELM_BIN_DIR_ENV).ok_or_else(|| {
        Error::Environment(format!(
            "{HELM_BIN_DIR_ENV} is not set: run ./test.sh, or export \
             {HELM_BIN_DIR_ENV}=$(tests/helm/build.sh | tail -1)"
        ))
    })?;
    Ok(PathBuf::from(dir))
}

/// The `helm` binary in [`HELM_BIN_DIR_ENV`].
pub fn helm_path() -> Result<PathBuf> {
    let path = helm_bin_dir()?.join("helm");
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Environment(format!(
            "no helm at {}: run tests/helm/build.sh and export {HELM_BIN_DIR_ENV} to the \
             directory it prints",
            path.display()
        )))
    }
}
