//! The two reports: a table for people, JSON for scripts.

use serde_json::Value;

use super::{Finding, Severity};

/// The human-readable report: one line per finding, its remediation below it.
pub fn render_table(findings: &[Finding]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if findings.is_empty() {
        out.push_str("no findings\n");
        return out;
    }
    let id_width = findings
        .iter()
        .map(|f| f.id.len())
        .max()
        .unwrap_or(2)
        .max(2);
    let _ = writeln!(out, "{:<8}  {:<id_width$}  MESSAGE", "SEVERITY", "ID");
    for f in findings {
        let _ = writeln!(
            out,
            "{:<8}  {:<id_width$}  {}",
            f.severity.label(),
            f.id,
            f.message
        );
        let _ = writeln!(out, "{:<8}  {:<id_width$}  fix: {}", "", "", f.remediation);
    }
    let _ = writeln!(out, "\n{}", summary_line(findings));
    out
}

fn counts(findings: &[Finding]) -> [(Severity, usize); 4] {
    [
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ]
    .map(|s| (s, findings.iter().filter(|f| f.severity == s).count()))
}

fn summary_line(findings: &[Finding]) -> String {
    counts(findings)
        .iter()
        .map(|(s, n)| format!("{n} {}", s.label().to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The machine-readable report: `{"findings": [...], "summary": {"high": n, ...}}`.
pub fn render_json(findings: &[Finding]) -> String {
    let summary: serde_json::Map<String, Value> = counts(findings)
        .iter()
        .map(|(s, n)| (s.label().to_ascii_lowercase(), Value::from(*n)))
        .collect();
    let report = serde_json::json!({ "findings": findings, "summary": summary });
    serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".to_owned())
}
