//! A Redis server of one test, which the test may kill and start again (the suite's
//! shared server, `LATCHKEY_TEST_REDIS_URL`, is for tests that leave it running).

use std::time::{Duration, Instant};

use crate::process::ChildProcess;
use crate::{Error, Result, io};

/// `redis-server` on a free loopback port that stays the same across
/// [`kill`](Self::kill) and [`start`](Self::start); no persistence, so a restarted
/// server starts empty, as a Redis that lost its memory does. Killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    server: Option<ChildProcess>,
    starts: u32,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub async fn start_new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("latchkey-redis-")
            .tempdir()
            .map_err(io("creating a Redis directory"))?;
        let [port] = crate::free_ports::<1>()?;
        let mut server = Self {
            port,
            server: None,
            starts: 0,
            dir,
        };
        server.start().await?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn is_running(&mut self) -> bool {
        self.server.as_mut().is_some_and(|s| s.exited().is_none())
    }

    /// Starts the server (again) and returns once it answers `PING`.
    pub async fn start(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.starts += 1;
        let log = self.dir.path().join(format!("redis-{}.log", self.starts));
        let args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &self.dir.path().display().to_string(),
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        let program = which("redis-server").ok_or_else(|| {
            Error::Environment(
                "redis-server is not installed: run tests/scripts/services.sh ensure".into(),
            )
        })?;
        let mut server = ChildProcess::spawn("redis-server", &program, &args, &[], log)?;
        let started = Instant::now();
        while !self.pings().await {
            let reason = if server.exited().is_some() {
                Some("it exited".to_owned())
            } else if started.elapsed() > Duration::from_secs(30) {
                Some("no PONG within 30s".to_owned())
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(Error::NotReady {
                    component: "redis-server",
                    reason,
                    log: server.log_path().display().to_string(),
                    tail: server.log_tail(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.server = Some(server);
        Ok(())
    }

    /// SIGKILL: the server is gone at once, with everything it held.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    /// Whether something answers `PING` with `+PONG` on the port.
    async fn pings(&self) -> bool {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
            stream.write_all(b"PING\r\n").await?;
            let mut reply = [0u8; 7];
            stream.read_exact(&mut reply).await?;
            Ok::<_, std::io::Error>(&reply == b"+PONG\r\n")
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Ok(true))
        )
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}
