//! Short-lived shared state: the list of revoked access-token ids.
//!
//! In production it lives in Redis, so a logout on one replica is honoured by all; in the
//! embedded default it is an in-process map. Both forget an entry once the token it names
//! has expired, since an expired token fails verification anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use redis::aio::ConnectionManager;

use crate::error::{Error, Result};

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
}

#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
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

    /// Connects to Redis; fails at start-up if it does not answer.
    pub async fn redis(url: &str, prefix: &str) -> anyhow::Result<Self> {
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

    pub async fn is_revoked(&self, jti: &str, now_ms: i64) -> Result<bool> {
        match self {
            Self::Memory(memory) => {
                let revoked = memory.revoked.lock().unwrap_or_else(|p| p.into_inner());
                Ok(revoked.get(jti).is_some_and(|exp| *exp > now_ms))
            }
            Self::Redis(store) => {
                let mut conn = store.conn.clone();
                redis::cmd("EXISTS")
                    .arg(format!("{}revoked:{jti}", store.prefix))
                    .query_async::<bool>(&mut conn)
                    .await
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
}

/// A revocation check that cannot be made must not let a revoked token through: the
/// request fails closed with 503.
fn redis_unavailable(err: redis::RedisError) -> Error {
    tracing::error!(error = %err, "redis request failed");
    Error::Unavailable("the revocation list is not reachable")
}
