//! Public JWK Sets (RFC 7517) that verify client assertions: a client's own keys
//! (`private_key_jwt`) and the keys of a federated issuer (the cluster's ServiceAccount
//! issuer).
//!
//! [`check`] is the one gate for a set that comes from outside (an `OAuthClient`, the
//! CLI, the admin API, the API server): asymmetric keys only, no private members, an
//! algorithm pinned per key, unique `kid`s. The operator, the CLI and the admin API refuse
//! what it refuses, and the service builds its verifiers only from what it accepts, so
//! every path admits exactly the same keys.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// The most keys a client's set may hold (a rotation needs two).
pub const MAX_CLIENT_KEYS: usize = 8;

/// Signature algorithms a client assertion may use. Symmetric (`HS*`) and `none` are never
/// accepted: a shared secret in a JWK Set would be public.
pub const ASSERTION_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// One usable key: its `kid` (if any), the algorithm it is pinned to, and the JWK itself
/// (public members only).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedKey {
    pub kid: Option<String>,
    pub alg: &'static str,
    pub jwk: Map<String, Value>,
}

/// Members that only a private (or symmetric) key has.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// Checks a JWK Set (`{"keys":[...]}`) and returns its keys. `max` bounds their number.
/// Every problem is a sentence for a person.
pub fn check(set: &Value, max: usize) -> Result<Vec<CheckedKey>, String> {
    let keys = set
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("a JWK Set is an object with a \"keys\" array")?;
    if keys.is_empty() {
        return Err("the JWK Set has no keys".to_owned());
    }
    if keys.len() > max {
        return Err(format!(
            "the JWK Set has {} keys; at most {max}",
            keys.len()
        ));
    }
    let mut checked = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let key = check_key(key).map_err(|e| format!("key {i}: {e}"))?;
        if keys.len() > 1 && key.kid.is_none() {
            return Err(format!(
                "key {i}: every key of a set with several keys needs a kid"
            ));
        }
        if key.kid.is_some() && checked.iter().any(|k: &CheckedKey| k.kid == key.kid) {
            return Err(format!(
                "key {i}: kid {:?} is repeated",
                key.kid.unwrap_or_default()
            ));
        }
        checked.push(key);
    }
    Ok(checked)
}

/// Parses `text` as JSON, then [`check`]s it.
pub fn check_text(text: &str, max: usize) -> Result<Vec<CheckedKey>, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the JWK Set is not JSON: {e}"))?;
    check(&value, max)
}

fn check_key(key: &Value) -> Result<CheckedKey, String> {
    let jwk = key.as_object().ok_or("a JWK is a JSON object")?;
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(format!(
            "it has the private member {private:?}: publish the public key only"
        ));
    }
    if let Some(use_) = jwk.get("use")
        && use_.as_str() != Some("sig")
    {
        return Err("its \"use\" is not \"sig\"".to_owned());
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= 256 => Some(kid.clone()),
        Some(_) => return Err("kid must be a string of 1 to 256 characters".to_owned()),
    };
    let member = |name: &str, min: usize, max: usize| -> Result<(), String> {
        let value = text(name).ok_or_else(|| format!("it lacks the member {name:?}"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| format!("{name:?} is not base64url without padding"))?;
        if bytes.len() < min || bytes.len() > max {
            return Err(format!(
                "{name:?} has {} bytes, not {min}..={max}",
                bytes.len()
            ));
        }
        Ok(())
    };
    let kty = text("kty").ok_or("it lacks \"kty\"")?;
    let natural: &[&'static str] = match kty {
        "RSA" => {
            // 2048 to 8192-bit moduli; RFC 7518 §6.3.1.
            member("n", 256, 1024)?;
            member("e", 1, 8)?;
            &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
        }
        "EC" => match text("crv") {
            Some("P-256") => {
                member("x", 32, 32)?;
                member("y", 32, 32)?;
                &["ES256"]
            }
            Some("P-384") => {
                member("x", 48, 48)?;
                member("y", 48, 48)?;
                &["ES384"]
            }
            _ => return Err("an EC key's crv must be P-256 or P-384".to_owned()),
        },
        "OKP" => match text("crv") {
            Some("Ed25519") => {
                member("x", 32, 32)?;
                &["EdDSA"]
            }
            _ => return Err("an OKP key's crv must be Ed25519".to_owned()),
        },
        "oct" => return Err("symmetric (oct) keys are not accepted".to_owned()),
        other => return Err(format!("kty {other:?} is not RSA, EC or OKP")),
    };
    let alg = match jwk.get("alg") {
        None => natural[0],
        Some(Value::String(alg)) => *natural.iter().find(|a| **a == alg).ok_or_else(|| {
            format!(
                "alg {alg:?} does not fit a {kty} key (one of {})",
                natural.join(", ")
            )
        })?,
        Some(_) => return Err("alg must be a string".to_owned()),
    };
    Ok(CheckedKey {
        kid,
        alg,
        jwk: jwk.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsa() -> Value {
        json!({"kty":"RSA","kid":"a","n": URL_SAFE_NO_PAD.encode([0xc5u8; 256]),"e":"AQAB"})
    }

    #[test]
    fn accepts_public_asymmetric_keys_and_pins_their_algorithm() {
        let ec = json!({"kty":"EC","crv":"P-256","kid":"b","x":URL_SAFE_NO_PAD.encode([1u8;32]),"y":URL_SAFE_NO_PAD.encode([2u8;32])});
        let ed = json!({"kty":"OKP","crv":"Ed25519","kid":"c","alg":"EdDSA","x":URL_SAFE_NO_PAD.encode([3u8;32])});
        let keys = check(&json!({"keys":[rsa(), ec, ed]}), 8).expect("valid");
        let algs: Vec<_> = keys.iter().map(|k| k.alg).collect();
        assert_eq!(algs, ["RS256", "ES256", "EdDSA"]);
        let mut ps = rsa();
        ps["alg"] = json!("PS256");
        assert_eq!(
            check(&json!({"keys":[ps]}), 8).expect("valid")[0].alg,
            "PS256"
        );
    }

    #[test]
    fn refuses_private_symmetric_and_ambiguous_keys() {
        let refused = |set: Value, needle: &str| {
            let err = check(&set, 8).expect_err("refused");
            assert!(err.contains(needle), "{err}");
        };
        let mut private = rsa();
        private["d"] = json!("AQAB");
        refused(json!({"keys":[private]}), "private member");
        refused(
            json!({"keys":[{"kty":"oct","k":"c2VjcmV0"}]}),
            "private member",
        );
        refused(json!({"keys":[{"kty":"oct"}]}), "symmetric");
        let mut hs = rsa();
        hs["alg"] = json!("HS256");
        refused(json!({"keys":[hs]}), "does not fit");
        let mut none = rsa();
        none["alg"] = json!("none");
        refused(json!({"keys":[none]}), "does not fit");
        let mut short = rsa();
        short["n"] = json!(URL_SAFE_NO_PAD.encode([1u8; 128]));
        refused(json!({"keys":[short]}), "\"n\" has 128 bytes");
        let mut unnamed = rsa();
        unnamed.as_object_mut().expect("object").remove("kid");
        refused(json!({"keys":[unnamed, rsa()]}), "needs a kid");
        refused(json!({"keys":[rsa(), rsa()]}), "repeated");
        refused(json!({"keys":[]}), "no keys");
        refused(json!([rsa()]), "\"keys\" array");
        let mut enc = rsa();
        enc["use"] = json!("enc");
        refused(json!({"keys":[enc]}), "use");
    }
}
