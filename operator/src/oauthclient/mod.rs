//! The OAuthClient controller: the I/O around [`plan`].
//!
//! `reconcile` only dispatches through kube's `finalizer()`: [`apply`] for a live
//! resource, [`cleanup`] for one being deleted. Each reads the world (the Secret, the
//! database row), asks `plan` what to do, and does it in a crash-safe order: the database
//! row first (so the service accepts a new secret before anyone can read it), then the
//! Secret, then the status, then Events.
//!
//! Before anything is written, the client is checked against its namespace's
//! [`policy`]: a client the policies forbid gets no row, and the row of one that no longer
//! complies is disabled at once (its Secret kept), until it complies again. With
//! `spec.secretRef` the secret comes from a Secret the operator only reads
//! ([`secret_ref`]). [`watch`] adds the triggers both need.

pub mod plan;
pub mod policy;
pub mod secret_ref;
pub mod watch;

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{DeleteParams, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use latchkey_crds::{OAuthClient, OAuthClientPolicy, OAuthClientStatus, TokenEndpointAuthMethod};
use latchkey_store::clients::{self, ClientRecord, ClientSecret};

use crate::context::Context;
use crate::controller::{self, Found, Reconciled};
use crate::error::{Error, Result};
use plan::{Readiness, RowAction, SecretChange};

/// The finalizer that keeps a resource until its database row is gone.
pub const FINALIZER: &str = "latchkey.dev/oauthclient-cleanup";

impl Reconciled for OAuthClient {
    type Status = OAuthClientStatus;

    const CONTROLLER: &'static str = "oauthclient";
    const FINALIZER: &'static str = FINALIZER;
    const PLURAL: &'static str = "OAuthClients";

    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }

    async fn apply(&self, ctx: &Context) -> Result<Action> {
        apply(self, ctx).await
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action> {
        cleanup(self, ctx).await
    }

    fn triggers(controller: Controller<Self>, ctx: &Context) -> Controller<Self> {
        watch::triggers(controller, ctx)
    }
}

async fn apply(obj: &OAuthClient, ctx: &Context) -> Result<Action> {
    let ns = obj
        .namespace()
        .ok_or(Error::MissingField(".metadata.namespace"))?;
    let name = obj.name_any();
    let uid = obj.uid().ok_or(Error::MissingField(".metadata.uid"))?;
    let generation = obj.meta().generation;
    let before = obj.status.clone().unwrap_or_default();
    let client_id = plan::client_id(&ns, &name);
    let owner = plan::owner(&ns, &name);
    let now = latchkey_store::now_ms();
    let fallback_secret_name = match (&obj.spec.secret_ref, &obj.spec.secret_name) {
        (Some(reference), _) => reference.name.clone(),
        (None, Some(secret_name)) => secret_name.clone(),
        (None, None) => format!("{name}-oauth"),
    };
    let not_ready = NotReady {
        obj,
        ctx,
        before: &before,
        client_id: &client_id,
        now,
    };

    // 0. Tenancy, before anything is written: the spec must comply, and so must the row
    //    in effect while an invalid spec leaves the last valid configuration in place.
    let row = clients::get(&ctx.db, &client_id).await?;
    let ours = row.as_ref().filter(|r| plan::row_is_ours(r, &owner));
    let governing = governing_rules(ctx, &ns).await?;
    let validation = plan::validate(&obj.spec, &name, &ctx.settings);
    let mut violations = policy::check(&policy::Subject::from_spec(&obj.spec), &governing);
    if violations.is_empty()
        && validation.is_err()
        && let Some(row) = ours
    {
        violations = policy::check(&policy::Subject::from_row(row), &governing);
    }
    if !violations.is_empty() {
        return refuse_by_policy(&not_ready, ours, &violations, &fallback_secret_name).await;
    }

    let validated = match validation {
        Ok(v) => v,
        Err(problems) => {
            let message = format!(
                "{}; the last valid configuration stays in effect",
                problems.join("; ")
            );
            // Nothing changes until the spec (or the operator's configuration) does.
            let then = Action::await_change();
            return not_ready
                .record(&fallback_secret_name, "InvalidSpec", message, then)
                .await;
        }
    };

    if let Some(row) = row.as_ref().filter(|r| !plan::row_is_ours(r, &owner)) {
        let message = format!(
            "client_id {client_id} already exists in the database, managed by {} ({}); it is left alone",
            row.managed_by.as_str(),
            row.owner.as_deref().unwrap_or("no owner")
        );
        let then = Action::requeue(ctx.settings.resync);
        return not_ready
            .record(&validated.secret_name, "ClientIdConflict", message, then)
            .await;
    }

    // Workload identity: the ServiceAccount's uid now (a recreated one is another
    // identity; a deleted one authenticates nobody).
    let service_account_uid = match &obj.spec.service_account {
        None => None,
        Some(sa) => {
            let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
            accounts
                .get_opt(&sa.name)
                .await?
                .and_then(|a| a.metadata.uid)
        }
    };

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    // Whether the resource owns a Secret at its secretName (a private_key_jwt client
    // deletes one left from an earlier spec).
    let mut found_owned = false;
    let secret_plan = match &obj.spec.secret_ref {
        Some(reference) => {
            let found =
                secret_ref::read(secrets.get_opt(&reference.name).await?.as_ref(), reference);
            let last_change = before
                .last_secret_rotation
                .as_ref()
                .map(|t| t.0.as_millisecond());
            let decided = secret_ref::decide(
                found,
                reference,
                row.as_ref(),
                validated.overlap,
                obj.spec.secret_rotation.generation,
                last_change,
                now,
            );
            match decided {
                Ok(plan) => plan,
                Err((reason, message)) => {
                    // The Secret's watch brings the client back as soon as it changes.
                    let then = Action::requeue(ctx.settings.resync);
                    return not_ready
                        .record(&validated.secret_name, reason, message, then)
                        .await;
                }
            }
        }
        None => {
            let found = plan::read_secret(
                secrets.get_opt(&validated.secret_name).await?.as_ref(),
                &uid,
            );
            found_owned = matches!(found, Found::Owned(_));
            let stored = match found {
                Found::Foreign => {
                    let message = format!(
                        "Secret {} exists and is not owned by this OAuthClient; delete it or set another spec.secretName",
                        validated.secret_name
                    );
                    let then = Action::requeue(ctx.settings.resync);
                    return not_ready
                        .record(&validated.secret_name, "SecretConflict", message, then)
                        .await;
                }
                Found::Missing => plan::Stored::default(),
                Found::Owned(stored) => stored,
            };
            let fresh = ClientSecret::generate()?;
            let first = before.last_secret_rotation.is_none() && before.client_id.is_none();
            plan::plan_secret(&obj.spec, &validated, &stored, first, &fresh, now)
        }
    };
    let desired_row = plan::desired_row(
        &obj.spec,
        &validated,
        &client_id,
        &owner,
        &secret_plan,
        row.as_ref(),
        (&ns, service_account_uid.as_deref()),
        now,
    );
    let spec_changed = before.observed_generation != generation;
    let had_row = before.client_id.is_some()
        && before
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
    let row_action = plan::row_action(
        row.as_ref(),
        &desired_row,
        spec_changed,
        secret_plan.change,
        had_row,
    );

    // 1. The row: from now on the service accepts the new secret (and the previous one).
    if row_action != RowAction::Unchanged {
        clients::upsert(&ctx.db, &desired_row).await?;
    }
    //    A client disabled by a policy that it complies with again works again.
    let enabled =
        desired_row.disabled && clients::set_disabled(&ctx.db, &client_id, false, now).await?;
    // 2. The Secret, with the operator's state in its annotations, in one request; none
    //    with spec.secretRef, whose Secret is someone else's, and none for a
    //    private_key_jwt client, which has no secret (one it owned before is deleted: its
    //    client_secret no longer works).
    let private_key_jwt = matches!(
        validated.auth_method,
        TokenEndpointAuthMethod::PrivateKeyJwt
    );
    let writes_secret = obj.spec.secret_ref.is_none() && !private_key_jwt;
    if writes_secret {
        let owner_ref = obj
            .controller_owner_ref(&())
            .ok_or(Error::MissingField(".metadata.uid"))?;
        let secret = plan::desired_secret(
            &ns,
            &name,
            owner_ref,
            &validated,
            &client_id,
            &ctx.settings,
            &secret_plan,
        );
        controller::apply_secret(&secrets, &validated.secret_name, &secret).await?;
    } else if found_owned {
        match secrets
            .delete(&validated.secret_name, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    // 3. The status.
    let readiness = match (&obj.spec.service_account, &service_account_uid) {
        (Some(sa), None) => Readiness {
            ready: false,
            reason: "ServiceAccountMissing",
            message: format!(
                "ServiceAccount {ns}/{} does not exist: no token authenticates client {client_id} until it does",
                sa.name
            ),
        },
        (Some(sa), Some(_)) => Readiness {
            ready: true,
            reason: "Reconciled",
            message: format!(
                "client {client_id} is stored; pods running as ServiceAccount {} authenticate with its projected token",
                sa.name
            ),
        },
        (None, _) if private_key_jwt => Readiness {
            ready: true,
            reason: "Reconciled",
            message: format!(
                "client {client_id} is stored; it authenticates with assertions signed by its jwks"
            ),
        },
        (None, _) => Readiness {
            ready: true,
            reason: "Reconciled",
            message: match &obj.spec.secret_ref {
                Some(reference) => format!(
                    "client {client_id} is stored; its secret is read from key {} of Secret {}",
                    reference.key, reference.name
                ),
                None => format!(
                    "client {client_id} is stored; its credentials are in Secret {}",
                    validated.secret_name
                ),
            },
        },
    };
    let status = plan::status(
        &before,
        generation,
        &client_id,
        (!private_key_jwt).then_some(validated.secret_name.as_str()),
        Some(&secret_plan),
        readiness,
        now,
    );
    controller::write_status(ctx, obj, status).await?;
    // 4. Events.
    announce(obj, ctx, &validated.secret_name, &secret_plan, row_action).await;
    if enabled {
        let note = "the client complies with its namespace's OAuthClientPolicies again: enabled";
        tracing::info!(client_id, "re-enabled the client's database row");
        controller::publish(ctx, obj, EventType::Normal, "Enabled", note).await;
    }
    Ok(Action::requeue(plan::requeue_after(
        Some(&secret_plan),
        ctx.settings.resync,
        latchkey_store::now_ms(),
    )))
}

// === tenancy ===

/// The rules that govern `namespace`: of every OAuthClientPolicy selecting it, or the
/// defaults. Read fresh on every reconcile (a list of a few small cluster-scoped objects
/// and one namespace), so a policy change is never judged from a stale cache.
async fn governing_rules(ctx: &Context, namespace: &str) -> Result<Vec<policy::Rules>> {
    let labels = Api::<Namespace>::all(ctx.client.clone())
        .get_opt(namespace)
        .await?
        .and_then(|n| n.metadata.labels)
        .unwrap_or_default();
    let policies = Api::<OAuthClientPolicy>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(policy::governing(&policies.items, &labels))
}

/// The client breaks its namespace's policies: its row (if it has one) is disabled at
/// once, nothing else is written, its Secret is kept, and the Ready condition and a
/// Warning Event name every broken rule.
async fn refuse_by_policy(
    not_ready: &NotReady<'_>,
    row: Option<&ClientRecord>,
    violations: &[policy::Violation],
    secret_name: &str,
) -> Result<Action> {
    let (obj, ctx) = (not_ready.obj, not_ready.ctx);
    let rules: Vec<String> = violations.iter().map(ToString::to_string).collect();
    let consequence = match row {
        Some(_) => "the client is disabled (its Secret is kept) until it complies",
        None => "nothing is stored until it complies",
    };
    if let Some(row) = row.filter(|r| !r.disabled) {
        clients::set_disabled(&ctx.db, &row.client_id, true, not_ready.now).await?;
        tracing::warn!(client_id = %row.client_id, "disabled the client's database row: it breaks its namespace's policy");
        let note = format!("disabled: {}", rules.join("; "));
        controller::publish(ctx, obj, EventType::Warning, "Disabled", &note).await;
    }
    let message = format!("{}; {consequence}", rules.join("; "));
    // A change of a policy, the namespace or the spec brings the client back; the resync
    // in case a watch event is missed.
    let then = Action::requeue(ctx.settings.resync);
    not_ready
        .record(secret_name, "PolicyViolation", message, then)
        .await
}

// === impl NotReady ===

/// What one `apply` read that each of its Ready=False outcomes (invalid spec, Secret
/// conflict, client_id conflict) records in the same way.
struct NotReady<'a> {
    obj: &'a OAuthClient,
    ctx: &'a Context,
    /// The status as read at the start of the reconcile.
    before: &'a OAuthClientStatus,
    client_id: &'a str,
    now: i64,
}

impl NotReady<'_> {
    /// Writes Ready=False (`reason`, `message`) into a status naming `secret_name`, logs
    /// it, publishes a Warning Event when the status changed, and returns `then`: when to
    /// look at the resource again.
    async fn record(
        &self,
        secret_name: &str,
        reason: &'static str,
        message: String,
        then: Action,
    ) -> Result<Action> {
        let (obj, ctx) = (self.obj, self.ctx);
        let note = message.clone();
        let readiness = Readiness {
            ready: false,
            reason,
            message,
        };
        let status = plan::status(
            self.before,
            obj.meta().generation,
            self.client_id,
            Some(secret_name),
            None,
            readiness,
            self.now,
        );
        let changed = controller::write_status(ctx, obj, status).await?;
        tracing::info!(object = %controller::object_key(obj), reason, message = %note, "not ready");
        if changed {
            controller::publish(ctx, obj, EventType::Warning, reason, &note).await;
        }
        Ok(then)
    }
}

// === Events ===

async fn announce(
    obj: &OAuthClient,
    ctx: &Context,
    secret_name: &str,
    secret: &plan::SecretPlan,
    row: RowAction,
) {
    let mut events = Vec::new();
    match secret.change {
        SecretChange::Created => events.push((
            EventType::Normal,
            "Created",
            if obj.spec.secret_ref.is_some() {
                format!("client stored; its secret is read from Secret {secret_name}")
            } else {
                format!("client stored; credentials written to Secret {secret_name}")
            },
        )),
        SecretChange::Rotated => events.push((
            EventType::Normal,
            "SecretRotated",
            match &secret.previous {
                Some(p) => format!(
                    "new client secret in Secret {secret_name}; the previous one works until {}",
                    plan::format_time(p.expires_at)
                ),
                None => format!("new client secret in Secret {secret_name}; the previous one no longer works"),
            },
        )),
        SecretChange::Regenerated => events.push((
            EventType::Warning,
            "SecretRegenerated",
            format!(
                "Secret {secret_name} was missing or its client_secret damaged: generated a new client secret; the old one cannot be recovered and no longer works"
            ),
        )),
        SecretChange::Unchanged | SecretChange::None => {}
    }
    if row == RowAction::Restore {
        events.push((
            EventType::Warning,
            "DatabaseRowRestored",
            "the client's database row was changed or deleted outside the operator; restored it from the spec".to_owned(),
        ));
    }
    for (type_, reason, note) in events {
        controller::publish(ctx, obj, type_, reason, &note).await;
    }
}

// === cleanup ===

/// The resource is being deleted: remove its row (only if it is ours) and its Secret
/// (only if it owns it; garbage collection would do the same, but not every cluster runs
/// it promptly).
async fn cleanup(obj: &OAuthClient, ctx: &Context) -> Result<Action> {
    let ns = obj
        .namespace()
        .ok_or(Error::MissingField(".metadata.namespace"))?;
    let name = obj.name_any();
    let client_id = plan::client_id(&ns, &name);
    let owner = plan::owner(&ns, &name);
    if let Some(row) = clients::get(&ctx.db, &client_id).await?
        && plan::row_is_ours(&row, &owner)
    {
        clients::delete(&ctx.db, &client_id).await?;
        tracing::info!(client_id, "deleted the client's database row");
    }
    let secret_name = obj
        .status
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .or_else(|| obj.spec.secret_name.clone())
        .unwrap_or_else(|| format!("{name}-oauth"));
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(uid) = obj.uid()
        && let Some(secret) = secrets.get_opt(&secret_name).await?
        && matches!(plan::read_secret(Some(&secret), &uid), Found::Owned(_))
    {
        match secrets.delete(&secret_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}
