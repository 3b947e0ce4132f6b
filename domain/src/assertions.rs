//! Client authentication with a signed JWT (`private_key_jwt`, RFC 7523 §2.2 and §3), two
//! kinds, one verification path:
//!
//! - **A client's own keys** (`jwks` on its record): the client signs a short-lived
//!   assertion with `iss` = `sub` = its `client_id`, `aud` = our issuer (or the token
//!   endpoint URL), a `jti` and an `exp` at most [`MAX_ASSERTION_LIFETIME`] ahead. Each
//!   `jti` is accepted once, across every replica ([`Ephemeral::first_use`]).
//! - **A Kubernetes ServiceAccount token** (`service_account` on its record): the
//!   cluster's issuer signed it; the operator published that issuer and its keys
//!   ([`crate::keyring`] holds them parsed). `sub` must be
//!   `system:serviceaccount:<namespace>:<name>` of the client's binding, the ServiceAccount
//!   `uid` in the token the one the operator recorded, and `aud` the binding's audience
//!   (our issuer by default). Such a token is not single-use: the kubelet hands the same
//!   projected token to every request until it refreshes it (at 80 % of its lifetime), so
//!   it is a bearer credential bound to our audience and short-lived by the cluster —
//!   replay within its lifetime is accepted, as with a client secret.
//!
//! In both cases the algorithm is pinned by the key (never taken from the token alone),
//! symmetric algorithms and `none` are refused, and `exp`/`nbf` are checked with
//! [`LEEWAY_SECS`] of skew. Every refusal is the same `invalid_client` to the caller; the
//! reason goes to the debug log only (it names no secret).

use jsonwebtoken::Validation;
use latchkey_store::clients::ClientRecord;
use latchkey_store::jwks;
use serde::Deserialize;

use crate::Core;
use crate::assertion_keys::{AssertionKey, parse_jwks};
use crate::error::{Error, OAuthError, Result};

/// `client_assertion_type` of a JWT assertion (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest `exp - now` a client-signed assertion may have: its `jti` is remembered
/// that long.
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 3_600;
/// See [`MAX_ASSERTION_LIFETIME_SECS`].
pub const MAX_ASSERTION_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(MAX_ASSERTION_LIFETIME_SECS as u64);

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// The most bytes an assertion may have before it is looked at.
const MAX_ASSERTION_BYTES: usize = 16 * 1024;

/// The `sub` of an assertion, read without verifying it: only to find which client
/// claims to have signed it when the request names none (RFC 7523 §3: `sub` is the
/// `client_id`). [`verify`] then checks everything.
pub fn unverified_subject(assertion: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Sub {
        sub: Option<String>,
    }
    if assertion.len() > MAX_ASSERTION_BYTES {
        return None;
    }
    let payload = assertion.split('.').nth(1)?;
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).ok()?;
    serde_json::from_slice::<Sub>(&bytes).ok()?.sub
}

/// Claims every assertion must have; ServiceAccount claims are read when present.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default, rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Debug, Deserialize)]
struct KubernetesClaims {
    namespace: String,
    serviceaccount: ServiceAccountClaims,
}

#[derive(Debug, Deserialize)]
struct ServiceAccountClaims {
    name: String,
    uid: String,
}

/// Why an assertion was refused (logged at debug level, never returned in detail).
fn refuse(client_id: &str, reason: &str) -> Error {
    tracing::debug!(client_id, reason, "client assertion refused");
    metrics::counter!("latchkey_client_assertions_refused_total").increment(1);
    Error::OAuth(OAuthError::invalid_client(
        "unknown client or wrong credentials",
    ))
}

/// Verifies `assertion` as the authentication of `client` (whose method is
/// `private_key_jwt`), at `now_ms`.
pub async fn verify(
    core: &Core,
    client: &ClientRecord,
    assertion: &str,
    now_ms: i64,
) -> Result<()> {
    let id = client.client_id.as_str();
    if assertion.len() > MAX_ASSERTION_BYTES {
        return Err(refuse(id, "assertion too large"));
    }
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| refuse(id, "malformed header or unsupported alg"))?;
    let issuer = core.settings.issuer.as_str();
    let token_endpoint = format!("{}/oauth/token", issuer.trim_end_matches('/'));

    if let Some(binding) = &client.service_account {
        let Some(uid) = binding.uid.as_deref() else {
            return Err(refuse(
                id,
                "the ServiceAccount does not exist (not recorded)",
            ));
        };
        let kid = header.kid.as_deref().ok_or_else(|| refuse(id, "no kid"))?;
        let (cluster_issuer, key) = core
            .keys
            .federated_key(kid)
            .await
            .ok_or_else(|| refuse(id, "unknown kid or no cluster issuer published"))?;
        let audience = binding.audience.as_deref().unwrap_or(issuer);
        let claims = decode(assertion, &header, &key, &cluster_issuer, &[audience])
            .map_err(|reason| refuse(id, reason))?;
        if claims.sub != binding.subject() {
            return Err(refuse(id, "sub is another ServiceAccount"));
        }
        let sa = claims
            .kubernetes
            .ok_or_else(|| refuse(id, "no kubernetes.io claims"))?;
        if sa.namespace != binding.namespace
            || sa.serviceaccount.name != binding.name
            || sa.serviceaccount.uid != uid
        {
            return Err(refuse(id, "the ServiceAccount uid or name does not match"));
        }
        metrics::counter!("latchkey_client_assertions_total", "kind" => "service_account")
            .increment(1);
        return Ok(());
    }

    let Some(jwks) = client.jwks.as_deref() else {
        return Err(refuse(id, "the client has no keys"));
    };
    let keys = parse_jwks(jwks, jwks::MAX_CLIENT_KEYS).map_err(|e| {
        tracing::error!(client_id = id, error = %e, "stored client JWK Set is unusable");
        refuse(id, "stored keys unusable")
    })?;
    let key = match header.kid.as_deref() {
        Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
    .ok_or_else(|| refuse(id, "no key with that kid"))?;
    let claims = decode(
        assertion,
        &header,
        key,
        id,
        &[issuer, token_endpoint.as_str()],
    )
    .map_err(|reason| refuse(id, reason))?;
    if claims.sub != id {
        return Err(refuse(id, "sub is not the client_id"));
    }
    if claims.exp > now_ms / 1000 + MAX_ASSERTION_LIFETIME_SECS + LEEWAY_SECS as i64 {
        return Err(refuse(id, "exp is too far ahead"));
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| refuse(id, "no usable jti"))?;
    let replay_key = latchkey_store::clients::secret_digest(&format!("{id}\0{jti}"));
    let until = (claims.exp + LEEWAY_SECS as i64).saturating_mul(1000);
    if !core.ephemeral.first_use(&replay_key, until, now_ms).await? {
        return Err(refuse(id, "jti already used"));
    }
    metrics::counter!("latchkey_client_assertions_total", "kind" => "jwks").increment(1);
    Ok(())
}

/// Signature with the key's own algorithm, then `iss`, `aud`, `exp` and `nbf`.
fn decode(
    assertion: &str,
    header: &jsonwebtoken::Header,
    key: &AssertionKey,
    issuer: &str,
    audiences: &[&str],
) -> std::result::Result<Claims, &'static str> {
    if header.alg != key.alg {
        return Err("alg is not the key's algorithm");
    }
    let mut validation = Validation::new(key.alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Claims>(assertion, &key.key, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "expired",
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => "not valid yet",
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => "wrong iss",
            jsonwebtoken::errors::ErrorKind::InvalidAudience => "wrong aud",
            jsonwebtoken::errors::ErrorKind::InvalidSignature => "bad signature",
            _ => "malformed or missing claims",
        })
}
