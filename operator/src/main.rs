//! The `latchkey-operator` binary: configuration, logging, signals; the work is in the
//! library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use latchkey_operator::Config;
use latchkey_operator::config::LogFormat;
use latchkey_operator::uninstall::{DeleteSigningKey, delete_signing_key};
use tracing_subscriber::EnvFilter;

/// The static (musl) builds of the container images use mimalloc, as the service does
/// (musl's own allocator is slow under concurrency).
#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // The one subcommand (the chart's pre-delete hook); without it, the operator runs.
    if std::env::args().nth(1).as_deref() == Some("delete-signing-key") {
        let args = DeleteSigningKey::parse_from(std::env::args().skip(1));
        if let Err(e) = init_logging(LogFormat::Json, "info") {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
        return match delete_signing_key(&args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "delete-signing-key failed");
                ExitCode::FAILURE
            }
        };
    }
    let config = Config::parse();
    if let Err(problems) = config.validate() {
        eprintln!("invalid configuration:");
        for p in problems {
            eprintln!("  {p}");
        }
        return ExitCode::from(2);
    }
    if let Err(e) = init_logging(config.log_format, &config.log) {
        eprintln!("{e:#}");
        return ExitCode::from(2);
    }
    match latchkey_operator::run(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "latchkey-operator stopped");
            eprintln!("latchkey-operator: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter).map_err(|e| anyhow::anyhow!("LATCHKEY_LOG: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
