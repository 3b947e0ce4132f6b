//! A child process that logs to a file and never outlives its owner.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{Result, io};

/// A running child; killed (SIGKILL) and reaped on drop.
///
/// Drop runs when the owning test returns or panics. Should the test process itself be
/// killed, the child gets SIGKILL from the kernel too: it is started through util-linux
/// `setpriv --pdeathsig KILL` when that is installed.
#[derive(Debug)]
pub struct ChildProcess {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl ChildProcess {
    /// Starts `program` with `args`; stdout and stderr go to `log`.
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        envs: &[(&str, &std::ffi::OsStr)],
        log: PathBuf,
    ) -> Result<Self> {
        Self::spawn_as(name, None, program, args, envs, log)
    }

    /// Like [`spawn`](Self::spawn), as the OS user `user` when given (PostgreSQL refuses
    /// to run as root). Switching user takes `setpriv`, which then also arranges the
    /// death signal: it execs the program, so the signal reaches the program itself.
    pub fn spawn_as(
        name: &'static str,
        user: Option<&str>,
        program: &Path,
        args: &[String],
        envs: &[(&str, &std::ffi::OsStr)],
        log: PathBuf,
    ) -> Result<Self> {
        let out = File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io(format!("opening {}", log.display())))?;
        let mut cmd = match (setpriv(), user) {
            (Some(setpriv), user) => {
                let mut c = Command::new(setpriv);
                if let Some(user) = user {
                    c.args(["--reuid", user, "--regid", user, "--init-groups"]);
                }
                c.arg("--pdeathsig").arg("KILL").arg("--").arg(program);
                c
            }
            (None, None) => Command::new(program),
            (None, Some(user)) => {
                return Err(crate::Error::Environment(format!(
                    "running {name} as {user} needs util-linux setpriv"
                )));
            }
        };
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(io(format!("starting {name} ({})", program.display())))?;
        Ok(Self { name, child, log })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Kills the process and waits for it.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// Sends `signal` (`TERM`, `KILL`, `INT`, ...) and returns at once; see
    /// [`exited`](Self::exited) for when it took effect. `false` if it could not be sent.
    pub fn signal(&self, signal: &str) -> bool {
        // std has no signal API and the crate forbids unsafe code: kill(1) sends it.
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Sends SIGTERM (what the kubelet sends a stopping pod) and waits up to `grace` for
    /// the process to exit on its own; `None` if it did not (it is then killed).
    pub fn terminate(&mut self, grace: std::time::Duration) -> Option<std::process::ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        let sent = self.signal("TERM");
        let deadline = std::time::Instant::now() + grace;
        while sent && std::time::Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.kill();
        None
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a log file (empty if unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn setpriv() -> Option<PathBuf> {
    ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}
