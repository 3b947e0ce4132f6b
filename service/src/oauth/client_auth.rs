//! Client authentication at the token, introspection and revocation endpoints
//! (RFC 6749 §2.3): `client_secret_basic`, `client_secret_post`, `private_key_jwt`
//! (RFC 7523 §2.2: a JWT signed with the client's own key, or a Kubernetes
//! ServiceAccount token; verified in `latchkey_domain::assertions`), or `none` for public
//! clients, exactly as the client is registered. A disabled client never authenticates.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use latchkey_domain::assertions::{self, JWT_BEARER};
use latchkey_store::clients::{self, ClientRecord};
use latchkey_store::now_ms;
use latchkey_store::protocol::AuthMethod;

use super::OAuthError;
use super::form::Params;
use crate::state::AppState;

/// Identifies and authenticates the calling client.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<ClientRecord, OAuthError> {
    let basic = basic_credentials(headers)?;
    let post_secret = params.get("client_secret");
    match (
        params.get("client_assertion_type"),
        params.get("client_assertion"),
    ) {
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "client_assertion and client_assertion_type go together",
            ));
        }
        (Some(kind), Some(_)) if kind != JWT_BEARER => {
            return Err(OAuthError::invalid_client(format!(
                "unsupported client_assertion_type; use {JWT_BEARER}"
            )));
        }
        (Some(_), Some(assertion)) => {
            if basic.is_some() || post_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not a client_assertion and a secret",
                ));
            }
            return authenticate_assertion(state, params.get("client_id"), assertion).await;
        }
    }
    if basic.is_some() && post_secret.is_some() {
        return Err(OAuthError::invalid_request(
            "use one client authentication method, not both the Authorization header and client_secret",
        ));
    }
    let body_id = params.get("client_id");
    let (client_id, secret, method) = match (&basic, body_id) {
        (Some((id, _)), Some(body)) if body != id => {
            return Err(OAuthError::invalid_client(
                "client_id does not match the Authorization header",
            ));
        }
        (Some((id, secret)), _) => (id.as_str(), Some(secret.as_str()), "client_secret_basic"),
        (None, Some(id)) => match post_secret {
            Some(secret) => (id, Some(secret), "client_secret_post"),
            None => (id, None, "none"),
        },
        (None, None) => {
            return Err(OAuthError::invalid_client(
                "client authentication is required",
            ));
        }
    };

    let unknown = || OAuthError::invalid_client("unknown client or wrong credentials");
    // A disabled client (its namespace policy no longer allows it) is refused exactly
    // like an unknown one, at every endpoint that authenticates clients.
    let client = clients::get(&state.db, client_id)
        .await?
        .filter(|c| !c.disabled)
        .ok_or_else(unknown)?;
    // The same answer as for an unknown client: naming the registered method would tell
    // anyone which client ids exist.
    if client.token_endpoint_auth_method != method {
        return Err(unknown());
    }
    match secret {
        None if client.public => Ok(client),
        Some(secret) if !client.public && client.verify_secret(secret, now_ms()) => Ok(client),
        _ => Err(unknown()),
    }
}

/// `private_key_jwt`: the client named by `client_id`, or else by the assertion's `sub`
/// (RFC 7523 §3), registered with that method, whose assertion verifies.
async fn authenticate_assertion(
    state: &AppState,
    client_id: Option<&str>,
    assertion: &str,
) -> Result<ClientRecord, OAuthError> {
    let unknown = || OAuthError::invalid_client("unknown client or wrong credentials");
    let client_id = match client_id {
        Some(id) => id.to_owned(),
        None => assertions::unverified_subject(assertion).ok_or_else(|| {
            OAuthError::invalid_client(
                "client_id is required with a ServiceAccount token; a client's own assertion names it in sub",
            )
        })?,
    };
    let client = clients::get(&state.db, &client_id)
        .await?
        .ok_or_else(unknown)?;
    if client.token_endpoint_auth_method != AuthMethod::PrivateKeyJwt {
        return Err(unknown());
    }
    assertions::verify(&state.core, &client, assertion, now_ms()).await?;
    Ok(client)
}

/// `Authorization: Basic` credentials, form-urlencoded per RFC 6749 §2.3.1. Another
/// scheme is ignored (there is nothing to authenticate with); a malformed Basic value is
/// an error. Public for the fuzz targets (`fuzz/`), which feed it untrusted headers.
pub fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client("malformed Basic credentials");
    let value = value.to_str().map_err(|_| bad())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(bad());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let id = form_decode(id).ok_or_else(bad)?;
    let secret = form_decode(secret).ok_or_else(bad)?;
    if id.is_empty() || id.contains('\0') || secret.contains('\0') {
        return Err(bad());
    }
    Ok(Some((id, secret)))
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte).
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits exactly: `from_str_radix` alone would take `%+A`.
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().expect("header"));
        h
    }

    #[test]
    fn basic_is_form_decoded() {
        let encoded = STANDARD.encode("my%20client:s%3Acret+x");
        let creds = basic_credentials(&headers(&format!("Basic {encoded}"))).expect("ok");
        assert_eq!(creds, Some(("my client".to_owned(), "s:cret x".to_owned())));
        assert_eq!(
            basic_credentials(&headers("Bearer abc")).expect("ignored"),
            None
        );
        assert!(basic_credentials(&headers("Basic !!!")).is_err());
        assert!(
            basic_credentials(&headers(&format!("Basic {}", STANDARD.encode("nocolon")))).is_err()
        );
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%+A"), None);
        assert_eq!(form_decode("%-1"), None);
        assert_eq!(form_decode("%4"), None);
        assert_eq!(form_decode("%4a%4A"), Some("JJ".to_owned()));
        let nul = STANDARD.encode("a%00b:secret");
        assert!(basic_credentials(&headers(&format!("Basic {nul}"))).is_err());
    }
}
