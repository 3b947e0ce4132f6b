//! `application/x-www-form-urlencoded` bodies, parsed strictly: RFC 6749 §3.1 and §3.2
//! forbid repeating a parameter (an empty copy counts: `scope=&scope=x` is refused), an
//! empty value counts as absent, and a NUL character is refused (no storage takes it, and
//! both backends must answer alike).

use std::collections::{HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;

use super::OAuthError;
use crate::state::AppState;

/// The parameters of a form body (or of a query string).
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(raw: &[u8]) -> Result<Self, OAuthError> {
        let mut map = HashMap::new();
        let mut seen = HashSet::new();
        for (key, value) in form_urlencoded::parse(raw) {
            if key.contains('\0') || value.contains('\0') {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {} contains a NUL character",
                    key.replace('\0', "\\0")
                )));
            }
            if !seen.insert(key.clone()) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {key} is repeated"
                )));
            }
            if !value.is_empty() {
                map.insert(key.into_owned(), value.into_owned());
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn require(&self, key: &str) -> Result<&str, OAuthError> {
        self.get(key)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {key}")))
    }
}

impl FromRequest<AppState> for Params {
    type Rejection = OAuthError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';').next().is_some_and(|t| {
                    t.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
        if !is_form {
            return Err(OAuthError::invalid_request(
                "expected Content-Type: application/x-www-form-urlencoded",
            ));
        }
        let body = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                OAuthError::too_large()
            } else {
                OAuthError::invalid_request("the request body could not be read")
            }
        })?;
        Self::parse(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(Params::parse(b"a=1&b=2").is_ok());
        let err = Params::parse(b"a=1&a=2").expect_err("repeated");
        assert_eq!(err.code, "invalid_request");
        let params = Params::parse(b"a=&b=x%20y").expect("parse");
        assert_eq!(params.get("a"), None);
        assert_eq!(params.get("b"), Some("x y"));
        // An empty first copy is still a copy (RFC 6749 §3.1).
        let err = Params::parse(b"scope=&scope=read").expect_err("repeated after empty");
        assert_eq!(err.code, "invalid_request");
        assert!(Params::parse(b"scope=read&scope=").is_err());
    }

    #[test]
    fn nul_characters_are_refused() {
        for raw in [&b"username=a%00b"[..], b"a%00=1", b"password=%00"] {
            let err = Params::parse(raw).expect_err("NUL");
            assert_eq!(err.code, "invalid_request");
            assert!(err.description.contains("NUL"), "{}", err.description);
        }
    }
}
