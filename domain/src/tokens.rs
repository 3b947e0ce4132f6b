//! Access tokens (RFC 9068: RS256, ES256 or EdDSA, the signing key's algorithm) and
//! opaque secrets.
//!
//! Signing is done here rather than through `jsonwebtoken::encode`, which re-parses the
//! DER private key on every call; our [`KeyPair`]s stay parsed. Verification goes through
//! `jsonwebtoken` with issuer and audience pinned, the key chosen by `kid`, the algorithm
//! pinned to that key's (a header naming another is refused), and the RFC 9068 `typ`
//! checked.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use latchkey_store::keys::{Alg, KeyPair};
use latchkey_store::now_ms;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::ephemeral::Ephemeral;
use crate::error::{Error, Result};
use crate::keyring::{KeyRing, Verifier, jws_algorithm};

/// Clock skew tolerated on `exp`/`nbf`/`iat`, in seconds.
const LEEWAY_SECS: u64 = 5;

/// The claims of an access token (RFC 9068 §2.2).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    /// The refresh-token family (OIDC's session id), so logout can end the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// The `client_id` of tokens issued by `/auth/login` and `/auth/refresh`: Latchkey's own
/// first-party API rather than a registered OAuth client. No client may be registered
/// under it ([`crate::clients::validate`]), so only those tokens carry it.
pub const FIRST_PARTY_CLIENT_ID: &str = "latchkey";

impl AccessClaims {
    /// Whether the token was issued to Latchkey's own API (`/auth/login`), not to a
    /// registered client.
    pub fn is_first_party(&self) -> bool {
        self.client_id == FIRST_PARTY_CLIENT_ID
    }
}

/// One [`Validation`] per algorithm: `jsonwebtoken` wants every algorithm of a
/// validation to be of the key's family, and each key verifies its own algorithm only.
#[derive(Debug)]
struct Pinned([Validation; 3]);

impl Pinned {
    fn new(base: &Validation) -> Self {
        Self(Alg::ALL.map(|alg| {
            let mut validation = base.clone();
            validation.algorithms = vec![jws_algorithm(alg)];
            validation
        }))
    }

    /// The validation of `key`'s algorithm.
    fn of(&self, key: &Verifier) -> Option<&Validation> {
        self.0.iter().find(|v| v.algorithms == [key.alg])
    }
}

/// Decodes `token` with `key`, refusing a header whose `alg` is not the key's.
fn decode<C: serde::de::DeserializeOwned>(
    token: &str,
    header_alg: Algorithm,
    key: &Verifier,
    pinned: &Pinned,
) -> jsonwebtoken::errors::Result<C> {
    let validation = pinned
        .of(key)
        .filter(|_| header_alg == key.alg)
        .ok_or(ErrorKind::InvalidAlgorithm)?;
    jsonwebtoken::decode::<C>(token, &key.key, validation).map(|data| data.claims)
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// What an access token is issued for.
#[derive(Debug, Default)]
pub struct Grant<'a> {
    pub sub: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    /// Refresh-token family (session) the token belongs to, if any.
    pub sid: Option<&'a str>,
    /// `aud`; defaults to the service's audience.
    pub audience: Option<&'a str>,
    /// Lifetime; defaults to `OAUTH2_ACCESS_TOKEN_EXPIRES`.
    pub ttl: Option<Duration>,
}

/// A freshly signed access token.
#[derive(Debug)]
pub struct Issued {
    pub token: String,
    pub claims: AccessClaims,
}

/// Issues and verifies access tokens. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tokens {
    keys: KeyRing,
    revoked: Ephemeral,
    issuer: Arc<str>,
    audience: Arc<str>,
    ttl: Duration,
    /// RSA signing is ~0.3 ms (2048 bits) to 3 ms (4096) of CPU: done on the blocking
    /// pool, bounded to the cores. ES256 and EdDSA sign inline.
    signing_permits: Arc<Semaphore>,
    validation: Arc<Pinned>,
    /// For introspection: like `validation` but any audience (tokens of clients with their
    /// own resource-server audience are still ours to describe).
    any_audience: Arc<Pinned>,
    /// For `id_token_hint` at logout: our signature and issuer, any audience, expired
    /// or not (RP-Initiated Logout 1.0 §2: the OP need not be picky about expiry).
    id_token_hint: Arc<Pinned>,
}

/// What a logout request's `id_token_hint` says: who, for which client, which session.
#[derive(Debug, Clone, Deserialize)]
pub struct IdTokenHint {
    pub sub: String,
    /// The client the ID token was issued to (we issue a single audience).
    pub aud: String,
    /// The refresh-token family (session) the ID token was issued in.
    #[serde(default)]
    pub sid: Option<String>,
}

impl Tokens {
    pub fn new(
        keys: KeyRing,
        revoked: Ephemeral,
        issuer: String,
        audience: String,
        ttl: Duration,
        cpus: usize,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[&audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        let mut any_audience = validation.clone();
        any_audience.validate_aud = false;
        let mut id_token_hint = any_audience.clone();
        id_token_hint.validate_exp = false;
        id_token_hint.set_required_spec_claims(&["iss", "aud", "sub"]);
        Self {
            keys,
            revoked,
            issuer: issuer.into(),
            audience: audience.into(),
            ttl,
            signing_permits: Arc::new(Semaphore::new(cpus.max(1))),
            validation: Arc::new(Pinned::new(&validation)),
            any_audience: Arc::new(Pinned::new(&any_audience)),
            id_token_hint: Arc::new(Pinned::new(&id_token_hint)),
        }
    }

    /// Checks an `id_token_hint`: an ID token (`typ` JWT) signed by a key we publish,
    /// with that key's algorithm and our issuer; expiry is not checked.
    pub async fn verify_id_token_hint(&self, token: &str) -> Result<IdTokenHint> {
        const INVALID: Error =
            Error::InvalidToken("the id_token_hint is not an ID token of this issuer");
        let header = jsonwebtoken::decode_header(token).map_err(|_| INVALID)?;
        let typ_ok = header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("JWT"));
        if !typ_ok {
            return Err(INVALID);
        }
        let kid = header.kid.ok_or(INVALID)?;
        let key = self.keys.verifier(&kid).await.ok_or(INVALID)?;
        decode::<IdTokenHint>(token, header.alg, &key, &self.id_token_hint).map_err(|_| INVALID)
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs an access token.
    pub async fn issue(&self, grant: &Grant<'_>) -> Result<Issued> {
        let iat = now_ms() / 1000;
        let ttl = grant.ttl.unwrap_or(self.ttl);
        let claims = AccessClaims {
            iss: self.issuer.to_string(),
            sub: grant.sub.to_owned(),
            aud: grant.audience.unwrap_or(&self.audience).to_owned(),
            client_id: grant.client_id.to_owned(),
            scope: grant.scope.to_owned(),
            jti: random_token(16)?,
            iat,
            exp: iat + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            sid: grant.sid.map(str::to_owned),
        };
        let token = self.sign("at+jwt", &claims).await?;
        metrics::counter!("latchkey_tokens_issued_total", "kind" => "access").increment(1);
        Ok(Issued { token, claims })
    }

    /// Signs any claims set with the current key, with header `typ`.
    pub async fn sign<C: Serialize>(&self, typ: &'static str, claims: &C) -> Result<String> {
        self.sign_for(typ, |_| claims).await
    }

    /// Signs the claims `claims` builds for the current key's algorithm (an ID token's
    /// `at_hash` depends on it), with header `typ`.
    pub async fn sign_for<C: Serialize>(
        &self,
        typ: &'static str,
        claims: impl FnOnce(Alg) -> C,
    ) -> Result<String> {
        let key = self
            .keys
            .signer()
            .await
            .ok_or(Error::Unavailable("no signing key is available yet"))?;
        let payload = serde_json::to_vec(&claims(key.alg())).context("claims")?;
        if key.alg() != Alg::Rs256 {
            // P-256 and Ed25519 sign in tens of microseconds: less than the hand-off to
            // the blocking pool and back costs (measured: bench/profile.sh).
            return sign(&key, typ, &payload);
        }
        let _permit = self
            .signing_permits
            .acquire()
            .await
            .context("signer closed")?;
        tokio::task::spawn_blocking(move || sign(&key, typ, &payload))
            .await
            .context("signing task")?
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Verifies `token` completely: structure, `typ`, algorithm, `kid`, signature, `iss`,
    /// `aud`, `exp`, and that neither its `jti` nor its session (`sid`) is revoked.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims> {
        self.verify_with(token, &self.validation).await
    }

    /// [`Tokens::verify`] without the audience check, for introspection.
    pub async fn verify_any_audience(&self, token: &str) -> Result<AccessClaims> {
        self.verify_with(token, &self.any_audience).await
    }

    async fn verify_with(&self, token: &str, pinned: &Pinned) -> Result<AccessClaims> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Error::InvalidToken("the access token is malformed"))?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err(Error::InvalidToken(
                "the access token is not signed with RS256, ES256 or EdDSA",
            ));
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(Error::InvalidToken(
                "the token is not an access token (typ)",
            ));
        }
        let kid = header
            .kid
            .ok_or(Error::InvalidToken("the access token has no kid"))?;
        let key = self.keys.verifier(&kid).await.ok_or(Error::InvalidToken(
            "the access token is signed by an unknown key",
        ))?;
        let claims: AccessClaims =
            decode(token, header.alg, &key, pinned).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => Error::InvalidToken("the access token has expired"),
                ErrorKind::InvalidAlgorithm => {
                    Error::InvalidToken("the access token's alg is not the algorithm of its key")
                }
                _ => Error::InvalidToken("the access token is invalid"),
            })?;
        let (jti, sid) = (&claims.jti, claims.sid.as_deref());
        if self.revoked.is_revoked(jti, sid, now_ms()).await? {
            return Err(Error::InvalidToken("the access token has been revoked"));
        }
        Ok(claims)
    }
}

fn sign(key: &KeyPair, typ: &'static str, payload: &[u8]) -> Result<String> {
    let header = Header {
        alg: key.alg().as_str(),
        typ,
        kid: key.kid(),
    };
    let mut jwt = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).context("header")?);
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let signature = key.sign(jwt.as_bytes())?;
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(jwt)
}

/// OpenID Connect Core §3.1.3.6 `at_hash` (and §3.3.2.11 `c_hash`) of `token` for an
/// ID token signed with `alg`: the left half of the hash of the JWS algorithm, SHA-256
/// for RS256 and ES256, SHA-512 for EdDSA with Ed25519 (Core 1.0 errata set 2).
pub fn left_half_hash(alg: Alg, token: &str) -> String {
    let algorithm = match alg {
        Alg::Rs256 | Alg::Es256 => &aws_lc_rs::digest::SHA256,
        Alg::EdDsa => &aws_lc_rs::digest::SHA512,
    };
    let hash = aws_lc_rs::digest::digest(algorithm, token.as_bytes());
    let bytes = hash.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

/// `bytes` of OS randomness, base64url without padding.
pub fn random_token(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| anyhow::anyhow!("RNG failure"))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// The digest under which an opaque token is stored and looked up (hex SHA-256). The
/// tokens carry 256 bits of randomness, so a plain hash is enough: there is nothing to
/// guess, and a database leak reveals no usable token.
pub fn digest(token: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
