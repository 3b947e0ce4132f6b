//! What the audit's tests share: configurations parsed as `latchkey serve` would parse
//! them, and the findings' ids and severities.

use super::{Environment, Finding, Severity, audit};
use crate::config::Settings;

pub(super) fn config(args: &[&str]) -> Settings {
    let mut argv = vec!["latchkey"];
    argv.extend_from_slice(args);
    Settings::from_args(argv).expect("valid")
}

/// A configuration with no finding above info.
pub(super) const PRODUCTION: &[&str] = &[
    "--database-url",
    "postgres://latchkey:pw@db.internal:5432/latchkey?sslmode=verify-full",
    "--redis-url",
    "rediss://:pw@redis.internal:6379/0",
    "--issuer",
    "https://auth.example.com",
    "--manage-keys",
    "false",
    "--rate-limiting-redis-failure",
    "closed",
];

/// [`PRODUCTION`] with `extra` flags (which replace the same flags of it).
pub(super) fn production(extra: &[&str]) -> Settings {
    let mut args: Vec<&str> = PRODUCTION
        .chunks(2)
        .filter(|pair| !extra.contains(&pair[0]))
        .flatten()
        .copied()
        .collect();
    args.extend_from_slice(extra);
    config(&args)
}

pub(super) fn ids(findings: &[Finding]) -> Vec<&'static str> {
    findings.iter().map(|f| f.id).collect()
}

pub(super) fn severity_of(findings: &[Finding], id: &str) -> Option<Severity> {
    findings.iter().find(|f| f.id == id).map(|f| f.severity)
}

pub(super) fn check(extra: &[&str], id: &str) -> Option<Severity> {
    severity_of(&audit(&production(extra), &Environment::default()), id)
}
