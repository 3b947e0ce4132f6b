//! What else makes the OAuthClient controller look at a client, besides the client itself
//! and the Secrets it owns:
//!
//! - a **Secret it references** (`spec.secretRef`) changing: a metadata-only watch (no
//!   Secret's value is ever sent to or held by the watch; the reconcile then reads the
//!   one Secret it needs), mapped to the clients of that namespace naming it;
//! - an **OAuthClientPolicy** changing: every client is re-evaluated (policies are few and
//!   rarely change; which namespaces a changed selector used to select is not known);
//! - a **Namespace** changing (its labels decide which policies select it): the clients in
//!   it;
//! - a **ServiceAccount** created or deleted (metadata only): the clients of its namespace
//!   whose `spec.serviceAccount` names it, so a deleted ServiceAccount stops
//!   authenticating at once and a recreated one is recorded with its new uid.
//!
//! The mappers read the controller's own cache of OAuthClients, so they cost no API call.
//! The resync interval (LATCHKEY_OPERATOR_RESYNC) remains the bound should a watch event
//! be missed.

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use latchkey_crds::{OAuthClient, OAuthClientPolicy};

use crate::context::Context;

/// `controller` with the triggers above added.
pub fn triggers(controller: Controller<OAuthClient>, ctx: &Context) -> Controller<OAuthClient> {
    let clients = controller.store();
    // PartialObjectMeta: kube asks the API server for metadata only.
    let (secrets, namespaces): (Api<PartialObjectMeta<Secret>>, watcher::Config) =
        match &ctx.namespace {
            Some(ns) => (
                Api::namespaced(ctx.client.clone(), ns),
                watcher::Config::default().fields(&format!("metadata.name={ns}")),
            ),
            None => (Api::all(ctx.client.clone()), watcher::Config::default()),
        };
    let accounts: Api<PartialObjectMeta<ServiceAccount>> = match &ctx.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let (by_secret, by_namespace, by_policy) = (clients.clone(), clients.clone(), clients.clone());
    let by_account = clients;
    controller
        .watches(
            accounts,
            watcher::Config::default(),
            move |account: PartialObjectMeta<ServiceAccount>| {
                bound_to(
                    &by_account,
                    account.namespace().as_deref(),
                    &account.name_any(),
                )
            },
        )
        .watches(
            secrets,
            watcher::Config::default(),
            move |secret: PartialObjectMeta<Secret>| {
                referencing(
                    &by_secret,
                    secret.namespace().as_deref(),
                    &secret.name_any(),
                )
            },
        )
        .watches(
            Api::<Namespace>::all(ctx.client.clone()),
            namespaces,
            move |ns: Namespace| in_namespace(&by_namespace, &ns.name_any()),
        )
        .watches(
            Api::<OAuthClientPolicy>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |_: OAuthClientPolicy| all(&by_policy),
        )
}

/// The clients in `namespace` whose `spec.secretRef` names the Secret `name`.
fn referencing(
    clients: &Store<OAuthClient>,
    namespace: Option<&str>,
    name: &str,
) -> Vec<ObjectRef<OAuthClient>> {
    clients
        .state()
        .iter()
        .filter(|c| c.namespace().as_deref() == namespace)
        .filter(|c| c.spec.secret_ref.as_ref().is_some_and(|r| r.name == name))
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// The clients in `namespace` whose `spec.serviceAccount` names the ServiceAccount `name`.
fn bound_to(
    clients: &Store<OAuthClient>,
    namespace: Option<&str>,
    name: &str,
) -> Vec<ObjectRef<OAuthClient>> {
    clients
        .state()
        .iter()
        .filter(|c| c.namespace().as_deref() == namespace)
        .filter(|c| {
            c.spec
                .service_account
                .as_ref()
                .is_some_and(|sa| sa.name == name)
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

fn in_namespace(clients: &Store<OAuthClient>, namespace: &str) -> Vec<ObjectRef<OAuthClient>> {
    clients
        .state()
        .iter()
        .filter(|c| c.namespace().as_deref() == Some(namespace))
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

fn all(clients: &Store<OAuthClient>) -> Vec<ObjectRef<OAuthClient>> {
    clients
        .state()
        .iter()
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}
