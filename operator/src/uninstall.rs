//! `latchkey-operator delete-signing-key`: what the Helm chart's pre-delete hook runs.
//!
//! `helm uninstall` deletes the chart's SigningKey and the operator's Deployment in one
//! go; when the operator pods stop first, nobody removes the SigningKey's finalizer and
//! it stays `Terminating` (and `helm uninstall --wait` times out). The hook runs before
//! anything is deleted: it deletes the SigningKey and waits until the running operator
//! has finalized it (its keys leave the database, its Secret goes with it), so the rest
//! of the release can go.

use std::time::{Duration, Instant};

use clap::Parser;
use kube::Api;
use latchkey_crds::SigningKey;

/// Delete a SigningKey and wait until the operator has finalized it.
#[derive(Debug, Parser)]
#[command(name = "latchkey-operator delete-signing-key")]
pub struct DeleteSigningKey {
    /// The SigningKey's name.
    #[arg(long)]
    pub name: String,

    /// Its namespace (the hook's own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,

    /// How long to wait for the finalizer; seconds or a number with a unit s, m, h, d.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    latchkey_crds::duration::parse(s).map_err(|e| e.to_string())
}

/// Deletes the SigningKey (absent is fine) and polls until it is gone.
pub async fn delete_signing_key(args: &DeleteSigningKey) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let api: Api<SigningKey> = Api::namespaced(client, &args.namespace);
    let (ns, name) = (&args.namespace, &args.name);
    match api.delete(name, &Default::default()).await {
        Ok(_) => tracing::info!(namespace = %ns, name = %name, "deleting the SigningKey"),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            tracing::info!(namespace = %ns, name = %name, "no SigningKey to delete");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    let deadline = Instant::now() + args.timeout;
    loop {
        let Some(left) = api.get_opt(name).await? else {
            tracing::info!(namespace = %ns, name = %name, "the SigningKey is gone");
            return Ok(());
        };
        if Instant::now() >= deadline {
            anyhow::bail!(
                "SigningKey {ns}/{name} still exists after {:?} (finalizers {:?}): is an operator running? \
                 Remove the finalizer by hand once its keys need no cleanup",
                args.timeout,
                left.metadata.finalizers.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
