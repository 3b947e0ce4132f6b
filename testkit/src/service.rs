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
