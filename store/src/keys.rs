//! Signing keys: RS256 (RSA), ES256 (ECDSA P-256) and EdDSA (Ed25519); generation, PEM,
//! the public JWK and the RFC 7638 `kid`.
//!
//! A [`KeyPair`] is parsed once and kept parsed: re-parsing the DER for every token would
//! cost more than half of the signing throughput. Each key carries one algorithm, named in
//! its JWK's `alg`; verifiers are pinned to it (a token whose header names another
//! algorithm than its key's is refused).

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The `alg` of RSA keys (RSASSA-PKCS1-v1_5 with SHA-256), the default.
pub const RS256: &str = "RS256";

/// RSA modulus sizes we accept, in bits. Below 2048 is refused everywhere.
pub const ALLOWED_BITS: [usize; 3] = [2048, 3072, 4096];

/// A JWS algorithm Latchkey signs with (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256; RSA keys of [`ALLOWED_BITS`].
    #[default]
    Rs256,
    /// ECDSA with P-256 and SHA-256.
    Es256,
    /// EdDSA with Ed25519.
    EdDsa,
}

impl Alg {
    /// Every algorithm, in the order discovery lists them.
    pub const ALL: [Alg; 3] = [Alg::Rs256, Alg::Es256, Alg::EdDsa];

    /// The JWS `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => RS256,
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// Parses a JWS `alg` value; case-sensitive, as JWS names are.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.as_str() == value)
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public key as published in JWKS (RFC 7517): RSA (`n`, `e`), EC P-256 (`crv`, `x`,
/// `y`) or OKP Ed25519 (`crv`, `x`, RFC 8037).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Jwk))]
pub struct PublicJwk {
    /// `RSA`, `EC` or `OKP`.
    pub kty: String,
    #[serde(rename = "use")]
    pub use_: String,
    /// `RS256`, `ES256` or `EdDSA`: the only algorithm this key verifies.
    pub alg: String,
    pub kid: String,
    /// RSA modulus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// `P-256` (EC) or `Ed25519` (OKP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x coordinate, or the Ed25519 public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

/// The checked material of a [`PublicJwk`], for building a verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey<'a> {
    /// Big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// base64url coordinates, each 32 bytes decoded.
    P256 { x: &'a str, y: &'a str },
    /// base64url public key, 32 bytes decoded.
    Ed25519 { x: &'a str },
}

impl PublicJwk {
    fn new(kty: &str, alg: Alg, kid: String) -> Self {
        Self {
            kty: kty.to_owned(),
            use_: "sig".to_owned(),
            alg: alg.as_str().to_owned(),
            kid,
            n: None,
            e: None,
            crv: None,
            x: None,
            y: None,
        }
    }

    /// Builds the JWK of an RSA public key from its big-endian modulus and exponent; the
    /// `kid` is the RFC 7638 SHA-256 thumbprint.
    pub fn rsa(modulus: &[u8], exponent: &[u8]) -> Self {
        let n = URL_SAFE_NO_PAD.encode(strip_leading_zeros(modulus));
        let e = URL_SAFE_NO_PAD.encode(strip_leading_zeros(exponent));
        let mut jwk = Self::new("RSA", Alg::Rs256, rsa_thumbprint(&n, &e));
        jwk.n = Some(n);
        jwk.e = Some(e);
        jwk
    }

    /// Builds the JWK of a P-256 public key from its uncompressed point (`04 || x || y`).
    fn p256(point: &[u8]) -> Result<Self> {
        let coordinates = match point {
            [0x04, rest @ ..] if rest.len() == 64 => rest,
            _ => return Err(Error::KeyGeneration),
        };
        let x = URL_SAFE_NO_PAD.encode(&coordinates[..32]);
        let y = URL_SAFE_NO_PAD.encode(&coordinates[32..]);
        let mut jwk = Self::new("EC", Alg::Es256, ec_thumbprint(&x, &y));
        jwk.crv = Some(P256.to_owned());
        jwk.x = Some(x);
        jwk.y = Some(y);
        Ok(jwk)
    }

    /// Builds the JWK of an Ed25519 public key (RFC 8037 §2).
    fn ed25519(public: &[u8]) -> Self {
        let x = URL_SAFE_NO_PAD.encode(public);
        let mut jwk = Self::new("OKP", Alg::EdDsa, okp_thumbprint(&x));
        jwk.crv = Some(ED25519.to_owned());
        jwk.x = Some(x);
        jwk
    }

    /// The algorithm this key verifies, once [`PublicJwk::public_key`] has checked it.
    pub fn algorithm(&self) -> Option<Alg> {
        Alg::parse(&self.alg)
    }

    /// Checks the JWK (its `kty`, `crv` and `alg` agree, its members decode to a key of
    /// the right size, its `kid` is its RFC 7638 thumbprint) and returns its algorithm and
    /// key material.
    pub fn public_key(&self) -> Result<(Alg, PublicKey<'_>)> {
        let bad = |reason: &str| Error::InvalidKey {
            name: self.kid.clone(),
            reason: reason.to_owned(),
        };
        fn member<'a>(value: &'a Option<String>, name: &str, kid: &str) -> Result<&'a str> {
            value.as_deref().ok_or_else(|| Error::InvalidKey {
                name: kid.to_owned(),
                reason: format!("{name} is missing"),
            })
        }
        let member = |value, name| member(value, name, &self.kid);
        let decoded = |value: &str, name: &str| {
            URL_SAFE_NO_PAD
                .decode(value)
                .map_err(|_| bad(&format!("{name} is not base64url")))
        };
        let alg = self
            .algorithm()
            .ok_or_else(|| bad("alg is not RS256, ES256 or EdDSA"))?;
        let (key, thumbprint) = match (alg, self.kty.as_str(), self.crv.as_deref()) {
            (Alg::Rs256, "RSA", None) => {
                let (n, e) = (member(&self.n, "n")?, member(&self.e, "e")?);
                let key = PublicKey::Rsa {
                    n: decoded(n, "n")?,
                    e: decoded(e, "e")?,
                };
                (key, rsa_thumbprint(n, e))
            }
            (Alg::Es256, "EC", Some(P256)) => {
                let (x, y) = (member(&self.x, "x")?, member(&self.y, "y")?);
                if decoded(x, "x")?.len() != 32 || decoded(y, "y")?.len() != 32 {
                    return Err(bad("a P-256 coordinate is not 32 bytes"));
                }
                (PublicKey::P256 { x, y }, ec_thumbprint(x, y))
            }
            (Alg::EdDsa, "OKP", Some(ED25519)) => {
                let x = member(&self.x, "x")?;
                if decoded(x, "x")?.len() != 32 {
                    return Err(bad("an Ed25519 public key is not 32 bytes"));
                }
                (PublicKey::Ed25519 { x }, okp_thumbprint(x))
            }
            _ => return Err(bad("kty, crv and alg do not agree")),
        };
        if thumbprint != self.kid {
            return Err(bad("kid is not the RFC 7638 thumbprint of the key"));
        }
        Ok((alg, key))
    }

    /// The raw (big-endian) modulus and exponent of an RSA key, checked as
    /// [`PublicJwk::public_key`] does.
    pub fn rsa_components(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        match self.public_key()? {
            (_, PublicKey::Rsa { n, e }) => Ok((n, e)),
            _ => Err(Error::InvalidKey {
                name: self.kid.clone(),
                reason: "kty is not RSA".to_owned(),
            }),
        }
    }
}

const P256: &str = "P-256";
const ED25519: &str = "Ed25519";

/// RFC 7638 §3: SHA-256 over the required members in lexicographic order, no whitespace.
fn thumbprint(canonical: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn rsa_thumbprint(n: &str, e: &str) -> String {
    thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#))
}

fn ec_thumbprint(x: &str, y: &str) -> String {
    thumbprint(&format!(
        r#"{{"crv":"{P256}","kty":"EC","x":"{x}","y":"{y}"}}"#
    ))
}

/// RFC 8037 §2: the required members of an OKP key are `crv`, `kty` and `x`.
fn okp_thumbprint(x: &str) -> String {
    thumbprint(&format!(r#"{{"crv":"{ED25519}","kty":"OKP","x":"{x}"}}"#))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// The parsed private half, one variant per algorithm.
enum Private {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A parsed private key with its public JWK.
pub struct KeyPair {
    private: Private,
    jwk: PublicJwk,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("kid", &self.jwk.kid)
            .field("alg", &self.alg())
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Generates a new RS256 key of `bits` (one of [`ALLOWED_BITS`]).
    pub fn generate(bits: usize) -> Result<Self> {
        Self::generate_for(Alg::Rs256, bits)
    }

    /// Generates a new key for `alg`; `bits` (one of [`ALLOWED_BITS`]) is the RSA modulus
    /// size and is ignored for ES256 and EdDSA, whose sizes are fixed. RSA takes tens to
    /// hundreds of milliseconds: call it off the async runtime.
    pub fn generate_for(alg: Alg, bits: usize) -> Result<Self> {
        let private = match alg {
            Alg::Rs256 => {
                let size = match bits {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    _ => return Err(Error::KeyGeneration),
                };
                Private::Rsa(RsaKeyPair::generate(size).map_err(|_| Error::KeyGeneration)?)
            }
            Alg::Es256 => Private::P256(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| Error::KeyGeneration)?,
            ),
            Alg::EdDsa => {
                Private::Ed25519(Ed25519KeyPair::generate().map_err(|_| Error::KeyGeneration)?)
            }
        };
        Self::from_parsed(private)
    }

    fn from_parsed(private: Private) -> Result<Self> {
        let jwk = match &private {
            Private::Rsa(pair) => {
                let public = pair.public_key();
                PublicJwk::rsa(
                    public.modulus().big_endian_without_leading_zero(),
                    public.exponent().big_endian_without_leading_zero(),
                )
            }
            Private::P256(pair) => PublicJwk::p256(pair.public_key().as_ref())?,
            Private::Ed25519(pair) => PublicJwk::ed25519(pair.public_key().as_ref()),
        };
        Ok(Self { private, jwk })
    }

    /// Parses a PEM private key: PKCS#8 (`PRIVATE KEY`: RSA, P-256 or Ed25519), PKCS#1
    /// (`RSA PRIVATE KEY`) or SEC 1 (`EC PRIVATE KEY`, P-256). `name` only labels errors.
    /// RSA keys under 2048 bits and other curves are refused.
    pub fn from_pem(name: &str, pem: &[u8]) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidKey {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        let text = std::str::from_utf8(pem).map_err(|_| bad("not UTF-8 PEM"))?;
        let (label, der) = pem_decode(text).ok_or_else(|| bad("no PEM block"))?;
        let p256 =
            |der: &[u8]| EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der);
        let private = match label.as_str() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der)
                .map(Private::Rsa)
                .or_else(|_| {
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                        .map(Private::P256)
                })
                .or_else(|_| Ed25519KeyPair::from_pkcs8(&der).map(Private::Ed25519))
                .map_err(|e| bad(&format!("not an RSA, P-256 or Ed25519 private key ({e})")))?,
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der)
                .map(Private::Rsa)
                .map_err(|e| bad(&format!("not an RSA private key ({e})")))?,
            "EC PRIVATE KEY" => p256(&der)
                .map(Private::P256)
                .map_err(|e| bad(&format!("not a P-256 private key ({e})")))?,
            other => return Err(bad(&format!("unsupported PEM label {other:?}"))),
        };
        let key = Self::from_parsed(private).map_err(|_| bad("unusable public key"))?;
        if key.alg() == Alg::Rs256 && key.bits() < 2048 {
            return Err(bad(&format!(
                "{} bits is too short (minimum 2048)",
                key.bits()
            )));
        }
        Ok(key)
    }

    /// The private key as PKCS#8 PEM. The caller must treat the bytes as secret.
    pub fn to_pem(&self) -> Result<String> {
        let der = match &self.private {
            Private::Rsa(pair) => pair
                .as_der()
                .map(|der| der.as_ref().to_vec())
                .map_err(|_| Error::KeyGeneration)?,
            Private::P256(pair) => pair
                .to_pkcs8v1()
                .map(|doc| doc.as_ref().to_vec())
                .map_err(|_| Error::KeyGeneration)?,
            Private::Ed25519(pair) => pair
                .to_pkcs8v1()
                .map(|doc| doc.as_ref().to_vec())
                .map_err(|_| Error::KeyGeneration)?,
        };
        Ok(pem_encode("PRIVATE KEY", &der))
    }

    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    pub fn jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Alg {
        match self.private {
            Private::Rsa(_) => Alg::Rs256,
            Private::P256(_) => Alg::Es256,
            Private::Ed25519(_) => Alg::EdDsa,
        }
    }

    /// The key size in bits: the RSA modulus, or 256 for P-256 and Ed25519.
    pub fn bits(&self) -> usize {
        match &self.private {
            Private::Rsa(pair) => pair.public_modulus_len() * 8,
            Private::P256(_) | Private::Ed25519(_) => 256,
        }
    }

    /// The JWS signature of `message` with this key's algorithm ([`KeyPair::alg`]): RSA
    /// PKCS#1 v1.5, ECDSA as `r || s` (RFC 7518 §3.4), or Ed25519.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let failed = || Error::InvalidKey {
            name: self.jwk.kid.clone(),
            reason: "signing failed".to_owned(),
        };
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match &self.private {
            Private::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(|_| failed())?;
                Ok(signature)
            }
            Private::P256(pair) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| failed()),
            Private::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
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
    fn ed25519_thumbprint_matches_rfc8037_example() {
        // RFC 8037 Appendix A.3.
        assert_eq!(
            okp_thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn every_algorithm_round_trips_and_signs_verifiably() {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
        };
        for alg in Alg::ALL {
            let key = KeyPair::generate_for(alg, 2048).expect("generate");
            assert_eq!(key.alg(), alg);
            assert_eq!(key.jwk().alg, alg.as_str());
            let pem = key.to_pem().expect("pem");
            let again = KeyPair::from_pem("k.pem", pem.as_bytes()).expect("parse");
            assert_eq!((again.kid(), again.alg()), (key.kid(), alg));

            let (checked, public) = key.jwk().public_key().expect("valid JWK");
            assert_eq!(checked, alg);
            let message = b"header.payload";
            let signature = again.sign(message).expect("sign");
            let verified = match public {
                PublicKey::Rsa { n, e } => aws_lc_rs::signature::RsaPublicKeyComponents { n, e }
                    .verify(&RSA_PKCS1_2048_8192_SHA256, message, &signature)
                    .is_ok(),
                PublicKey::P256 { x, y } => {
                    assert_eq!(signature.len(), 64, "ES256 signatures are r || s");
                    let mut point = vec![4];
                    point.extend(URL_SAFE_NO_PAD.decode(x).expect("x"));
                    point.extend(URL_SAFE_NO_PAD.decode(y).expect("y"));
                    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                        .verify(message, &signature)
                        .is_ok()
                }
                PublicKey::Ed25519 { x } => {
                    UnparsedPublicKey::new(&ED25519, URL_SAFE_NO_PAD.decode(x).expect("x"))
                        .verify(message, &signature)
                        .is_ok()
                }
            };
            assert!(verified, "{alg} signature does not verify");
        }
    }

    #[test]
    fn a_sec1_p256_key_parses() {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("key");
        let der = key.private_key().as_der().expect("sec1");
        let pem = pem_encode("EC PRIVATE KEY", der.as_ref());
        let parsed = KeyPair::from_pem("ec.pem", pem.as_bytes()).expect("parse");
        assert_eq!(parsed.alg(), Alg::Es256);
    }

    #[test]
    fn a_jwk_whose_members_disagree_is_refused() {
        let ec = KeyPair::generate_for(Alg::Es256, 0).expect("key");
        let mut jwk = ec.jwk().clone();
        jwk.alg = "RS256".into();
        assert!(jwk.public_key().is_err(), "alg RS256 on an EC key");
        let mut jwk = ec.jwk().clone();
        jwk.crv = Some("P-384".into());
        assert!(jwk.public_key().is_err(), "another curve");
        let mut jwk = ec.jwk().clone();
        jwk.y = jwk.x.clone();
        assert!(jwk.public_key().is_err(), "kid no longer the thumbprint");
        let ed = KeyPair::generate_for(Alg::EdDsa, 0).expect("key");
        let mut jwk = ed.jwk().clone();
        jwk.alg = "ES256".into();
        assert!(jwk.public_key().is_err(), "alg ES256 on an OKP key");
    }

    #[test]
    fn garbage_is_rejected_with_the_file_name() {
        let err = KeyPair::from_pem("broken.pem", b"hello").expect_err("must fail");
        assert!(err.to_string().contains("broken.pem"), "{err}");
    }
}
