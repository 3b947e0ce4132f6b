//! Latchkey's custom resource types: the single source of its CRD schema.
//!
//! # Layout
//! - [`oauthclient`]: `OAuthClient` — an OAuth 2.0 client, reconciled into a database row
//!   and a Secret by the operator.
//! - [`policy`]: `OAuthClientPolicy` (cluster-scoped) — what the `OAuthClient`s of the
//!   namespaces it selects may ask for; enforced by the operator and, at `kubectl apply`
//!   time, by the chart's ValidatingAdmissionPolicy.
//! - [`signingkey`]: `SigningKey` — a rotating set of token-signing keys, kept by the
//!   operator in a Secret (private halves) and the `signing_keys` table (public halves).
//! - [`duration`]: the duration format of the spec's lifetimes (`900`, `15m`, `14d`), the
//!   same one the service's configuration uses.
//!
//! The CRD YAML in `charts/latchkey/crds/` is generated from these types by
//! `cargo run -p latchkey-crds --bin crdgen`; a test fails when the committed files differ
//! from what the types produce. A further kind is a new module plus one line in [`crds`].
//!
//! This crate holds types and pure helpers only: no client, no I/O beyond rendering YAML.
#![forbid(unsafe_code)]

pub mod duration;
pub mod oauthclient;
pub mod policy;
pub mod signingkey;

pub use oauthclient::{
    GrantType, OAuthClient, OAuthClientSpec, OAuthClientStatus, SecretRef, SecretRotation,
    TokenEndpointAuthMethod,
};
pub use policy::{OAuthClientPolicy, OAuthClientPolicySpec};
pub use signingkey::{
    Algorithm, KeyPhase, KeyStatus, SigningKey, SigningKeySpec, SigningKeyStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every Latchkey resource.
pub const GROUP: &str = "latchkey.dev";

/// Every CRD Latchkey defines.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        OAuthClient::crd(),
        OAuthClientPolicy::crd(),
        SigningKey::crd(),
    ]
}

/// The files `crdgen` writes into the chart's `crds/` folder: `(file name, content)`.
pub fn generated_files() -> Result<Vec<(String, String)>, serde_yaml_ng::Error> {
    crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let body = serde_yaml_ng::to_string(&crd)?;
            Ok((
                format!("{name}.yaml"),
                format!(
                    "# Generated from the Rust types in crds/ by \
                     `cargo run -p latchkey-crds --bin crdgen`. Do not edit.\n{body}"
                ),
            ))
        })
        .collect()
}
