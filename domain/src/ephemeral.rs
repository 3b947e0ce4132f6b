//! Short-lived shared state: the list of revoked access-token ids, rate-limit counters
//! and login-failure (lockout) counters.
//!
//! In production it lives in Redis, so a logout, a limit or a lockout on one replica is
//! honoured by all; in the embedded default it is in-process. Every entry expires on its
//! own once it no longer matters.
//!
//! Rate limits use GCRA (the generic cell rate algorithm): one timestamp per key, the
//! "theoretical arrival time", updated atomically (in Redis by one Lua script that reads
//! Redis's own clock, so replicas with skewed clocks still share one limit).
//!
//! Failure policy: the revocation list always fails closed (503). Limits and lockout
//! follow `RATE_LIMITING_REDIS_FAILURE`: `open` falls back to the in-process store of
//! this replica, `closed` answers 503. Either way the error is logged and counted in
//! `latchkey_rate_limit_backend_errors_total`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use anyhow::Context as _;
use redis::aio::ConnectionManager;

use crate::error::{Error, Result};
pub use crate::rate::{Decision, Rate, ceil_secs};

/// When Memory maps grow past this, expired entries are swept on the next write.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Clone)]
pub enum Ephemeral {
    Memory(Arc<Memory>),
    Redis(RedisStore),
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

#[derive(Debug, Default)]
pub struct Memory {
    /// jti -> expiry (Unix ms). std Mutex: never held across `.await`.
    revoked: Mutex<HashMap<String, i64>>,
    /// Rate-limit key -> theoretical arrival time (Unix ms).
    gcra: Mutex<HashMap<String, i64>>,
    /// Normalized login -> failure and lockout state.
    lockouts: Mutex<HashMap<String, LockState>>,
}

#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    /// Where limits and lockout are counted while Redis is unreachable (fail open).
    fallback: Arc<Memory>,
    failure: FailurePolicy,
}

/// What rate limits and lockout do while Redis cannot be reached
/// (`RATE_LIMITING_REDIS_FAILURE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Count in process (each replica on its own) until Redis is back.
    Open,
    /// Refuse with 503.
    Closed,
}

/// The revocation-list key of a whole session: a jti is a UUID, so `sid:` cannot clash.
fn session_key(sid: &str) -> String {
    format!("sid:{sid}")
}

/// Account lockout settings; `attempts == 0` turns lockout off.
#[derive(Clone, Copy, Debug)]
pub struct LockoutPolicy {
    pub attempts: u32,
    pub window: std::time::Duration,
    pub duration: std::time::Duration,
    pub max_duration: std::time::Duration,
}

impl LockoutPolicy {
    pub fn enabled(&self) -> bool {
        self.attempts > 0
    }

    /// The length of lockout number `level` (1 = first): doubling, capped.
    pub fn duration_ms(&self, level: u32) -> i64 {
        let base = millis(self.duration);
        let max = millis(self.max_duration);
        let factor = 1_i64 << level.saturating_sub(1).min(40);
        base.saturating_mul(factor).min(max)
    }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

#[derive(Debug, Default, Clone, Copy)]
struct LockState {
    failures: u32,
    window_end: i64,
    /// Lockouts in a row; forgotten at `level_end`.
    level: u32,
    level_end: i64,
    locked_until: i64,
}

/// GCRA, the pure step: given the stored arrival time, returns the decision and the
/// arrival time to store (None: leave it). Mirrors [`GCRA_SCRIPT`].
pub fn gcra(tat: Option<i64>, now: i64, rate: Rate) -> (Decision, Option<i64>) {
    let period = millis(rate.period).max(1);
    let interval = (period / i64::from(rate.limit)).max(1);
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    let allow_at = new_tat - period;
    if allow_at > now {
        let decision = Decision {
            allowed: false,
            limit: rate.limit,
            remaining: 0,
            reset_ms: tat - now,
            retry_after_ms: allow_at - now,
        };
        return (decision, None);
    }
    let remaining = u32::try_from((now + period - new_tat) / interval).unwrap_or(0);
    let decision = Decision {
        allowed: true,
        limit: rate.limit,
        remaining,
        reset_ms: new_tat - now,
        retry_after_ms: 0,
    };
    (decision, Some(new_tat))
}

/// GCRA in Redis: KEYS[1] the key; ARGV period and interval in ms. Uses Redis's clock.
/// Returns {allowed, remaining, reset_ms, retry_after_ms}.
static GCRA_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA_LUA));
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if allow_at > now then
  return {0, 0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, math.floor((now + period - new_tat) / interval), new_tat - now, 0}
";

/// What a login attempt may do, decided before the password is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Check the password; this is failure number `n` of the window if it is wrong
    /// (pass it to [`Ephemeral::login_failed`]).
    Proceed(u32),
    /// The account is locked for this many ms: do not check the password.
    Locked(i64),
    /// Other attempts in flight already use the whole budget: do not check the
    /// password. Answered as a lockout of about this many ms.
    Exhausted(i64),
}

/// Starts a login attempt: KEYS failures, lock; ARGV attempts, window (ms).
/// Returns {0, n} (proceed as attempt n), {1, ms} (locked) or {2, 0} (budget used up).
/// The attempt is counted before the password is verified, so concurrent attempts
/// cannot all pass a check made before any of them failed.
static BEGIN_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(BEGIN_LUA));
const BEGIN_LUA: &str = r"
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then return {1, ttl} end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return {2, 0} end
return {0, n}
";

/// The attempt that used the last of the budget failed: KEYS failures, level, lock;
/// ARGV base, max (ms). Locks for base doubled per lockout in a row, capped; returns it.
static LOCK_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(LOCK_LUA));
const LOCK_LUA: &str = r"
redis.call('DEL', KEYS[1])
local level = redis.call('INCR', KEYS[2])
local max = tonumber(ARGV[2])
local d = tonumber(ARGV[1])
for i = 2, level do
  d = d * 2
  if d >= max then break end
end
if d > max then d = max end
redis.call('SET', KEYS[3], 1, 'PX', d)
redis.call('PEXPIRE', KEYS[2], d + max)
return d
";

// === impl Memory ===

impl Memory {
    fn gcra(&self, key: &str, rate: Rate, now: i64) -> Decision {
        let mut map = self.gcra.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, tat| *tat > now);
        }
        let (decision, store) = gcra(map.get(key).copied(), now, rate);
        if let Some(tat) = store {
            map.insert(key.to_owned(), tat);
        }
        decision
    }

    fn begin_attempt(&self, key: &str, policy: &LockoutPolicy, now: i64) -> Attempt {
        let mut map = self.lockouts.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, s| s.window_end > now || s.level_end > now || s.locked_until > now);
        }
        let state = map.entry(key.to_owned()).or_default();
        if state.locked_until > now {
            return Attempt::Locked(state.locked_until - now);
        }
        if state.window_end <= now {
            state.failures = 0;
            state.window_end = now + millis(policy.window);
        }
        state.failures = state.failures.saturating_add(1);
        if state.failures > policy.attempts {
            return Attempt::Exhausted(policy.duration_ms(1));
        }
        Attempt::Proceed(state.failures)
    }

    fn lock(&self, key: &str, policy: &LockoutPolicy, now: i64) -> i64 {
        let mut map = self.lockouts.lock().unwrap_or_else(|p| p.into_inner());
        let state = map.entry(key.to_owned()).or_default();
        if state.level_end <= now {
            state.level = 0;
        }
        state.failures = 0;
        state.window_end = now;
        state.level += 1;
        let duration = policy.duration_ms(state.level);
        state.locked_until = now + duration;
        state.level_end = now + duration + millis(policy.max_duration);
        duration
    }

    fn clear_failures(&self, key: &str) {
        let mut map = self.lockouts.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Ephemeral {
    pub fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    /// Connects to Redis; fails at start-up if it does not answer. `failure` says what
    /// limits and lockout do when Redis stops answering later.
    pub async fn redis(url: &str, prefix: &str, failure: FailurePolicy) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("REDIS_URL")?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(3)))
            .set_response_timeout(Some(std::time::Duration::from_secs(3)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .context("connecting to Redis")?;
        let store = RedisStore {
            conn,
            prefix: prefix.into(),
            fallback: Arc::default(),
            failure,
        };
        Ok(Self::Redis(store))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }

    /// Records that the access token `jti` is revoked until `expires_at_ms`.
    pub async fn revoke_jti(&self, jti: &str, expires_at_ms: i64, now_ms: i64) -> Result<()> {
        if expires_at_ms <= now_ms {
            return Ok(());
        }
        match self {
            Self::Memory(memory) => {
                let mut revoked = memory.revoked.lock().unwrap_or_else(|p| p.into_inner());
                // Amortised clean-up: drop what has expired whenever we add.
                revoked.retain(|_, exp| *exp > now_ms);
                revoked.insert(jti.to_owned(), expires_at_ms);
                Ok(())
            }
            Self::Redis(store) => {
                let mut conn = store.conn.clone();
                redis::cmd("SET")
                    .arg(format!("{}revoked:{jti}", store.prefix))
                    .arg(1)
                    .arg("PXAT")
                    .arg(expires_at_ms)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(redis_unavailable)
            }
        }
    }

    /// Marks `key` (a digest) as used until `expires_at_ms`; `true` if this is its first
    /// use. For single-use values shared by every replica: the `jti` of a client
    /// assertion (RFC 7523 §3). One `SET NX` in Redis; a Redis failure refuses the request
    /// (503) rather than let a replay through.
    pub async fn first_use(&self, key: &str, expires_at_ms: i64, now_ms: i64) -> Result<bool> {
        let key = format!("once:{key}");
        match self {
            Self::Memory(memory) => {
                let mut used = memory.revoked.lock().unwrap_or_else(|p| p.into_inner());
                if used.get(&key).is_some_and(|exp| *exp > now_ms) {
                    return Ok(false);
                }
                used.retain(|_, exp| *exp > now_ms);
                used.insert(key, expires_at_ms.max(now_ms + 1));
                Ok(true)
            }
            Self::Redis(store) => {
                let mut conn = store.conn.clone();
                redis::cmd("SET")
                    .arg(format!("{}{key}", store.prefix))
                    .arg(1)
                    .arg("NX")
                    .arg("PXAT")
                    .arg(expires_at_ms.max(now_ms + 1))
                    .query_async::<Option<String>>(&mut conn)
                    .await
                    .map(|set| set.is_some())
                    .map_err(redis_unavailable)
            }
        }
    }

    /// Records that every access token of the session (refresh family) `sid` is revoked
    /// until `until_ms`, when the last of them has expired.
    pub async fn revoke_session(&self, sid: &str, until_ms: i64, now_ms: i64) -> Result<()> {
        self.revoke_jti(&session_key(sid), until_ms, now_ms).await
    }

    /// Whether the access token `jti`, or its session `sid`, is revoked: one lookup (one
    /// `EXISTS` over both keys in Redis).
    pub async fn is_revoked(&self, jti: &str, sid: Option<&str>, now_ms: i64) -> Result<bool> {
        let session = sid.map(session_key);
        match self {
            Self::Memory(memory) => {
                let revoked = memory.revoked.lock().unwrap_or_else(|p| p.into_inner());
                let live = |key: &str| revoked.get(key).is_some_and(|exp| *exp > now_ms);
                Ok(live(jti) || session.as_deref().is_some_and(live))
            }
            Self::Redis(store) => {
                let mut conn = store.conn.clone();
                let mut cmd = redis::cmd("EXISTS");
                cmd.arg(format!("{}revoked:{jti}", store.prefix));
                if let Some(session) = &session {
                    cmd.arg(format!("{}revoked:{session}", store.prefix));
                }
                cmd.query_async::<u32>(&mut conn)
                    .await
                    .map(|found| found > 0)
                    .map_err(redis_unavailable)
            }
        }
    }

    /// For `/ready`: whether the backing store answers.
    pub async fn ping(&self) -> Result<()> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(store) => {
                let mut conn = store.conn.clone();
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .map(drop)
                    .map_err(redis_unavailable)
            }
        }
    }

    /// Counts one request against `key` at `rate`.
    pub async fn rate_limit(&self, key: &str, rate: Rate, now_ms: i64) -> Result<Decision> {
        match self {
            Self::Memory(memory) => Ok(memory.gcra(key, rate, now_ms)),
            Self::Redis(store) => {
                let period = millis(rate.period).max(1);
                let interval = (period / i64::from(rate.limit)).max(1);
                let mut conn = store.conn.clone();
                let result = GCRA_SCRIPT
                    .key(format!("{}rl:{key}", store.prefix))
                    .arg(period)
                    .arg(interval)
                    .invoke_async::<(i64, i64, i64, i64)>(&mut conn)
                    .await;
                match result {
                    Ok((allowed, remaining, reset_ms, retry_after_ms)) => Ok(Decision {
                        allowed: allowed == 1,
                        limit: rate.limit,
                        remaining: u32::try_from(remaining).unwrap_or(0),
                        reset_ms,
                        retry_after_ms,
                    }),
                    Err(err) => {
                        store.degraded(&err)?;
                        Ok(store.fallback.gcra(key, rate, now_ms))
                    }
                }
            }
        }
    }

    /// Starts a login attempt on the account `login` (normalized): counted before the
    /// password is checked, so a burst of concurrent attempts gets no more checks than
    /// the policy allows, whichever replica each lands on.
    pub async fn begin_login(
        &self,
        login: &str,
        policy: &LockoutPolicy,
        now_ms: i64,
    ) -> Result<Attempt> {
        match self {
            Self::Memory(memory) => Ok(memory.begin_attempt(login, policy, now_ms)),
            Self::Redis(store) => {
                let mut conn = store.conn.clone();
                let p = &store.prefix;
                let result = BEGIN_SCRIPT
                    .key(format!("{p}fail:{login}"))
                    .key(format!("{p}lock:{login}"))
                    .arg(policy.attempts)
                    .arg(millis(policy.window))
                    .invoke_async::<(i64, i64)>(&mut conn)
                    .await;
                match result {
                    Ok((0, n)) => Ok(Attempt::Proceed(u32::try_from(n).unwrap_or(u32::MAX))),
                    Ok((1, ms)) => Ok(Attempt::Locked(ms)),
                    Ok(_) => Ok(Attempt::Exhausted(policy.duration_ms(1))),
                    Err(err) => {
                        store.degraded(&err)?;
                        Ok(store.fallback.begin_attempt(login, policy, now_ms))
                    }
                }
            }
        }
    }

    /// The password of attempt `n` (from [`Ephemeral::begin_login`]) was wrong. The
    /// attempt was already counted; when it used the last of the budget the account is
    /// locked, and the lockout length (ms) is returned.
    pub async fn login_failed(
        &self,
        login: &str,
        n: u32,
        policy: &LockoutPolicy,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        if n < policy.attempts {
            return Ok(None);
        }
        match self {
            Self::Memory(memory) => Ok(Some(memory.lock(login, policy, now_ms))),
            Self::Redis(store) => {
                let mut conn = store.conn.clone();
                let p = &store.prefix;
                let result = LOCK_SCRIPT
                    .key(format!("{p}fail:{login}"))
                    .key(format!("{p}lvl:{login}"))
                    .key(format!("{p}lock:{login}"))
                    .arg(millis(policy.duration))
                    .arg(millis(policy.max_duration))
                    .invoke_async::<i64>(&mut conn)
                    .await;
                match result {
                    Ok(ms) => Ok(Some(ms)),
                    Err(err) => {
                        store.degraded(&err)?;
                        Ok(Some(store.fallback.lock(login, policy, now_ms)))
                    }
                }
            }
        }
    }

    /// A successful login or a password reset: forgets failures, the lockout streak and
    /// any running lockout (a login never gets here while locked; a reset does).
    pub async fn clear_login_failures(&self, login: &str) -> Result<()> {
        match self {
            Self::Memory(memory) => {
                memory.clear_failures(login);
                Ok(())
            }
            Self::Redis(store) => {
                store.fallback.clear_failures(login);
                let mut conn = store.conn.clone();
                let p = &store.prefix;
                let result = redis::cmd("DEL")
                    .arg(format!("{p}fail:{login}"))
                    .arg(format!("{p}lvl:{login}"))
                    .arg(format!("{p}lock:{login}"))
                    .query_async::<()>(&mut conn)
                    .await;
                match result {
                    Ok(()) => Ok(()),
                    Err(err) => store.degraded(&err),
                }
            }
        }
    }
}

// === impl RedisStore ===

impl RedisStore {
    /// Redis failed a limit or lockout operation: log and count it, then either carry
    /// on in process (`Ok`, fail open) or refuse the request (`Err`, fail closed).
    fn degraded(&self, err: &redis::RedisError) -> Result<()> {
        metrics::counter!("latchkey_rate_limit_backend_errors_total").increment(1);
        let log = LIMITS_LOG.allow(latchkey_store::now_ms());
        match self.failure {
            FailurePolicy::Open => {
                if let Some(since) = log {
                    tracing::warn!(error = %err, failures_since_last_line = since, "redis unreachable: rate limits and lockout counted in process");
                }
                Ok(())
            }
            FailurePolicy::Closed => {
                if let Some(since) = log {
                    tracing::error!(error = %err, failures_since_last_line = since, "redis unreachable: refusing requests (RATE_LIMITING_REDIS_FAILURE=closed)");
                }
                Err(Error::Unavailable("rate limiting is not available"))
            }
        }
    }
}

/// A revocation check that cannot be made must not let a revoked token through: the
/// request fails closed with 503.
fn redis_unavailable(err: redis::RedisError) -> Error {
    if let Some(since) = REVOCATION_LOG.allow(latchkey_store::now_ms()) {
        tracing::error!(error = %err, failures_since_last_line = since, "redis request failed");
    }
    Error::Unavailable("the revocation list is not reachable")
}

/// While Redis is down every request fails the same way: one log line per
/// [`LogThrottle::EVERY_MS`] (with the count of failures since the previous line) says
/// as much as one per request, without flooding the logs. Metrics count every failure.
static LIMITS_LOG: LogThrottle = LogThrottle::new();
static REVOCATION_LOG: LogThrottle = LogThrottle::new();

struct LogThrottle {
    last_ms: std::sync::atomic::AtomicI64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogThrottle {
    const EVERY_MS: i64 = 10_000;

    const fn new() -> Self {
        Self {
            last_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(failures since the last line, this one included)` when this failure should
    /// be logged.
    fn allow(&self, now_ms: i64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_ms.load(Relaxed);
        if now_ms.saturating_sub(last) >= Self::EVERY_MS
            && self
                .last_ms
                .compare_exchange(last, now_ms, Relaxed, Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Relaxed) + 1)
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_failing_redis_is_logged_once_per_interval_with_a_count() {
        let throttle = LogThrottle::new();
        assert_eq!(throttle.allow(1_000), Some(1));
        assert_eq!(throttle.allow(1_001), None);
        assert_eq!(throttle.allow(10_999), None);
        assert_eq!(
            throttle.allow(11_000),
            Some(3),
            "two held back, plus this one"
        );
        assert_eq!(throttle.allow(11_001), None);
    }

    #[test]
    fn gcra_allows_the_limit_then_refuses_until_an_interval_passes() {
        let rate = Rate {
            limit: 3,
            period: Duration::from_secs(60),
        };
        let memory = Memory::default();
        let remaining: Vec<_> = (0..3).map(|_| memory.gcra("k", rate, 1_000)).collect();
        assert!(remaining.iter().all(|d| d.allowed));
        assert_eq!(remaining[0].remaining, 2);
        assert_eq!(remaining[2].remaining, 0);
        let refused = memory.gcra("k", rate, 1_000);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_ms, 20_000);
        assert!(memory.gcra("k", rate, 21_000).allowed);
        assert!(!memory.gcra("k", rate, 21_000).allowed);
        assert!(memory.gcra("other", rate, 21_000).allowed);
    }

    #[test]
    fn lockout_grows_and_is_capped() {
        let policy = LockoutPolicy {
            attempts: 2,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(10),
            max_duration: Duration::from_secs(25),
        };
        assert_eq!(policy.duration_ms(1), 10_000);
        assert_eq!(policy.duration_ms(2), 20_000);
        assert_eq!(policy.duration_ms(3), 25_000);
        assert_eq!(policy.duration_ms(300), 25_000);
        let memory = Memory::default();
        assert_eq!(memory.begin_attempt("a", &policy, 0), Attempt::Proceed(1));
        assert_eq!(memory.begin_attempt("a", &policy, 1), Attempt::Proceed(2));
        // A third attempt while the second is still being checked: no check at all.
        assert_eq!(
            memory.begin_attempt("a", &policy, 1),
            Attempt::Exhausted(10_000)
        );
        assert_eq!(memory.lock("a", &policy, 1), 10_000);
        assert_eq!(
            memory.begin_attempt("a", &policy, 5_001),
            Attempt::Locked(5_000)
        );
        assert_eq!(
            memory.begin_attempt("a", &policy, 10_002),
            Attempt::Proceed(1)
        );
        assert_eq!(
            memory.begin_attempt("a", &policy, 10_003),
            Attempt::Proceed(2)
        );
        assert_eq!(
            memory.lock("a", &policy, 10_003),
            20_000,
            "a second lockout in a row doubles"
        );
        memory.clear_failures("a");
        assert_eq!(
            memory.begin_attempt("a", &policy, 10_004),
            Attempt::Proceed(1)
        );
        // Failures outside the window start over.
        assert_eq!(memory.begin_attempt("b", &policy, 0), Attempt::Proceed(1));
        assert_eq!(
            memory.begin_attempt("b", &policy, 60_001),
            Attempt::Proceed(1)
        );
    }
}
