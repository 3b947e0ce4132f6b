//! The OAuthClient controller: the I/O around [`plan`].
//!
//! `reconcile` only dispatches through kube's `finalizer()`: [`apply`] for a live
//! resource, [`cleanup`] for one being deleted. Each reads the world (the Secret, the
//! database row), asks `plan` what to do, and does it in a crash-safe order: the database
//! row first (so the service accepts a new secret before anyone can read it), then the
//! Secret, then the status, then Events.

pub mod plan;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use latchkey_crds::{OAuthClient, OAuthClientStatus, TokenEndpointAuthMethod};
use latchkey_store::clients::{self, ClientSecret};

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
    let fallback_secret_name = obj
        .spec
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{name}-oauth"));
    let not_ready = NotReady {
        obj,
        ctx,
        before: &before,
        client_id: &client_id,
        now,
    };

    let validated = match plan::validate(&obj.spec, &name, &ctx.settings) {
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

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let found = plan::read_secret(
        secrets.get_opt(&validated.secret_name).await?.as_ref(),
        &uid,
    );
    let found_owned = matches!(found, Found::Owned(_));
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

    let row = clients::get(&ctx.db, &client_id).await?;
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

    let fresh = ClientSecret::generate()?;
    let first = before.last_secret_rotation.is_none() && before.client_id.is_none();
    let secret_plan = plan::plan_secret(&obj.spec, &validated, &stored, first, &fresh, now);
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
    // 2. The Secret, with the operator's state in its annotations, in one request. A
    // private_key_jwt client has no secret and gets no Secret (one it owned before is
    // deleted: its client_secret no longer works).
    let writes_secret = !matches!(
        validated.auth_method,
        TokenEndpointAuthMethod::PrivateKeyJwt
    );
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
        (None, _) if !writes_secret => Readiness {
            ready: true,
            reason: "Reconciled",
            message: format!(
                "client {client_id} is stored; it authenticates with assertions signed by its jwks"
            ),
        },
        (None, _) => Readiness {
            ready: true,
            reason: "Reconciled",
            message: format!(
                "client {client_id} is stored; its credentials are in Secret {}",
                validated.secret_name
            ),
        },
    };
    let status = plan::status(
        &before,
        generation,
        &client_id,
        writes_secret.then_some(validated.secret_name.as_str()),
        Some(&secret_plan),
        readiness,
        now,
    );
    controller::write_status(ctx, obj, status).await?;
    // 4. Events.
    announce(obj, ctx, &validated.secret_name, &secret_plan, row_action).await;
    Ok(Action::requeue(plan::requeue_after(
        Some(&secret_plan),
        ctx.settings.resync,
        latchkey_store::now_ms(),
    )))
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
            format!("client stored; credentials written to Secret {secret_name}"),
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
