//! What every reconcile shares: clients, settings, the event recorder and the failure
//! counts that drive back-off.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::Resource;
use kube::runtime::events::{Event, Recorder, Reporter};
use latchkey_store::Db;

/// What the operator is configured with that decisions depend on.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The service's public base URL, without a trailing slash.
    pub issuer: String,
    /// Scopes a client may be given; empty allows any scope token.
    pub allowed_scopes: Vec<String>,
    /// How often a healthy resource is re-checked against the database.
    pub resync: Duration,
}

impl Settings {
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.issuer)
    }
}

/// Shared by all reconciles; cheap to reach through an `Arc`.
pub struct Context {
    pub client: kube::Client,
    pub db: Db,
    pub settings: Settings,
    /// Only this namespace is watched; all when `None`.
    pub namespace: Option<String>,
    recorder: Recorder,
    /// Consecutive failures per `namespace/name`. A std Mutex: never held across `.await`.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        db: Db,
        settings: Settings,
        namespace: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: "latchkey-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            db,
            settings,
            namespace,
            failures: Mutex::default(),
        }
    }

    /// Publishes an Event about `obj`. Best effort: a failure is logged, never fatal.
    pub async fn publish<K: Resource<DynamicType = ()>>(&self, obj: &K, event: Event) {
        let reference = obj.object_ref(&());
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, reason = %event.reason, "publishing an Event failed");
        }
    }

    /// Counts a failure of `key`; returns the consecutive count.
    pub fn record_failure(&self, key: &str) -> u32 {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    pub fn reset_failures(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}
