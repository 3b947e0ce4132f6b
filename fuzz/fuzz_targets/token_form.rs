//! What the token endpoint parses before it knows who is calling: the form body
//! (`latchkey::oauth::form::Params`, also the authorization endpoint's query string) and
//! `Authorization: Basic` client credentials (`client_auth::basic_credentials`, whose
//! values are form-urlencoded inside the base64).
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use latchkey::oauth::client_auth::basic_credentials;
use latchkey::oauth::form::Params;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(params) = Params::parse(data) {
        for key in ["grant_type", "code", "redirect_uri", "scope", "client_id"] {
            // An empty value counts as absent, so what is there is never empty.
            if let Some(value) = params.get(key) {
                assert!(!value.is_empty() && !value.contains('\0'));
            }
            let _ = params.require(key);
        }
    }

    // The raw bytes as the header value (any scheme, any shape)...
    if let Ok(value) = HeaderValue::from_bytes(data) {
        credentials(value);
    }
    // ... and as the decoded credentials of a well-formed Basic header.
    let basic = format!("Basic {}", STANDARD.encode(data));
    credentials(HeaderValue::from_str(&basic).expect("base64 is a valid header value"));
});

fn credentials(value: HeaderValue) {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value);
    if let Ok(Some((id, secret))) = basic_credentials(&headers) {
        assert!(!id.is_empty());
        assert!(!id.contains('\0') && !secret.contains('\0'));
    }
}
