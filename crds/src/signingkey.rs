//! `SigningKey` (`latchkey.dev/v1alpha1`): a rotating set of token-signing keys.
//!
//! The operator keeps private keys of the Next and Active keys in a Secret (one
//! `<kid>.pem` per key, the layout the service mounts as its key directory) and the
//! public JWKs with their state and times in the `signing_keys` table. A key moves
//! Next → Active (after `prePublish`) → Retired (when a newer key becomes Active) →
//! deleted (after `retainAfterRetire`). See the rotation protocol in ARCHITECTURE.md.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Annotation on a `SigningKey`: any new value starts a rotation at once (a Next key is
/// created and becomes Active after `prePublish`). Each value is acted on once.
pub const ROTATE_NOW_ANNOTATION: &str = "latchkey.dev/rotate-now";
/// Annotation on a `SigningKey`: the kid to revoke in an emergency. Its row is deleted at
/// once (it leaves JWKS), its private key leaves the Secret, and an Event is emitted.
pub const REVOKE_KID_ANNOTATION: &str = "latchkey.dev/revoke-kid";

/// The specification of a rotating set of signing keys.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "latchkey.dev",
    version = "v1alpha1",
    kind = "SigningKey",
    plural = "signingkeys",
    singular = "signingkey",
    shortname = "sk",
    category = "latchkey",
    namespaced,
    status = "SigningKeyStatus",
    derive = "PartialEq",
    doc = "Token-signing keys of Latchkey, rotated on schedule. The operator writes the private keys that sign or will sign into a Secret (mounted by the service as its key directory) and the public keys into Latchkey's database (served as JWKS).",
    printcolumn = r#"{"name":"Active Kid","type":"string","jsonPath":".status.activeKid"}"#,
    printcolumn = r#"{"name":"Next Kid","type":"string","jsonPath":".status.nextKid","priority":1}"#,
    printcolumn = r#"{"name":"Next Transition","type":"date","jsonPath":".status.nextTransitionAt"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.keySize in [2048, 3072, 4096]")
        .message("keySize must be 2048, 3072 or 4096"),
    validation = Rule::new("((self.prePublish.matches('^[0-9]+$') ? int(self.prePublish) : int(self.prePublish.substring(0, size(self.prePublish) - 1))) * (self.prePublish.endsWith('d') ? 86400 : self.prePublish.endsWith('h') ? 3600 : self.prePublish.endsWith('m') ? 60 : 1)) < ((self.rotationInterval.matches('^[0-9]+$') ? int(self.rotationInterval) : int(self.rotationInterval.substring(0, size(self.rotationInterval) - 1))) * (self.rotationInterval.endsWith('d') ? 86400 : self.rotationInterval.endsWith('h') ? 3600 : self.rotationInterval.endsWith('m') ? 60 : 1))")
        .message("prePublish must be shorter than rotationInterval: a new key is published before it signs, and signs for a while before the next one"),
    validation = Rule::new("((self.prePublish.matches('^[0-9]+$') ? int(self.prePublish) : int(self.prePublish.substring(0, size(self.prePublish) - 1))) * (self.prePublish.endsWith('d') ? 86400 : self.prePublish.endsWith('h') ? 3600 : self.prePublish.endsWith('m') ? 60 : 1)) >= 1")
        .message("prePublish must be at least 1s"),
    validation = Rule::new("(has(self.secretName) ? self.secretName : '') == (has(oldSelf.secretName) ? oldSelf.secretName : '')")
        .message("secretName is immutable: create a new SigningKey to use another Secret"),
)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeySpec {
    /// The JWS algorithm of the keys: RS256 (RSASSA-PKCS1-v1_5 with SHA-256, RSA of
    /// keySize bits), ES256 (ECDSA P-256 with SHA-256) or EdDSA (Ed25519). A change applies
    /// to the next key: the key that signs keeps its algorithm until it is retired, and
    /// verifiers accept each published key with its own algorithm only, so a rotation
    /// from one algorithm to another fails no verification.
    #[serde(default)]
    pub algorithm: Algorithm,

    /// RSA modulus size in bits: 2048, 3072 or 4096 (RS256 only; ES256 and EdDSA keys
    /// have fixed sizes). A change applies to the next key.
    #[serde(default = "default_key_size")]
    pub key_size: i32,

    /// How long a key signs before the next one takes over, in seconds ("900") or
    /// a number with one unit s, m, h or d ("30d", "90s"). Must be longer than prePublish.
    #[serde(default = "default_rotation_interval")]
    #[schemars(length(max = 10), pattern(r"^[0-9]{1,9}[smhd]?$"))]
    pub rotation_interval: String,

    /// How long a new key is published (in JWKS and in the Secret) before it signs, in the
    /// same format. Must exceed the kubelet's Secret sync delay (about a minute plus its
    /// cache TTL) plus the longest time any verifier caches JWKS.
    #[serde(default = "default_pre_publish")]
    #[schemars(length(max = 10), pattern(r"^[0-9]{1,9}[smhd]?$"))]
    pub pre_publish: String,

    /// How long a retired key's public half stays in JWKS, in the same format. Must be at
    /// least the longest access-token lifetime the service issues (OAUTH2_ACCESS_TOKEN_EXPIRES
    /// and every client's accessTokenTTL) plus the service's key reload interval; the
    /// operator cannot see the service's configuration, so this is documented rather than
    /// checked.
    #[serde(default = "default_retain_after_retire")]
    #[schemars(length(max = 10), pattern(r"^[0-9]{1,9}[smhd]?$"))]
    pub retain_after_retire: String,

    /// Name of the Secret holding the private keys (`<kid>.pem`), in the namespace of this
    /// resource; mount it as the service's LATCHKEY_KEYS_DIR. Defaults to
    /// "<name>-signing-keys". Immutable. The operator refuses a Secret it does not own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: Option<String>,
}

fn default_key_size() -> i32 {
    2048
}
fn default_rotation_interval() -> String {
    "30d".to_owned()
}
fn default_pre_publish() -> String {
    "1h".to_owned()
}
fn default_retain_after_retire() -> String {
    "24h".to_owned()
}

// The JWS algorithm (RFC 7518). No doc comment: the field's description would be
// replaced by the type's.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[default]
    RS256,
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// EdDSA with Ed25519 (RFC 8037).
    EdDSA,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }
}

/// Where a key is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum KeyPhase {
    /// Published, not signing yet.
    Next,
    /// Signing.
    Active,
    /// No longer signing; published until expiresAt.
    Retired,
}

/// One key of a `SigningKey`, as the status reports it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// The key id: the RFC 7638 SHA-256 thumbprint of the public key, as in JWKS.
    pub kid: String,
    /// Next (published, not signing), Active (signing) or Retired (verifying only).
    pub state: KeyPhase,
    /// When the key was generated.
    pub created_at: Time,
    /// When the key became Active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<Time>,
    /// When the key was retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<Time>,
    /// When the retired key leaves JWKS and the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}

/// What the operator last did with a `SigningKey`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyStatus {
    /// The kid of the key that signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_kid: Option<String>,

    /// The kid of the published key that will sign next, during a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_kid: Option<String>,

    /// Every key still published, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyStatus>,

    /// When the operator acts next: creating the next key, activating it, or deleting an
    /// expired retired key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_transition_at: Option<Time>,

    /// The Secret holding the private keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// The metadata.generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready: a key is Active, its private half in the Secret and its public half in the
    /// database. When False, the reason says why (InvalidSpec, SecretConflict,
    /// ReconcileError).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
