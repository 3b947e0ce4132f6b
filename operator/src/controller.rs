//! What every controller of this operator shares, written once: watching a kind and the
//! Secrets it owns, dispatching through kube's `finalizer()` to the kind's `apply` and
//! `cleanup`, metrics, exponential back-off, and the Events it publishes; and what both
//! kinds' planners share: the field manager of every write, the labels of the Secrets
//! the operator owns, and how such a Secret is classified ([`Found`]).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics;

/// Field manager of every write (server-side apply and status patches).
pub const MANAGER: &str = "latchkey-operator";
/// Label on every Secret the operator writes; the controller watches only these.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "latchkey-operator";

// === the controller loop ===

/// A custom resource this operator reconciles.
pub trait Reconciled:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The controller's name in metrics and logs (a bounded label).
    const CONTROLLER: &'static str;
    /// The finalizer that holds a deleted resource until `cleanup` succeeded.
    const FINALIZER: &'static str;
    /// The plural kind, for the "CRD not installed" error.
    const PLURAL: &'static str;
    /// The status subresource's type.
    type Status: Serialize + PartialEq + Send + Sync;

    /// The status as last read.
    fn status(&self) -> Option<&Self::Status>;

    /// Brings the world in line with a live resource.
    fn apply(&self, ctx: &Context) -> impl Future<Output = Result<Action>> + Send;
    /// Removes what a deleted resource owns outside Kubernetes.
    fn cleanup(&self, ctx: &Context) -> impl Future<Output = Result<Action>> + Send;

    /// `controller` with whatever else should trigger a reconcile of this kind, besides
    /// the resources themselves and the Secrets they own. None by default.
    fn triggers(controller: Controller<Self>, _ctx: &Context) -> Controller<Self> {
        controller
    }
}

fn api<K: Reconciled>(ctx: &Context) -> Api<K> {
    match &ctx.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

/// Runs the controller of `K` until `shutdown` completes.
pub async fn run<K: Reconciled>(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let secrets: Api<Secret> = match &ctx.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let owned =
        watcher::Config::default().labels(&format!("{}={}", MANAGED_BY_LABEL, MANAGED_BY_VALUE));
    let controller =
        Controller::new(api::<K>(&ctx), watcher::Config::default()).owns(secrets, owned);
    K::triggers(controller, &ctx)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile did not complete"),
            }
        })
        .await;
}

/// Fails with a clear message when the CRD of `K` is not installed or not readable.
pub async fn check_crd<K: Reconciled>(ctx: &Context) -> Result<()> {
    api::<K>(ctx)
        .list(&ListParams::default().limit(1))
        .await
        .map(|_| ())
        .map_err(|e| Error::CrdUnavailable(K::PLURAL, e))
}

/// Only dispatches; the decisions live in each kind's `apply` / `cleanup`.
async fn reconcile<K: Reconciled>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let key = object_key(obj.as_ref());
    let ns = obj
        .namespace()
        .ok_or(Error::MissingField(".metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, K::FINALIZER, obj.clone(), |event| async {
        match event {
            Event::Apply(o) => o.apply(&ctx).await,
            Event::Cleanup(o) => o.cleanup(&ctx).await,
        }
    })
    .await;
    let result = match result {
        // A stale event (e.g. from an owned Secret) for a resource whose cleanup already
        // finished and which the API server has since removed: nothing left to do.
        Err(kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(e)))
            if e.code == 404 =>
        {
            tracing::debug!(object = %key, "already deleted");
            Ok(Action::await_change())
        }
        other => other.map_err(|e| Error::Finalizer(Box::new(e))),
    };
    metrics::reconciled(K::CONTROLLER, started.elapsed(), result.as_ref().err());
    match &result {
        Ok(_) => ctx.reset_failures(&key),
        Err(e) => {
            tracing::warn!(object = %key, error = %e, "reconcile failed");
            publish(
                &ctx,
                obj.as_ref(),
                EventType::Warning,
                "ReconcileFailed",
                &e.to_string(),
            )
            .await;
        }
    }
    result
}

fn error_policy<K: Reconciled>(obj: Arc<K>, _error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.record_failure(&object_key(obj.as_ref()));
    Action::requeue(backoff(failures))
}

/// Back-off after `failures` consecutive failed reconciles: 1 s doubling up to 5 min.
pub fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(9);
    Duration::from_secs(secs.min(300))
}

/// `controller:namespace/name`: the key of the back-off counter, and how logs name it.
pub fn object_key<K: Reconciled>(obj: &K) -> String {
    format!(
        "{}:{}/{}",
        K::CONTROLLER,
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

// === status ===

/// `before` with its Ready condition replaced by `ready` (`reason`, `message`, observed at
/// `generation`). The transition time stays when the condition's status is unchanged and
/// becomes `now` when it flips, so a reconcile that changes nothing writes nothing.
pub fn ready_conditions(
    before: &[Condition],
    generation: Option<i64>,
    ready: bool,
    reason: &str,
    message: String,
    now: Time,
) -> Vec<Condition> {
    let status = if ready { "True" } else { "False" };
    let transition = match before.iter().find(|c| c.type_ == "Ready") {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now,
    };
    let mut out: Vec<Condition> = before
        .iter()
        .filter(|c| c.type_ != "Ready")
        .cloned()
        .collect();
    out.push(Condition {
        type_: "Ready".to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: transition,
    });
    out
}

// === writes ===

/// Writes `secret` by server-side apply as [`MANAGER`], taking over fields another manager
/// set: the Secret is the operator's own.
pub async fn apply_secret(api: &Api<Secret>, name: &str, secret: &Secret) -> Result<()> {
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(secret),
    )
    .await?;
    Ok(())
}

/// Writes `status` to the status subresource unless the resource already has exactly
/// that status; returns whether it wrote. Server-side apply, so a field this manager set
/// before and omits now (the end of a rotation's overlap) is removed, which a merge patch
/// would leave in place.
pub async fn write_status<K: Reconciled>(
    ctx: &Context,
    obj: &K,
    status: K::Status,
) -> Result<bool> {
    if obj.status() == Some(&status) {
        return Ok(false);
    }
    let ns = obj
        .namespace()
        .ok_or(Error::MissingField(".metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(true)
}

/// Publishes an Event about `obj` and counts it by reason.
pub async fn publish<K: Reconciled>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &'static str,
    note: &str,
) {
    metrics::event(K::CONTROLLER, reason);
    ctx.publish(
        obj,
        KubeEvent {
            type_,
            reason: reason.into(),
            note: Some(truncate(note, 1000)),
            action: "Reconcile".into(),
            secondary: None,
        },
    )
    .await;
}

/// At most `max` characters (Event notes are limited).
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

// === the Secrets the operator owns ===

/// What the operator finds in the Secret named by a spec (`S`: the state read from it;
/// both controllers keep theirs in the Secret they own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found<S> {
    /// No such Secret.
    Missing,
    /// A Secret this resource does not own: never taken over.
    Foreign,
    /// Our Secret, with whatever state it still holds.
    Owned(S),
}

/// Classifies `secret` for the resource `owner_uid`, reading the state of an owned one
/// with `read`.
pub fn found<S>(
    secret: Option<&Secret>,
    owner_uid: &str,
    read: impl FnOnce(&Secret) -> S,
) -> Found<S> {
    match secret {
        None => Found::Missing,
        Some(secret) if !controlled_by(secret, owner_uid) => Found::Foreign,
        Some(secret) => Found::Owned(read(secret)),
    }
}

/// Whether `secret`'s controlling owner is the resource with `owner_uid`: the operator
/// never adopts or overwrites a Secret someone else made.
pub fn controlled_by(secret: &Secret, owner_uid: &str) -> bool {
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == owner_uid && r.controller == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let secs: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    #[test]
    fn ready_keeps_other_conditions_and_its_transition_time_until_it_flips() {
        let at = |s: i64| Time(k8s_openapi::jiff::Timestamp::from_second(s).expect("time"));
        let other = Condition {
            type_: "Degraded".to_owned(),
            status: "False".to_owned(),
            reason: "Fine".to_owned(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: at(1),
        };
        let first = ready_conditions(
            std::slice::from_ref(&other),
            Some(1),
            true,
            "Reconciled",
            "ok".into(),
            at(2),
        );
        assert_eq!(first[0], other);
        assert_eq!(
            (first[1].status.as_str(), &first[1].last_transition_time),
            ("True", &at(2))
        );
        let same = ready_conditions(&first, Some(2), true, "Reconciled", "ok".into(), at(3));
        assert_eq!(same[1].last_transition_time, at(2));
        assert_eq!(same[1].observed_generation, Some(2));
        let flipped = ready_conditions(&same, Some(2), false, "InvalidSpec", "bad".into(), at(4));
        assert_eq!(flipped.len(), 2);
        assert_eq!(
            (flipped[1].reason.as_str(), &flipped[1].last_transition_time),
            ("InvalidSpec", &at(4))
        );
    }
}
