//! RS256 signing keys: generation, PEM, the public JWK and the RFC 7638 `kid`.
//!
//! A [`KeyPair`] is parsed once and kept parsed: re-parsing the DER for every token would
//! cost more than half of the signing throughput.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The only signing algorithm so far; the JWK and the table carry it so others can follow.
pub const RS256: &str = "RS256";

/// RSA modulus sizes we accept, in bits. Below 2048 is refused everywhere.
pub const ALLOWED_BITS: [usize; 3] = [2048, 3072, 4096];

/// A public key as published in JWKS (RFC 7517), for RS256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Jwk))]
pub struct PublicJwk {
    pub kty: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
    pub kid: String,
    pub n: String,
    pub e: String,
}

impl PublicJwk {
    /// Builds the JWK of an RSA public key from its big-endian modulus and exponent; the
    /// `kid` is the RFC 7638 SHA-256 thumbprint.
    pub fn rsa(modulus: &[u8], exponent: &[u8]) -> Self {
        let n = URL_SAFE_NO_PAD.encode(strip_leading_zeros(modulus));
        let e = URL_SAFE_NO_PAD.encode(strip_leading_zeros(exponent));
        let kid = rsa_thumbprint(&n, &e);
        Self {
            kty: "RSA".to_owned(),
            use_: "sig".to_owned(),
            alg: RS256.to_owned(),
            kid,
            n,
            e,
        }
    }

    /// The raw (big-endian) modulus and exponent, for building a verifier.
    pub fn rsa_components(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let bad = |reason: &str| Error::InvalidKey {
            name: self.kid.clone(),
            reason: reason.to_owned(),
        };
        if self.kty != "RSA" {
            return Err(bad("kty is not RSA"));
        }
        let n = URL_SAFE_NO_PAD
            .decode(&self.n)
            .map_err(|_| bad("n is not base64url"))?;
        let e = URL_SAFE_NO_PAD
            .decode(&self.e)
            .map_err(|_| bad("e is not base64url"))?;
        if rsa_thumbprint(&self.n, &self.e) != self.kid {
            return Err(bad("kid is not the RFC 7638 thumbprint of the key"));
        }
        Ok((n, e))
    }
}

/// RFC 7638 §3: SHA-256 over the required members in lexicographic order, no whitespace.
fn rsa_thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// A parsed RSA private key with its public JWK.
pub struct KeyPair {
    pair: RsaKeyPair,
    jwk: PublicJwk,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("kid", &self.jwk.kid)
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Generates a new key of `bits` (one of [`ALLOWED_BITS`]). Takes tens to hundreds of
    /// milliseconds: call it off the async runtime.
    pub fn generate(bits: usize) -> Result<Self> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            _ => return Err(Error::KeyGeneration),
        };
        let pair = RsaKeyPair::generate(size).map_err(|_| Error::KeyGeneration)?;
        Ok(Self::from_parsed(pair))
    }

    fn from_parsed(pair: RsaKeyPair) -> Self {
        let public = pair.public_key();
        let jwk = PublicJwk::rsa(
            public.modulus().big_endian_without_leading_zero(),
            public.exponent().big_endian_without_leading_zero(),
        );
        Self { pair, jwk }
    }

    /// Parses a PEM private key: PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
    /// `name` only labels errors. Keys under 2048 bits are refused.
    pub fn from_pem(name: &str, pem: &[u8]) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidKey {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        let text = std::str::from_utf8(pem).map_err(|_| bad("not UTF-8 PEM"))?;
        let (label, der) = pem_decode(text).ok_or_else(|| bad("no PEM block"))?;
        let pair = match label.as_str() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            other => return Err(bad(&format!("unsupported PEM label {other:?}"))),
        }
        .map_err(|e| bad(&format!("not an RSA private key ({e})")))?;
        let key = Self::from_parsed(pair);
        if key.bits() < 2048 {
            return Err(bad(&format!(
                "{} bits is too short (minimum 2048)",
                key.bits()
            )));
        }
        Ok(key)
    }

    /// The private key as PKCS#8 PEM. The caller must treat the bytes as secret.
    pub fn to_pem(&self) -> Result<String> {
        let der = self.pair.as_der().map_err(|_| Error::KeyGeneration)?;
        Ok(pem_encode("PRIVATE KEY", der.as_ref()))
    }

    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    pub fn jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    pub fn bits(&self) -> usize {
        self.pair.public_modulus_len() * 8
    }

    /// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of `message`.
    pub fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
            .map_err(|_| Error::InvalidKey {
                name: self.jwk.kid.clone(),
                reason: "signing failed".to_owned(),
            })?;
        Ok(signature)
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(text: &str) -> Option<(String, Vec<u8>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    // Searched after the BEGIN line: `-----BEGIN X-----END X-----` has its END marker
    // inside the BEGIN line's closing dashes.
    let body_end = body_start + rest[body_start..].find(&end_marker)?;
    let body: String = rest[body_start..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD.decode(body).ok()?;
    Some((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_kid() {
        let key = KeyPair::generate(2048).expect("generate");
        let pem = key.to_pem().expect("pem");
        let again = KeyPair::from_pem("k", pem.as_bytes()).expect("parse");
        assert_eq!(key.kid(), again.kid());
        assert_eq!(again.bits(), 2048);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1's example key and its published thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let e = "AQAB";
        assert_eq!(
            rsa_thumbprint(n, e),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn jwk_components_check_the_kid() {
        let key = KeyPair::generate(2048).expect("generate");
        let mut jwk = key.jwk().clone();
        assert!(jwk.rsa_components().is_ok());
        jwk.kid = "someone-else".to_owned();
        assert!(jwk.rsa_components().is_err());
    }

    #[test]
    fn an_end_marker_overlapping_the_begin_line_is_no_pem_block() {
        // Found by fuzz/ (key_pem): these sliced the text backwards and panicked.
        for pem in [
            "-----BEGIN PUBLIC KEY-------END PUBLIC KEY-----\n",
            "-----BEGIN X------END X-----",
            "-----BEGIN -----END -----",
        ] {
            let err = KeyPair::from_pem("k.pem", pem.as_bytes()).expect_err(pem);
            assert!(err.to_string().contains("no PEM block"), "{err}");
        }
    }

    #[test]
    fn garbage_is_rejected_with_the_file_name() {
        let err = KeyPair::from_pem("broken.pem", b"hello").expect_err("must fail");
        assert!(err.to_string().contains("broken.pem"), "{err}");
    }
}
