//! What the OAuthClient controller should do, decided without touching the cluster or the
//! database: every function here is pure and takes the time as a parameter, so the
//! decisions are unit-tested without a control plane.
//!
//! # The state and where it lives
//! The operator keeps its own state in the Secret it owns, not in the resource's status:
//! the plaintext secret (the only copy; the database holds a digest), the rotation
//! counter that secret answers to, when it was generated and, during a rotation's
//! overlap, the digest and expiry of the previous secret. The Secret is written together
//! with these annotations in one request, so a crash can never leave a rotation half
//! counted. The database row and the status are derived from the spec and the Secret on
//! every reconcile, which is how a row changed or deleted behind the operator's back is
//! restored.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use latchkey_crds::{OAuthClientSpec, OAuthClientStatus, TokenEndpointAuthMethod, duration};
use latchkey_store::clients::{
    ClientRecord, ClientSecret, ManagedBy, ServiceAccountBinding, secret_digest,
};
use latchkey_store::jwks;
use latchkey_store::protocol::{ACCESS_TOKEN_TTL_SECS, ADMIN_SCOPE, REFRESH_TOKEN_TTL_SECS};

use crate::context::Settings;
use crate::controller::{Found, MANAGED_BY_LABEL, MANAGED_BY_VALUE, found, ready_conditions};

/// Label naming the OAuthClient a Secret belongs to.
pub const CLIENT_LABEL: &str = "latchkey.dev/oauthclient";
/// The secretRotation.generation the Secret's client_secret answers to.
pub const ROTATION_ANNOTATION: &str = "latchkey.dev/rotation-generation";
/// When the Secret's client_secret was generated (RFC 3339).
pub const GENERATED_AT_ANNOTATION: &str = "latchkey.dev/secret-generated-at";
/// Hex SHA-256 of the previous client_secret, during a rotation's overlap.
pub const PREVIOUS_DIGEST_ANNOTATION: &str = "latchkey.dev/previous-secret-sha256";
/// Until when the previous client_secret works (RFC 3339).
pub const PREVIOUS_EXPIRES_ANNOTATION: &str = "latchkey.dev/previous-secret-expires-at";

/// Bounds the operator enforces beyond the CRD schema (they need arithmetic the schema
/// cannot do). The access-token bounds are the service's own (OAUTH2_ACCESS_TOKEN_EXPIRES).
// The same bounds as the CLI and the admin API (`latchkey_store::protocol`).
const ACCESS_TTL_MIN: Duration = Duration::from_secs(*ACCESS_TOKEN_TTL_SECS.start());
const ACCESS_TTL_MAX: Duration = Duration::from_secs(*ACCESS_TOKEN_TTL_SECS.end());
const REFRESH_TTL_MIN: Duration = Duration::from_secs(*REFRESH_TOKEN_TTL_SECS.start());
const REFRESH_TTL_MAX: Duration = Duration::from_secs(*REFRESH_TOKEN_TTL_SECS.end());
const OVERLAP_MAX: Duration = Duration::from_secs(30 * 86_400);
const SECRET_NAME_MAX: usize = 253;

/// The client_id of the resource `namespace/name`: `<namespace>.<name>`.
///
/// Namespace names are DNS labels and cannot contain a dot, so the first dot separates
/// the two parts and no two resources share an id. The id survives every reconcile and
/// an operator restart because it is computed, not generated.
pub fn client_id(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}")
}

/// The `owner` column of an operator-managed row: `namespace/name`.
pub fn owner(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The spec, checked and with every default applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    pub display_name: String,
    /// The Secret the operator writes, or with `spec.secretRef` the one it reads.
    pub secret_name: String,
    pub auth_method: TokenEndpointAuthMethod,
    pub access_token_ttl: Option<i64>,
    pub refresh_token_ttl: Option<i64>,
    pub overlap: Duration,
    /// `spec.jwks`, checked, as the JSON text the row stores.
    pub jwks: Option<String>,
}

impl Validated {
    /// Whether the client has a client secret (and so a Secret): not a public client,
    /// not a private_key_jwt one.
    pub fn has_secret(&self, spec: &OAuthClientSpec) -> bool {
        !spec.public && self.auth_method != TokenEndpointAuthMethod::PrivateKeyJwt
    }
}

/// Checks what the CRD schema admits but the deployment does not accept, and applies the
/// defaults. `Err` lists every problem, each a sentence for the Ready condition.
pub fn validate(
    spec: &OAuthClientSpec,
    name: &str,
    settings: &Settings,
) -> Result<Validated, Vec<String>> {
    let mut problems = Vec::new();
    if !settings.allowed_scopes.is_empty() {
        let unknown: Vec<&str> = spec
            .scopes
            .iter()
            .filter(|s| !settings.allowed_scopes.contains(s))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            problems.push(format!(
                "scopes not allowed by this deployment: {} (allowed: {})",
                unknown.join(", "),
                settings.allowed_scopes.join(", ")
            ));
        }
    }
    for scope in &spec.scopes {
        if !is_scope_token(scope) {
            problems.push(format!("{scope:?} is not an RFC 6749 scope token"));
        }
    }
    if spec.scopes.iter().any(|s| s == ADMIN_SCOPE) {
        problems.push(format!(
            "the {ADMIN_SCOPE} scope is reserved to admin clients, made with the latchkey CLI \
             or the admin API, never through an OAuthClient resource"
        ));
    }
    let mut ttl = |field: &str, value: &Option<String>, min: Duration, max: Duration| {
        let value = value.as_deref()?;
        match duration::parse(value) {
            Ok(d) if d < min || d > max => {
                problems.push(format!(
                    "{field} {value} is outside {}..{}",
                    duration::format(min),
                    duration::format(max)
                ));
                None
            }
            Ok(d) => i64::try_from(d.as_secs()).ok(),
            Err(e) => {
                problems.push(format!("{field}: {e}"));
                None
            }
        }
    };
    let access_token_ttl = ttl(
        "accessTokenTTL",
        &spec.access_token_ttl,
        ACCESS_TTL_MIN,
        ACCESS_TTL_MAX,
    );
    let refresh_token_ttl = ttl(
        "refreshTokenTTL",
        &spec.refresh_token_ttl,
        REFRESH_TTL_MIN,
        REFRESH_TTL_MAX,
    );
    let overlap = match duration::parse(&spec.secret_rotation.overlap) {
        Ok(d) if d > OVERLAP_MAX => {
            problems.push(format!(
                "secretRotation.overlap {} is longer than {}",
                spec.secret_rotation.overlap,
                duration::format(OVERLAP_MAX)
            ));
            Duration::ZERO
        }
        Ok(d) => d,
        Err(e) => {
            problems.push(format!("secretRotation.overlap: {e}"));
            Duration::ZERO
        }
    };
    let jwks = match &spec.jwks {
        None => None,
        Some(set) => {
            let value = serde_json::json!({ "keys": set.keys });
            match jwks::check(&value, jwks::MAX_CLIENT_KEYS) {
                Ok(_) => Some(value.to_string()),
                Err(e) => {
                    problems.push(format!("jwks: {e}"));
                    None
                }
            }
        }
    };
    let secret_name = match &spec.secret_ref {
        // The Secret the secret is read from; the operator writes none of its own.
        Some(reference) => reference.name.clone(),
        None => spec
            .secret_name
            .clone()
            .unwrap_or_else(|| format!("{name}-oauth")),
    };
    if secret_name.len() > SECRET_NAME_MAX {
        problems.push(format!(
            "the Secret name {secret_name:?} is longer than {SECRET_NAME_MAX} characters: set a shorter spec.secretName"
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Validated {
        display_name: spec.display_name.clone().unwrap_or_else(|| name.to_owned()),
        secret_name,
        auth_method: spec.auth_method(),
        access_token_ttl,
        refresh_token_ttl,
        overlap,
        jwks,
    })
}

pub use latchkey_store::clients::is_scope_token;

/// A client secret in plaintext; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext(String);

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Plaintext(***)")
    }
}

impl Plaintext {
    /// A value read from a Secret the operator does not own (`spec.secretRef`), already
    /// checked by [`super::secret_ref::check_strength`].
    pub fn from_value(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> String {
        secret_digest(&self.0)
    }
}

impl From<&ClientSecret> for Plaintext {
    fn from(s: &ClientSecret) -> Self {
        Self(s.expose().to_owned())
    }
}

/// The previous secret, still accepted until `expires_at` (Unix ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Previous {
    pub digest: String,
    pub expires_at: i64,
}

/// The operator's state, as read back from its Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// `None` when the key is gone or does not look like a secret we generated.
    pub secret: Option<Plaintext>,
    pub rotation_generation: Option<i64>,
    pub generated_at: Option<i64>,
    pub previous: Option<Previous>,
}

/// Reads the operator's state from `secret`, which must be owned by the resource `uid`.
pub fn read_secret(secret: Option<&Secret>, owner_uid: &str) -> Found<Stored> {
    found(secret, owner_uid, read_stored)
}

fn read_stored(secret: &Secret) -> Stored {
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let data = secret.data.clone().unwrap_or_default();
    let plaintext = data
        .get("client_secret")
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .filter(|s| looks_generated(s))
        .map(Plaintext);
    let time = |key: &str| annotations.get(key).and_then(|v| parse_time(v));
    let previous = match (
        annotations.get(PREVIOUS_DIGEST_ANNOTATION),
        time(PREVIOUS_EXPIRES_ANNOTATION),
    ) {
        (Some(digest), Some(expires_at)) if is_hex_digest(digest) => Some(Previous {
            digest: digest.clone(),
            expires_at,
        }),
        _ => None,
    };
    Stored {
        secret: plaintext,
        rotation_generation: annotations
            .get(ROTATION_ANNOTATION)
            .and_then(|v| v.parse().ok()),
        generated_at: time(GENERATED_AT_ANNOTATION),
        previous,
    }
}

/// Whether `s` has the shape of a secret from [`ClientSecret::generate`] (43 base64url
/// characters). Anything else was edited by hand and is replaced.
fn looks_generated(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How the client secret changes in this reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretChange {
    Unchanged,
    /// First secret of this resource.
    Created,
    /// The Secret was deleted or its client_secret damaged: a new secret replaces it at
    /// once (the old one cannot be recovered, and deleting the Secret is how an operator
    /// revokes a leaked secret).
    Regenerated,
    /// secretRotation.generation was raised: the previous secret stays valid for the
    /// overlap.
    Rotated,
    /// A public client: no secret at all.
    None,
}

/// The secret state after this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretPlan {
    pub change: SecretChange,
    pub current: Option<Plaintext>,
    pub previous: Option<Previous>,
    pub rotation_generation: i64,
    /// Unix ms when `current` was generated.
    pub generated_at: Option<i64>,
}

/// Decides the secret: keep, create, regenerate or rotate.
///
/// `fresh` is a newly generated secret, used only if one is needed; `first` says whether
/// the resource ever had a secret (from its status), so a missing Secret is told apart
/// from a new resource.
pub fn plan_secret(
    spec: &OAuthClientSpec,
    validated: &Validated,
    stored: &Stored,
    first: bool,
    fresh: &ClientSecret,
    now: i64,
) -> SecretPlan {
    let wanted_generation = spec.secret_rotation.generation;
    if !validated.has_secret(spec) {
        return SecretPlan {
            change: SecretChange::None,
            current: None,
            previous: None,
            rotation_generation: wanted_generation,
            generated_at: None,
        };
    }
    let live_previous = stored.previous.clone().filter(|p| p.expires_at > now);
    match &stored.secret {
        None => SecretPlan {
            change: if first {
                SecretChange::Created
            } else {
                SecretChange::Regenerated
            },
            current: Some(fresh.into()),
            previous: None,
            rotation_generation: wanted_generation,
            generated_at: Some(now),
        },
        Some(current) if stored.rotation_generation.unwrap_or(0) < wanted_generation => {
            let overlap_ms = i64::try_from(validated.overlap.as_millis()).unwrap_or(i64::MAX);
            let previous = (overlap_ms > 0).then(|| Previous {
                digest: current.digest(),
                expires_at: now.saturating_add(overlap_ms),
            });
            SecretPlan {
                change: SecretChange::Rotated,
                current: Some(fresh.into()),
                previous,
                rotation_generation: wanted_generation,
                generated_at: Some(now),
            }
        }
        Some(current) => SecretPlan {
            change: SecretChange::Unchanged,
            current: Some(current.clone()),
            previous: live_previous,
            // A counter lowered by hand (the CRD forbids it) does not rotate back.
            rotation_generation: stored
                .rotation_generation
                .unwrap_or(0)
                .max(wanted_generation),
            generated_at: stored.generated_at,
        },
    }
}

/// The database row the spec and the secret call for. `created_at` comes from the
/// existing row (the upsert keeps it anyway); `updated_at` is `now`. `namespace` and
/// `service_account_uid` (the ServiceAccount's uid as read now, `None` if it does not
/// exist) bind a `spec.serviceAccount` client.
#[expect(clippy::too_many_arguments, reason = "each is one input of the row")]
pub fn desired_row(
    spec: &OAuthClientSpec,
    validated: &Validated,
    client_id: &str,
    owner: &str,
    secret: &SecretPlan,
    existing: Option<&ClientRecord>,
    (namespace, service_account_uid): (&str, Option<&str>),
    now: i64,
) -> ClientRecord {
    ClientRecord {
        client_id: client_id.to_owned(),
        name: validated.display_name.clone(),
        secret_hash: secret.current.as_ref().map(Plaintext::digest),
        previous_secret_hash: secret.previous.as_ref().map(|p| p.digest.clone()),
        previous_secret_expires_at: secret.previous.as_ref().map(|p| p.expires_at),
        public: spec.public,
        grant_types: spec.grant_types.iter().map(|g| (*g).into()).collect(),
        redirect_uris: spec.redirect_uris.clone(),
        post_logout_redirect_uris: spec.post_logout_redirect_uris.clone(),
        scopes: spec.scopes.clone(),
        token_endpoint_auth_method: validated.auth_method.into(),
        first_party: spec.first_party,
        // Admin rights are never given through a resource a namespace editor writes.
        admin: false,
        resource_server: spec.resource_server,
        access_token_ttl: validated.access_token_ttl,
        refresh_token_ttl: validated.refresh_token_ttl,
        audience: spec.audience.clone(),
        jwks: validated.jwks.clone(),
        service_account: spec
            .service_account
            .as_ref()
            .map(|sa| ServiceAccountBinding {
                namespace: namespace.to_owned(),
                name: sa.name.clone(),
                uid: service_account_uid.map(str::to_owned),
                audience: sa.audience.clone(),
            }),
        managed_by: ManagedBy::Operator,
        owner: Some(owner.to_owned()),
        // Not written by the upsert: the policy check sets it apart (`set_disabled`).
        disabled: existing.is_some_and(|r| r.disabled),
        created_at: existing.map_or(now, |r| r.created_at),
        updated_at: now,
    }
}

/// Whether an existing row may be written by this resource: only rows the operator
/// created for the same `namespace/name`.
pub fn row_is_ours(row: &ClientRecord, owner: &str) -> bool {
    row.managed_by == ManagedBy::Operator && row.owner.as_deref() == Some(owner)
}

/// What to do with the database row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowAction {
    Unchanged,
    /// Write it: new resource, new spec or new secret.
    Write,
    /// Write it back: it was changed or deleted behind the operator's back.
    Restore,
}

/// Compares the row as stored with the desired one (timestamps aside). A difference that
/// neither a spec change nor a secret change explains is drift.
pub fn row_action(
    existing: Option<&ClientRecord>,
    desired: &ClientRecord,
    spec_changed: bool,
    secret: SecretChange,
    had_row_before: bool,
) -> RowAction {
    let same = existing.is_some_and(|row| {
        let mut row = row.clone();
        row.created_at = desired.created_at;
        row.updated_at = desired.updated_at;
        row == *desired
    });
    let explained = spec_changed
        || matches!(
            secret,
            SecretChange::Created | SecretChange::Rotated | SecretChange::Regenerated
        );
    match (same, existing.is_some() || had_row_before, explained) {
        (true, _, _) => RowAction::Unchanged,
        (false, true, false) => RowAction::Restore,
        (false, _, _) => RowAction::Write,
    }
}

/// The Secret holding the client's credentials and the operator's state.
pub fn desired_secret(
    namespace: &str,
    resource_name: &str,
    owner: OwnerReference,
    validated: &Validated,
    client_id: &str,
    settings: &Settings,
    plan: &SecretPlan,
) -> Secret {
    let mut data = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        data.insert(k.to_owned(), ByteString(v.as_bytes().to_vec()));
    };
    put("client_id", client_id);
    put("issuer", &settings.issuer);
    put("token_url", &settings.token_url());
    if let Some(secret) = &plan.current {
        put("client_secret", secret.expose());
    }
    let mut annotations = BTreeMap::new();
    if plan.current.is_some() {
        annotations.insert(
            ROTATION_ANNOTATION.to_owned(),
            plan.rotation_generation.to_string(),
        );
        if let Some(at) = plan.generated_at {
            annotations.insert(GENERATED_AT_ANNOTATION.to_owned(), format_time(at));
        }
    }
    if let Some(previous) = &plan.previous {
        annotations.insert(
            PREVIOUS_DIGEST_ANNOTATION.to_owned(),
            previous.digest.clone(),
        );
        annotations.insert(
            PREVIOUS_EXPIRES_ANNOTATION.to_owned(),
            format_time(previous.expires_at),
        );
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(validated.secret_name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
                (CLIENT_LABEL.to_owned(), resource_name.to_owned()),
            ])),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The Ready condition's status and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// CamelCase: Reconciled, InvalidSpec, ClientIdConflict, SecretConflict.
    pub reason: &'static str,
    pub message: String,
}

/// The status to write, given the previous one. Times of things that did not change keep
/// their old values, so a reconcile that changes nothing writes nothing.
pub fn status(
    before: &OAuthClientStatus,
    generation: Option<i64>,
    client_id: &str,
    secret_name: Option<&str>,
    plan: Option<&SecretPlan>,
    readiness: Readiness,
    now: i64,
) -> OAuthClientStatus {
    let conditions = ready_conditions(
        &before.conditions,
        generation,
        readiness.ready,
        readiness.reason,
        readiness.message,
        Time(timestamp(now)),
    );
    let (rotation_generation, last_rotation, previous_expires) = match plan {
        Some(p) => (
            (p.current.is_some()).then_some(p.rotation_generation),
            p.generated_at.map(|t| Time(timestamp(t))),
            p.previous.as_ref().map(|p| Time(timestamp(p.expires_at))),
        ),
        None => (
            before.secret_rotation_generation,
            before.last_secret_rotation.clone(),
            before.previous_secret_expires_at.clone(),
        ),
    };
    OAuthClientStatus {
        client_id: Some(client_id.to_owned()),
        secret_name: secret_name.map(str::to_owned),
        observed_generation: generation,
        secret_rotation_generation: rotation_generation,
        last_secret_rotation: last_rotation,
        previous_secret_expires_at: previous_expires,
        conditions,
    }
}

/// When to look at the resource again: at the end of a rotation's overlap (to drop the
/// previous secret) or after the resync interval, whichever comes first.
pub fn requeue_after(plan: Option<&SecretPlan>, resync: Duration, now: i64) -> Duration {
    let overlap_end = plan
        .and_then(|p| p.previous.as_ref())
        .map(|p| Duration::from_millis(u64::try_from(p.expires_at - now).unwrap_or(0)));
    match overlap_end {
        // A little after the expiry, so the check sees it expired.
        Some(d) => (d + Duration::from_millis(100)).min(resync),
        None => resync,
    }
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// RFC 3339 with millisecond precision.
pub fn format_time(ms: i64) -> String {
    timestamp(ms).to_string()
}

fn parse_time(s: &str) -> Option<i64> {
    s.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_crds::{GrantType, SecretRotation};

    fn settings() -> Settings {
        Settings {
            issuer: "https://auth.example.com".into(),
            allowed_scopes: vec![],
            resync: Duration::from_secs(300),
        }
    }

    fn spec() -> OAuthClientSpec {
        OAuthClientSpec {
            display_name: None,
            grant_types: vec![GrantType::ClientCredentials],
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            scopes: vec!["orders:read".into()],
            public: false,
            token_endpoint_auth_method: None,
            first_party: false,
            resource_server: false,
            access_token_ttl: None,
            refresh_token_ttl: None,
            audience: None,
            secret_name: None,
            secret_ref: None,
            secret_rotation: SecretRotation::default(),
            service_account: None,
            jwks: None,
        }
    }

    fn fresh() -> ClientSecret {
        ClientSecret::generate().expect("secret")
    }

    #[test]
    fn client_ids_are_namespaced_and_cannot_collide() {
        assert_eq!(client_id("shop", "orders"), "shop.orders");
        // "a" + "b.c" and "a.b" + "c" would collide, but namespaces have no dots.
        assert_eq!(owner("shop", "orders"), "shop/orders");
    }

    #[test]
    fn validate_applies_defaults() {
        let v = validate(&spec(), "orders", &settings()).expect("valid");
        assert_eq!(v.display_name, "orders");
        assert_eq!(v.secret_name, "orders-oauth");
        assert_eq!(v.auth_method, TokenEndpointAuthMethod::ClientSecretBasic);
        assert_eq!(v.overlap, Duration::from_secs(3_600));
        let mut public = spec();
        public.public = true;
        assert_eq!(
            validate(&public, "spa", &settings())
                .expect("valid")
                .auth_method,
            TokenEndpointAuthMethod::None
        );
    }

    #[test]
    fn validate_reports_every_problem() {
        let mut s = spec();
        s.scopes = vec!["orders:read".into(), "admin".into(), "bad scope".into()];
        s.access_token_ttl = Some("30s".into());
        s.refresh_token_ttl = Some("400d".into());
        s.secret_rotation.overlap = "31d".into();
        let mut cfg = settings();
        cfg.allowed_scopes = vec!["orders:read".into(), "orders:write".into()];
        let problems = validate(&s, "orders", &cfg).expect_err("invalid");
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems[0].contains("admin, bad scope"), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("accessTokenTTL 30s")));
        assert!(problems.iter().any(|p| p.contains("refreshTokenTTL 400d")));
        assert!(problems.iter().any(|p| p.contains("overlap 31d")));
    }

    #[test]
    fn the_admin_scope_is_never_given_through_a_resource() {
        let mut s = spec();
        s.scopes = vec!["orders:read".into(), ADMIN_SCOPE.into()];
        let problems = validate(&s, "orders", &settings()).expect_err("refused");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("reserved to admin clients"),
            "{problems:?}"
        );
    }

    #[test]
    fn ttls_become_seconds() {
        let mut s = spec();
        s.access_token_ttl = Some("15m".into());
        s.refresh_token_ttl = Some("14d".into());
        let v = validate(&s, "x", &settings()).expect("valid");
        assert_eq!(v.access_token_ttl, Some(900));
        assert_eq!(v.refresh_token_ttl, Some(14 * 86_400));
    }

    #[test]
    fn scope_tokens_follow_rfc6749() {
        assert!(is_scope_token("orders:read"));
        assert!(is_scope_token("https://api.example.com/x!#$[]~"));
        for bad in ["", "a b", "a\"b", "a\\b", "é"] {
            assert!(!is_scope_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn first_secret_is_created_then_kept() {
        let s = spec();
        let v = validate(&s, "x", &settings()).expect("valid");
        let new = fresh();
        let plan = plan_secret(&s, &v, &Stored::default(), true, &new, 1_000);
        assert_eq!(plan.change, SecretChange::Created);
        assert_eq!(
            plan.current.as_ref().map(Plaintext::expose),
            Some(new.expose())
        );
        assert_eq!(plan.generated_at, Some(1_000));

        let stored = Stored {
            secret: plan.current.clone(),
            rotation_generation: Some(0),
            generated_at: Some(1_000),
            previous: None,
        };
        let again = plan_secret(&s, &v, &stored, false, &fresh(), 2_000);
        assert_eq!(again.change, SecretChange::Unchanged);
        assert_eq!(again.current, plan.current);
        assert_eq!(again.generated_at, Some(1_000));
    }

    #[test]
    fn missing_secret_is_regenerated_without_overlap() {
        let s = spec();
        let v = validate(&s, "x", &settings()).expect("valid");
        let plan = plan_secret(&s, &v, &Stored::default(), false, &fresh(), 5);
        assert_eq!(plan.change, SecretChange::Regenerated);
        assert_eq!(plan.previous, None);
    }

    #[test]
    fn rotation_keeps_the_previous_secret_for_the_overlap() {
        let mut s = spec();
        s.secret_rotation = SecretRotation {
            generation: 1,
            overlap: "10m".into(),
        };
        let v = validate(&s, "x", &settings()).expect("valid");
        let old = Plaintext::from(&fresh());
        let stored = Stored {
            secret: Some(old.clone()),
            rotation_generation: Some(0),
            generated_at: Some(0),
            previous: None,
        };
        let new = fresh();
        let plan = plan_secret(&s, &v, &stored, false, &new, 1_000);
        assert_eq!(plan.change, SecretChange::Rotated);
        assert_eq!(plan.rotation_generation, 1);
        assert_eq!(
            plan.previous,
            Some(Previous {
                digest: old.digest(),
                expires_at: 1_000 + 600_000
            })
        );
        assert_eq!(
            requeue_after(Some(&plan), Duration::from_secs(3_600), 1_000),
            Duration::from_millis(600_100)
        );

        // The same rotation seen again (e.g. after a crash) does not rotate twice.
        let stored = Stored {
            secret: plan.current.clone(),
            rotation_generation: Some(1),
            generated_at: Some(1_000),
            previous: plan.previous.clone(),
        };
        let again = plan_secret(&s, &v, &stored, false, &fresh(), 2_000);
        assert_eq!(again.change, SecretChange::Unchanged);
        assert_eq!(again.previous, plan.previous);
        // After the overlap the previous secret is dropped.
        let later = plan_secret(&s, &v, &stored, false, &fresh(), 601_000);
        assert_eq!(later.previous, None);
        assert_eq!(
            requeue_after(Some(&later), Duration::from_secs(300), 601_000),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn zero_overlap_drops_the_old_secret_at_once() {
        let mut s = spec();
        s.secret_rotation = SecretRotation {
            generation: 3,
            overlap: "0".into(),
        };
        let v = validate(&s, "x", &settings()).expect("valid");
        let stored = Stored {
            secret: Some(Plaintext::from(&fresh())),
            rotation_generation: Some(2),
            ..Stored::default()
        };
        let plan = plan_secret(&s, &v, &stored, false, &fresh(), 0);
        assert_eq!(plan.change, SecretChange::Rotated);
        assert_eq!(plan.previous, None);
    }

    #[test]
    fn public_clients_have_no_secret() {
        let mut s = spec();
        s.public = true;
        s.grant_types = vec![GrantType::AuthorizationCode];
        s.redirect_uris = vec!["https://app.example.com/cb".into()];
        let v = validate(&s, "spa", &settings()).expect("valid");
        let plan = plan_secret(&s, &v, &Stored::default(), true, &fresh(), 0);
        assert_eq!(plan.change, SecretChange::None);
        let row = desired_row(&s, &v, "ns.spa", "ns/spa", &plan, None, ("ns", None), 0);
        assert_eq!(row.secret_hash, None);
        assert_eq!(row.token_endpoint_auth_method, "none");
        let owner = OwnerReference::default();
        let secret = desired_secret("ns", "spa", owner, &v, "ns.spa", &settings(), &plan);
        let data = secret.data.expect("data");
        assert!(!data.contains_key("client_secret"));
        assert_eq!(data["token_url"].0, b"https://auth.example.com/oauth/token");
    }

    #[test]
    fn secret_state_round_trips_through_the_secret() {
        let mut s = spec();
        s.secret_rotation.generation = 2;
        let v = validate(&s, "x", &settings()).expect("valid");
        let plan = SecretPlan {
            change: SecretChange::Rotated,
            current: Some(Plaintext::from(&fresh())),
            previous: Some(Previous {
                digest: secret_digest("old"),
                expires_at: 1_700_000_000_123,
            }),
            rotation_generation: 2,
            generated_at: Some(1_700_000_000_000),
        };
        let owner = OwnerReference {
            uid: "uid-1".into(),
            controller: Some(true),
            ..OwnerReference::default()
        };
        let secret = desired_secret("ns", "x", owner, &v, "ns.x", &settings(), &plan);
        let Found::Owned(stored) = read_secret(Some(&secret), "uid-1") else {
            panic!("our own Secret reads as ours");
        };
        assert_eq!(stored.secret, plan.current);
        assert_eq!(stored.rotation_generation, Some(2));
        assert_eq!(stored.generated_at, plan.generated_at);
        assert_eq!(stored.previous, plan.previous);

        assert_eq!(read_secret(Some(&secret), "other-uid"), Found::Foreign);
        assert_eq!(read_secret(None, "uid-1"), Found::Missing);
    }

    #[test]
    fn a_hand_edited_secret_is_not_trusted() {
        let owner = OwnerReference {
            uid: "u".into(),
            controller: Some(true),
            ..OwnerReference::default()
        };
        let secret = Secret {
            metadata: ObjectMeta {
                owner_references: Some(vec![owner]),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "client_secret".to_owned(),
                ByteString(b"hunter2".to_vec()),
            )])),
            ..Secret::default()
        };
        let Found::Owned(stored) = read_secret(Some(&secret), "u") else {
            panic!("owned");
        };
        assert_eq!(stored.secret, None);
    }

    #[test]
    fn rows_differing_without_a_cause_are_restored() {
        let s = spec();
        let v = validate(&s, "x", &settings()).expect("valid");
        let plan = plan_secret(&s, &v, &Stored::default(), true, &fresh(), 0);
        let desired = desired_row(&s, &v, "ns.x", "ns/x", &plan, None, ("ns", None), 10);
        // Same content, other timestamps: nothing to do.
        let mut stored = desired.clone();
        stored.updated_at = 5;
        assert_eq!(
            row_action(
                Some(&stored),
                &desired,
                false,
                SecretChange::Unchanged,
                true
            ),
            RowAction::Unchanged
        );
        // Tampered scopes: restored.
        stored.scopes.push("admin".into());
        assert_eq!(
            row_action(
                Some(&stored),
                &desired,
                false,
                SecretChange::Unchanged,
                true
            ),
            RowAction::Restore
        );
        // Deleted: restored.
        assert_eq!(
            row_action(None, &desired, false, SecretChange::Unchanged, true),
            RowAction::Restore
        );
        // A spec change explains the difference.
        assert_eq!(
            row_action(Some(&stored), &desired, true, SecretChange::Unchanged, true),
            RowAction::Write
        );
        // A new resource.
        assert_eq!(
            row_action(None, &desired, true, SecretChange::Created, false),
            RowAction::Write
        );
    }

    #[test]
    fn only_our_rows_are_written() {
        let s = spec();
        let v = validate(&s, "x", &settings()).expect("valid");
        let plan = plan_secret(&s, &v, &Stored::default(), true, &fresh(), 0);
        let mut row = desired_row(&s, &v, "ns.x", "ns/x", &plan, None, ("ns", None), 0);
        assert!(row_is_ours(&row, "ns/x"));
        assert!(!row_is_ours(&row, "other/x"));
        row.managed_by = ManagedBy::Api;
        assert!(!row_is_ours(&row, "ns/x"));
    }

    #[test]
    fn status_keeps_transition_times_when_nothing_changes() {
        let ready = || Readiness {
            ready: true,
            reason: "Reconciled",
            message: "ok".into(),
        };
        let first = status(
            &OAuthClientStatus::default(),
            Some(1),
            "ns.x",
            Some("x-oauth"),
            None,
            ready(),
            1_000,
        );
        let second = status(
            &first,
            Some(1),
            "ns.x",
            Some("x-oauth"),
            None,
            ready(),
            9_000,
        );
        assert_eq!(first, second);
        let failed = status(
            &second,
            Some(2),
            "ns.x",
            Some("x-oauth"),
            None,
            Readiness {
                ready: false,
                reason: "InvalidSpec",
                message: "bad".into(),
            },
            9_000,
        );
        let cond = &failed.conditions[0];
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert_eq!(cond.last_transition_time, Time(timestamp(9_000)));
        assert_eq!(failed.observed_generation, Some(2));
    }
}
