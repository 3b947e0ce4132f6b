//! `latchkey audit`: weak settings in a configuration and, optionally, in a running
//! instance.
//!
//! The rules are pure functions: [`audit`] judges a [`Config`] together with what was
//! found on disk ([`Environment`], the keys of the key directory), and
//! [`audit_instance`] judges what a running instance answered ([`Observed`]). Only
//! [`Environment::read`] and [`probe`] touch the outside world, so every rule is tested
//! without a server. [`run`] is the command itself: it prints a table or JSON and turns
//! the findings into an exit code (`--fail-on`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use reqwest::Url;
use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, Limit};

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
    fn label(self) -> &'static str {
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

// === impl Environment ===

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
    /// The RSA modulus size, or why the service cannot use the file.
    pub bits: Result<usize, String>,
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
                bits: latchkey_store::keys::KeyPair::from_pem(&file.name, &file.contents)
                    .map(|key| key.bits())
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

// === configuration rules ===

/// Every weakness of `config` (and of the keys in `env`), most severe first.
pub fn audit(config: &Config, env: &Environment) -> Vec<Finding> {
    use Severity::{High, Info, Low, Medium};
    let mut out = Vec::new();

    // Storage and shared state.
    match config.database_url.as_deref() {
        None => out.push(finding(
            High,
            "dev-mode",
            "development mode: no DATABASE_URL, so data lives in a SQLite file under \
             LATCHKEY_DATA_DIR and keys are generated locally",
            "set DATABASE_URL=postgres://user:pass@host:5432/db",
        )),
        Some(url) if url.starts_with("sqlite:") => out.push(finding(
            Medium,
            "sqlite-database",
            "DATABASE_URL is SQLite: one process on one machine only",
            "set DATABASE_URL to PostgreSQL (postgres://...) for production",
        )),
        Some(url) => {
            if let Some(host) = remote_host(url)
                && !postgres_requires_tls(url)
            {
                out.push(finding(
                    Low,
                    "database-no-tls",
                    format!("DATABASE_URL reaches {host} without requiring TLS"),
                    "add ?sslmode=require (or verify-full) to DATABASE_URL",
                ));
            }
        }
    }
    match config.redis_url.as_deref() {
        None => out.push(finding(
            Medium,
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
                    Low,
                    "redis-no-tls",
                    format!("REDIS_URL reaches {host} in plain text"),
                    "use rediss:// in REDIS_URL",
                ));
            }
            if config.rate_limit_redis_failure == crate::config::RedisFailure::Open {
                out.push(finding(
                    Info,
                    "redis-failure-open",
                    "while Redis is unreachable, rate limits and lockout count per replica",
                    "set RATE_LIMITING_REDIS_FAILURE=closed to answer 503 instead",
                ));
            }
        }
    }
    let postgres = config
        .database_url
        .as_deref()
        .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
    if config.manage_keys && postgres {
        out.push(finding(
            Medium,
            "manage-keys-shared-db",
            "LATCHKEY_MANAGE_KEYS=true with a shared PostgreSQL database: every replica \
             generates and publishes its own signing key",
            "set LATCHKEY_MANAGE_KEYS=false and let the operator's SigningKey manage keys",
        ));
    }

    // Issuer and transport.
    let issuer = config.issuer();
    match Url::parse(&issuer) {
        Ok(url) if url.scheme() == "http" && !is_loopback(&url) => out.push(finding(
            High,
            "issuer-http",
            format!("the issuer {issuer} is http:// on a non-loopback host: tokens, codes and passwords cross the network in clear text"),
            "set LATCHKEY_ISSUER=https://<public host> and terminate TLS in front of the service",
        )),
        Ok(url) if url.scheme() == "https" && config.hsts == Some(false) => out.push(finding(
            Medium,
            "hsts-disabled",
            "LATCHKEY_HSTS=false although the issuer is https://: browsers may be downgraded to http",
            "unset LATCHKEY_HSTS (it defaults to on with an https:// issuer)",
        )),
        _ => {}
    }
    let cors = config.cors_origins();
    if cors.iter().any(|o| o == "*") {
        out.push(finding(
            Medium,
            "cors-wildcard",
            "CORS_ORIGINS=*: any web page may call the API from a browser (without credentials)",
            "list the exact origins in CORS_ORIGINS (https://app.example.com)",
        ));
    }
    for origin in cors.iter().filter(|o| o.starts_with("http://")) {
        if Url::parse(origin).is_ok_and(|u| !is_loopback(&u)) {
            out.push(finding(
                Low,
                "cors-http-origin",
                format!("CORS_ORIGINS allows the plain-http origin {origin}"),
                "use https:// origins in CORS_ORIGINS",
            ));
        }
    }
    if let Some(net) = config
        .trusted_proxies
        .0
        .iter()
        .find(|net| net.prefix_len() == 0)
    {
        out.push(finding(
            High,
            "trusted-proxies-any",
            format!(
                "LATCHKEY_TRUSTED_PROXIES contains {net}: any client can forge X-Forwarded-For \
                 and escape per-IP rate limits"
            ),
            "list only your load balancer's addresses in LATCHKEY_TRUSTED_PROXIES",
        ));
    }

    // Brute force: lockout and rate limits.
    let lockout_off = config.lockout_attempts == 0;
    if lockout_off {
        out.push(finding(
            Medium,
            "lockout-off",
            "account lockout is off (ACCOUNT_LOCKOUT_ATTEMPTS=0)",
            "set ACCOUNT_LOCKOUT_ATTEMPTS=5 (the default)",
        ));
    } else if config.lockout_attempts > 20 {
        out.push(finding(
            Low,
            "lockout-lenient",
            format!(
                "ACCOUNT_LOCKOUT_ATTEMPTS={} allows many guesses per window",
                config.lockout_attempts
            ),
            "set ACCOUNT_LOCKOUT_ATTEMPTS to 10 or fewer",
        ));
    }
    if config.rate_limit_default == Limit(None) {
        out.push(finding(
            Medium,
            "rate-limit-off",
            "per-IP rate limiting is off (RATE_LIMITING_DEFAULT=off)",
            "set RATE_LIMITING_DEFAULT=\"300 per minute\" (the default)",
        ));
    }
    let route_rate = |route: &str| {
        config
            .rate_limit_routes
            .0
            .iter()
            .find(|(r, _)| r == route)
            .map_or(config.rate_limit_default.0, |(_, rate)| *rate)
    };
    for route in ["/auth/login", "/auth/register", "/oauth/token"] {
        let overridden_off = config
            .rate_limit_routes
            .0
            .iter()
            .any(|(r, rate)| r == route && rate.is_none());
        if overridden_off {
            out.push(finding(
                Medium,
                "rate-limit-route-off",
                format!("RATE_LIMITING_ROUTES turns rate limiting off for {route}"),
                format!("remove {route}=off from RATE_LIMITING_ROUTES"),
            ));
        }
    }
    let account_off = config.rate_limit_account == Limit(None);
    if account_off {
        out.push(finding(
            Medium,
            "rate-limit-account-off",
            "login attempts per username are not limited (RATE_LIMITING_ACCOUNT=off)",
            "set RATE_LIMITING_ACCOUNT=\"20 per minute\" (the default)",
        ));
    }
    if config.rate_limit_client == Limit(None) {
        out.push(finding(
            Low,
            "rate-limit-client-off",
            "token requests per OAuth client are not limited (RATE_LIMITING_CLIENT=off)",
            "set RATE_LIMITING_CLIENT=\"600 per minute\" (the default)",
        ));
    }
    if lockout_off && account_off && route_rate("/auth/login").is_none() {
        out.push(finding(
            High,
            "brute-force-unprotected",
            "nothing limits password guessing: lockout, the per-account limit and the \
             /auth/login limit are all off",
            "set ACCOUNT_LOCKOUT_ATTEMPTS and RATE_LIMITING_ACCOUNT (or RATE_LIMITING_DEFAULT)",
        ));
    }

    // Tokens and sessions.
    let access = config.access_token_ttl;
    if access > Duration::from_secs(12 * 3600) {
        out.push(finding(
            High,
            "access-token-ttl",
            format!(
                "access tokens live {} (over 12h); a stolen one stays valid that long",
                human(access)
            ),
            "set OAUTH2_ACCESS_TOKEN_EXPIRES=15m and rely on refresh tokens",
        ));
    } else if access > Duration::from_secs(3600) {
        out.push(finding(
            Medium,
            "access-token-ttl",
            format!("access tokens live {} (over 1h)", human(access)),
            "set OAUTH2_ACCESS_TOKEN_EXPIRES to 1h or less (15m is the default)",
        ));
    }
    let refresh = config.refresh_token_ttl;
    if refresh > Duration::from_secs(30 * 86_400) {
        out.push(finding(
            Medium,
            "refresh-token-ttl",
            format!("refresh tokens live {} (over 30d)", human(refresh)),
            "set OAUTH2_REFRESH_TOKEN_EXPIRES to 30d or less (14d is the default)",
        ));
    }
    if config.authorization_code_ttl > Duration::from_secs(300) {
        out.push(finding(
            Low,
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
            Low,
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
            Low,
            "jwks-max-age",
            format!(
                "verifiers may cache the JWKS for {}: a revoked or new key takes that long to be seen",
                human(config.jwks_max_age)
            ),
            "set LATCHKEY_JWKS_MAX_AGE to 1h or less (5m is the default)",
        ));
    }

    // Passwords.
    if config.password_min_length < 12 {
        out.push(finding(
            Low,
            "password-min-length",
            format!(
                "PASSWORD_MIN_LENGTH={} (under 12 characters)",
                config.password_min_length
            ),
            "set PASSWORD_MIN_LENGTH=12 (the default) or more",
        ));
    }

    // Signing keys.
    if config.manage_keys && config.key_bits == 2048 {
        out.push(finding(
            Info,
            "key-bits-2048",
            "generated signing keys are RSA 2048 (acceptable until 2030 per NIST SP 800-57)",
            "set LATCHKEY_KEY_BITS=3072 for keys meant to outlive 2030",
        ));
    }
    for key in env.keys.iter().flatten() {
        match &key.bits {
            Ok(bits) if *bits < 2048 => out.push(finding(
                High,
                "key-size",
                format!("{}: RSA {bits} bits", key.name),
                "replace the key with `latchkey keys generate --bits 3072` in LATCHKEY_KEYS_DIR",
            )),
            Ok(2048) => out.push(finding(
                Info,
                "key-size-2048",
                format!("{}: RSA 2048 bits", key.name),
                "rotate to a 3072-bit key (LATCHKEY_KEY_BITS=3072 or the SigningKey's keySize) before 2030",
            )),
            Ok(_) => {}
            Err(reason) => out.push(finding(
                Medium,
                "key-unusable",
                format!("the service cannot use a file of LATCHKEY_KEYS_DIR: {reason}"),
                "remove or replace the file (RSA >= 2048 bits, PKCS#8 or PKCS#1 PEM)",
            )),
        }
        if let Some(mode) = key.mode
            && mode & 0o077 != 0
        {
            out.push(finding(
                Low,
                "key-file-permissions",
                format!(
                    "{}: private key readable by group or others (mode {mode:o})",
                    key.name
                ),
                "chmod 600 the files of LATCHKEY_KEYS_DIR (defaultMode: 0400 on a Secret volume)",
            ));
        }
    }

    // Operations.
    if config.body_limit > 1024 * 1024 {
        out.push(finding(
            Low,
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
            Low,
            "log-verbose",
            format!(
                "LATCHKEY_LOG={} logs at debug/trace level: dependencies may log request details",
                config.log
            ),
            "set LATCHKEY_LOG=info in production",
        ));
    }

    sorted(out)
}

fn sorted(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(b.id)));
    findings
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
fn is_loopback(url: &Url) -> bool {
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

// === running instance ===

/// What a running instance answered. Each part is `Err` with the reason when it could
/// not be fetched.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The URL audited (its scheme and host matter).
    pub url: Url,
    /// `/.well-known/openid-configuration`.
    pub discovery: Result<Value, String>,
    /// `/.well-known/jwks.json`.
    pub jwks: Result<Value, String>,
    /// Response headers of `GET /` (names lower-case), sent with an `Origin` of
    /// [`PROBE_ORIGIN`].
    pub headers: Result<Vec<(String, String)>, String>,
}

/// The foreign origin the probe sends to see whether CORS lets any page in.
pub const PROBE_ORIGIN: &str = "https://latchkey-audit.invalid";

/// Fetches what [`audit_instance`] judges. Certificates are verified with the
/// platform's trust store; redirects are not followed.
pub async fn probe(url: &Url) -> Observed {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build();
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            let reason = format!("HTTP client: {e}");
            return Observed {
                url: url.clone(),
                discovery: Err(reason.clone()),
                jwks: Err(reason.clone()),
                headers: Err(reason),
            };
        }
    };
    let join = |path: &str| {
        let base = url.as_str().trim_end_matches('/');
        format!("{base}{path}")
    };
    let get_json = |path: &'static str| {
        let client = client.clone();
        let target = join(path);
        async move {
            let response = client
                .get(&target)
                .send()
                .await
                .map_err(|e| format!("GET {target}: {}", error_chain(&e)))?;
            if !response.status().is_success() {
                return Err(format!("GET {target}: HTTP {}", response.status()));
            }
            response
                .json::<Value>()
                .await
                .map_err(|e| format!("GET {target}: {}", error_chain(&e)))
        }
    };
    let root = join("/");
    let headers = async {
        let response = client
            .get(&root)
            .header("origin", PROBE_ORIGIN)
            .send()
            .await
            .map_err(|e| format!("GET {root}: {}", error_chain(&e)))?;
        Ok::<_, String>(
            response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    let (discovery, jwks, headers) = tokio::join!(
        get_json("/.well-known/openid-configuration"),
        get_json("/.well-known/jwks.json"),
        headers
    );
    Observed {
        url: url.clone(),
        discovery,
        jwks,
        headers,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Every weakness of a running instance, judged against the `config` it should have.
pub fn audit_instance(config: &Config, observed: &Observed) -> Vec<Finding> {
    use Severity::{High, Info, Low, Medium};
    let mut out = Vec::new();
    let https = observed.url.scheme() == "https";
    if !https && !is_loopback(&observed.url) {
        out.push(finding(
            High,
            "live-url-http",
            format!(
                "{} answers over plain http on a non-loopback host",
                observed.url
            ),
            "serve the instance only over https:// (TLS at the ingress) and set LATCHKEY_ISSUER to it",
        ));
    }

    match &observed.discovery {
        Err(reason) => out.push(finding(
            High,
            "live-unreachable",
            format!("discovery could not be checked: {reason}"),
            "check the --url and that the instance is up",
        )),
        Ok(doc) => match doc.get("issuer").and_then(Value::as_str) {
            None => out.push(finding(
                High,
                "live-discovery-invalid",
                "the discovery document has no issuer",
                "check that --url points at Latchkey",
            )),
            Some(live) => {
                let live = live.trim_end_matches('/');
                if live != config.issuer() {
                    out.push(finding(
                        Medium,
                        "live-issuer-mismatch",
                        format!(
                            "the instance's issuer is {live}, the configuration's is {}",
                            config.issuer()
                        ),
                        "audit with the instance's own settings, or fix LATCHKEY_ISSUER",
                    ));
                }
                if let Ok(url) = Url::parse(live)
                    && url.scheme() == "http"
                    && !is_loopback(&url)
                {
                    out.push(finding(
                        High,
                        "live-issuer-http",
                        format!("the instance's issuer {live} is http:// on a non-loopback host"),
                        "set LATCHKEY_ISSUER=https://<public host>",
                    ));
                }
                if live != observed.url.as_str().trim_end_matches('/') {
                    out.push(finding(
                        Info,
                        "live-issuer-differs-from-url",
                        format!("the audited URL {} is not the issuer {live}", observed.url),
                        "audit the public issuer URL, as clients see it",
                    ));
                }
            }
        },
    }

    match &observed.jwks {
        Err(reason) => out.push(finding(
            High,
            "live-unreachable",
            format!("the JWKS could not be checked: {reason}"),
            "check the --url and that the instance is up",
        )),
        Ok(doc) => {
            let keys = doc.get("keys").and_then(Value::as_array);
            match keys {
                None => out.push(finding(
                    Medium,
                    "live-jwks-empty",
                    "the JWKS publishes no key: no token can be verified",
                    "check LATCHKEY_KEYS_DIR and LATCHKEY_MANAGE_KEYS",
                )),
                Some(keys) if keys.is_empty() => out.push(finding(
                    Medium,
                    "live-jwks-empty",
                    "the JWKS publishes no key: no token can be verified",
                    "check LATCHKEY_KEYS_DIR and LATCHKEY_MANAGE_KEYS",
                )),
                Some(keys) => {
                    for key in keys {
                        out.extend(jwk_findings(key));
                    }
                }
            }
        }
    }

    match &observed.headers {
        Err(reason) => out.push(finding(
            High,
            "live-unreachable",
            format!("the security headers could not be checked: {reason}"),
            "check the --url and that the instance is up",
        )),
        Ok(headers) => {
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            };
            match (header("strict-transport-security"), https) {
                (None, true) => out.push(finding(
                    Medium,
                    "live-hsts-missing",
                    "no Strict-Transport-Security on an https:// instance",
                    "unset LATCHKEY_HSTS or set it to true (on by default with an https:// issuer)",
                )),
                (None, false) => out.push(finding(
                    Info,
                    "live-hsts-missing",
                    "no Strict-Transport-Security (expected: the instance is plain http)",
                    "serve over https:// with LATCHKEY_ISSUER=https://...; HSTS then turns on",
                )),
                (Some(value), _) => {
                    let max_age = value.split(';').find_map(|part| {
                        part.trim()
                            .strip_prefix("max-age=")
                            .and_then(|v| v.trim_matches('"').parse::<u64>().ok())
                    });
                    if max_age.unwrap_or(0) < 15_552_000 {
                        out.push(finding(
                            Low,
                            "live-hsts-short",
                            format!(
                                "Strict-Transport-Security {value:?} has a max-age under 180 days"
                            ),
                            "check the ingress: Latchkey itself sends max-age=31536000",
                        ));
                    }
                }
            }
            let expected = [
                ("x-content-type-options", Some("nosniff")),
                ("x-frame-options", None),
                ("referrer-policy", None),
                ("content-security-policy", None),
            ];
            for (name, value) in expected {
                let actual = header(name);
                let ok = match (actual, value) {
                    (Some(actual), Some(value)) => actual.eq_ignore_ascii_case(value),
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if !ok {
                    out.push(finding(
                        Low,
                        "live-header-missing",
                        format!("{name} is missing or weak ({})", actual.unwrap_or("absent")),
                        "check that no proxy strips Latchkey's security headers",
                    ));
                }
            }
            match header("access-control-allow-origin") {
                Some("*") => out.push(finding(
                    Medium,
                    "live-cors-wildcard",
                    "CORS allows any origin (Access-Control-Allow-Origin: *)",
                    "list the exact origins in CORS_ORIGINS",
                )),
                Some(PROBE_ORIGIN) => out.push(finding(
                    High,
                    "live-cors-reflects-origin",
                    format!("CORS lets the foreign origin {PROBE_ORIGIN} in"),
                    "list the exact origins in CORS_ORIGINS and check the ingress",
                )),
                _ => {}
            }
        }
    }
    sorted(out)
}

fn jwk_findings(key: &Value) -> Vec<Finding> {
    use Severity::{High, Info, Low};
    let kid = key.get("kid").and_then(Value::as_str).unwrap_or("(no kid)");
    let kty = key.get("kty").and_then(Value::as_str).unwrap_or("");
    let mut out = Vec::new();
    if kty != "RSA" {
        out.push(finding(
            Low,
            "live-key-type",
            format!("key {kid} has kty {kty:?}; Latchkey signs with RSA (RS256) only"),
            "remove the key from the signing_keys table",
        ));
        return out;
    }
    if let Some(alg) = key.get("alg").and_then(Value::as_str)
        && alg != "RS256"
    {
        out.push(finding(
            Low,
            "live-key-alg",
            format!("key {kid} advertises alg {alg}"),
            "publish RS256 keys only",
        ));
    }
    match key.get("n").and_then(Value::as_str).and_then(modulus_bits) {
        None => out.push(finding(
            Low,
            "live-key-invalid",
            format!("key {kid} has no readable modulus n"),
            "remove the key from the signing_keys table",
        )),
        Some(bits) if bits < 2048 => out.push(finding(
            High,
            "live-key-size",
            format!("key {kid}: RSA {bits} bits (under 2048)"),
            "rotate to a key of 3072 bits (LATCHKEY_KEY_BITS or the SigningKey's keySize)",
        )),
        Some(bits) if bits < 3072 => out.push(finding(
            Info,
            "live-key-size-2048",
            format!("key {kid}: RSA {bits} bits"),
            "rotate to a 3072-bit key (LATCHKEY_KEY_BITS=3072 or the SigningKey's keySize) before 2030",
        )),
        Some(_) => {}
    }
    out
}

/// The size in bits of a base64url (unpadded) big-endian RSA modulus.
fn modulus_bits(n: &str) -> Option<usize> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n.trim_end_matches('='))
        .ok()?;
    let first = bytes.iter().position(|b| *b != 0)?;
    let leading = bytes[first].leading_zeros() as usize;
    Some((bytes.len() - first) * 8 - leading)
}

// === the command ===

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
    args.config.validate().map_err(|problems| {
        format!(
            "invalid configuration (the service would not start):\n  - {}",
            problems.join("\n  - ")
        )
    })?;
    let env = Environment::read(&args.config)?;
    let mut findings = audit(&args.config, &env);
    if let Some(url) = &args.url {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("--url {url} must be an http:// or https:// URL"));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the async runtime: {e}"))?;
        let observed = runtime.block_on(probe(url));
        findings.extend(audit_instance(&args.config, &observed));
        findings = sorted(findings);
    }
    Ok(findings)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn config(args: &[&str]) -> Config {
        let mut argv = vec!["latchkey"];
        argv.extend_from_slice(args);
        let config = Cli::try_parse_from(argv).expect("parse").config;
        config.validate().expect("valid");
        config
    }

    /// A configuration with no finding above info.
    const PRODUCTION: &[&str] = &[
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
    fn production(extra: &[&str]) -> Config {
        let mut args: Vec<&str> = PRODUCTION
            .chunks(2)
            .filter(|pair| !extra.contains(&pair[0]))
            .flatten()
            .copied()
            .collect();
        args.extend_from_slice(extra);
        config(&args)
    }

    fn ids(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.id).collect()
    }

    fn severity_of(findings: &[Finding], id: &str) -> Option<Severity> {
        findings.iter().find(|f| f.id == id).map(|f| f.severity)
    }

    fn check(extra: &[&str], id: &str) -> Option<Severity> {
        severity_of(&audit(&production(extra), &Environment::default()), id)
    }

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
            bits,
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
            ]),
        };
        let findings = audit(&production(&[]), &env);
        assert_eq!(severity_of(&findings, "key-size"), Some(Severity::High));
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
        assert_eq!(found[0].bits, Ok(2048));
        assert_eq!(found[0].mode, Some(0o600));
        let missing = dir.path().join("none").display().to_string();
        let env = Environment::read(&config(&["--keys-dir", &missing])).expect("read");
        assert_eq!(env.keys, None);
    }

    fn secure_headers() -> Vec<(String, String)> {
        [
            ("strict-transport-security", "max-age=31536000"),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("content-security-policy", "default-src 'none'"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    fn rsa_jwk(bits: usize) -> Value {
        use base64::Engine as _;
        let mut n = vec![0xff_u8; bits / 8];
        n[0] = 0x80;
        json!({
            "kty": "RSA", "alg": "RS256", "kid": format!("k{bits}"),
            "n": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&n), "e": "AQAB",
        })
    }

    fn observed(url: &str) -> Observed {
        Observed {
            url: Url::parse(url).expect("url"),
            discovery: Ok(json!({ "issuer": "https://auth.example.com" })),
            jwks: Ok(json!({ "keys": [rsa_jwk(3072)] })),
            headers: Ok(secure_headers()),
        }
    }

    #[test]
    fn a_secure_instance_is_clean() {
        let findings = audit_instance(&production(&[]), &observed("https://auth.example.com/"));
        assert_eq!(ids(&findings), Vec::<&str>::new(), "{findings:#?}");
    }

    #[test]
    fn instance_rules() {
        let config = production(&[]);
        let mut o = observed("http://auth.example.com");
        o.discovery = Ok(json!({ "issuer": "http://auth.example.com" }));
        o.jwks = Ok(json!({ "keys": [rsa_jwk(1024), rsa_jwk(2048), {"kty": "EC", "kid": "ec"}] }));
        o.headers = Ok(vec![
            ("access-control-allow-origin".into(), PROBE_ORIGIN.into()),
            ("x-content-type-options".into(), "sniff".into()),
        ]);
        let findings = audit_instance(&config, &o);
        let expect = [
            ("live-url-http", Severity::High),
            ("live-issuer-http", Severity::High),
            ("live-issuer-mismatch", Severity::Medium),
            ("live-key-size", Severity::High),
            ("live-key-size-2048", Severity::Info),
            ("live-key-type", Severity::Low),
            ("live-hsts-missing", Severity::Info),
            ("live-header-missing", Severity::Low),
            ("live-cors-reflects-origin", Severity::High),
        ];
        for (id, severity) in expect {
            assert_eq!(
                severity_of(&findings, id),
                Some(severity),
                "{id}: {findings:#?}"
            );
        }
        assert_eq!(
            findings
                .iter()
                .filter(|f| f.id == "live-header-missing")
                .count(),
            4,
            "{findings:#?}"
        );

        let mut https = observed("https://auth.example.com");
        https.headers = Ok(vec![
            ("access-control-allow-origin".into(), "*".into()),
            ("strict-transport-security".into(), "max-age=300".into()),
        ]);
        https.jwks = Ok(json!({ "keys": [] }));
        https.discovery = Err("GET ...: connection refused".into());
        let findings = audit_instance(&config, &https);
        assert_eq!(
            severity_of(&findings, "live-cors-wildcard"),
            Some(Severity::Medium)
        );
        assert_eq!(
            severity_of(&findings, "live-hsts-short"),
            Some(Severity::Low)
        );
        assert_eq!(
            severity_of(&findings, "live-jwks-empty"),
            Some(Severity::Medium)
        );
        assert_eq!(
            severity_of(&findings, "live-unreachable"),
            Some(Severity::High)
        );

        let mut no_hsts = observed("https://auth.example.com");
        no_hsts.headers = Ok(secure_headers()[1..].to_vec());
        assert_eq!(
            severity_of(&audit_instance(&config, &no_hsts), "live-hsts-missing"),
            Some(Severity::Medium)
        );
    }

    #[test]
    fn modulus_sizes() {
        for bits in [1024, 2048, 3072, 4096] {
            let jwk = rsa_jwk(bits);
            assert_eq!(
                modulus_bits(jwk["n"].as_str().expect("n")),
                Some(bits),
                "{bits}"
            );
        }
        // A leading zero byte (some encoders keep it) does not count.
        assert_eq!(modulus_bits("AIA"), Some(8));
        assert_eq!(modulus_bits("!!"), None);
    }

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
