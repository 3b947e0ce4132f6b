//! The Latchkey operator: turns `OAuthClient` resources into rows of Latchkey's
//! database and Secrets with each client's credentials, and `SigningKey` resources into
//! rotating signing keys (private halves in a Secret, public halves in the database).
//!
//! # Layout
//! - [`config`]: the clap configuration (flags and environment).
//! - [`oauthclient`]: the OAuthClient controller: reads the world, asks its planner, writes
//!   the row, the Secret, the status and Events, in a crash-safe order.
//!   - [`oauthclient::plan`]: every decision as a pure function of the spec, what the
//!     Secret and the database hold, and the time — unit-tested without a cluster.
//! - [`signingkey`]: the SigningKey controller: writes the Secret, the `signing_keys`
//!   rows, the status and Events so that a key's private half is in the Secret before
//!   its row is Active, and requeues at the next transition.
//!   - [`signingkey::rotation`]: the signing-key life cycle (Next → Active → Retired →
//!     deleted) as pure functions of the recorded keys, the manual actions and the time.
//! - [`issuer`]: publishes the cluster's ServiceAccount issuer and keys to the database
//!   (workload identity), on the leader.
//! - [`leader`]: leader election over a Lease; only the holder runs the controllers.
//! - [`controller`]: the scaffolding both controllers share, written once: watch, the
//!   `finalizer()` dispatch to a kind's `apply` / `cleanup`, metrics, back-off, Events,
//!   the field manager of every write, the labels of the Secrets the operator owns and
//!   how such a Secret is classified (`Found`: missing, foreign, or ours), and the Ready
//!   condition both kinds' statuses carry.
//! - [`context`]: what reconciles share (clients, [`context::Settings`], Event recorder,
//!   the failure counts behind back-off).
//! - `error`: the crate's one error enum ([`Error`]), with a bounded metrics label per
//!   variant.
//! - [`metrics`], [`http`]: `/metrics`, `/healthz` and `/readyz`.
//! - [`uninstall`]: `delete-signing-key`, the Helm chart's pre-delete hook.
//!
//! ```text
//! OAuthClient ──watch──► controller::reconcile ──finalizer()──► oauthclient apply / cleanup
//!                                  │                                 │
//!                                  └── oauthclient::plan (pure) ◄────┘
//!                                                                    ├─► oauth_clients row (digest)
//!                                                                    ├─► Secret <name>-oauth
//!                                                                    └─► status, Events
//! SigningKey  ──watch──► controller::reconcile ──finalizer()──► signingkey apply / cleanup
//!                                  │                                 │
//!                                  └── signingkey::rotation (pure) ◄─┘
//!                                                                    ├─► Secret <name>-signing-keys (<kid>.pem)
//!                                                                    ├─► signing_keys rows (public JWK, state)
//!                                                                    └─► status, Events; requeue at the next transition
//! ```
//!
//! Module dependencies run one way, with no cycle: `lib` (which runs everything) uses the
//! others; a controller (`oauthclient`, `signingkey`) uses its planner, `controller` and
//! `context`; a planner uses only `controller`'s pure items (`Found`, the labels, the
//! Ready condition) and `context::Settings`; `controller` uses `context` and `metrics`;
//! `config` uses `context` and `leader`; all of them use `error`. Only `lib` uses a
//! controller.
#![forbid(unsafe_code)]

pub mod config;
pub mod context;
pub mod controller;
mod error;
pub mod http;
pub mod issuer;
pub mod leader;
pub mod metrics;
pub mod oauthclient;
pub mod signingkey;
pub mod uninstall;

use std::sync::Arc;

pub use config::Config;
use context::Context;
pub use error::{Error, Result};
use latchkey_crds::{OAuthClient, SigningKey};
use latchkey_store::Db;

/// Connects to the database (applying migrations) and to Kubernetes, serves HTTP, and
/// runs the controllers until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let db = Db::connect(&config.database_url, config.database_max_connections).await?;
    db.migrate().await?;
    let kube_config = kube::Config::infer().await?;
    let client = kube::Client::try_from(kube_config)?;
    let ctx = Arc::new(Context::new(
        client,
        db,
        config.settings(),
        config.namespace.clone(),
    ));
    controller::check_crd::<OAuthClient>(&ctx).await?;
    controller::check_crd::<SigningKey>(&ctx).await?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: config.listen,
        source,
    })?;
    tracing::info!(%addr, issuer = %ctx.settings.issuer, namespace = ctx.namespace.as_deref(), "latchkey-operator started");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http_stop = stop_rx.clone();
    let app = http::router(ctx.clone(), metrics::prometheus());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|stop| *stop).await;
            })
            .await;
    });
    tokio::pin!(shutdown);
    let election = config.election().map(|settings| {
        let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
            kube::Api::namespaced(ctx.client.clone(), &settings.namespace);
        (api, settings)
    });
    if let Some((api, settings)) = &election {
        tracing::info!(lease = %settings.name, namespace = %settings.namespace, identity = %settings.identity, "waiting for leadership");
        tokio::select! {
            result = leader::acquire(api, settings) => result?,
            () = &mut shutdown => {
                tracing::info!("shutting down");
                let _ = stop_tx.send(true);
                let _ = server.await;
                return Ok(());
            }
        }
    }
    let lost = async {
        match &election {
            Some((api, settings)) => leader::hold(api, settings).await,
            None => std::future::pending().await,
        }
    };

    let mut clients_stop = stop_rx.clone();
    let mut keys_stop = stop_rx.clone();
    let mut issuer_stop = stop_rx;
    let controllers = futures::future::join3(
        controller::run::<OAuthClient>(ctx.clone(), async move {
            let _ = clients_stop.wait_for(|stop| *stop).await;
        }),
        controller::run::<SigningKey>(ctx.clone(), async move {
            let _ = keys_stop.wait_for(|stop| *stop).await;
        }),
        issuer::run(ctx, config.cluster_issuer_refresh, async move {
            let _ = issuer_stop.wait_for(|stop| *stop).await;
        }),
    );
    let mut result = Ok(());
    tokio::select! {
        _ = controllers => {}
        () = &mut shutdown => {
            tracing::info!("shutting down");
        }
        () = lost => {
            result = Err(Error::LostLeadership);
        }
    }
    let _ = stop_tx.send(true);
    if result.is_ok()
        && let Some((api, settings)) = &election
    {
        leader::release(api, settings).await;
    }
    let _ = server.await;
    result
}
