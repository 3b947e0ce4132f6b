//! Scopes (RFC 6749 §3.3): syntax, and what a client may ask for.

use latchkey_store::users::User;

use crate::error::OAuthError;

/// Scopes the service itself gives meaning to. Clients may also hold any other
/// syntactically valid scope for their own resource servers.
pub const OPENID: &str = "openid";
pub use latchkey_store::protocol::ADMIN_SCOPE as ADMIN;

pub use latchkey_store::clients::is_scope_token as is_valid_token;

/// The scope to grant for a request: the requested one if every token is allowed, or
/// the client's whole allowed set when nothing was requested (RFC 6749 §3.3 default).
/// The result is de-duplicated and in the order the client's set lists them.
pub fn resolve(requested: Option<&str>, allowed: &[String]) -> Result<String, OAuthError> {
    let Some(requested) = requested else {
        return Ok(allowed.join(" "));
    };
    let tokens: Vec<&str> = requested.split(' ').filter(|t| !t.is_empty()).collect();
    for token in &tokens {
        if !is_valid_token(token) {
            return Err(OAuthError::invalid_scope(format!(
                "{token:?} is not a valid scope"
            )));
        }
        if !allowed.iter().any(|a| a == token) {
            return Err(OAuthError::invalid_scope(format!(
                "scope {token} is not allowed for this client"
            )));
        }
    }
    Ok(allowed
        .iter()
        .filter(|a| tokens.contains(&a.as_str()))
        .cloned()
        .collect::<Vec<_>>()
        .join(" "))
}

/// Whether the space-separated `scope` contains `token`.
pub fn contains(scope: &str, token: &str) -> bool {
    scope.split(' ').any(|t| t == token)
}

/// Adds the claims `scope` releases about `user` (OpenID Connect Core §5.4).
pub fn add_user_claims(claims: &mut serde_json::Value, user: &User, scope: &str) {
    if contains(scope, "profile") {
        claims["name"] = user.full_name.clone().into();
        claims["preferred_username"] = user.username.clone().into();
    }
    if contains(scope, "email") {
        claims["email"] = user.email.clone().into();
        claims["email_verified"] = user.email_verified.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution() {
        let allowed: Vec<String> = ["read", "write", "openid"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            resolve(None, &allowed).expect("default"),
            "read write openid"
        );
        assert_eq!(
            resolve(Some("write read read"), &allowed).expect("subset"),
            "read write"
        );
        assert_eq!(
            resolve(Some("admin"), &allowed).expect_err("widen").code,
            "invalid_scope"
        );
        assert_eq!(
            resolve(Some("re\"ad"), &allowed).expect_err("syntax").code,
            "invalid_scope"
        );
        assert!(contains("openid profile", "openid"));
        assert!(!contains("openidx", "openid"));
    }
}
