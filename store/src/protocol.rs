//! The OAuth 2.0 protocol values every part of Latchkey names: grant types (RFC 6749)
//! and token endpoint authentication methods (RFC 7591 §2). One spelling each, used by
//! the client records, the service, the operator and the CRDs (which convert their own
//! schema types into these).

use serde::{Deserialize, Serialize};

/// The scope of the admin API. Only clients marked `admin` may hold it.
pub const ADMIN_SCOPE: &str = "latchkey:admin";

/// The lifetimes a client may set for its access tokens, in seconds: the same bounds as
/// the service's own `OAUTH2_ACCESS_TOKEN_EXPIRES` (60 s to 24 h), for every way of
/// registering a client (CLI, admin API, `OAuthClient`).
pub const ACCESS_TOKEN_TTL_SECS: std::ops::RangeInclusive<u64> = 60..=86_400;
/// The lifetimes a client may set for its refresh tokens, in seconds: 60 s to 365 days.
pub const REFRESH_TOKEN_TTL_SECS: std::ops::RangeInclusive<u64> = 60..=365 * 86_400;

/// An OAuth 2.0 grant type a client may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
    RefreshToken,
    /// The resource owner password credentials grant (RFC 6749 §4.3), for first-party
    /// clients only; RFC 9700 advises against it and the `OAuthClient` CRD cannot ask
    /// for it.
    Password,
}

impl GrantType {
    /// Every grant the service supports, in the order discovery lists them.
    pub const ALL: [GrantType; 4] = [
        Self::AuthorizationCode,
        Self::ClientCredentials,
        Self::RefreshToken,
        Self::Password,
    ];

    /// The wire name, as in a token request's `grant_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::ClientCredentials => "client_credentials",
            Self::RefreshToken => "refresh_token",
            Self::Password => "password",
        }
    }

    /// The grant named `s` on the wire; `None` for any other name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

impl std::fmt::Display for GrantType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the wire name (`grant == "client_credentials"`).
impl PartialEq<&str> for GrantType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// How a client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic with client_id and client_secret.
    ClientSecretBasic,
    /// client_id and client_secret in the form body.
    ClientSecretPost,
    /// No client authentication: a public client.
    None,
    /// A signed JWT (RFC 7523 §2.2): with the client's own keys (`jwks`) or a
    /// Kubernetes ServiceAccount token (`service_account`).
    PrivateKeyJwt,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 4] = [
        Self::ClientSecretBasic,
        Self::ClientSecretPost,
        Self::None,
        Self::PrivateKeyJwt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// The method named `s` on the wire; `None` for any other name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl std::fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the wire name (`method == "none"`).
impl PartialEq<&str> for AuthMethod {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for grant in GrantType::ALL {
            assert_eq!(GrantType::parse(grant.as_str()), Some(grant));
            assert_eq!(
                serde_json::to_value(grant).expect("json"),
                serde_json::json!(grant.as_str())
            );
        }
        for method in AuthMethod::ALL {
            assert_eq!(AuthMethod::parse(method.as_str()), Some(method));
            assert_eq!(
                serde_json::to_value(method).expect("json"),
                serde_json::json!(method.as_str())
            );
        }
        assert_eq!(GrantType::parse("implicit"), None);
        assert_eq!(AuthMethod::parse("client_secret_jwt"), None);
    }
}
