//! The configuration rules: pure functions of a [`Config`] and of what the key
//! directory holds ([`Environment`]), one per concern, each pushing its findings.

use std::path::Path;
use std::time::Duration;

use latchkey_store::keys::Alg;
use reqwest::Url;

use super::Severity;
use super::{Finding, finding, sorted};
use crate::config::{Config, Limit};

/// What the audit found outside the configuration itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    /// The key directory's `*.pem` files; `None` when the directory does not exist (yet).
    pub keys: Option<Vec<KeyFileInfo>>,
}

/// One file of the key directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFileInfo {
    pub name: String,
    /// The key's algorithm and size in bits (the RSA modulus; 256 for P-256 and
    /// Ed25519), or why the service cannot use the file.
    pub key: Result<(Alg, usize), String>,
    /// Unix permission bits of the file (after following symlinks).
    pub mode: Option<u32>,
}

impl Environment {
    /// Reads the key directory of `config` (only sizes and permissions are kept).
    pub fn read(config: &Config) -> Result<Self, String> {
        let dir = config.keys_dir();
        if !dir.exists() {
            return Ok(Self { keys: None });
        }
        let files = latchkey_store::keydir::read_pem_files(&dir).map_err(|e| e.to_string())?;
        let keys = files
            .iter()
            .map(|file| KeyFileInfo {
                name: file.name.clone(),
                key: latchkey_store::keys::KeyPair::from_pem(&file.name, &file.contents)
                    .map(|key| (key.alg(), key.bits()))
                    .map_err(|e| e.to_string()),
                mode: file_mode(&dir.join(&file.name)),
            })
            .collect();
        Ok(Self { keys: Some(keys) })
    }
}

fn file_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

/// The rules that judge the configuration alone, in report order (the report sorts by
/// severity, then id).
const CONFIG_RULES: &[fn(&Config, &mut Vec<Finding>)] = &[
    database,
    redis,
    managed_keys,
    issuer,
    cors,
    trusted_proxies,
    lockout,
    rate_limits,
    brute_force,
    lifetimes,
    passwords,
    generated_keys,
    operations,
];

/// Every weakness of `config` (and of the keys in `env`), most severe first.
pub fn audit(config: &Config, env: &Environment) -> Vec<Finding> {
    let mut out = Vec::new();
    for rule in CONFIG_RULES {
        rule(config, &mut out);
    }
    key_files(env, &mut out);
    sorted(out)
}

/// Where the data lives: development mode, SQLite, PostgreSQL without TLS.
fn database(config: &Config, out: &mut Vec<Finding>) {
    match config.database_url.as_deref() {
        None => out.push(finding(
            Severity::High,
            "dev-mode",
            "development mode: no DATABASE_URL, so data lives in a SQLite file under \
             LATCHKEY_DATA_DIR and keys are generated locally",
            "set DATABASE_URL=postgres://user:pass@host:5432/db",
        )),
        Some(url) if url.starts_with("sqlite:") => out.push(finding(
            Severity::Medium,
            "sqlite-database",
            "DATABASE_URL is SQLite: one process on one machine only",
            "set DATABASE_URL to PostgreSQL (postgres://...) for production",
        )),
        Some(url) => {
            if let Some(host) = remote_host(url)
                && !postgres_requires_tls(url)
            {
                out.push(finding(
                    Severity::Low,
                    "database-no-tls",
                    format!("DATABASE_URL reaches {host} without requiring TLS"),
                    "add ?sslmode=require (or verify-full) to DATABASE_URL",
                ));
            }
        }
    }
}

/// The shared state (revocation list, rate limits, lockout): Redis, its transport and
/// its failure mode.
fn redis(config: &Config, out: &mut Vec<Finding>) {
    match config.redis_url.as_deref() {
        None => out.push(finding(
            Severity::Medium,
            "no-redis",
            "no REDIS_URL: the revocation list, rate limits and lockout counters are per \
             process, so more than one replica is unsafe (a logout or lockout on one replica \
             is not seen by the others)",
            "set REDIS_URL=redis://:password@host:6379/0 (required with more than one replica)",
        )),
        Some(url) => {
            if let Some(host) = remote_host(url)
                && url.starts_with("redis://")
            {
                out.push(finding(
                    Severity::Low,
                    "redis-no-tls",
                    format!("REDIS_URL reaches {host} in plain text"),
                    "use rediss:// in REDIS_URL",
                ));
            }
            if config.rate_limit_redis_failure == crate::config::RedisFailure::Open {
                out.push(finding(
                    Severity::Info,
                    "redis-failure-open",
                    "while Redis is unreachable, rate limits and lockout count per replica",
                    "set RATE_LIMITING_REDIS_FAILURE=closed to answer 503 instead",
                ));
            }
        }
    }
}

/// Locally generated keys with a database that several replicas share.
fn managed_keys(config: &Config, out: &mut Vec<Finding>) {
    let postgres = config
        .database_url
        .as_deref()
        .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
    if config.manage_keys && postgres {
        out.push(finding(
            Severity::Medium,
            "manage-keys-shared-db",
            "LATCHKEY_MANAGE_KEYS=true with a shared PostgreSQL database: every replica \
             generates and publishes its own signing key",
            "set LATCHKEY_MANAGE_KEYS=false and let the operator's SigningKey manage keys",
        ));
    }
}

/// The issuer's scheme, and HSTS with an https:// issuer.
fn issuer(config: &Config, out: &mut Vec<Finding>) {
    let issuer = config.issuer();
    match Url::parse(&issuer) {
        Ok(url) if url.scheme() == "http" && !is_loopback(&url) => out.push(finding(
            Severity::High,
            "issuer-http",
            format!("the issuer {issuer} is http:// on a non-loopback host: tokens, codes and passwords cross the network in clear text"),
            "set LATCHKEY_ISSUER=https://<public host> and terminate TLS in front of the service",
        )),
        Ok(url) if url.scheme() == "https" && config.hsts == Some(false) => out.push(finding(
            Severity::Medium,
            "hsts-disabled",
            "LATCHKEY_HSTS=false although the issuer is https://: browsers may be downgraded to http",
            "unset LATCHKEY_HSTS (it defaults to on with an https:// issuer)",
        )),
        _ => {}
    }
}

/// CORS: a wildcard, or plain-http origins.
fn cors(config: &Config, out: &mut Vec<Finding>) {
    let cors = config.cors_origins();
    if cors.iter().any(|o| o == "*") {
        out.push(finding(
            Severity::Medium,
            "cors-wildcard",
            "CORS_ORIGINS=*: any web page may call the API from a browser (without credentials)",
            "list the exact origins in CORS_ORIGINS (https://app.example.com)",
        ));
    }
    for origin in cors.iter().filter(|o| o.starts_with("http://")) {
        if Url::parse(origin).is_ok_and(|u| !is_loopback(&u)) {
            out.push(finding(
                Severity::Low,
                "cors-http-origin",
                format!("CORS_ORIGINS allows the plain-http origin {origin}"),
                "use https:// origins in CORS_ORIGINS",
            ));
        }
    }
}

/// A trusted-proxy network that trusts every address.
fn trusted_proxies(config: &Config, out: &mut Vec<Finding>) {
    if let Some(net) = config
        .trusted_proxies
        .0
        .iter()
        .find(|net| net.prefix_len() == 0)
    {
        out.push(finding(
            Severity::High,
            "trusted-proxies-any",
            format!(
                "LATCHKEY_TRUSTED_PROXIES contains {net}: any client can forge X-Forwarded-For \
                 and escape per-IP rate limits"
            ),
            "list only your load balancer's addresses in LATCHKEY_TRUSTED_PROXIES",
        ));
    }
}

/// Account lockout: off, or lenient.
fn lockout(config: &Config, out: &mut Vec<Finding>) {
    let lockout_off = config.lockout_attempts == 0;
    if lockout_off {
        out.push(finding(
            Severity::Medium,
            "lockout-off",
            "account lockout is off (ACCOUNT_LOCKOUT_ATTEMPTS=0)",
            "set ACCOUNT_LOCKOUT_ATTEMPTS=5 (the default)",
        ));
    } else if config.lockout_attempts > 20 {
        out.push(finding(
            Severity::Low,
            "lockout-lenient",
            format!(
                "ACCOUNT_LOCKOUT_ATTEMPTS={} allows many guesses per window",
                config.lockout_attempts
            ),
            "set ACCOUNT_LOCKOUT_ATTEMPTS to 10 or fewer",
        ));
    }
}

/// Per-IP, per-route, per-account and per-client rate limits that are off.
fn rate_limits(config: &Config, out: &mut Vec<Finding>) {
    if config.rate_limit_default == Limit(None) {
        out.push(finding(
            Severity::Medium,
            "rate-limit-off",
            "per-IP rate limiting is off (RATE_LIMITING_DEFAULT=off)",
            "set RATE_LIMITING_DEFAULT=\"300 per minute\" (the default)",
        ));
    }
    for route in ["/auth/login", "/auth/register", "/oauth/token"] {
        let overridden_off = config
            .rate_limit_routes
            .0
            .iter()
            .any(|(r, rate)| r == route && rate.is_none());
        if overridden_off {
            out.push(finding(
                Severity::Medium,
                "rate-limit-route-off",
                format!("RATE_LIMITING_ROUTES turns rate limiting off for {route}"),
                format!("remove {route}=off from RATE_LIMITING_ROUTES"),
            ));
        }
    }
    let account_off = config.rate_limit_account == Limit(None);
    if account_off {
        out.push(finding(
            Severity::Medium,
            "rate-limit-account-off",
            "login attempts per username are not limited (RATE_LIMITING_ACCOUNT=off)",
            "set RATE_LIMITING_ACCOUNT=\"20 per minute\" (the default)",
        ));
    }
    if config.rate_limit_client == Limit(None) {
        out.push(finding(
            Severity::Low,
            "rate-limit-client-off",
            "token requests per OAuth client are not limited (RATE_LIMITING_CLIENT=off)",
            "set RATE_LIMITING_CLIENT=\"600 per minute\" (the default)",
        ));
    }
}

/// Nothing at all limiting password guessing: lockout, the per-account limit and the
/// /auth/login limit all off.
fn brute_force(config: &Config, out: &mut Vec<Finding>) {
    let lockout_off = config.lockout_attempts == 0;
    let account_off = config.rate_limit_account == Limit(None);
    let route_rate = |route: &str| {
        config
            .rate_limit_routes
            .0
            .iter()
            .find(|(r, _)| r == route)
            .map_or(config.rate_limit_default.0, |(_, rate)| *rate)
    };
    if lockout_off && account_off && route_rate("/auth/login").is_none() {
        out.push(finding(
            Severity::High,
            "brute-force-unprotected",
            "nothing limits password guessing: lockout, the per-account limit and the \
             /auth/login limit are all off",
            "set ACCOUNT_LOCKOUT_ATTEMPTS and RATE_LIMITING_ACCOUNT (or RATE_LIMITING_DEFAULT)",
        ));
    }
}

/// Lifetimes of access and refresh tokens, codes, browser sessions and the JWKS cache.
fn lifetimes(config: &Config, out: &mut Vec<Finding>) {
    let access = config.access_token_ttl;
    if access > Duration::from_secs(12 * 3600) {
        out.push(finding(
            Severity::High,
            "access-token-ttl",
            format!(
                "access tokens live {} (over 12h); a stolen one stays valid that long",
                human(access)
            ),
            "set OAUTH2_ACCESS_TOKEN_EXPIRES=15m and rely on refresh tokens",
        ));
    } else if access > Duration::from_secs(3600) {
        out.push(finding(
            Severity::Medium,
            "access-token-ttl",
            format!("access tokens live {} (over 1h)", human(access)),
            "set OAUTH2_ACCESS_TOKEN_EXPIRES to 1h or less (15m is the default)",
        ));
    }
    let refresh = config.refresh_token_ttl;
    if refresh > Duration::from_secs(30 * 86_400) {
        out.push(finding(
            Severity::Medium,
            "refresh-token-ttl",
            format!("refresh tokens live {} (over 30d)", human(refresh)),
            "set OAUTH2_REFRESH_TOKEN_EXPIRES to 30d or less (14d is the default)",
        ));
    }
    if config.authorization_code_ttl > Duration::from_secs(300) {
        out.push(finding(
            Severity::Low,
            "authorization-code-ttl",
            format!(
                "authorization codes live {} (RFC 9700 advises well under 10 minutes)",
                human(config.authorization_code_ttl)
            ),
            "set OAUTH2_AUTHORIZATION_CODE_EXPIRES=60s (the default)",
        ));
    }
    if config.session_ttl > Duration::from_secs(86_400) {
        out.push(finding(
            Severity::Low,
            "session-ttl",
            format!(
                "browser sign-ins last {} (over 24h)",
                human(config.session_ttl)
            ),
            "set LATCHKEY_SESSION_TTL to 24h or less (8h is the default)",
        ));
    }
    if config.jwks_max_age > Duration::from_secs(3600) {
        out.push(finding(
            Severity::Low,
            "jwks-max-age",
            format!(
                "verifiers may cache the JWKS for {}: a revoked or new key takes that long to be seen",
                human(config.jwks_max_age)
            ),
            "set LATCHKEY_JWKS_MAX_AGE to 1h or less (5m is the default)",
        ));
    }
}

/// The minimum password length.
fn passwords(config: &Config, out: &mut Vec<Finding>) {
    if config.password_min_length < 12 {
        out.push(finding(
            Severity::Low,
            "password-min-length",
            format!(
                "PASSWORD_MIN_LENGTH={} (under 12 characters)",
                config.password_min_length
            ),
            "set PASSWORD_MIN_LENGTH=12 (the default) or more",
        ));
    }
}

/// The size of locally generated keys.
fn generated_keys(config: &Config, out: &mut Vec<Finding>) {
    if config.manage_keys && config.signing_algorithm() == Alg::Rs256 && config.key_bits == 2048 {
        out.push(finding(
            Severity::Info,
            "key-bits-2048",
            "generated signing keys are RSA 2048 (acceptable until 2030 per NIST SP 800-57)",
            "set LATCHKEY_KEY_BITS=3072 for keys meant to outlive 2030",
        ));
    }
}

/// Each file of the key directory: its size, whether the service can use it, who can
/// read it.
fn key_files(env: &Environment, out: &mut Vec<Finding>) {
    for key in env.keys.iter().flatten() {
        match &key.key {
            Ok((Alg::Rs256, bits)) if *bits < 2048 => out.push(finding(
                Severity::High,
                "key-size",
                format!("{}: RSA {bits} bits", key.name),
                "replace the key with `latchkey keys generate --bits 3072` in LATCHKEY_KEYS_DIR",
            )),
            Ok((Alg::Rs256, 2048)) => out.push(finding(
                Severity::Info,
                "key-size-2048",
                format!("{}: RSA 2048 bits", key.name),
                "rotate to a 3072-bit key (LATCHKEY_KEY_BITS=3072 or the SigningKey's keySize) before 2030",
            )),
            Ok(_) => {}
            Err(reason) => out.push(finding(
                Severity::Medium,
                "key-unusable",
                format!("the service cannot use a file of LATCHKEY_KEYS_DIR: {reason}"),
                "remove or replace the file (RSA >= 2048 bits, P-256 or Ed25519; PKCS#8, PKCS#1 or SEC 1 PEM)",
            )),
        }
        if let Some(mode) = key.mode
            && mode & 0o077 != 0
        {
            out.push(finding(
                Severity::Low,
                "key-file-permissions",
                format!(
                    "{}: private key readable by group or others (mode {mode:o})",
                    key.name
                ),
                "chmod 600 the files of LATCHKEY_KEYS_DIR (defaultMode: 0400 on a Secret volume)",
            ));
        }
    }
}

/// Request bodies and log verbosity.
fn operations(config: &Config, out: &mut Vec<Finding>) {
    if config.body_limit > 1024 * 1024 {
        out.push(finding(
            Severity::Low,
            "body-limit",
            format!(
                "LATCHKEY_BODY_LIMIT={} bytes (over 1 MiB) lets clients send large bodies",
                config.body_limit
            ),
            "set LATCHKEY_BODY_LIMIT=65536 (the default)",
        ));
    }
    let log = config.log.to_ascii_lowercase();
    if log.contains("debug") || log.contains("trace") {
        out.push(finding(
            Severity::Low,
            "log-verbose",
            format!(
                "LATCHKEY_LOG={} logs at debug/trace level: dependencies may log request details",
                config.log
            ),
            "set LATCHKEY_LOG=info in production",
        ));
    }
}

/// `90s`, `15m`, `2h`, `30d`: the largest unit that divides the duration.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86_400 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        s if s >= 3600 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s >= 60 && s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Whether `url` names this machine (no host at all counts: a Unix socket).
pub(super) fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return true;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

/// The host of a database or Redis URL when it is reached over the network (not
/// loopback, not a Unix socket).
fn remote_host(url: &str) -> Option<String> {
    let parsed = Url::parse(url).ok()?;
    let host = parsed.host_str().filter(|h| !h.is_empty())?.to_owned();
    (!is_loopback(&parsed)).then_some(host)
}

fn postgres_requires_tls(url: &str) -> bool {
    Url::parse(url).is_ok_and(|u| {
        u.query_pairs().any(|(k, v)| {
            k == "sslmode" && matches!(v.as_ref(), "require" | "verify-ca" | "verify-full")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::testing::*;

    #[test]
    fn production_config_is_clean() {
        let findings = audit(&production(&[]), &Environment::default());
        assert_eq!(ids(&findings), Vec::<&str>::new(), "{findings:#?}");
    }

    #[test]
    fn embedded_default_is_development_mode() {
        let findings = audit(&config(&[]), &Environment::default());
        assert_eq!(severity_of(&findings, "dev-mode"), Some(Severity::High));
        assert_eq!(severity_of(&findings, "no-redis"), Some(Severity::Medium));
        assert_eq!(
            severity_of(&findings, "key-bits-2048"),
            Some(Severity::Info)
        );
        // The default issuer is loopback http: fine.
        assert_eq!(severity_of(&findings, "issuer-http"), None);
        assert_eq!(
            findings[0].severity,
            Severity::High,
            "sorted: {findings:#?}"
        );
        assert!(findings.windows(2).all(|w| w[0].severity >= w[1].severity));
        for f in &findings {
            assert!(!f.remediation.is_empty(), "{f:?}");
        }
    }

    #[test]
    fn storage_rules() {
        let sqlite = config(&["--database-url", "sqlite:///var/lib/l.db?mode=rwc"]);
        let findings = audit(&sqlite, &Environment::default());
        assert_eq!(
            severity_of(&findings, "sqlite-database"),
            Some(Severity::Medium)
        );
        assert_eq!(severity_of(&findings, "dev-mode"), None);
        assert_eq!(
            check(
                &["--database-url", "postgres://u:p@db.internal/l"],
                "database-no-tls"
            ),
            Some(Severity::Low)
        );
        assert_eq!(
            check(
                &["--database-url", "postgres://u:p@127.0.0.1/l"],
                "database-no-tls"
            ),
            None
        );
        assert_eq!(
            check(
                &["--redis-url", "redis://redis.internal:6379"],
                "redis-no-tls"
            ),
            Some(Severity::Low)
        );
        assert_eq!(
            check(&["--redis-url", "redis://localhost:6379"], "redis-no-tls"),
            None
        );
        assert_eq!(
            check(
                &["--rate-limiting-redis-failure", "open"],
                "redis-failure-open"
            ),
            Some(Severity::Info)
        );
        assert_eq!(
            check(&["--manage-keys", "true"], "manage-keys-shared-db"),
            Some(Severity::Medium)
        );
        let sqlite_managed = config(&["--database-url", "sqlite://l.db", "--manage-keys", "true"]);
        assert_eq!(
            severity_of(
                &audit(&sqlite_managed, &Environment::default()),
                "manage-keys-shared-db"
            ),
            None
        );
    }

    #[test]
    fn issuer_and_transport_rules() {
        assert_eq!(
            check(&["--issuer", "http://auth.example.com"], "issuer-http"),
            Some(Severity::High)
        );
        for loopback in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:8080",
        ] {
            assert_eq!(
                check(&["--issuer", loopback], "issuer-http"),
                None,
                "{loopback}"
            );
        }
        // No issuer: http://<listen>, which is public on 0.0.0.0.
        let open = config(&["--listen", "0.0.0.0:8080"]);
        assert_eq!(
            severity_of(&audit(&open, &Environment::default()), "issuer-http"),
            Some(Severity::High)
        );
        assert_eq!(
            check(&["--hsts", "false"], "hsts-disabled"),
            Some(Severity::Medium)
        );
        assert_eq!(check(&["--hsts", "true"], "hsts-disabled"), None);
        assert_eq!(
            check(&["--cors-origins", "*"], "cors-wildcard"),
            Some(Severity::Medium)
        );
        assert_eq!(
            check(
                &[
                    "--cors-origins",
                    "http://app.example.com,http://localhost:3000"
                ],
                "cors-http-origin"
            ),
            Some(Severity::Low)
        );
        let findings = audit(
            &production(&[
                "--cors-origins",
                "https://app.example.com,http://localhost:3000",
            ]),
            &Environment::default(),
        );
        assert_eq!(ids(&findings), Vec::<&str>::new());
        assert_eq!(
            check(&["--trusted-proxies", "0.0.0.0/0"], "trusted-proxies-any"),
            Some(Severity::High)
        );
        assert_eq!(
            check(&["--trusted-proxies", "10.0.0.0/8"], "trusted-proxies-any"),
            None
        );
    }

    #[test]
    fn brute_force_rules() {
        assert_eq!(
            check(&["--account-lockout-attempts", "0"], "lockout-off"),
            Some(Severity::Medium)
        );
        assert_eq!(
            check(&["--account-lockout-attempts", "50"], "lockout-lenient"),
            Some(Severity::Low)
        );
        assert_eq!(
            check(&["--rate-limiting-default", "off"], "rate-limit-off"),
            Some(Severity::Medium)
        );
        assert_eq!(
            check(
                &["--rate-limiting-routes", "/oauth/token=off"],
                "rate-limit-route-off"
            ),
            Some(Severity::Medium)
        );
        assert_eq!(
            check(
                &["--rate-limiting-account", "off"],
                "rate-limit-account-off"
            ),
            Some(Severity::Medium)
        );
        assert_eq!(
            check(&["--rate-limiting-client", "off"], "rate-limit-client-off"),
            Some(Severity::Low)
        );
        // Lockout and the account limit off, but /auth/login still limited per IP.
        let partly = [
            "--account-lockout-attempts",
            "0",
            "--rate-limiting-account",
            "off",
        ];
        assert_eq!(check(&partly, "brute-force-unprotected"), None);
        let mut none = partly.to_vec();
        none.extend(["--rate-limiting-routes", "/auth/login=off"]);
        assert_eq!(
            check(&none, "brute-force-unprotected"),
            Some(Severity::High)
        );
        // The default rate governs /auth/login when no route overrides it.
        let mut default_off = partly.to_vec();
        default_off.extend([
            "--rate-limiting-default",
            "off",
            "--rate-limiting-routes",
            "",
        ]);
        assert_eq!(
            check(&default_off, "brute-force-unprotected"),
            Some(Severity::High)
        );
    }

    #[test]
    fn token_and_session_rules() {
        assert_eq!(
            check(&["--access-token-ttl", "1h"], "access-token-ttl"),
            None
        );
        assert_eq!(
            check(&["--access-token-ttl", "2h"], "access-token-ttl"),
            Some(Severity::Medium)
        );
        assert_eq!(
            check(&["--access-token-ttl", "13h"], "access-token-ttl"),
            Some(Severity::High)
        );
        assert_eq!(
            check(&["--refresh-token-ttl", "30d"], "refresh-token-ttl"),
            None
        );
        assert_eq!(
            check(&["--refresh-token-ttl", "31d"], "refresh-token-ttl"),
            Some(Severity::Medium)
        );
        assert_eq!(
            check(
                &["--authorization-code-ttl", "10m"],
                "authorization-code-ttl"
            ),
            Some(Severity::Low)
        );
        assert_eq!(
            check(&["--session-ttl", "2d"], "session-ttl"),
            Some(Severity::Low)
        );
        assert_eq!(
            check(&["--jwks-max-age", "1d"], "jwks-max-age"),
            Some(Severity::Low)
        );
    }

    #[test]
    fn password_and_operations_rules() {
        assert_eq!(
            check(&["--password-min-length", "8"], "password-min-length"),
            Some(Severity::Low)
        );
        assert_eq!(
            check(&["--password-min-length", "12"], "password-min-length"),
            None
        );
        assert_eq!(
            check(&["--body-limit", "10000000"], "body-limit"),
            Some(Severity::Low)
        );
        assert_eq!(
            check(&["--log", "info,latchkey=debug"], "log-verbose"),
            Some(Severity::Low)
        );
    }

    #[test]
    fn key_rules() {
        assert_eq!(
            check(
                &["--manage-keys", "true", "--key-bits", "2048"],
                "key-bits-2048"
            ),
            Some(Severity::Info)
        );
        assert_eq!(
            check(
                &["--manage-keys", "true", "--key-bits", "3072"],
                "key-bits-2048"
            ),
            None
        );
        let key = |name: &str, bits: Result<usize, String>, mode| KeyFileInfo {
            name: name.to_owned(),
            key: bits.map(|bits| (Alg::Rs256, bits)),
            mode: Some(mode),
        };
        let env = Environment {
            keys: Some(vec![
                key("a.pem", Ok(2048), 0o600),
                key("b.pem", Ok(4096), 0o644),
                key(
                    "c.pem",
                    Err("invalid key c.pem: 1024 bits is too short".into()),
                    0o600,
                ),
                key("d.pem", Ok(1024), 0o600),
                KeyFileInfo {
                    name: "e.pem".into(),
                    key: Ok((Alg::Es256, 256)),
                    mode: Some(0o600),
                },
            ]),
        };
        let findings = audit(&production(&[]), &env);
        assert_eq!(severity_of(&findings, "key-size"), Some(Severity::High));
        assert!(
            !findings.iter().any(|f| f.message.contains("e.pem")),
            "a P-256 key is not too short: {findings:#?}"
        );
        assert_eq!(
            severity_of(&findings, "key-size-2048"),
            Some(Severity::Info)
        );
        assert_eq!(
            severity_of(&findings, "key-unusable"),
            Some(Severity::Medium)
        );
        let perms: Vec<_> = findings
            .iter()
            .filter(|f| f.id == "key-file-permissions")
            .collect();
        assert_eq!(perms.len(), 1);
        assert!(perms[0].message.contains("b.pem"), "{perms:?}");
    }

    #[test]
    fn environment_reads_the_key_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys");
        let key = latchkey_store::keys::KeyPair::generate(2048).expect("key");
        let files = [latchkey_store::keydir::KeyFile {
            name: format!("{}.pem", key.kid()),
            contents: key.to_pem().expect("pem").into_bytes(),
        }];
        latchkey_store::keydir::write_atomic(&keys, &files, "stamp").expect("write");
        let keys_arg = keys.display().to_string();
        let env = Environment::read(&config(&["--keys-dir", &keys_arg])).expect("read");
        let found = env.keys.expect("directory exists");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, Ok((Alg::Rs256, 2048)));
        assert_eq!(found[0].mode, Some(0o600));
        let missing = dir.path().join("none").display().to_string();
        let env = Environment::read(&config(&["--keys-dir", &missing])).expect("read");
        assert_eq!(env.keys, None);
    }
}
