//! Leader election over a `coordination.k8s.io/v1` Lease, so that of several operator
//! replicas only one reconciles (two would race on key rotation).
//!
//! The algorithm is client-go's: the holder renews `renewTime` every `renew` period; a
//! candidate takes the Lease over when the record has not changed for `lease` *on the
//! candidate's own clock* (so clock skew between replicas does not matter). Every write
//! is a `replace` carrying the `resourceVersion` read, so two candidates cannot both win.
//! A leader that cannot renew within `lease` stops reconciling and the process exits;
//! one shutting down gracefully releases the Lease so a successor takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::time::Instant;

use crate::error::{Error, Result};

/// How the election is configured.
#[derive(Clone, Debug)]
pub struct Settings {
    pub namespace: String,
    pub name: String,
    /// This process's identity, written into `holderIdentity`.
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease: Duration,
}

impl Settings {
    fn renew_every(&self) -> Duration {
        self.lease / 3
    }
}

/// A Lease as last seen, and when (on our clock) it last changed.
struct Observed {
    record: Option<(Option<String>, Option<MicroTime>)>,
    changed_at: Instant,
}

/// Competes for the Lease until this process holds it.
pub async fn acquire(api: &Api<Lease>, settings: &Settings) -> Result<()> {
    let mut observed = Observed {
        record: None,
        changed_at: Instant::now(),
    };
    loop {
        // Bounded like a renewal: a hung connection is retried, not waited on forever.
        let attempt = tokio::time::timeout(
            settings.renew_every(),
            try_acquire_or_renew(api, settings, &mut observed),
        )
        .await;
        match attempt {
            Ok(Ok(true)) => {
                tracing::info!(lease = %settings.name, identity = %settings.identity, "became the leader");
                return Ok(());
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "leader election: Lease not reachable"),
            Err(_) => tracing::warn!("leader election: the API server did not answer in time"),
        }
        tokio::time::sleep(settings.renew_every()).await;
    }
}

/// Renews the Lease until renewal fails for longer than the lease duration; then returns
/// (leadership is lost: stop reconciling).
///
/// Each renewal must *complete* in time: it runs under a timeout equal to what is left
/// before giving up (`lease` less a renew period after the last renewal that completed,
/// counted from when that renewal started). A connection that hangs instead of failing
/// (a network partition that keeps sockets open) is a failed renewal, so the leader
/// steps down at least a renew period before any other replica can take over.
pub async fn hold(api: &Api<Lease>, settings: &Settings) {
    let mut observed = Observed {
        record: None,
        changed_at: Instant::now(),
    };
    let mut last_renewed = Instant::now();
    loop {
        tokio::time::sleep(settings.renew_every()).await;
        let give_up_at = last_renewed + settings.lease.saturating_sub(settings.renew_every());
        let started = Instant::now();
        let attempt = tokio::time::timeout_at(
            give_up_at.max(started),
            try_acquire_or_renew(api, settings, &mut observed),
        )
        .await;
        match attempt {
            Ok(Ok(true)) => last_renewed = started,
            Ok(Ok(false)) => {
                tracing::error!(lease = %settings.name, "leadership lost: another replica holds the Lease");
                return;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "renewing the Lease failed"),
            Err(_) => tracing::warn!("renewing the Lease did not complete in time"),
        }
        // Give up before another replica may take over.
        if Instant::now() >= give_up_at {
            tracing::error!("leadership lost: the Lease could not be renewed in time");
            return;
        }
    }
}

/// Gives the Lease up (graceful shutdown), so a successor need not wait for it to expire.
/// Bounded by a renew period: a shutdown never hangs on an unreachable API server.
pub async fn release(api: &Api<Lease>, settings: &Settings) {
    if tokio::time::timeout(settings.renew_every(), release_now(api, settings))
        .await
        .is_err()
    {
        tracing::warn!("releasing the Lease did not complete in time");
    }
}

async fn release_now(api: &Api<Lease>, settings: &Settings) {
    let Ok(Some(mut lease)) = api.get_opt(&settings.name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    match api
        .replace(&settings.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => tracing::info!(lease = %settings.name, "released the Lease"),
        Err(e) => tracing::warn!(error = %e, "releasing the Lease failed"),
    }
}

/// One round: create the Lease, renew it, or take it over if it expired. Returns whether
/// this process holds it afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    settings: &Settings,
    observed: &mut Observed,
) -> Result<bool> {
    let now = MicroTime(Timestamp::now());
    let lease_secs = i32::try_from(settings.lease.as_secs().max(1)).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(settings.name.clone()),
                namespace: Some(settings.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(settings.identity.clone()),
                lease_duration_seconds: Some(lease_secs),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(Error::Kube(e)),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let record = (spec.holder_identity.clone(), spec.renew_time.clone());
    if observed.record.as_ref() != Some(&record) {
        observed.record = Some(record);
        observed.changed_at = Instant::now();
    }
    let mine = spec.holder_identity.as_deref() == Some(settings.identity.as_str());
    let held_for = Duration::from_secs(
        u64::try_from(spec.lease_duration_seconds.unwrap_or(lease_secs)).unwrap_or(0),
    );
    let free = spec.holder_identity.is_none() || observed.changed_at.elapsed() >= held_for;
    if !mine && !free {
        return Ok(false);
    }
    if !mine {
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    spec.holder_identity = Some(settings.identity.clone());
    spec.lease_duration_seconds = Some(lease_secs);
    spec.renew_time = Some(now);
    match api
        .replace(&settings.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        // Someone else wrote first: not ours this round.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(Error::Kube(e)),
    }
}
