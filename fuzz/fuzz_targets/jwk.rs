//! Published keys as every replica loads them (`latchkey_store::signing_keys` parses the
//! `public_jwk` column into a [`PublicJwk`], the key ring turns it into a verifier with
//! `rsa_components` and `DecodingKey::from_rsa_raw_components`). The column is written by
//! the operator, but a corrupt or hostile row must cost one skipped key, not a panic.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
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
        let signature = key.sign_rs256(signing_input.as_bytes()).expect("sign");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(jwk) = serde_json::from_slice::<PublicJwk>(data) else {
        return;
    };
    let _ = jwk.rsa_components();
    // `rsa_components` refuses a kid that is not the key's thumbprint, which the fuzzer
    // can hardly forge; a real row always has it right. So the verifier is also built
    // from the components the JWK names, whatever its kid, as the ring would build it.
    let (Ok(n), Ok(e)) = (
        URL_SAFE_NO_PAD.decode(&jwk.n),
        URL_SAFE_NO_PAD.decode(&jwk.e),
    ) else {
        return;
    };
    let key = DecodingKey::from_rsa_raw_components(&n, &e);
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_required_spec_claims(&["exp"]);
    validation.validate_aud = false;
    let _ = jsonwebtoken::decode::<serde_json::Value>(token(), &key, &validation);
});
