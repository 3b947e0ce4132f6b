//! The SigningKey controller: the I/O around [`rotation`].
//!
//! `reconcile` only dispatches through kube's `finalizer()`: [`apply`] for a live
//! resource, [`cleanup`] for one being deleted. `apply` reads the Secret (the record of
//! the keys and their private halves), asks `rotation::plan` what is due, and writes in
//! an order that keeps every replica able to sign and verify at every step:
//!
//! 1. delete the rows of revoked and expired keys (a revoked key leaves JWKS first);
//! 2. write the Secret with the new record and the private keys of the old *and* new
//!    Next/Active keys — a key's private half is in the Secret before any row says it
//!    is Active;
//! 3. write the rows (public JWK, state, times);
//! 4. write the Secret again without the private keys of retired keys — only after the
//!    rows no longer call them Active;
//! 5. the status, then Events; requeue at `status.nextTransitionAt`.
//!
//! Each step is idempotent and derived from the record, so a crash between any two
//! resumes where it stopped.

pub mod rotation;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use latchkey_crds::signingkey::{REVOKE_KID_ANNOTATION, ROTATE_NOW_ANNOTATION};
use latchkey_crds::{KeyPhase, SigningKey, SigningKeyStatus};
use latchkey_store::keys::KeyPair;
use latchkey_store::signing_keys;

use crate::context::Context;
use crate::controller::{self, Found, Reconciled};
use crate::error::{Error, Result};
use rotation::{Key, Manual, Plan};

/// The finalizer that keeps a resource until its rows are gone.
pub const FINALIZER: &str = "latchkey.dev/signingkey-cleanup";

impl Reconciled for SigningKey {
    type Status = SigningKeyStatus;

    const CONTROLLER: &'static str = "signingkey";
    const FINALIZER: &'static str = FINALIZER;
    const PLURAL: &'static str = "SigningKeys";

    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }

    async fn apply(&self, ctx: &Context) -> Result<Action> {
        apply(self, ctx).await
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action> {
        cleanup(self, ctx).await
    }
}

fn secret_name(obj: &SigningKey) -> String {
    obj.spec
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{}-signing-keys", obj.name_any()))
}

async fn apply(obj: &SigningKey, ctx: &Context) -> Result<Action> {
    let ns = obj
        .namespace()
        .ok_or(Error::MissingField(".metadata.namespace"))?;
    let name = obj.name_any();
    let uid = obj.uid().ok_or(Error::MissingField(".metadata.uid"))?;
    let before = obj.status.clone().unwrap_or_default();
    let secret_name = secret_name(obj);

    let params = match rotation::validate(&obj.spec) {
        Ok(p) => p,
        Err(problems) => {
            let message = format!(
                "{}; the keys stay as they are until the spec is fixed",
                problems.join("; ")
            );
            not_ready(obj, ctx, &before, &secret_name, "InvalidSpec", message).await?;
            return Ok(Action::await_change());
        }
    };

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let stored = match rotation::read_secret(secrets.get_opt(&secret_name).await?.as_ref(), &uid) {
        Found::Foreign => {
            let message = format!(
                "Secret {secret_name} exists and is not owned by this SigningKey; delete it or set another spec.secretName"
            );
            not_ready(obj, ctx, &before, &secret_name, "SecretConflict", message).await?;
            return Ok(Action::requeue(ctx.settings.resync));
        }
        Found::Missing => rotation::Stored::default(),
        Found::Owned(stored) => stored,
    };
    let mut stored = stored;
    recover_from_rows(ctx, &before, &mut stored).await?;
    let annotations = obj.annotations();
    let manual = Manual {
        rotate_now: annotations.get(ROTATE_NOW_ANNOTATION).cloned(),
        revoke_kid: annotations.get(REVOKE_KID_ANNOTATION).cloned(),
    };
    let held: BTreeSet<String> = stored.private.keys().cloned().collect();
    let now = latchkey_store::now_ms();
    let mut plan = rotation::plan(
        &params,
        &stored.keys,
        &held,
        &manual,
        stored.rotate_handled.as_deref(),
        now,
    );
    let mut private = stored.private.clone();
    let mut created = None;
    if let Some(state) = plan.create {
        let (alg, bits) = (params.algorithm, params.key_size);
        let pair = tokio::task::spawn_blocking(move || KeyPair::generate_for(alg, bits))
            .await
            .map_err(|_| latchkey_store::Error::KeyGeneration)??;
        private.insert(
            pair.kid().to_owned(),
            ByteString(pair.to_pem()?.into_bytes()),
        );
        plan.keys.push(Key::new(pair.jwk().clone(), state, now));
        created = Some(pair.kid().to_owned());
    }

    // 1. Revoked and expired keys leave the table (and JWKS) first.
    for kid in plan.revoked.iter().chain(&plan.deleted) {
        if signing_keys::delete(&ctx.db, kid).await? {
            tracing::info!(kid, "deleted signing key row");
        }
    }
    let owner_ref = obj
        .controller_owner_ref(&())
        .ok_or(Error::MissingField(".metadata.uid"))?;
    let write_secret = |private: &BTreeMap<String, ByteString>| {
        rotation::desired_secret(
            &ns,
            &secret_name,
            &name,
            owner_ref.clone(),
            &plan.keys,
            private,
            plan.rotate_handled.as_deref(),
        )
    };
    // 2. The record and every private key still or newly needed, minus revoked ones.
    for kid in &plan.revoked {
        private.remove(kid);
    }
    let wanted: BTreeMap<String, ByteString> = private
        .iter()
        .filter(|(kid, _)| {
            plan.keys
                .iter()
                .any(|k| &k.kid == *kid && k.needs_private())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let record_changed = stored.keys != plan.keys
        || stored.rotate_handled != plan.rotate_handled
        || stored.private != private;
    if record_changed {
        controller::apply_secret(&secrets, &secret_name, &write_secret(&private)).await?;
    }
    // 3. The rows, from the record (restores rows changed or deleted behind our back).
    for key in &plan.keys {
        let desired = key.row();
        if signing_keys::get(&ctx.db, &key.kid).await?.as_ref() != Some(&desired) {
            signing_keys::upsert(&ctx.db, &desired).await?;
        }
    }
    // 4. Private keys of retired keys leave the Secret.
    if wanted != private {
        controller::apply_secret(&secrets, &secret_name, &write_secret(&wanted)).await?;
    }
    // 5. Status, Events, requeue.
    let next_at = rotation::next_transition(&params, &plan.keys);
    let status = status(obj, &before, &plan.keys, next_at, &secret_name, now);
    controller::write_status(ctx, obj, status).await?;
    announce(obj, ctx, &plan, created.as_deref(), &secret_name).await;
    let after = latchkey_store::now_ms();
    Ok(match next_at {
        Some(at) => Action::requeue(rotation::requeue_after(at, after)),
        None => Action::await_change(),
    })
}

/// Keys the status lists but the Secret's record does not (the Secret was deleted or its
/// annotation edited): taken back into the record from their rows, so they are retired
/// (their private keys are gone) and deleted on schedule instead of staying published.
async fn recover_from_rows(
    ctx: &Context,
    before: &SigningKeyStatus,
    stored: &mut rotation::Stored,
) -> Result<()> {
    for listed in &before.keys {
        if stored.keys.iter().any(|k| k.kid == listed.kid) {
            continue;
        }
        if let Some(row) = signing_keys::get(&ctx.db, &listed.kid).await? {
            tracing::warn!(kid = %listed.kid, "key missing from the Secret's record; recovered from its row");
            stored.keys.push(Key::from_row(&row));
        }
    }
    Ok(())
}

fn status(
    obj: &SigningKey,
    before: &SigningKeyStatus,
    keys: &[Key],
    next_at: Option<i64>,
    secret_name: &str,
    now: i64,
) -> SigningKeyStatus {
    let active = keys.iter().find(|k| k.state == KeyPhase::Active);
    let next = keys.iter().find(|k| k.state == KeyPhase::Next);
    let message = match active {
        Some(a) => format!("key {} signs; private keys in Secret {secret_name}", a.kid),
        None => "no key is active".to_owned(),
    };
    SigningKeyStatus {
        active_kid: active.map(|k| k.kid.clone()),
        next_kid: next.map(|k| k.kid.clone()),
        keys: rotation::key_statuses(keys),
        next_transition_at: next_at.map(rotation::time),
        secret_name: Some(secret_name.to_owned()),
        observed_generation: obj.meta().generation,
        conditions: controller::ready_conditions(
            &before.conditions,
            obj.meta().generation,
            active.is_some(),
            if active.is_some() {
                "Reconciled"
            } else {
                "NoActiveKey"
            },
            message,
            rotation::time(now),
        ),
    }
}

/// Records a Ready=False outcome, keeping the rest of the status.
async fn not_ready(
    obj: &SigningKey,
    ctx: &Context,
    before: &SigningKeyStatus,
    secret_name: &str,
    reason: &'static str,
    message: String,
) -> Result<()> {
    let now = latchkey_store::now_ms();
    let generation = obj.meta().generation;
    let status = SigningKeyStatus {
        secret_name: Some(secret_name.to_owned()),
        observed_generation: generation,
        conditions: controller::ready_conditions(
            &before.conditions,
            generation,
            false,
            reason,
            message.clone(),
            rotation::time(now),
        ),
        ..before.clone()
    };
    if controller::write_status(ctx, obj, status).await? {
        controller::publish(ctx, obj, EventType::Warning, reason, &message).await;
    }
    Ok(())
}

async fn announce(
    obj: &SigningKey,
    ctx: &Context,
    plan: &Plan,
    created: Option<&str>,
    secret_name: &str,
) {
    let mut events = Vec::new();
    for kid in &plan.revoked {
        events.push((
            EventType::Warning,
            "KeyRevoked",
            format!("key {kid} revoked: removed from JWKS and from Secret {secret_name}; tokens it signed no longer verify"),
        ));
    }
    for kid in &plan.lost {
        events.push((
            EventType::Warning,
            "KeyLost",
            format!(
                "the private key of {kid} is missing from Secret {secret_name}; the key was retired"
            ),
        ));
    }
    if let (Some(kid), Some(state)) = (created, plan.create) {
        let note = match state {
            KeyPhase::Active => {
                format!("created key {kid}; it signs at once (no other key could sign)")
            }
            _ => format!("created key {kid}; published now, it signs after prePublish"),
        };
        events.push((EventType::Normal, "KeyCreated", note));
    }
    for kid in &plan.activated {
        events.push((
            EventType::Normal,
            "KeyActivated",
            format!("key {kid} signs from now on"),
        ));
    }
    for kid in &plan.retired {
        events.push((
            EventType::Normal,
            "KeyRetired",
            format!("key {kid} no longer signs; its public key stays in JWKS until retainAfterRetire has passed"),
        ));
    }
    for kid in &plan.deleted {
        events.push((
            EventType::Normal,
            "KeyDeleted",
            format!("retired key {kid} left JWKS"),
        ));
    }
    for (type_, reason, note) in events {
        controller::publish(ctx, obj, type_, reason, &note).await;
    }
}

/// The resource is being deleted: its keys leave the table (and JWKS) and its Secret is
/// deleted. Tokens they signed stop verifying.
async fn cleanup(obj: &SigningKey, ctx: &Context) -> Result<Action> {
    let ns = obj
        .namespace()
        .ok_or(Error::MissingField(".metadata.namespace"))?;
    let secret_name = secret_name(obj);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = secrets.get_opt(&secret_name).await?;
    let owned = match (obj.uid(), secret.as_ref()) {
        (Some(uid), Some(_)) => match rotation::read_secret(secret.as_ref(), &uid) {
            Found::Owned(stored) => Some(stored),
            _ => None,
        },
        _ => None,
    };
    let mut kids: BTreeSet<String> = obj
        .status
        .iter()
        .flat_map(|s| s.keys.iter().map(|k| k.kid.clone()))
        .collect();
    if let Some(stored) = &owned {
        kids.extend(stored.keys.iter().map(|k| k.kid.clone()));
    }
    for kid in &kids {
        signing_keys::delete(&ctx.db, kid).await?;
    }
    if owned.is_some() {
        match secrets.delete(&secret_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}
