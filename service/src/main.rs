//! The `latchkey` command: `serve` (the default), `migrate`, `keys generate`, `version`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use latchkey::app::App;
use latchkey::config::Config;
use latchkey::telemetry;
use latchkey_store::Db;
use latchkey_store::keydir::{self, KeyFile};
use latchkey_store::keys::KeyPair;

/// Latchkey: an OAuth2 / JWT authentication service.
///
/// With no arguments it serves the embedded default: SQLite and a generated signing key
/// under ./latchkey-data, on http://127.0.0.1:8080.
#[derive(Parser)]
#[command(name = "latchkey", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve {
        #[command(flatten)]
        config: Box<Config>,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        config: Box<Config>,
    },
    /// Manage signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate an RS256 key into a directory laid out like a mounted Kubernetes Secret.
    /// Existing keys stay unless --replace is given. Prints the new key's kid.
    Generate {
        /// The key directory.
        #[arg(long, env = "LATCHKEY_KEYS_DIR")]
        dir: PathBuf,
        /// RSA modulus size: 2048, 3072 or 4096.
        #[arg(long, default_value_t = 2048)]
        bits: usize,
        /// Remove the keys already in the directory.
        #[arg(long)]
        replace: bool,
    },
}

/// `latchkey` with no subcommand behaves as `latchkey serve`, configured from the
/// environment alone.
#[derive(Parser)]
struct ServeDefaults {
    #[command(flatten)]
    config: Config,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run_async(serve(ServeDefaults::parse_from(["latchkey"]).config)),
        Some(Command::Serve { config }) => run_async(serve(*config)),
        Some(Command::Migrate { config }) => run_async(migrate(*config)),
        Some(Command::Keys {
            command: KeysCommand::Generate { dir, bits, replace },
        }) => generate_key(&dir, bits, replace),
        Some(Command::Version) => {
            println!("latchkey {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_async(fut: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(fut)
}

fn validated(config: &Config) -> anyhow::Result<()> {
    config.validate().map_err(|problems| {
        anyhow::anyhow!("invalid configuration:\n  - {}", problems.join("\n  - "))
    })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    validated(&config)?;
    telemetry::init_logging(config.log_format, &config.log)?;
    let app = App::build(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding LATCHKEY_LISTEN {}", config.listen))?;
    app.serve(listener, shutdown_signal()).await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    validated(&config)?;
    if config.is_development() {
        std::fs::create_dir_all(&config.data_dir)?;
    }
    let db = Db::connect(&config.database_url(), 1).await?;
    db.migrate().await?;
    println!("migrations applied ({})", db.backend().as_str());
    Ok(())
}

fn generate_key(dir: &std::path::Path, bits: usize, replace: bool) -> anyhow::Result<()> {
    let key = KeyPair::generate(bits).context("LATCHKEY: --bits must be 2048, 3072 or 4096")?;
    let mut files = if replace || !dir.exists() {
        Vec::new()
    } else {
        keydir::read_pem_files(dir)?
    };
    files.push(KeyFile {
        name: format!("{}.pem", key.kid()),
        contents: key.to_pem()?.into_bytes(),
    });
    keydir::write_atomic(dir, &files, &keydir::new_stamp())?;
    println!("{}", key.kid());
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (what Kubernetes sends before killing a pod).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
