//! Configuration: one clap struct ([`Config`]), every field settable by flag or
//! environment variable, and the validated [`Settings`] made from it once, with one clear
//! message per bad value. Only the CLI sees `Config`; everything it runs takes `Settings`.
//!
//! With nothing set, Latchkey runs the embedded default: SQLite and a generated signing
//! key under `./latchkey-data`, in-process revocation list, listening on 127.0.0.1:8080.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};
use latchkey_store::keys::Alg;

/// Settings of `latchkey serve` (and, for the database, of `latchkey migrate`).
#[derive(Args, Clone)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(long, env = "LATCHKEY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address and port of the metrics listener (`/metrics`, Prometheus text), or `off`.
    /// Apart from the API so that only the scraper can reach it: metrics describe the
    /// traffic of every user. Keep it on loopback or behind a network policy.
    #[arg(long = "metrics-listen", env = "LATCHKEY_METRICS_LISTEN", default_value = "127.0.0.1:9464", value_parser = parse_listen)]
    pub metrics_listen: Listen,

    /// Public base URL of this service: the `iss` of every token and the base of the
    /// discovery document. Defaults to http://<LATCHKEY_LISTEN>.
    #[arg(long, env = "LATCHKEY_ISSUER")]
    pub issuer: Option<String>,

    /// `aud` of access tokens issued by /auth/login and the audience /users/me accepts.
    /// Defaults to the issuer.
    #[arg(long, env = "LATCHKEY_AUDIENCE")]
    pub audience: Option<String>,

    /// Directory for the embedded default's SQLite file and generated keys.
    #[arg(long, env = "LATCHKEY_DATA_DIR", default_value = "./latchkey-data")]
    pub data_dir: PathBuf,

    /// Database URL: postgres://user:pass@host/db for production. Defaults to a SQLite
    /// file in the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Largest number of database connections this process opens.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,

    /// Redis URL (redis://:password@host:6379/0). When set, the access-token revocation
    /// list is shared by every replica; otherwise it is in-process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key this service writes, so several installations can
    /// share one Redis.
    #[arg(long, env = "LATCHKEY_REDIS_PREFIX", default_value = "latchkey:")]
    pub redis_prefix: String,

    /// Directory of PEM private keys, in the layout of a mounted Kubernetes Secret.
    /// Defaults to <data dir>/keys.
    #[arg(long, env = "LATCHKEY_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,

    /// Whether this service manages its own signing keys: generates one when the key
    /// directory is empty and publishes the public keys it holds as Active. Set it to
    /// false when the operator manages keys (Kubernetes).
    #[arg(long, env = "LATCHKEY_MANAGE_KEYS", default_value_t = true, action = clap::ArgAction::Set)]
    pub manage_keys: bool,

    /// RSA modulus size of RS256 keys this service generates: 2048, 3072 or 4096
    /// (ES256 and EdDSA keys have fixed sizes).
    #[arg(long, env = "LATCHKEY_KEY_BITS", default_value_t = 2048)]
    pub key_bits: usize,

    /// How often the key directory and the published keys are re-read.
    #[arg(long, env = "LATCHKEY_KEYS_RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub keys_reload_interval: Duration,

    /// Algorithm of the signing key this service generates when it manages its keys and
    /// the key directory is empty: RS256, ES256 (P-256) or EdDSA (Ed25519). Keys already
    /// in the directory sign with their own algorithm, whatever this says.
    #[arg(long, env = "JWT_ALGORITHM", default_value = "RS256")]
    pub jwt_algorithm: String,

    /// Access-token lifetime (seconds, or with a unit: 15m, 1h).
    #[arg(long, env = "OAUTH2_ACCESS_TOKEN_EXPIRES", default_value = "15m", value_parser = parse_duration)]
    pub access_token_ttl: Duration,

    /// Refresh-token lifetime; each refresh issues a new token with a fresh lifetime.
    #[arg(long, env = "OAUTH2_REFRESH_TOKEN_EXPIRES", default_value = "14d", value_parser = parse_duration)]
    pub refresh_token_ttl: Duration,

    /// Authorization-code lifetime (RFC 9700 recommends well under 10 minutes).
    #[arg(long, env = "OAUTH2_AUTHORIZATION_CODE_EXPIRES", default_value = "60s", value_parser = parse_duration)]
    pub authorization_code_ttl: Duration,

    /// How long a browser stays signed in to the login page of `/oauth/authorize`.
    #[arg(long, env = "LATCHKEY_SESSION_TTL", default_value = "8h", value_parser = parse_duration)]
    pub session_ttl: Duration,

    /// `Cache-Control: max-age` of the JWKS document. Keep it shorter than the operator's
    /// `prePublish` so verifiers see a new key before it signs.
    #[arg(long, env = "LATCHKEY_JWKS_MAX_AGE", default_value = "5m", value_parser = parse_duration)]
    pub jwks_max_age: Duration,

    /// Shortest password accepted at registration.
    #[arg(long, env = "PASSWORD_MIN_LENGTH", default_value_t = 12)]
    pub password_min_length: usize,

    /// Require at least one upper-case letter in new passwords.
    #[arg(long, env = "PASSWORD_REQUIRE_UPPERCASE", default_value_t = false, action = clap::ArgAction::Set)]
    pub password_require_uppercase: bool,

    /// Require at least one lower-case letter in new passwords.
    #[arg(long, env = "PASSWORD_REQUIRE_LOWERCASE", default_value_t = false, action = clap::ArgAction::Set)]
    pub password_require_lowercase: bool,

    /// Require at least one digit in new passwords.
    #[arg(long, env = "PASSWORD_REQUIRE_DIGIT", default_value_t = false, action = clap::ArgAction::Set)]
    pub password_require_digit: bool,

    /// Require at least one character that is neither a letter nor a digit.
    #[arg(long, env = "PASSWORD_REQUIRE_SYMBOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub password_require_symbol: bool,

    /// A file of further rejected passwords, one per line, added to the built-in list.
    #[arg(long, env = "PASSWORD_REJECT_LIST")]
    pub password_reject_list: Option<PathBuf>,

    /// How many password hashes may be computed at once (each takes 19 MiB and tens of
    /// milliseconds of CPU). Defaults to the number of CPU cores.
    #[arg(long, env = "LATCHKEY_PASSWORD_HASH_CONCURRENCY")]
    pub password_hash_concurrency: Option<usize>,

    /// Origins allowed by CORS, comma-separated (https://app.example.com). `*` allows any
    /// origin without credentials. Empty: no CORS headers.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',', default_value = "")]
    pub cors_origins: Vec<String>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "LATCHKEY_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit: usize,

    /// Time after which a request is answered 408 and abandoned.
    #[arg(long, env = "LATCHKEY_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// After SIGTERM/SIGINT, keep serving this long with `/ready` 503 and every response
    /// closing its connection, so callers behind a load balancer move to other replicas
    /// without a failed request; then finish what is in flight. 0: stop at once.
    #[arg(long, env = "LATCHKEY_SHUTDOWN_DRAIN", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_drain: Duration,

    /// Send `Strict-Transport-Security`. Defaults to on when the issuer is https://.
    #[arg(long, env = "LATCHKEY_HSTS", action = clap::ArgAction::Set)]
    pub hsts: Option<bool>,

    /// Failed logins for one username, inside ACCOUNT_LOCKOUT_WINDOW, that lock it.
    /// 0 turns lockout off.
    #[arg(
        long = "account-lockout-attempts",
        env = "ACCOUNT_LOCKOUT_ATTEMPTS",
        default_value_t = 5
    )]
    pub lockout_attempts: u32,

    /// The window in which failures are counted; the count starts over after it.
    #[arg(long = "account-lockout-window", env = "ACCOUNT_LOCKOUT_WINDOW", default_value = "15m", value_parser = parse_duration)]
    pub lockout_window: Duration,

    /// How long the first lockout lasts; each further lockout in a row doubles it.
    #[arg(long = "account-lockout-duration", env = "ACCOUNT_LOCKOUT_DURATION", default_value = "15m", value_parser = parse_duration)]
    pub lockout_duration: Duration,

    /// The longest a lockout grows to.
    #[arg(long = "account-lockout-max-duration", env = "ACCOUNT_LOCKOUT_MAX_DURATION", default_value = "24h", value_parser = parse_duration)]
    pub lockout_max_duration: Duration,

    /// SMTP server mail is sent through: `smtp://user:pass@host:587?tls=starttls`
    /// (STARTTLS, required), `smtps://user:pass@host:465` (TLS from the first byte) or
    /// `smtp://host:25` (plain, for a relay on the same host). Unset: mail is written to
    /// `<data dir>/outbox/` as .eml files instead of being sent.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// The `From` of every mail (`Latchkey <noreply@example.com>` or a bare address).
    #[arg(
        long,
        env = "MAIL_FROM",
        default_value = "Latchkey <noreply@localhost>"
    )]
    pub mail_from: String,

    /// New accounts cannot log in until they follow the link emailed to them. Defaults
    /// to on when SMTP_URL is set and off otherwise (mail only reaches the outbox).
    #[arg(long, env = "REQUIRE_EMAIL_VERIFICATION", action = clap::ArgAction::Set)]
    pub require_email_verification: Option<bool>,

    /// How long an emailed account-activation link works.
    #[arg(long = "email-verification-ttl", env = "EMAIL_VERIFICATION_EXPIRES", default_value = "24h", value_parser = parse_duration)]
    pub email_verification_ttl: Duration,

    /// How long an emailed password-reset link works.
    #[arg(long = "password-reset-ttl", env = "PASSWORD_RESET_EXPIRES", default_value = "30m", value_parser = parse_duration)]
    pub password_reset_ttl: Duration,

    /// Requests per client IP to each route (`300 per minute`, `100/hour`), or `off`.
    #[arg(long = "rate-limiting-default", env = "RATE_LIMITING_DEFAULT", default_value = "300 per minute", value_parser = parse_limit)]
    pub rate_limit_default: Limit,

    /// Per-route overrides of RATE_LIMITING_DEFAULT, comma-separated
    /// (`/auth/login=10 per minute,/oauth/token=off`).
    #[arg(long = "rate-limiting-routes", env = "RATE_LIMITING_ROUTES", default_value = "/auth/login=60 per minute,/auth/register=30 per minute", value_parser = parse_route_rates)]
    pub rate_limit_routes: RouteRates,

    /// Login attempts per username, whatever the client IP, or `off`.
    #[arg(long = "rate-limiting-account", env = "RATE_LIMITING_ACCOUNT", default_value = "20 per minute", value_parser = parse_limit)]
    pub rate_limit_account: Limit,

    /// How often each replica deletes expired and spent rows (refresh-token families,
    /// authorization codes, browser sessions, emailed tokens), or `off`.
    #[arg(long = "prune-interval", env = "LATCHKEY_PRUNE_INTERVAL", default_value = "60s", value_parser = parse_optional_duration)]
    pub prune_interval: Interval,

    /// Most rows one pruning statement deletes (1 to 100000).
    #[arg(
        long = "prune-batch",
        env = "LATCHKEY_PRUNE_BATCH",
        default_value_t = 1000
    )]
    pub prune_batch: u32,

    /// Password checks per client IP, counted together over every route that checks a
    /// password (`/auth/login`, the password grant, the sign-in form of
    /// `/oauth/authorize`, `/auth/change-password`), or `off`.
    #[arg(long = "rate-limiting-password", env = "RATE_LIMITING_PASSWORD", default_value = "60 per minute", value_parser = parse_limit)]
    pub rate_limit_password: Limit,

    /// Token-endpoint requests per authenticated OAuth client, or `off`.
    #[arg(long = "rate-limiting-client", env = "RATE_LIMITING_CLIENT", default_value = "600 per minute", value_parser = parse_limit)]
    pub rate_limit_client: Limit,

    /// What rate limits and lockout do when Redis cannot be reached: `open` counts in
    /// process (each replica on its own) until Redis is back; `closed` answers 503.
    #[arg(long = "rate-limiting-redis-failure", env = "RATE_LIMITING_REDIS_FAILURE", value_enum, default_value_t = RedisFailure::Open)]
    pub rate_limit_redis_failure: RedisFailure,

    /// Proxies (IPs or CIDRs, comma-separated) whose `X-Forwarded-For` is believed. The
    /// client is the right-most address not in this list. Empty: the socket peer.
    #[arg(long, env = "LATCHKEY_TRUSTED_PROXIES", default_value = "", value_parser = parse_proxies)]
    pub trusted_proxies: TrustedProxies,

    /// Log format.
    #[arg(long, env = "LATCHKEY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax (info, latchkey=debug,sqlx=warn).
    #[arg(long, env = "LATCHKEY_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

// Secrets (the database and Redis URLs carry passwords) never reach a log line.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("issuer", &self.issuer())
            .field("data_dir", &self.data_dir)
            .field("database", &self.database_url.as_ref().map(|_| "***"))
            .field("redis", &self.redis_url.as_ref().map(|_| "***"))
            .field("smtp", &self.smtp_url.as_ref().map(|_| "***"))
            .field("keys_dir", &self.keys_dir())
            .field("manage_keys", &self.manage_keys)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RedisFailure {
    Open,
    Closed,
}

pub use latchkey_domain::limits::Rate;

/// A listener setting: `None` is `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

/// An interval setting: `None` is `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval(pub Option<Duration>);

fn parse_optional_duration(value: &str) -> Result<Interval, String> {
    if value.trim().eq_ignore_ascii_case("off") {
        return Ok(Interval(None));
    }
    parse_duration(value).map(|d| Interval(Some(d)))
}

fn parse_listen(value: &str) -> Result<Listen, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(Listen(None));
    }
    value
        .parse()
        .map(|addr| Listen(Some(addr)))
        .map_err(|_| format!("{value:?} is not an address and port (127.0.0.1:9464) or off"))
}

/// A rate limit setting: `None` is `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub Option<Rate>);

/// Per-route rates: route template -> rate (`None`: not limited).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteRates(pub Vec<(String, Option<Rate>)>);

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<ipnet::IpNet>);

fn parse_limit(value: &str) -> Result<Limit, String> {
    parse_rate(value).map(Limit)
}

fn parse_proxies(value: &str) -> Result<TrustedProxies, String> {
    let mut out = Vec::new();
    for item in value.split(',') {
        out.extend(parse_proxy(item)?);
    }
    Ok(TrustedProxies(out))
}

/// Parses `100 per hour`, `10 per minute`, `100/hour`, `5 per 10s`, or `off` (`None`).
pub fn parse_rate(value: &str) -> Result<Option<Rate>, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || format!("{value:?} is not a rate (examples: 100 per hour, 10/minute, off)");
    let (count, unit) = value
        .split_once('/')
        .or_else(|| value.split_once(" per "))
        .ok_or_else(bad)?;
    let limit: u32 = count.trim().parse().map_err(|_| bad())?;
    if limit == 0 {
        return Err(format!(
            "{value:?}: the count must be at least 1 (or use off)"
        ));
    }
    let period = match unit.trim().to_ascii_lowercase().as_str() {
        "second" | "sec" | "s" => Duration::from_secs(1),
        "minute" | "min" | "m" => Duration::from_secs(60),
        "hour" | "h" => Duration::from_secs(3600),
        "day" | "d" => Duration::from_secs(86_400),
        other => parse_duration(other).map_err(|_| bad())?,
    };
    if period.is_zero() {
        return Err(bad());
    }
    Ok(Some(Rate { limit, period }))
}

/// Parses `/auth/login=10 per minute,/oauth/token=off`.
pub fn parse_route_rates(value: &str) -> Result<RouteRates, String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (route, rate) = item.split_once('=').ok_or_else(|| {
            format!("{item:?} must be ROUTE=RATE, e.g. /auth/login=10 per minute")
        })?;
        let route = route.trim();
        if !route.starts_with('/') {
            return Err(format!("{route:?} must be a route path starting with /"));
        }
        out.push((route.to_owned(), parse_rate(rate)?));
    }
    Ok(RouteRates(out))
}

/// Parses one trusted proxy: an IP address (a /32 or /128) or a CIDR; empty is `None`.
pub fn parse_proxy(value: &str) -> Result<Option<ipnet::IpNet>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if let Ok(ip) = value.parse::<std::net::IpAddr>() {
        return Ok(Some(ip.into()));
    }
    value
        .parse::<ipnet::IpNet>()
        .map(|net| Some(net.trunc()))
        .map_err(|_| format!("{value:?} is not an IP address or CIDR (10.0.0.0/8)"))
}

/// Parses `90`, `90s`, `15m`, `1h` or `14d`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration (examples: 900, 90s, 15m, 1h, 14d)"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use s, m, h or d)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{value:?} is too long a duration"))
}

/// The settings of `latchkey serve` as a command line alone: the one clap wrapper of
/// [`Config`] (the `latchkey` binary flattens `Config` into its subcommands instead).
#[derive(Parser)]
#[command(name = "latchkey")]
struct ServeFlags {
    #[command(flatten)]
    config: Config,
}

/// A validated [`Config`]: what [`App::build`](crate::app::App::build) and `migrate`
/// take. [`Settings::new`] (or [`Settings::from_args`]) is the only way to make one, so
/// nothing runs on a configuration that was not checked. It reads as the `Config` it
/// holds.
#[derive(Clone, Debug)]
pub struct Settings(Config);

impl Settings {
    /// Validates `config`: every problem, one message each.
    pub fn new(config: Config) -> Result<Self, Vec<String>> {
        config.validate()?;
        Ok(Self(config))
    }

    /// Parses `args` (the program name first) as `latchkey serve` would, environment
    /// variables included, and validates the result. For tools and tests.
    pub fn from_args<I, T>(args: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let config = Config::try_parse_args(args).map_err(|e| e.to_string())?;
        Self::new(config)
            .map_err(|problems| format!("invalid configuration:\n  - {}", problems.join("\n  - ")))
    }

    /// The embedded default with its data (SQLite file, keys, outbox) in `data_dir`,
    /// quiet logs, and `extra` flags: what tests start. Panics on an invalid result.
    pub fn for_test(data_dir: &std::path::Path, extra: &[&str]) -> Self {
        let data_dir = data_dir.display().to_string();
        let mut args = vec!["latchkey", "--data-dir", &data_dir, "--log", "warn"];
        args.extend_from_slice(extra);
        Self::from_args(args).unwrap_or_else(|e| panic!("test settings: {e}"))
    }
}

impl std::ops::Deref for Settings {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.0
    }
}

impl Config {
    /// Parses `args` (the program name first) as the flags of `latchkey serve`,
    /// environment variables included; not validated (see [`Settings::new`]).
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        ServeFlags::try_parse_from(args).map(|flags| flags.config)
    }

    /// Everything wrong with this configuration, one message per bad value.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if Alg::parse(&self.jwt_algorithm).is_none() {
            problems.push(format!(
                "JWT_ALGORITHM={:?} is not supported: use RS256, ES256 or EdDSA",
                self.jwt_algorithm
            ));
        }
        if let Some(issuer) = &self.issuer {
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                problems.push(format!("LATCHKEY_ISSUER={issuer:?} must be an http(s) URL"));
            }
            if issuer.contains('?') || issuer.contains('#') {
                problems
                    .push("LATCHKEY_ISSUER must not have a query or fragment (RFC 8414 §2)".into());
            }
        }
        if let Some(url) = &self.database_url
            && latchkey_store::Backend::from_url(url).is_err()
        {
            problems
                .push("DATABASE_URL must start with postgres://, postgresql:// or sqlite:".into());
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            problems.push("REDIS_URL must start with redis:// or rediss://".into());
        }
        if self.database_max_connections == 0 {
            problems.push("DATABASE_MAX_CONNECTIONS must be at least 1".into());
        }
        if !latchkey_store::keys::ALLOWED_BITS.contains(&self.key_bits) {
            problems.push(format!(
                "LATCHKEY_KEY_BITS={} must be one of 2048, 3072, 4096",
                self.key_bits
            ));
        }
        let ttl = self.access_token_ttl.as_secs();
        if !(60..=86_400).contains(&ttl) {
            problems.push(format!(
                "OAUTH2_ACCESS_TOKEN_EXPIRES={ttl}s must be between 60s and 24h"
            ));
        }
        if self.refresh_token_ttl <= self.access_token_ttl {
            problems.push(
                "OAUTH2_REFRESH_TOKEN_EXPIRES must be longer than OAUTH2_ACCESS_TOKEN_EXPIRES"
                    .into(),
            );
        }
        let code_ttl = self.authorization_code_ttl.as_secs();
        if !(10..=600).contains(&code_ttl) {
            problems.push(format!(
                "OAUTH2_AUTHORIZATION_CODE_EXPIRES={code_ttl}s must be between 10s and 10m"
            ));
        }
        if self.session_ttl < Duration::from_secs(60) {
            problems.push("LATCHKEY_SESSION_TTL must be at least 60s".into());
        }
        if self.keys_reload_interval < Duration::from_secs(1) {
            problems.push("LATCHKEY_KEYS_RELOAD_INTERVAL must be at least 1s".into());
        }
        if !(8..=128).contains(&self.password_min_length) {
            problems.push(format!(
                "PASSWORD_MIN_LENGTH={} must be between 8 and 128",
                self.password_min_length
            ));
        }
        if self.password_hash_concurrency == Some(0) {
            problems.push("LATCHKEY_PASSWORD_HASH_CONCURRENCY must be at least 1".into());
        }
        if self.body_limit < 1024 {
            problems.push("LATCHKEY_BODY_LIMIT must be at least 1024 bytes".into());
        }
        for origin in self.cors_origins() {
            if origin != "*" && !(origin.starts_with("https://") || origin.starts_with("http://")) {
                problems.push(format!(
                    "CORS_ORIGINS entry {origin:?} must be * or an http(s) origin"
                ));
            } else if origin.ends_with('/') {
                problems.push(format!("CORS_ORIGINS entry {origin:?} must not end with /"));
            }
        }
        if self.cors_origins().iter().any(|o| o == "*") && self.cors_origins().len() > 1 {
            problems.push("CORS_ORIGINS: * cannot be combined with other origins".into());
        }
        if self.lockout_attempts > 0 {
            if self.lockout_window < Duration::from_secs(1) {
                problems.push("ACCOUNT_LOCKOUT_WINDOW must be at least 1s".into());
            }
            if self.lockout_duration < Duration::from_secs(1) {
                problems.push("ACCOUNT_LOCKOUT_DURATION must be at least 1s".into());
            }
            if self.lockout_max_duration < self.lockout_duration {
                problems.push(
                    "ACCOUNT_LOCKOUT_MAX_DURATION must not be shorter than ACCOUNT_LOCKOUT_DURATION"
                        .into(),
                );
            }
        }
        if let Some(url) = &self.smtp_url
            && let Err(problem) = latchkey_domain::mail::smtp_url(url)
        {
            problems.push(format!("SMTP_URL {problem}"));
        }
        if self.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            problems.push(format!(
                "MAIL_FROM={:?} must be an address like `Latchkey <noreply@example.com>`",
                self.mail_from
            ));
        }
        let verify_ttl = self.email_verification_ttl.as_secs();
        if !(300..=7 * 86_400).contains(&verify_ttl) {
            problems.push(format!(
                "EMAIL_VERIFICATION_EXPIRES={verify_ttl}s must be between 5m and 7d"
            ));
        }
        if !(1..=100_000).contains(&self.prune_batch) {
            problems.push(format!(
                "LATCHKEY_PRUNE_BATCH={} must be between 1 and 100000",
                self.prune_batch
            ));
        }
        if self
            .prune_interval
            .0
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            problems.push("LATCHKEY_PRUNE_INTERVAL must be at least 1s (or off)".into());
        }
        let reset_ttl = self.password_reset_ttl.as_secs();
        if !(60..=86_400).contains(&reset_ttl) {
            problems.push(format!(
                "PASSWORD_RESET_EXPIRES={reset_ttl}s must be between 1m and 24h"
            ));
        }
        let exempt = latchkey_domain::limits::EXEMPT;
        for (route, _) in &self.rate_limit_routes.0 {
            if exempt.contains(&route.as_str()) {
                problems.push(format!(
                    "RATE_LIMITING_ROUTES: {route} is never rate limited; remove it"
                ));
            } else if !latchkey_domain::limits::ROUTES.contains(&route.as_str()) {
                problems.push(format!(
                    "RATE_LIMITING_ROUTES: {route} is not a route of the service; use a route \
                     template exactly as listed in README (e.g. /auth/login, /oauth/token, \
                     /oauth/clients/{{client_id}})"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    pub fn issuer(&self) -> String {
        match &self.issuer {
            Some(issuer) => issuer.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    pub fn audience(&self) -> String {
        self.audience.clone().unwrap_or_else(|| self.issuer())
    }

    /// The embedded default: no external database configured.
    pub fn is_development(&self) -> bool {
        self.database_url.is_none()
    }

    pub fn database_url(&self) -> String {
        database_url_or_default(self.database_url.as_deref(), &self.data_dir)
    }

    /// The algorithm of keys this service generates (`JWT_ALGORITHM`, checked by
    /// [`Config::validate`]).
    pub fn signing_algorithm(&self) -> Alg {
        Alg::parse(&self.jwt_algorithm).unwrap_or_default()
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.keys_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys"))
    }

    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_origins
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect()
    }

    pub fn hsts(&self) -> bool {
        self.hsts
            .unwrap_or_else(|| self.issuer().starts_with("https://"))
    }

    /// Whether new accounts must confirm their email before logging in.
    pub fn require_email_verification(&self) -> bool {
        self.require_email_verification
            .unwrap_or(self.smtp_url.is_some())
    }

    /// Where mail goes when no SMTP server is configured.
    pub fn outbox_dir(&self) -> PathBuf {
        self.data_dir.join("outbox")
    }

    pub fn password_hash_concurrency(&self) -> usize {
        self.password_hash_concurrency.unwrap_or_else(cpu_count)
    }
}

/// `DATABASE_URL` if set, otherwise the embedded default's SQLite file in `data_dir`.
pub fn database_url_or_default(database_url: Option<&str>, data_dir: &std::path::Path) -> String {
    match database_url {
        Some(url) => url.to_owned(),
        None => format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("latchkey.db").display()
        ),
    }
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["latchkey"];
        argv.extend_from_slice(args);
        Config::try_parse_args(argv).expect("parse")
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("900"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("15 minutes").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }

    #[test]
    fn rates() {
        let per_minute = Rate {
            limit: 10,
            period: Duration::from_secs(60),
        };
        assert_eq!(parse_rate("10 per minute"), Ok(Some(per_minute)));
        assert_eq!(parse_rate("10/minute"), Ok(Some(per_minute)));
        assert_eq!(parse_rate("10 per 1m"), Ok(Some(per_minute)));
        assert_eq!(parse_rate("OFF"), Ok(None));
        assert!(parse_rate("0 per minute").is_err());
        assert!(parse_rate("ten per minute").is_err());
        assert!(parse_rate("10 per fortnight").is_err());
        let routes = parse_route_rates("/auth/login=5/second, /oauth/token=off").expect("ok");
        assert_eq!(routes.0.len(), 2);
        assert_eq!(routes.0[1], ("/oauth/token".to_owned(), None));
        assert!(parse_route_rates("auth/login=5/second").is_err());
        assert_eq!(
            parse_proxy("10.1.2.3/8")
                .expect("cidr")
                .map(|n| n.to_string()),
            Some("10.0.0.0/8".to_owned())
        );
        assert_eq!(
            parse_proxy("::1").expect("ip").map(|n| n.to_string()),
            Some("::1/128".to_owned())
        );
        assert!(parse_proxy("proxy.local").is_err());
        assert_eq!(parse_proxies("").expect("empty").0.len(), 0);
        assert_eq!(
            parse_proxies("10.0.0.1, 10.1.0.0/16").expect("two").0.len(),
            2
        );
    }

    #[test]
    fn lockout_and_limit_settings_are_checked() {
        let config = parse(&[
            "--account-lockout-duration",
            "1h",
            "--account-lockout-max-duration",
            "30m",
            "--rate-limiting-routes",
            "/ready=1/second,/auth/logn=5/minute,/oauth/token=off",
        ]);
        let problems = config.validate().expect_err("invalid");
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].contains("ACCOUNT_LOCKOUT_MAX_DURATION"));
        assert!(problems[1].contains("/ready is never rate limited"));
        assert!(problems[2].contains("/auth/logn is not a route"));
        let off = parse(&[
            "--account-lockout-attempts",
            "0",
            "--account-lockout-duration",
            "0",
            "--rate-limiting-default",
            "off",
        ]);
        assert_eq!(off.validate(), Ok(()));
        assert_eq!(off.rate_limit_default, Limit(None));
    }

    #[test]
    fn defaults_are_valid_and_embedded() {
        let config = parse(&[]);
        assert_eq!(config.validate(), Ok(()));
        assert!(config.is_development());
        assert_eq!(config.issuer(), "http://127.0.0.1:8080");
        assert!(config.database_url().starts_with("sqlite://"));
    }

    #[test]
    fn mail_settings_are_checked() {
        let embedded = parse(&[]);
        assert!(!embedded.require_email_verification());
        assert!(embedded.outbox_dir().ends_with("outbox"));
        let smtp = parse(&["--smtp-url", "smtp://u:p@mail.example.com:587?tls=starttls"]);
        assert_eq!(smtp.validate(), Ok(()));
        assert!(smtp.require_email_verification());
        let off = parse(&[
            "--smtp-url",
            "smtps://mail.example.com",
            "--require-email-verification",
            "false",
        ]);
        assert!(!off.require_email_verification());
        let bad = parse(&[
            "--smtp-url",
            "mail.example.com:25",
            "--mail-from",
            "not an address",
            "--password-reset-ttl",
            "2d",
            "--email-verification-ttl",
            "10s",
        ]);
        let problems = bad.validate().expect_err("invalid");
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].starts_with("SMTP_URL"));
        assert!(problems[1].starts_with("MAIL_FROM"));
    }

    #[test]
    fn every_bad_value_is_reported() {
        let config = parse(&[
            "--jwt-algorithm",
            "HS256",
            "--key-bits",
            "1024",
            "--password-min-length",
            "4",
            "--cors-origins",
            "*,https://a.example",
        ]);
        let problems = config.validate().expect_err("invalid");
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].contains("JWT_ALGORITHM"));
    }
}
