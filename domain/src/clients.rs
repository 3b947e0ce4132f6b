//! Creating, changing and validating OAuth client records outside Kubernetes: shared by
//! the `latchkey client` commands and the `/oauth/clients` admin API.

use latchkey_store::clients::{ClientRecord, ClientSecret, ManagedBy};
use latchkey_store::jwks;
use latchkey_store::protocol::{
    ACCESS_TOKEN_TTL_SECS, AuthMethod, GrantType, REFRESH_TOKEN_TTL_SECS,
};
use serde::{Deserialize, Serialize};

use crate::scopes;

const EMPTY_GRANTS: &str = "grant_types must not be empty";

/// Fields a caller may set. On create, absent fields take defaults; on update, absent
/// fields keep their value.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClientInput {
    pub client_id: Option<String>,
    pub name: Option<String>,
    pub public: Option<bool>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<GrantType>>))]
    pub grant_types: Option<Vec<String>>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<AuthMethod>))]
    pub token_endpoint_auth_method: Option<String>,
    pub first_party: Option<bool>,
    pub admin: Option<bool>,
    pub resource_server: Option<bool>,
    pub access_token_ttl: Option<i64>,
    pub refresh_token_ttl: Option<i64>,
    pub audience: Option<String>,
    /// The public JWK Set (`{"keys":[...]}`) of a `private_key_jwt` client; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    pub jwks: Option<Option<serde_json::Value>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D>(d: D) -> Result<Option<Option<serde_json::Value>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<serde_json::Value>::deserialize(d).map(Some)
}

/// A client as shown to administrators: everything but secret digests.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub public: bool,
    pub grant_types: Vec<GrantType>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub token_endpoint_auth_method: AuthMethod,
    pub first_party: bool,
    pub admin: bool,
    pub resource_server: bool,
    pub access_token_ttl: Option<i64>,
    pub refresh_token_ttl: Option<i64>,
    pub audience: Option<String>,
    /// The public keys of a `private_key_jwt` client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// `namespace/name` of the ServiceAccount that authenticates an operator-managed client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    pub managed_by: &'static str,
    /// Refused everywhere: the operator disabled it because its namespace policy no
    /// longer allows it.
    pub disabled: bool,
    /// Only in the answer that created or rotated the secret; never stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl ClientView {
    pub fn new(record: &ClientRecord, secret: Option<&ClientSecret>) -> Self {
        Self {
            client_id: record.client_id.clone(),
            name: record.name.clone(),
            public: record.public,
            grant_types: record.grant_types.clone(),
            redirect_uris: record.redirect_uris.clone(),
            post_logout_redirect_uris: record.post_logout_redirect_uris.clone(),
            scopes: record.scopes.clone(),
            token_endpoint_auth_method: record.token_endpoint_auth_method,
            first_party: record.first_party,
            admin: record.admin,
            resource_server: record.resource_server,
            access_token_ttl: record.access_token_ttl,
            refresh_token_ttl: record.refresh_token_ttl,
            audience: record.audience.clone(),
            jwks: record
                .jwks
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok()),
            service_account: record
                .service_account
                .as_ref()
                .map(|sa| format!("{}/{}", sa.namespace, sa.name)),
            managed_by: record.managed_by.as_str(),
            disabled: record.disabled,
            client_secret: secret.map(|s| s.expose().to_owned()),
        }
    }
}

/// A new API-managed client from `input`; confidential clients get a fresh secret,
/// returned once.
pub fn create(
    input: ClientInput,
    now: i64,
) -> Result<(ClientRecord, Option<ClientSecret>), Vec<String>> {
    let public = input.public.unwrap_or(false);
    let with_keys = matches!(input.jwks, Some(Some(_)));
    let client_id = match &input.client_id {
        Some(id) => id.clone(),
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    let mut record = ClientRecord {
        client_id,
        name: String::new(),
        secret_hash: None,
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        public,
        grant_types: if public {
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        } else {
            vec![GrantType::ClientCredentials]
        },
        redirect_uris: Vec::new(),
        post_logout_redirect_uris: Vec::new(),
        scopes: Vec::new(),
        token_endpoint_auth_method: if public {
            AuthMethod::None
        } else if with_keys {
            AuthMethod::PrivateKeyJwt
        } else {
            AuthMethod::ClientSecretBasic
        },
        first_party: false,
        admin: false,
        resource_server: false,
        access_token_ttl: None,
        refresh_token_ttl: None,
        audience: None,
        jwks: None,
        service_account: None,
        managed_by: ManagedBy::Api,
        owner: None,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    apply(
        &mut record,
        ClientInput {
            client_id: None,
            public: None,
            ..input
        },
    )?;
    let secret = if record.public || record.token_endpoint_auth_method == AuthMethod::PrivateKeyJwt
    {
        None
    } else {
        let secret = ClientSecret::generate().map_err(|e| vec![e.to_string()])?;
        record.secret_hash = Some(secret.digest());
        Some(secret)
    };
    Ok((record, secret))
}

/// Applies the fields present in `input` (except `client_id` and `public`, which
/// cannot change) and validates the result: every problem, one message each (an unknown
/// grant type or authentication method included).
pub fn apply(record: &mut ClientRecord, input: ClientInput) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if let Some(v) = input.name {
        record.name = v;
    }
    let mut unknown_grant = false;
    if let Some(names) = input.grant_types {
        record.grant_types = Vec::new();
        for name in names {
            match GrantType::parse(&name) {
                Some(grant) => record.grant_types.push(grant),
                None => {
                    unknown_grant = true;
                    problems.push(format!(
                        "unknown grant type {name:?} (known: {})",
                        known(GrantType::ALL.map(GrantType::as_str))
                    ));
                }
            }
        }
    }
    if let Some(v) = input.redirect_uris {
        record.redirect_uris = v;
    }
    if let Some(v) = input.post_logout_redirect_uris {
        record.post_logout_redirect_uris = v;
    }
    if let Some(v) = input.scopes {
        record.scopes = v;
    }
    if let Some(name) = input.token_endpoint_auth_method {
        match AuthMethod::parse(&name) {
            Some(method) => record.token_endpoint_auth_method = method,
            None => problems.push(format!(
                "unknown token_endpoint_auth_method {name:?} (known: {})",
                known(AuthMethod::ALL.map(AuthMethod::as_str))
            )),
        }
    }
    if let Some(v) = input.first_party {
        record.first_party = v;
    }
    if let Some(v) = input.admin {
        record.admin = v;
    }
    if let Some(v) = input.resource_server {
        record.resource_server = v;
    }
    if input.access_token_ttl.is_some() {
        record.access_token_ttl = input.access_token_ttl;
    }
    if input.refresh_token_ttl.is_some() {
        record.refresh_token_ttl = input.refresh_token_ttl;
    }
    if input.audience.is_some() {
        record.audience = input.audience;
    }
    match input.jwks {
        None => {}
        Some(None) => record.jwks = None,
        Some(Some(set)) => match jwks::check(&set, jwks::MAX_CLIENT_KEYS) {
            // Stored as given (checked), so what the admin sees is what they sent.
            Ok(_) => record.jwks = Some(set.to_string()),
            Err(e) => problems.push(format!("jwks: {e}")),
        },
    }
    // A private_key_jwt client has no secret: one left over would still authenticate.
    if record.token_endpoint_auth_method == AuthMethod::PrivateKeyJwt {
        record.secret_hash = None;
        record.previous_secret_hash = None;
        record.previous_secret_expires_at = None;
    }
    if let Err(more) = validate(record) {
        // Only unknown names given: that, not an empty list, is the problem.
        problems.extend(
            more.into_iter()
                .filter(|p| !(unknown_grant && p == EMPTY_GRANTS)),
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn known<const N: usize>(names: [&str; N]) -> String {
    names.join(", ")
}

/// Whether `uri` is an acceptable redirect URI: absolute `https://`, or `http://` on a
/// loopback host (RFC 8252 §7.3), without a fragment or user information. Judged on the
/// parsed URI (RFC 8252 §8.3), so `http://localhost:1@evil.example/cb`, whose host is
/// `evil.example`, is refused.
pub fn valid_redirect_uri(uri: &str) -> bool {
    if uri.contains('#') || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let https = match uri.strip_prefix("https://") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => return false,
        Some(_) => true,
        None if uri.starts_with("http://") => false,
        None => return false,
    };
    let Ok(parsed) = url::Url::parse(uri) else {
        return false;
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return false;
    }
    match parsed.host_str() {
        None | Some("") => false,
        Some(_) if https => true,
        Some(host) => matches!(host, "127.0.0.1" | "localhost" | "[::1]"),
    }
}

/// Every problem with `record`, one message each.
pub fn validate(record: &ClientRecord) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let id = &record.client_id;
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~'))
    {
        problems.push(
            "client_id must be 1 to 128 characters of letters, digits, '.', '_', '-' or '~'".into(),
        );
    }
    // A user's id is a hyphenated UUID; a client id of that form could be a user's `sub`
    // in a client-credentials token.
    if id.len() == 36 && uuid::Uuid::try_parse(id).is_ok() {
        problems.push(format!(
            "client_id {id:?} has the form of a user id (a hyphenated UUID), which is reserved"
        ));
    }
    if id.eq_ignore_ascii_case(crate::tokens::FIRST_PARTY_CLIENT_ID) {
        problems.push(format!(
            "client_id {id:?} is reserved for Latchkey's own sign-in (/auth/login)"
        ));
    }
    if record.name.chars().count() > 200 {
        problems.push("name must be at most 200 characters".into());
    }
    if record.grant_types.is_empty() {
        problems.push(EMPTY_GRANTS.into());
    }
    if record.admin
        && (record.public
            || !record.allows_grant(GrantType::ClientCredentials)
            || !record.scopes.iter().any(|s| s == scopes::ADMIN))
    {
        problems.push(format!(
            "an admin client is confidential, uses client_credentials and holds the {} scope: \
             admin rights go to the client's own tokens, never to a user's",
            scopes::ADMIN
        ));
    }
    if !record.admin && record.scopes.iter().any(|s| s == scopes::ADMIN) {
        problems.push(format!(
            "the {} scope is only for admin clients (admin: true)",
            scopes::ADMIN
        ));
    }
    if record.public && record.allows_grant(GrantType::ClientCredentials) {
        problems.push("public clients cannot use client_credentials".into());
    }
    if record.allows_grant(GrantType::AuthorizationCode) && record.redirect_uris.is_empty() {
        problems.push("authorization_code needs at least one redirect URI".into());
    }
    for uri in &record.redirect_uris {
        if !valid_redirect_uri(uri) {
            problems.push(format!(
                "redirect URI {uri:?} must be https:// or loopback http://, without a fragment"
            ));
        }
    }
    for uri in &record.post_logout_redirect_uris {
        if !valid_redirect_uri(uri) {
            problems.push(format!(
                "post-logout redirect URI {uri:?} must be https:// or loopback http://, without a fragment"
            ));
        }
    }
    if record.post_logout_redirect_uris.len() > 32 {
        problems.push("at most 32 post-logout redirect URIs".into());
    }
    for scope in &record.scopes {
        if !scopes::is_valid_token(scope) {
            problems.push(format!("{scope:?} is not a valid scope"));
        }
    }
    if record.public != (record.token_endpoint_auth_method == AuthMethod::None) {
        problems.push("public clients use token_endpoint_auth_method none, confidential clients a secret method or private_key_jwt".into());
    }
    let has_keys = record.jwks.is_some() || record.service_account.is_some();
    if (record.token_endpoint_auth_method == AuthMethod::PrivateKeyJwt) != has_keys {
        problems.push(
            "token_endpoint_auth_method private_key_jwt and jwks go together: give both or neither"
                .into(),
        );
    }
    if let Some(text) = &record.jwks
        && let Err(e) = jwks::check_text(text, jwks::MAX_CLIENT_KEYS)
    {
        problems.push(format!("jwks: {e}"));
    }
    for (name, ttl, range, most) in [
        (
            "access_token_ttl",
            record.access_token_ttl,
            ACCESS_TOKEN_TTL_SECS,
            "24 hours",
        ),
        (
            "refresh_token_ttl",
            record.refresh_token_ttl,
            REFRESH_TOKEN_TTL_SECS,
            "365 days",
        ),
    ] {
        if ttl.is_some_and(|t| !u64::try_from(t).is_ok_and(|t| range.contains(&t))) {
            problems.push(format!("{name} must be between 60 seconds and {most}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris() {
        assert!(valid_redirect_uri("https://app.example.com/cb"));
        assert!(valid_redirect_uri("http://127.0.0.1:8765/cb"));
        assert!(valid_redirect_uri("http://localhost/cb"));
        assert!(valid_redirect_uri("http://[::1]:9000/cb"));
        assert!(!valid_redirect_uri("http://app.example.com/cb"));
        assert!(!valid_redirect_uri("http://127.0.0.1.evil.com/cb"));
        assert!(!valid_redirect_uri("https://app.example.com/cb#frag"));
        assert!(!valid_redirect_uri("javascript:alert(1)"));
        // The host is what the parser says, not what precedes the first ':'.
        assert!(!valid_redirect_uri("http://localhost:1@evil.example/cb"));
        assert!(!valid_redirect_uri("http://127.0.0.1@evil.example/cb"));
        assert!(!valid_redirect_uri("https://user:pw@app.example.com/cb"));
        assert!(!valid_redirect_uri("http://[::1].evil.example/cb"));
        assert!(!valid_redirect_uri("https:///cb"));
        assert!(valid_redirect_uri("http://localhost:8765/cb?x=1"));
    }

    #[test]
    fn defaults_and_rules() {
        let (record, secret) = create(ClientInput::default(), 0).expect("defaults are valid");
        assert!(!record.public && secret.is_some());
        assert_eq!(record.grant_types, ["client_credentials"]);

        let bad = ClientInput {
            public: Some(true),
            grant_types: Some(vec!["client_credentials".into(), "implicit".into()]),
            ..ClientInput::default()
        };
        let problems = create(bad, 0).expect_err("invalid");
        assert_eq!(problems.len(), 2, "{problems:?}");

        // Tokens of /auth/login carry this client_id; no registered client may.
        let reserved = ClientInput {
            client_id: Some("latchkey".into()),
            ..ClientInput::default()
        };
        let problems = create(reserved, 0).expect_err("reserved");
        assert!(problems[0].contains("reserved"), "{problems:?}");

        // A client id of a user id's form could be a user's `sub`.
        let user_like = ClientInput {
            client_id: Some("0193a2f1-7c1d-7e3a-9b2c-5d4e3f2a1b0c".into()),
            ..ClientInput::default()
        };
        let problems = create(user_like, 0).expect_err("user-id form");
        assert!(problems[0].contains("user id"), "{problems:?}");
        assert!(
            create(ClientInput::default(), 0).is_ok(),
            "generated ids stay valid"
        );

        // The service's own caps, for every way of registering a client.
        let long = ClientInput {
            access_token_ttl: Some(90 * 86_400),
            ..ClientInput::default()
        };
        let problems = create(long, 0).expect_err("90-day access tokens");
        assert!(problems[0].contains("24 hours"), "{problems:?}");
        let fine = ClientInput {
            access_token_ttl: Some(86_400),
            refresh_token_ttl: Some(365 * 86_400),
            ..ClientInput::default()
        };
        assert!(create(fine, 0).is_ok());
    }
}
