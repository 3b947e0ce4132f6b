//! The Latchkey service in-process, the one way tests start it: from validated
//! [`Settings`] (the binary's own path: `App::build`, then `App::serve`), on a loopback
//! listener, until [`Service::shutdown`] or drop.

use latchkey::app::App;
use latchkey::config::Settings;

use crate::{Error, Result, io};

/// A running in-process service.
#[derive(Debug)]
pub struct Service {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub addr: std::net::SocketAddr,
    /// `http://127.0.0.1:<port>` of the metrics listener: a fresh loopback port whenever
    /// the settings have one (`LATCHKEY_METRICS_LISTEN` not `off`).
    pub metrics_base: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Builds the service from `settings` and serves it on `listener` (a fresh loopback
    /// port when `None`).
    pub async fn start(
        settings: &Settings,
        listener: Option<std::net::TcpListener>,
    ) -> Result<Self> {
        let app = App::build(settings)
            .await
            .map_err(|e| Error::Environment(format!("the service did not start: {e:#}")))?;
        let listener = match listener {
            Some(l) => {
                l.set_nonblocking(true).map_err(io("listener"))?;
                tokio::net::TcpListener::from_std(l).map_err(io("listener"))?
            }
            None => tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(io("binding 127.0.0.1:0"))?,
        };
        let addr = listener.local_addr().map_err(io("listener address"))?;
        let metrics = match settings.metrics_listen.0 {
            Some(_) => Some(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(io("binding 127.0.0.1:0"))?,
            ),
            None => None,
        };
        let metrics_base = match &metrics {
            Some(l) => Some(format!(
                "http://{}",
                l.local_addr().map_err(io("listener address"))?
            )),
            None => None,
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = app
                .serve(listener, metrics, async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            base: format!("http://{addr}"),
            addr,
            metrics_base,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Sends the shutdown signal (what SIGTERM does in the binary) and returns the serving
    /// task, which ends once the drain and the requests in flight are done.
    pub fn shutdown(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take()
    }
}

/// Dropping a running service stops it at once: the signal, then the serving task
/// aborted (requests in flight fail).
impl Drop for Service {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The Latchkey binary as a child process (`latchkey serve`), for tests that kill or
/// signal a replica as Kubernetes would: SIGTERM (drain) or SIGKILL. It logs JSON to a
/// file; its listeners are fresh loopback ports, read back from its `listening` lines.
#[derive(Debug)]
pub struct ServiceProcess {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// `http://127.0.0.1:<port>` of the metrics listener.
    pub metrics_base: String,
    child: crate::process::ChildProcess,
}

impl ServiceProcess {
    /// Runs `binary serve --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0
    /// --log-format json <args>` with its log in `log`, and waits (up to a minute) for
    /// both listeners.
    pub async fn start(
        binary: &std::path::Path,
        args: &[String],
        log: std::path::PathBuf,
    ) -> Result<Self> {
        let mut all: Vec<String> = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        all.extend(args.iter().cloned());
        let mut child = crate::process::ChildProcess::spawn("latchkey", binary, &all, &[], log)?;
        let started = std::time::Instant::now();
        loop {
            let text = std::fs::read_to_string(child.log_path()).unwrap_or_default();
            let api = listening_addr(&text, "listening");
            let metrics = listening_addr(&text, "metrics listening");
            if let (Some(api), Some(metrics)) = (api, metrics) {
                return Ok(Self {
                    base: format!("http://{api}"),
                    metrics_base: format!("http://{metrics}"),
                    child,
                });
            }
            let reason = if child.exited().is_some() {
                Some("it exited".to_owned())
            } else if started.elapsed() > std::time::Duration::from_secs(60) {
                Some("no `listening` lines within 60s".to_owned())
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(Error::NotReady {
                    component: "latchkey",
                    reason,
                    log: child.log_path().display().to_string(),
                    tail: child.log_tail(30),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `signal` (`TERM`, `KILL`) and returns at once.
    pub fn signal(&self, signal: &str) -> bool {
        self.child.signal(signal)
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.exited()
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    pub fn log_path(&self) -> &std::path::Path {
        self.child.log_path()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.child.log_tail(lines)
    }
}

/// The `addr` of the first JSON log line whose message is `message`.
fn listening_addr(log: &str, message: &str) -> Option<String> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|value| value["message"] == message)
        .and_then(|value| value["addr"].as_str().map(str::to_owned))
}
