//! The keys this replica signs and verifies with.
//!
//! Two sources, joined here:
//! - the key directory (a mounted Secret in Kubernetes): private keys this replica *can*
//!   sign with, parsed once and kept parsed;
//! - the `signing_keys` table: which keys are published (JWKS and verification) and
//!   which are Active.
//!
//! The signer is the newest Active key whose private half is in the directory. A replica
//! whose kubelet has not yet delivered the newest key keeps signing with the previous
//! Active one, which every verifier still accepts, and reports it in
//! `latchkey_signing_key_fallback`.
//!
//! Both sources are re-read every `LATCHKEY_KEYS_RELOAD_INTERVAL`, at once when the table
//! changes (PostgreSQL `LISTEN` on a trigger's notifications: an emergency revocation
//! takes effect in milliseconds on every replica), and at most once a second when a
//! token names a `kid` we do not know yet.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey};
use latchkey_store::federation;
use latchkey_store::keydir::{self, KeyFile};
use latchkey_store::keys::{Alg, KeyPair, PublicJwk, PublicKey};
use latchkey_store::signing_keys::{self, KeyState};
use latchkey_store::{Db, now_ms};
use serde_json::json;
use tokio::sync::Mutex;

use crate::assertion_keys::{self, AssertionKey, FederatedKeys};

/// Shortest gap between two reloads triggered by unknown `kid`s, so forged tokens cannot
/// turn into a stream of database queries.
const MIN_ON_DEMAND_RELOAD: Duration = Duration::from_secs(1);

/// The most keys a cluster's ServiceAccount JWK Set may hold.
const MAX_FEDERATED_KEYS: usize = 32;

/// What one reload produced; swapped in whole.
#[derive(Debug, Default)]
pub struct KeySet {
    /// The key to sign with, if any Active key is held.
    pub signing: Option<Arc<KeyPair>>,
    /// Whether `signing` is not the newest Active key (its Secret has not arrived yet).
    fallback: bool,
    verifiers: HashMap<String, Arc<Verifier>>,
    /// The JWKS document, serialised once per reload rather than per request.
    jwks: Bytes,
    /// The algorithms of the published keys, in [`Alg::ALL`] order.
    algorithms: Vec<Alg>,
    /// The cluster's ServiceAccount issuer and its keys, as the operator published them
    /// (`federated_issuers`), for ServiceAccount client assertions.
    federated: Option<Arc<FederatedKeys>>,
}

impl KeySet {
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// The algorithms of the published keys, in [`Alg::ALL`] order.
    pub fn algorithms(&self) -> &[Alg] {
        &self.algorithms
    }
}

/// A published key, ready to verify. Its algorithm is the only one it accepts: a token
/// whose header names another is refused before any signature check.
#[derive(Debug)]
pub struct Verifier {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

impl Verifier {
    /// Builds the verifier of a published JWK, checked by [`PublicJwk::public_key`].
    pub fn of(jwk: &PublicJwk) -> anyhow::Result<Self> {
        let (alg, public) = jwk.public_key()?;
        let key = match public {
            PublicKey::Rsa { n, e } => DecodingKey::from_rsa_raw_components(&n, &e),
            PublicKey::P256 { x, y } => DecodingKey::from_ec_components(x, y)?,
            PublicKey::Ed25519 { x } => DecodingKey::from_ed_components(x)?,
        };
        Ok(Self {
            alg: jws_algorithm(alg),
            key,
        })
    }
}

/// `jsonwebtoken`'s name for one of our algorithms.
pub fn jws_algorithm(alg: Alg) -> Algorithm {
    match alg {
        Alg::Rs256 => Algorithm::RS256,
        Alg::Es256 => Algorithm::ES256,
        Alg::EdDsa => Algorithm::EdDSA,
    }
}

#[derive(Clone, Debug)]
pub struct KeyRing {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    db: Db,
    dir: PathBuf,
    manage: bool,
    /// The algorithm and RSA size of a key generated when managing keys.
    generate: (Alg, usize),
    /// std lock: held only to clone or swap the `Arc`, never across `.await`.
    current: RwLock<Arc<KeySet>>,
    reload: Mutex<ReloadState>,
}

#[derive(Debug, Default)]
struct ReloadState {
    /// The directory contents last parsed, to skip re-parsing unchanged keys.
    files: Vec<KeyFile>,
    held: HashMap<String, Arc<KeyPair>>,
    last: Option<Instant>,
    /// The federated issuer row last parsed (issuer, JWK Set text), to skip re-parsing.
    federated_source: Option<(String, String)>,
}

impl KeyRing {
    /// Loads the keys once; fails when the directory is unreadable (or, managing keys,
    /// cannot be created), so a misconfigured pod does not start. Managing keys, an empty
    /// directory gets a new key of `alg` (RSA of `bits` for RS256).
    pub async fn load(
        db: Db,
        dir: PathBuf,
        manage: bool,
        alg: Alg,
        bits: usize,
    ) -> anyhow::Result<Self> {
        let ring = Self {
            shared: Arc::new(Shared {
                db,
                dir,
                manage,
                generate: (alg, bits),
                current: RwLock::new(Arc::new(KeySet::default())),
                reload: Mutex::new(ReloadState::default()),
            }),
        };
        ring.reload().await?;
        Ok(ring)
    }

    pub fn current(&self) -> Arc<KeySet> {
        match self.shared.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The verifier for `kid`, reloading once if it is unknown and the last reload is
    /// more than a second old (a key published moments ago).
    pub async fn verifier(&self, kid: &str) -> Option<Arc<Verifier>> {
        if let Some(key) = self.current().verifiers.get(kid) {
            return Some(key.clone());
        }
        self.reload_if_stale().await;
        self.current().verifiers.get(kid).cloned()
    }

    /// The cluster issuer and its key `kid`, reloading once if the kid is unknown and the
    /// last reload is more than a second old: a cluster that rotated its ServiceAccount
    /// key costs one bounded reload, not one per request.
    pub async fn federated_key(&self, kid: &str) -> Option<(String, Arc<AssertionKey>)> {
        let find = |set: &KeySet| {
            let fed = set.federated.as_ref()?;
            let key = fed.keys.iter().find(|k| k.kid.as_deref() == Some(kid))?;
            Some((fed.issuer.clone(), key.clone()))
        };
        if let Some(found) = find(&self.current()) {
            return Some(found);
        }
        self.reload_if_stale().await;
        find(&self.current())
    }

    /// The key to sign with. While this replica lacks the newest Active key (a rotation
    /// or an emergency revocation whose Secret the kubelet has not delivered yet), the
    /// directory is re-read at most once a second, so the new key signs as soon as it
    /// lands rather than at the next reload interval.
    pub async fn signer(&self) -> Option<Arc<KeyPair>> {
        let set = self.current();
        if set.signing.is_some() && !set.fallback {
            return set.signing.clone();
        }
        self.reload_if_stale().await;
        self.current().signing.clone()
    }

    /// Reloads unless the last reload is less than [`MIN_ON_DEMAND_RELOAD`] old.
    async fn reload_if_stale(&self) {
        let stale = {
            let state = self.shared.reload.lock().await;
            state
                .last
                .is_none_or(|t| t.elapsed() >= MIN_ON_DEMAND_RELOAD)
        };
        if stale && let Err(e) = self.reload().await {
            tracing::warn!(error = format!("{e:#}"), "on-demand key reload failed");
        }
    }

    /// Re-reads the directory and the table and swaps in the result.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let result = self.reload_inner().await;
        metrics::counter!(
            "latchkey_key_reloads_total",
            "result" => if result.is_ok() { "ok" } else { "error" }
        )
        .increment(1);
        result
    }

    async fn reload_inner(&self) -> anyhow::Result<()> {
        let shared = &self.shared;
        let mut state = shared.reload.lock().await;
        state.last = Some(Instant::now());

        let dir = shared.dir.clone();
        let (manage, generate) = (shared.manage, shared.generate);
        let files = tokio::task::spawn_blocking(move || read_or_generate(&dir, manage, generate))
            .await
            .context("key directory task")??;
        if files != state.files {
            let parsed = tokio::task::spawn_blocking({
                let files = files.clone();
                move || parse_all(&files)
            })
            .await
            .context("key parse task")?;
            tracing::info!(
                dir = %shared.dir.display(),
                kids = ?parsed.keys().collect::<Vec<_>>(),
                "loaded private keys"
            );
            state.held = parsed;
            state.files = files;
        }

        let now = now_ms();
        if shared.manage {
            for key in state.held.values() {
                if signing_keys::publish_active(&shared.db, key.jwk(), now).await? {
                    tracing::info!(kid = key.kid(), "published signing key");
                }
            }
        }
        let published = signing_keys::published(&shared.db, now).await?;

        let mut verifiers = HashMap::new();
        let mut jwks = Vec::new();
        let mut algorithms = Vec::new();
        for row in &published {
            match Verifier::of(&row.jwk) {
                Ok(verifier) => {
                    verifiers.insert(row.kid.clone(), Arc::new(verifier));
                    jwks.push(&row.jwk);
                    algorithms.extend(row.jwk.algorithm());
                }
                Err(e) => {
                    tracing::error!(
                        kid = row.kid,
                        error = format!("{e:#}"),
                        "skipping invalid published key"
                    )
                }
            }
        }
        algorithms.sort_by_key(|alg| Alg::ALL.iter().position(|a| a == alg));
        algorithms.dedup();
        let federated = match federation::get(&shared.db, federation::KUBERNETES).await? {
            None => None,
            Some(row) => {
                let source = (row.issuer.clone(), row.jwks.clone());
                let unchanged = state.federated_source.as_ref() == Some(&source);
                match self.current().federated.clone() {
                    Some(parsed) if unchanged => Some(parsed),
                    _ => match assertion_keys::parse_jwks(&row.jwks, MAX_FEDERATED_KEYS) {
                        Ok(keys) => {
                            tracing::info!(
                                issuer = row.issuer,
                                kids = ?keys.iter().map(|k| k.kid.as_deref()).collect::<Vec<_>>(),
                                "loaded the cluster's ServiceAccount keys"
                            );
                            state.federated_source = Some(source);
                            Some(Arc::new(FederatedKeys {
                                issuer: row.issuer,
                                keys: keys.into_iter().map(Arc::new).collect(),
                            }))
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "skipping the published ServiceAccount keys");
                            None
                        }
                    },
                }
            }
        };
        let signing = choose_signer(&published, &state.held);
        let newest_active = published.iter().find(|row| row.state == KeyState::Active);
        let fallback = match (&signing, newest_active) {
            (Some(key), Some(newest)) => key.kid() != newest.kid,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let lacking = newest_active.is_some_and(|newest| !state.held.contains_key(&newest.kid));
        metrics::gauge!("latchkey_signing_key_fallback").set(if fallback { 1.0 } else { 0.0 });
        metrics::gauge!("latchkey_signing_keys_published").set(verifiers.len() as f64);
        let previous = self.current();
        // Said once when it starts, not at every reload while the Secret is on its way
        // (the gauge above tells the state at any time).
        if fallback && !previous.fallback {
            tracing::warn!(
                newest = newest_active.map(|row| row.kid.as_str()),
                "the newest active key is not in the key directory yet; signing with the previous one"
            );
        }
        let jwks = Bytes::from(serde_json::to_vec(&json!({ "keys": jwks }))?);

        let prev_kid = previous.signing.as_ref().map(|k| k.kid().to_owned());
        let next_kid = signing.as_ref().map(|k| k.kid().to_owned());
        if prev_kid != next_kid {
            tracing::info!(
                kid = next_kid.as_deref(),
                previous = prev_kid.as_deref(),
                "signing key selected"
            );
        }
        let set = Arc::new(KeySet {
            signing,
            fallback: lacking,
            verifiers,
            jwks,
            algorithms,
            federated,
        });
        match shared.current.write() {
            Ok(mut guard) => *guard = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        Ok(())
    }

    /// Reloads every `interval`, and at once whenever the `signing_keys` table changes
    /// (PostgreSQL `LISTEN`, with `database_url`), until `shutdown` resolves. Failures
    /// keep the last good set.
    pub async fn run_reloader(
        self,
        interval: Duration,
        database_url: String,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        tokio::pin!(shutdown);
        // The listener lives in its own task (its receive is not cancel-safe); each change
        // leaves at most one pending wake-up, so a burst of changes costs one reload.
        let (tx, mut changed) = tokio::sync::mpsc::channel::<()>(1);
        let mut watch = ChangeWatch::new(self.shared.db.clone(), database_url);
        let watcher = AbortOnDrop(tokio::spawn(async move {
            loop {
                watch.next().await;
                metrics::counter!("latchkey_key_change_notifications_total").increment(1);
                if tx.try_send(()).is_err() && tx.is_closed() {
                    return;
                }
            }
        }));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                Some(()) = changed.recv() => {
                    // A rotation writes a few rows in a row: take them in one reload.
                    tokio::time::sleep(CHANGE_DEBOUNCE).await;
                    let _ = changed.try_recv();
                    ticker.reset();
                }
                () = &mut shutdown => break,
            }
            if let Err(e) = self.reload().await {
                tracing::error!(
                    error = format!("{e:#}"),
                    "key reload failed; keeping the previous keys"
                );
            }
        }
        drop(watcher);
    }
}

/// Aborts the task when dropped (also when the owning future is aborted).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a change notification waits for the rest of the same change.
const CHANGE_DEBOUNCE: Duration = Duration::from_millis(20);
/// The longest wait before reconnecting a lost notification connection.
const MAX_LISTEN_BACKOFF: Duration = Duration::from_secs(30);

/// Notifications of changes to the `signing_keys` table, reconnecting with back-off when
/// the connection fails. Never resolves on SQLite (one process: nobody else changes keys).
struct ChangeWatch {
    db: Db,
    url: String,
    listener: Option<signing_keys::ChangeListener>,
    backoff: Duration,
    unsupported: bool,
}

impl ChangeWatch {
    fn new(db: Db, url: String) -> Self {
        Self {
            db,
            url,
            listener: None,
            backoff: Duration::from_millis(500),
            unsupported: false,
        }
    }

    /// Resolves when the keys may have changed: a notification, or a (re)connection
    /// after which earlier notifications may have been missed.
    async fn next(&mut self) {
        loop {
            if self.unsupported {
                return std::future::pending().await;
            }
            match &mut self.listener {
                Some(listener) => match listener.changed().await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "key change notifications lost; reconnecting");
                        self.listener = None;
                    }
                },
                None => match signing_keys::listen_for_changes(&self.db, &self.url).await {
                    Ok(Some(listener)) => {
                        self.listener = Some(listener);
                        self.backoff = Duration::from_millis(500);
                        return;
                    }
                    Ok(None) => self.unsupported = true,
                    Err(e) => {
                        tracing::warn!(
                            error = %e,
                            retry_in = ?self.backoff,
                            "cannot listen for key changes; relying on the reload interval"
                        );
                        tokio::time::sleep(self.backoff).await;
                        self.backoff = (self.backoff * 2).min(MAX_LISTEN_BACKOFF);
                    }
                },
            }
        }
    }
}

/// The key to sign with: the newest Active key whose private half is held; failing
/// that, the most recent Retired key still held. The second case is a replica whose
/// kubelet has not yet delivered the Secret in which a new key became Active and the
/// old one was retired: its directory still holds the old key, which every verifier
/// accepts until `retainAfterRetire`, so it keeps signing with it instead of failing.
fn choose_signer(
    published: &[signing_keys::SigningKeyRow],
    held: &HashMap<String, Arc<KeyPair>>,
) -> Option<Arc<KeyPair>> {
    let held_in = |state: KeyState| {
        published
            .iter()
            .filter(move |row| row.state == state)
            .find_map(|row| held.get(&row.kid).cloned())
    };
    held_in(KeyState::Active).or_else(|| held_in(KeyState::Retired))
}

/// Reads the directory; when managing keys and it holds none, generates one first.
fn read_or_generate(
    dir: &std::path::Path,
    manage: bool,
    (alg, bits): (Alg, usize),
) -> anyhow::Result<Vec<KeyFile>> {
    let files = match keydir::read_pem_files(dir) {
        Ok(files) => files,
        Err(_) if manage && !dir.exists() => Vec::new(),
        Err(e) => return Err(e).context("LATCHKEY_KEYS_DIR is not readable"),
    };
    if !files.is_empty() || !manage {
        return Ok(files);
    }
    let key = KeyPair::generate_for(alg, bits)?;
    tracing::info!(kid = key.kid(), %alg, bits = key.bits(), dir = %dir.display(), "generated a signing key");
    let file = KeyFile {
        name: format!("{}.pem", key.kid()),
        contents: key.to_pem()?.into_bytes(),
    };
    keydir::write_atomic(dir, std::slice::from_ref(&file), &keydir::new_stamp())?;
    Ok(vec![file])
}

/// Parses every file; a bad file is logged and skipped so one corrupt key cannot take
/// the others down.
fn parse_all(files: &[KeyFile]) -> HashMap<String, Arc<KeyPair>> {
    let mut held = HashMap::new();
    for file in files {
        match KeyPair::from_pem(&file.name, &file.contents) {
            Ok(key) => {
                held.insert(key.kid().to_owned(), Arc::new(key));
            }
            Err(e) => tracing::error!(error = %e, "skipping unusable key file"),
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_store::signing_keys::SigningKeyRow;

    fn row(key: &KeyPair, state: KeyState, activated_at: i64) -> SigningKeyRow {
        SigningKeyRow {
            kid: key.kid().to_owned(),
            algorithm: "RS256".into(),
            jwk: key.jwk().clone(),
            state,
            created_at: activated_at,
            activated_at: Some(activated_at),
            retired_at: None,
            expires_at: None,
        }
    }

    #[test]
    fn signer_falls_back_to_a_held_retired_key() {
        let old = Arc::new(KeyPair::generate(2048).expect("key"));
        let new = Arc::new(KeyPair::generate(2048).expect("key"));
        // Ordered as `signing_keys::published` returns them: Active first, then Retired.
        let published = vec![
            row(&new, KeyState::Active, 2),
            row(&old, KeyState::Retired, 1),
        ];
        let only_old: HashMap<_, _> = [(old.kid().to_owned(), old.clone())].into();
        let both: HashMap<_, _> = [
            (old.kid().to_owned(), old.clone()),
            (new.kid().to_owned(), new.clone()),
        ]
        .into();

        let kid = |signer: Option<Arc<KeyPair>>| signer.map(|k| k.kid().to_owned());
        assert_eq!(
            kid(choose_signer(&published, &both)),
            Some(new.kid().to_owned())
        );
        assert_eq!(
            kid(choose_signer(&published, &only_old)),
            Some(old.kid().to_owned())
        );
        assert_eq!(kid(choose_signer(&published, &HashMap::new())), None);
        // A Next key never signs.
        let next_only = vec![row(&new, KeyState::Next, 2)];
        assert_eq!(kid(choose_signer(&next_only, &both)), None);
    }
}
