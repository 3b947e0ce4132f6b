//! PostgreSQL for tests: a fresh database per test on the server named by
//! [`DATABASE_URL_ENV`](crate::DATABASE_URL_ENV) ([`fresh_database`]), or a server of the
//! test's own ([`PostgresServer`]) that the test may stop and start again, for tests of
//! what the service does while its database is gone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use latchkey_store::Db;

use crate::process::ChildProcess;
use crate::{DATABASE_URL_ENV, Error, Result, io};

/// Creates an empty database `latchkey_test_<random>` and returns its URL.
pub async fn fresh_database() -> Result<String> {
    let admin_url = std::env::var(DATABASE_URL_ENV).map_err(|_| {
        Error::Environment(format!(
            "{DATABASE_URL_ENV} is not set: run ./test.sh, or \
             eval \"$(tests/scripts/services.sh start)\" first"
        ))
    })?;
    create_database(&admin_url).await
}

/// Creates an empty database `latchkey_test_<random>` on the server of `admin_url`.
async fn create_database(admin_url: &str) -> Result<String> {
    let admin = Db::connect(admin_url, 1).await?;
    let name = format!(
        "latchkey_test_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    // The name is ours: a fixed prefix and hex digits.
    let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin.pool())
        .await;
    admin.close().await;
    created.map_err(|e| Error::Database(e.into()))?;
    let (base, _) = admin_url
        .rsplit_once('/')
        .ok_or_else(|| Error::Environment(format!("{admin_url} has no database path")))?;
    Ok(format!("{base}/{name}"))
}

/// How [`PostgresServer::stop`] shuts the server down (`pg_ctl stop -m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Sessions are terminated (`57P01`), transactions rolled back, then a checkpoint.
    Fast,
    /// Every process quits at once, without a checkpoint: a crash, recovered from the
    /// WAL at the next start.
    Immediate,
}

impl StopMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

/// A PostgreSQL server of one test: `initdb` into a temporary directory, served on a
/// free loopback port that stays the same across [`stop`](Self::stop) and
/// [`start`](Self::start). Killed when dropped (also when the test panics; the death
/// signal covers the test process being killed).
///
/// Unlike the suite's shared server it keeps `synchronous_commit` on: an immediate stop
/// is a crash, and a test that asserts nothing acknowledged is lost needs the commit to
/// be durable when it is acknowledged, as in production (`fsync` stays off: the machine
/// itself does not crash).
#[derive(Debug)]
pub struct PostgresServer {
    bindir: PathBuf,
    data: PathBuf,
    port: u16,
    password: String,
    /// Whether the server runs as the `postgres` OS user (the test runs as root).
    user: Option<&'static str>,
    postmaster: Option<ChildProcess>,
    starts: u32,
    /// Declared last: removed after the server has stopped.
    dir: tempfile::TempDir,
}

impl PostgresServer {
    /// Initialises a cluster and starts it.
    pub async fn start_new() -> Result<Self> {
        let bindir = pg_bindir()?;
        let user = is_root().then_some("postgres");
        let dir = tempfile::Builder::new()
            .prefix("latchkey-pg-")
            .tempdir()
            .map_err(io("creating a PostgreSQL directory"))?;
        let root = dir.path().join("pg");
        std::fs::create_dir(&root).map_err(io("creating a PostgreSQL directory"))?;
        let password = uuid::Uuid::new_v4().simple().to_string();
        std::fs::write(root.join("pwfile"), format!("{password}\n"))
            .map_err(io("writing the password file"))?;
        if let Some(user) = user {
            // The temporary directory is root's (0700): let the server's user through.
            set_mode(dir.path(), 0o711)?;
            run(
                "chown",
                Command::new("chown").arg("-R").arg(user).arg(&root),
            )?;
        }
        let data = root.join("data");
        let mut initdb = as_user(user, &bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=scram-sha-256", "--encoding=UTF8"])
            .args(["--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", root.join("pwfile").display()));
        run("initdb", &mut initdb)?;
        let conf = "\n# --- latchkey testkit PostgresServer ---\n\
                    listen_addresses = '127.0.0.1'\n\
                    unix_socket_directories = ''\n\
                    max_connections = 100\n\
                    fsync = off\n\
                    log_min_messages = warning\n";
        let conf_path = data.join("postgresql.conf");
        let mut text =
            std::fs::read_to_string(&conf_path).map_err(io("reading postgresql.conf"))?;
        text.push_str(conf);
        std::fs::write(&conf_path, text).map_err(io("writing postgresql.conf"))?;
        let [port] = crate::free_ports::<1>()?;
        let mut server = Self {
            bindir,
            data,
            port,
            password,
            user,
            postmaster: None,
            starts: 0,
            dir,
        };
        server.start().await?;
        Ok(server)
    }

    /// `postgres://postgres:<pw>@127.0.0.1:<port>/postgres`.
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database on this server and returns its URL.
    pub async fn fresh_database(&self) -> Result<String> {
        create_database(&self.admin_url()).await
    }

    pub fn is_running(&mut self) -> bool {
        self.postmaster
            .as_mut()
            .is_some_and(|p| p.exited().is_none())
    }

    /// Starts the server (again) on its port and returns once it accepts connections.
    pub async fn start(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.starts += 1;
        let log = self
            .dir
            .path()
            .join(format!("postgres-{}.log", self.starts));
        let args = vec![
            "-D".to_owned(),
            self.data.display().to_string(),
            "-p".to_owned(),
            self.port.to_string(),
        ];
        let mut postmaster = ChildProcess::spawn_as(
            "postgres",
            self.user,
            &self.bindir.join("postgres"),
            &args,
            &[],
            log,
        )?;
        let started = Instant::now();
        loop {
            let ready = Command::new(self.bindir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-d", "postgres", "-t", "1"])
                .args(["-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            let reason = if postmaster.exited().is_some() {
                Some("it exited".to_owned())
            } else if started.elapsed() > Duration::from_secs(60) {
                Some("no answer to pg_isready within 60s".to_owned())
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(Error::NotReady {
                    component: "postgres",
                    reason,
                    log: postmaster.log_path().display().to_string(),
                    tail: postmaster.log_tail(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.postmaster = Some(postmaster);
        Ok(())
    }

    /// `pg_ctl stop -m <mode>`: returns once the server is gone.
    pub async fn stop(&mut self, mode: StopMode) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        let mut pg_ctl = as_user(self.user, &self.bindir.join("pg_ctl"));
        pg_ctl
            .arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode.as_str(), "-w", "-t", "30"]);
        tokio::task::spawn_blocking(move || run("pg_ctl stop", &mut pg_ctl))
            .await
            .map_err(|e| Error::Environment(format!("pg_ctl stop task: {e}")))??;
        // pg_ctl returns once postmaster.pid is gone; reap the process itself.
        let started = Instant::now();
        while self.is_running() {
            if started.elapsed() > Duration::from_secs(10) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(mut postmaster) = self.postmaster.take() {
            postmaster.kill();
        }
        Ok(())
    }

    /// The server's log since its last start.
    pub fn log_tail(&self, lines: usize) -> String {
        self.postmaster
            .as_ref()
            .map(|p| p.log_tail(lines))
            .unwrap_or_default()
    }
}

/// Dropping stops the server at once (its children go with the postmaster's SIGKILL
/// only eventually, so ask it to quit first).
impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.is_running() {
            let mut pg_ctl = as_user(self.user, &self.bindir.join("pg_ctl"));
            pg_ctl.arg("stop").arg("-D").arg(&self.data).args([
                "-m",
                "immediate",
                "-w",
                "-t",
                "10",
            ]);
            let _ = pg_ctl.output();
        }
        if let Some(mut postmaster) = self.postmaster.take() {
            postmaster.kill();
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` (or `LATCHKEY_PG_BINDIR`), as
/// `tests/scripts/services.sh` chooses it.
fn pg_bindir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("LATCHKEY_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        Error::Environment(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: run \
             tests/scripts/services.sh ensure (or set LATCHKEY_PG_BINDIR)"
                .into(),
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A command run as `user` (through `runuser`) when given.
fn as_user(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program).current_dir("/");
            cmd
        }
        None => Command::new(program),
    }
}

fn run(what: &str, cmd: &mut Command) -> Result<()> {
    let out = cmd.output().map_err(io(format!("running {what}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Environment(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {}", path.display())))
}
