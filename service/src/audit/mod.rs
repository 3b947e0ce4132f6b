//! `latchkey audit`: weak settings in a configuration and, optionally, in a running
//! instance.
//!
//! # Layout
//! - [`rules`]: the configuration rules, pure functions of a [`Config`] and of what was
//!   found on disk ([`Environment`], the keys of the key directory); [`audit`] runs them.
//! - [`instance`]: [`probe`] fetches what a running instance answers ([`Observed`]) and
//!   [`audit_instance`] judges it; only [`Environment::read`] and [`probe`] touch the
//!   outside world, so every rule is tested without a server.
//! - [`report`]: the table and the JSON.
//! - This module: the finding type and the command, [`run`], which prints a report and
//!   turns the findings into an exit code (`--fail-on`).

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use reqwest::Url;
use serde::Serialize;

use crate::config::{Config, Settings};

pub mod instance;
pub mod report;
pub mod rules;
#[cfg(test)]
mod testing;

pub use instance::{Observed, PROBE_ORIGIN, audit_instance, probe};
pub use report::{render_json, render_table};
pub use rules::{Environment, KeyFileInfo, audit};

/// How bad a finding is. Ordered: `Info < Low < Medium < High`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

impl Severity {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
        }
    }
}

/// One weakness: a stable `id` for scripts, what is wrong, and how to fix it (naming the
/// environment variable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub id: &'static str,
    pub message: String,
    pub remediation: String,
}

fn finding(
    severity: Severity,
    id: &'static str,
    message: impl Into<String>,
    remediation: impl Into<String>,
) -> Finding {
    Finding {
        severity,
        id,
        message: message.into(),
        remediation: remediation.into(),
    }
}

/// Most severe first; equal severities by id.
fn sorted(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(b.id)));
    findings
}

/// `latchkey audit`: the settings of `serve`, plus what to probe and how to answer.
#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub config: Config,
    /// Also probe a running instance: its discovery document, JWKS and the security
    /// headers of `/`. https:// URLs are verified against the system's trust store.
    #[arg(long, value_name = "URL")]
    pub url: Option<Url>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = AuditOutput::Text)]
    pub output: AuditOutput,
    /// Exit with status 2 when a finding of this severity or worse exists.
    #[arg(long, value_enum, default_value_t = FailOn::High)]
    pub fail_on: FailOn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuditOutput {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Low,
    Medium,
    High,
    Never,
}

impl FailOn {
    /// Whether `findings` should fail the command.
    pub fn fails(self, findings: &[Finding]) -> bool {
        let threshold = match self {
            Self::Low => Severity::Low,
            Self::Medium => Severity::Medium,
            Self::High => Severity::High,
            Self::Never => return false,
        };
        findings.iter().any(|f| f.severity >= threshold)
    }
}

/// Exit status when findings reach `--fail-on`; 1 is kept for errors.
pub const EXIT_FINDINGS: u8 = 2;

/// Runs `latchkey audit`: prints the findings and returns the exit status.
pub fn run(args: AuditArgs) -> ExitCode {
    match findings_for(&args) {
        Ok(findings) => {
            match args.output {
                AuditOutput::Text => print!("{}", render_table(&findings)),
                AuditOutput::Json => println!("{}", render_json(&findings)),
            }
            if args.fail_on.fails(&findings) {
                ExitCode::from(EXIT_FINDINGS)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("latchkey: {e}");
            ExitCode::FAILURE
        }
    }
}

fn findings_for(args: &AuditArgs) -> Result<Vec<Finding>, String> {
    let settings = Settings::new(args.config.clone()).map_err(|problems| {
        format!(
            "invalid configuration (the service would not start):\n  - {}",
            problems.join("\n  - ")
        )
    })?;
    let env = Environment::read(&settings)?;
    let mut findings = audit(&settings, &env);
    if let Some(url) = &args.url {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("--url {url} must be an http:// or https:// URL"));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the async runtime: {e}"))?;
        let observed = runtime.block_on(probe(url));
        findings.extend(audit_instance(&settings, &observed));
        findings = sorted(findings);
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn fail_on_thresholds_and_output() {
        let findings = vec![
            finding(Severity::Medium, "m", "medium", "fix"),
            finding(Severity::Info, "i", "info", "fix"),
        ];
        assert!(!FailOn::High.fails(&findings));
        assert!(FailOn::Medium.fails(&findings));
        assert!(FailOn::Low.fails(&findings));
        assert!(!FailOn::Never.fails(&findings));
        assert!(!FailOn::Low.fails(&findings[1..]));

        let table = render_table(&findings);
        assert!(table.starts_with("SEVERITY"), "{table}");
        assert!(table.contains("MEDIUM    m   medium"), "{table}");
        assert!(table.contains("fix: fix"), "{table}");
        assert!(table.contains("0 high, 1 medium, 0 low, 1 info"), "{table}");
        assert_eq!(render_table(&[]), "no findings\n");

        let report: Value = serde_json::from_str(&render_json(&findings)).expect("json");
        assert_eq!(report["findings"][0]["severity"], "medium");
        assert_eq!(report["findings"][0]["id"], "m");
        assert_eq!(report["summary"]["info"], 1);
    }
}
