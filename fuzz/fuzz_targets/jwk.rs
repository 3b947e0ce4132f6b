//! Published keys as every replica loads them (`latchkey_store::signing_keys` parses the
//! `public_jwk` column into a [`PublicJwk`], the key ring turns it into a verifier with
//! `Verifier::of`: RSA, EC P-256 or OKP Ed25519). The column is written by
//! the operator, but a corrupt or hostile row must cost one skipped key, not a panic.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use latchkey_domain::keyring::Verifier;
use latchkey_store::keys::{KeyPair, PublicJwk};
use libfuzzer_sys::fuzz_target;

const KEY_PEM: &[u8] = include_bytes!("../fixtures/signing-key.pem");

/// A real RS256 token signed by the fixture key, verified with whatever key the input
/// makes.
fn token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let key = KeyPair::from_pem("fixture", KEY_PEM).expect("fixture key");
        let header = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": key.kid()}).to_string(),
        );
        let claims = URL_SAFE_NO_PAD.encode(r#"{"sub":"fuzz","exp":4102444800}"#);
        let signing_input = format!("{header}.{claims}");
        let signature = key.sign(signing_input.as_bytes()).expect("sign");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(jwk) = serde_json::from_slice::<PublicJwk>(data) else {
        return;
    };
    let _ = Verifier::of(&jwk);
    // `public_key` refuses a kid that is not the key's thumbprint, which the fuzzer can
    // hardly forge; a real row always has it right. So a verifier is also built from the
    // members the JWK names, whatever its kid, as the ring would build it.
    let b64 = |member: &Option<String>| member.as_deref().map(|v| URL_SAFE_NO_PAD.decode(v));
    let key = match (jwk.kty.as_str(), &jwk.x, &jwk.y) {
        ("EC", Some(x), Some(y)) => (DecodingKey::from_ec_components(x, y), Algorithm::ES256),
        ("OKP", Some(x), _) => (DecodingKey::from_ed_components(x), Algorithm::EdDSA),
        _ => match (b64(&jwk.n), b64(&jwk.e)) {
            (Some(Ok(n)), Some(Ok(e))) => (
                Ok(DecodingKey::from_rsa_raw_components(&n, &e)),
                Algorithm::RS256,
            ),
            _ => return,
        },
    };
    let (Ok(key), alg) = key else {
        return;
    };
    let mut validation = Validation::new(alg);
    validation.set_required_spec_claims(&["exp"]);
    validation.validate_aud = false;
    let _ = jsonwebtoken::decode::<serde_json::Value>(token(), &key, &validation);
});
