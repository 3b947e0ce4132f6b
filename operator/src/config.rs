//! The operator's configuration: one clap struct, every setting also an environment
//! variable. `--help` prints these doc comments.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use latchkey_store::clients::is_scope_token;

use crate::context::Settings;

/// latchkey-operator: turns OAuthClient resources into Latchkey database rows and Secrets.
///
/// Reads the Kubernetes connection from the in-cluster service account, or from
/// KUBECONFIG / ~/.kube/config outside a cluster.
#[derive(Parser, Clone)]
#[command(name = "latchkey-operator", version, about, long_about)]
pub struct Config {
    /// Latchkey's database (the one the service reads): postgres://user:pass@host:5432/db.
    /// Migrations are applied at start.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Database pool size.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 4)]
    pub database_max_connections: u32,

    /// The service's public base URL: written into every Secret as `issuer`, with
    /// `token_url` = <issuer>/oauth/token.
    #[arg(long, env = "LATCHKEY_ISSUER")]
    pub issuer: String,

    /// Address of the /healthz, /readyz and /metrics listener.
    #[arg(
        long,
        env = "LATCHKEY_OPERATOR_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    pub listen: SocketAddr,

    /// Scopes an OAuthClient may be given, comma-separated. A client asking for another
    /// one is not Ready (reason InvalidSpec). Empty: any RFC 6749 scope token.
    #[arg(long, env = "LATCHKEY_ALLOWED_SCOPES", value_delimiter = ',')]
    pub allowed_scopes: Vec<String>,

    /// How often each OAuthClient is compared with its database row even when nothing
    /// changed in Kubernetes: a row edited or deleted behind the operator's back is
    /// restored within this time. Seconds or a number with a unit s, m, h, d.
    #[arg(long, env = "LATCHKEY_OPERATOR_RESYNC", default_value = "5m", value_parser = parse_duration)]
    pub resync_interval: Duration,

    /// Watch only this namespace (all namespaces when unset).
    #[arg(long, env = "LATCHKEY_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,

    /// Elect a leader among operator replicas over a coordination.k8s.io/v1 Lease: only
    /// the holder reconciles. Turn off only when exactly one replica can ever run.
    #[arg(long, env = "LATCHKEY_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the Lease.
    #[arg(
        long,
        env = "LATCHKEY_OPERATOR_LEASE_NAME",
        default_value = "latchkey-operator"
    )]
    pub lease_name: String,

    /// Namespace of the Lease: the operator's own (set POD_NAMESPACE from the downward
    /// API). Defaults to the watched namespace, or "default".
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a leader that stopped renewing keeps the Lease: the longest failover time.
    /// It renews every third of it. Seconds or a number with a unit s, m, h, d.
    #[arg(long, env = "LATCHKEY_OPERATOR_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How often the cluster's ServiceAccount issuer and keys are read from the API
    /// server (/.well-known/openid-configuration, /openid/v1/jwks) and published to the
    /// database for workload-identity clients (spec.serviceAccount). A rotated cluster
    /// key is accepted within this time plus the replicas' key reload. Seconds or a
    /// number with a unit s, m, h, d; at least 1s.
    #[arg(long, env = "LATCHKEY_CLUSTER_ISSUER_REFRESH", default_value = "30s", value_parser = parse_duration)]
    pub cluster_issuer_refresh: Duration,

    /// Log format: json (one object per line) or text.
    #[arg(long, env = "LATCHKEY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax (info, latchkey_operator=debug,kube=warn).
    #[arg(long, env = "LATCHKEY_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    latchkey_crds::duration::parse(s).map_err(|e| e.to_string())
}

// The database URL carries a password: it never reaches a log line.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &"***")
            .field("issuer", &self.issuer)
            .field("listen", &self.listen)
            .field("allowed_scopes", &self.allowed_scopes)
            .field("resync_interval", &self.resync_interval)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Checks every setting; `Err` has one line per problem, naming the variable.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Err(e) = latchkey_store::Backend::from_url(&self.database_url) {
            problems.push(format!("DATABASE_URL: {e}"));
        }
        if self.cluster_issuer_refresh < Duration::from_secs(1) {
            problems.push("LATCHKEY_CLUSTER_ISSUER_REFRESH: must be at least 1s".to_owned());
        }
        if self.database_max_connections == 0 {
            problems.push("DATABASE_MAX_CONNECTIONS: must be at least 1".to_owned());
        }
        let issuer = self.issuer.trim_end_matches('/');
        let has_scheme = issuer
            .strip_prefix("https://")
            .or_else(|| issuer.strip_prefix("http://"))
            .is_some_and(|rest| !rest.is_empty());
        if !has_scheme || issuer.contains(['?', '#', ' ']) {
            problems.push(format!(
                "LATCHKEY_ISSUER: {:?} must be an http:// or https:// URL without query or fragment",
                self.issuer
            ));
        }
        for scope in &self.allowed_scopes {
            if !is_scope_token(scope) {
                problems.push(format!(
                    "LATCHKEY_ALLOWED_SCOPES: {scope:?} is not an RFC 6749 scope token"
                ));
            }
        }
        if self.lease_duration < Duration::from_secs(2) {
            problems.push("LATCHKEY_OPERATOR_LEASE_DURATION: must be at least 2s".to_owned());
        }
        if self.resync_interval < Duration::from_secs(1) {
            problems.push("LATCHKEY_OPERATOR_RESYNC: must be at least 1s".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The leader election's settings; `None` when it is turned off. The identity is
    /// POD_NAME (the downward API) or the host name, plus the process id, the time and a
    /// random number, so two processes never share one.
    pub fn election(&self) -> Option<crate::leader::Settings> {
        if !self.leader_election {
            return None;
        }
        let base = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "latchkey-operator".to_owned());
        Some(crate::leader::Settings {
            namespace: self
                .lease_namespace
                .clone()
                .or_else(|| self.namespace.clone())
                .unwrap_or_else(|| "default".to_owned()),
            name: self.lease_name.clone(),
            // The key directory's stamp: the time and a random number.
            identity: format!(
                "{base}_{}_{}",
                std::process::id(),
                latchkey_store::keydir::new_stamp()
            ),
            lease: self.lease_duration,
        })
    }

    /// What reconciles need from the configuration.
    pub fn settings(&self) -> Settings {
        Settings {
            issuer: self.issuer.trim_end_matches('/').to_owned(),
            allowed_scopes: self.allowed_scopes.clone(),
            resync: self.resync_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["latchkey-operator"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).expect("parses")
    }

    #[test]
    fn minimal_configuration_is_valid() {
        let c = parse(&[
            "--database-url",
            "postgres://u:p@db/latchkey",
            "--issuer",
            "https://auth.example.com/",
        ]);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.settings().issuer, "https://auth.example.com");
        assert_eq!(
            c.settings().token_url(),
            "https://auth.example.com/oauth/token"
        );
        assert_eq!(c.resync_interval, Duration::from_secs(300));
        assert!(!format!("{c:?}").contains("u:p"), "the password is hidden");
    }

    #[test]
    fn every_bad_value_is_reported() {
        let c = parse(&[
            "--database-url",
            "mysql://db",
            "--issuer",
            "auth.example.com",
            "--allowed-scopes",
            "read,bad scope",
            "--resync-interval",
            "0",
            "--database-max-connections",
            "0",
        ]);
        let problems = c.validate().expect_err("invalid");
        assert_eq!(problems.len(), 5, "{problems:?}");
    }
}
