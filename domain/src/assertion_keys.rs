//! Verifying keys for client assertions, built from JWK Sets that
//! [`latchkey_store::jwks::check`] accepted: a client's own keys, and the keys of the
//! cluster's ServiceAccount issuer that [`crate::keyring`] keeps parsed.

use std::sync::Arc;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use latchkey_store::jwks::{self, CheckedKey};

/// A verifying key with the algorithm it is pinned to.
pub struct AssertionKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub(crate) key: DecodingKey,
}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Builds verifiers from keys [`jwks::check`] accepted. A key jsonwebtoken cannot use
/// (an RSA key whose numbers do not parse) is an error naming it.
pub fn verifiers(keys: &[CheckedKey]) -> Result<Vec<AssertionKey>, String> {
    keys.iter()
        .map(|checked| {
            let name = checked.kid.as_deref().unwrap_or("without kid");
            let jwk: Jwk = serde_json::from_value(serde_json::Value::Object(checked.jwk.clone()))
                .map_err(|e| format!("key {name}: {e}"))?;
            let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("key {name}: {e}"))?;
            let alg = checked
                .alg
                .parse::<Algorithm>()
                .map_err(|e| format!("key {name}: {e}"))?;
            Ok(AssertionKey {
                kid: checked.kid.clone(),
                alg,
                key,
            })
        })
        .collect()
}

/// Parses a stored JWK Set into verifiers.
pub fn parse_jwks(text: &str, max: usize) -> Result<Vec<AssertionKey>, String> {
    verifiers(&jwks::check_text(text, max)?)
}

/// The keys of a federated issuer, parsed once per change.
#[derive(Debug)]
pub struct FederatedKeys {
    pub issuer: String,
    pub keys: Vec<Arc<AssertionKey>>,
}
