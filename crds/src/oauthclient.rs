//! `OAuthClient` (`latchkey.dev/v1alpha1`): one OAuth 2.0 client of Latchkey.
//!
//! The operator turns each resource into a row of the `oauth_clients` table (the secret
//! only as a digest) and a Secret holding the client's credentials. The schema carries
//! what the API server can check on its own (shapes, lengths, CEL rules between fields);
//! what needs the service's configuration (known scopes, lifetime bounds) is checked by
//! the operator, which reports it in the `Ready` condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The specification of an OAuth 2.0 client.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "latchkey.dev",
    version = "v1alpha1",
    kind = "OAuthClient",
    plural = "oauthclients",
    singular = "oauthclient",
    shortname = "oac",
    category = "latchkey",
    namespaced,
    status = "OAuthClientStatus",
    derive = "PartialEq",
    doc = "An OAuth 2.0 client of Latchkey. The operator stores it in Latchkey's database and writes its credentials (client_id, client_secret, issuer, token_url) into a Secret in the same namespace.",
    // Raw JSON rather than printcolumn(...): clippy's duplicated_attributes lint
    // misreads repeated `type_ = "string"` arguments as duplicates.
    printcolumn = r#"{"name":"Client ID","type":"string","jsonPath":".status.clientId"}"#,
    printcolumn = r#"{"name":"Grants","type":"string","jsonPath":".spec.grantTypes"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".status.secretName","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("!(self.public && self.grantTypes.exists(g, g == 'client_credentials'))")
        .message("public clients cannot use the client_credentials grant: they have no secret to authenticate with"),
    validation = Rule::new("!self.grantTypes.exists(g, g == 'authorization_code') || (has(self.redirectUris) && size(self.redirectUris) > 0)")
        .message("the authorization_code grant needs at least one redirect URI"),
    validation = Rule::new("!self.grantTypes.exists(g, g == 'refresh_token') || self.grantTypes.exists(g, g == 'authorization_code')")
        .message("the refresh_token grant needs authorization_code: client_credentials tokens come without refresh tokens (RFC 6749 section 4.4.3)"),
    validation = Rule::new("!has(self.tokenEndpointAuthMethod) || ((self.tokenEndpointAuthMethod == 'none') == self.public)")
        .message("public clients use tokenEndpointAuthMethod none; confidential clients client_secret_basic, client_secret_post or private_key_jwt"),
    validation = Rule::new("(has(self.secretName) ? self.secretName : '') == (has(oldSelf.secretName) ? oldSelf.secretName : '')")
        .message("secretName is immutable: create a new OAuthClient to use another Secret"),
    validation = Rule::new("!has(self.scopes) || !self.scopes.exists(s, s == 'latchkey:admin')")
        .message("the latchkey:admin scope is reserved to admin clients, made with the latchkey CLI or the admin API"),
    validation = Rule::new("!(has(self.serviceAccount) && has(self.jwks))")
        .message("serviceAccount and jwks are two ways of private_key_jwt: choose one"),
    validation = Rule::new("!(has(self.serviceAccount) || has(self.jwks)) || !self.public")
        .message("a public client has no credentials: serviceAccount and jwks are for confidential clients"),
    validation = Rule::new("!has(self.tokenEndpointAuthMethod) || ((self.tokenEndpointAuthMethod == 'private_key_jwt') == (has(self.serviceAccount) || has(self.jwks)))")
        .message("tokenEndpointAuthMethod private_key_jwt goes with serviceAccount or jwks, and they with it"),
    validation = Rule::new("!(has(self.secretName) && has(self.secretRef))")
        .message("secretName and secretRef are mutually exclusive: the operator either writes the secret into a Secret it owns (secretName) or reads it from yours (secretRef)"),
    validation = Rule::new("!(self.public && has(self.secretRef))")
        .message("public clients have no secret: secretRef needs a confidential client"),
    validation = Rule::new("has(self.secretRef) == has(oldSelf.secretRef)")
        .message("secretRef cannot be added or removed: create a new OAuthClient to switch between a generated and a referenced secret"),
)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientSpec {
    /// Human-readable name of the client, shown on the consent page and in logs.
    /// Defaults to the resource's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub display_name: Option<String>,

    /// The OAuth 2.0 grants this client may use: authorization_code (users sign in
    /// through a browser; needs redirectUris), client_credentials (service-to-service;
    /// confidential clients only) and refresh_token (with authorization_code).
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub grant_types: Vec<GrantType>,

    /// Where the authorization server may send the user back after authorization_code
    /// sign-in. Compared exactly. Each must be an https:// URI, or an http:// URI on a
    /// loopback address (127.0.0.1, [::1] or localhost; RFC 8252 section 7.3), and must not
    /// contain a fragment or user information (user@host).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 2048)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(u, u.matches('^https://[^/?#@]+([/?][^#]*)?$') || u.matches('^http://(127\\\\.0\\\\.0\\\\.1|\\\\[::1\\\\]|localhost)(:[0-9]{1,5})?([/?][^#]*)?$'))")
            .message("redirect URIs must be https:// URIs or http:// URIs on a loopback address (127.0.0.1, [::1], localhost), without a fragment or user information"),
    )]
    pub redirect_uris: Vec<String>,

    /// Where RP-Initiated Logout (/oauth/logout) may send the user back after signing
    /// out, as post_logout_redirect_uri. Compared exactly; the same rules as redirectUris.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 2048)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(u, u.matches('^https://[^/?#@]+([/?][^#]*)?$') || u.matches('^http://(127\\\\.0\\\\.0\\\\.1|\\\\[::1\\\\]|localhost)(:[0-9]{1,5})?([/?][^#]*)?$'))")
            .message("post-logout redirect URIs must be https:// URIs or http:// URIs on a loopback address (127.0.0.1, [::1], localhost), without a fragment or user information"),
    )]
    pub post_logout_redirect_uris: Vec<String>,

    /// Scopes this client may request. Each is an RFC 6749 scope token (printable ASCII
    /// without spaces, double quotes or backslashes). The operator also checks them
    /// against the scopes the deployment allows (its --allowed-scopes) and reports
    /// unknown ones in the Ready condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 128)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(s, s.matches('^[!#-\\\\[\\\\]-~]+$'))")
            .message("scopes are RFC 6749 scope tokens: printable ASCII without spaces, double quotes or backslashes"),
    )]
    pub scopes: Vec<String>,

    /// A public client (a browser or native app) cannot keep a secret: it gets no
    /// client_secret, authenticates with PKCE only and cannot use client_credentials.
    #[serde(default)]
    pub public: bool,

    /// How the client authenticates at the token endpoint. Defaults to
    /// client_secret_basic for confidential clients and none for public ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,

    /// A first-party client belongs to the operator of this Latchkey deployment: its
    /// users are not asked for consent.
    #[serde(default)]
    pub first_party: bool,

    /// A resource server may introspect every access token at /oauth/introspect. Any
    /// other client introspects only tokens issued to it or naming its client id in
    /// their audience (RFC 7662 §4).
    #[serde(default)]
    pub resource_server: bool,

    /// Lifetime of access tokens issued to this client: seconds ("900") or a number with
    /// a unit s, m, h or d ("15m"). Between 60s and 24h. Defaults to the service's
    /// setting (OAUTH2_ACCESS_TOKEN_EXPIRES).
    #[serde(
        default,
        rename = "accessTokenTTL",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(pattern(r"^[0-9]{1,9}[smhd]?$"))]
    pub access_token_ttl: Option<String>,

    /// Lifetime of refresh tokens issued to this client, in the same format as
    /// accessTokenTTL. Between 60s and 365d. Defaults to the service's setting
    /// (OAUTH2_REFRESH_TOKEN_EXPIRES).
    #[serde(
        default,
        rename = "refreshTokenTTL",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(pattern(r"^[0-9]{1,9}[smhd]?$"))]
    pub refresh_token_ttl: Option<String>,

    /// The aud claim of this client's access tokens: the resource server that accepts
    /// them. Defaults to the service's setting (LATCHKEY_AUDIENCE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub audience: Option<String>,

    /// Name of the Secret the operator writes the credentials into, in the namespace of
    /// this resource. Defaults to "<name>-oauth". Immutable. The operator refuses to
    /// take over a Secret it does not own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: Option<String>,

    /// Use an existing Secret's value as the client secret (bring your own: written by
    /// External Secrets, Sealed Secrets or another cluster's operator) instead of one the
    /// operator generates. The operator only reads it: it never writes, owns or deletes
    /// that Secret, and writes no Secret of its own for this client. Until the Secret and
    /// its key exist the client is not Ready (SecretPending) and nothing is stored; a
    /// changed value is a rotation (the previous one keeps working for
    /// secretRotation.overlap). The value must be at least 43 characters (256 random bits,
    /// e.g. `openssl rand -base64 32`): it is stored as a plain SHA-256 digest.
    /// Excludes secretName; cannot be added or removed later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,

    /// Rotation of the client secret. Ignored for public clients. With secretRef, a
    /// rotation is a change of the Secret's value, and only overlap applies.
    #[serde(default)]
    pub secret_rotation: SecretRotation,

    /// Workload identity: pods running as this ServiceAccount (of this resource's
    /// namespace) authenticate as the client with their projected ServiceAccount token
    /// (RFC 7523 client assertion, private_key_jwt) instead of a client secret. No Secret
    /// is written for such a client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountRef>,

    /// private_key_jwt with the client's own keys: the public JWK Set its client
    /// assertions are signed with (RSA 2048+ bits, EC P-256/P-384 or Ed25519; no private
    /// members; a kid on each key when there are several; at most 8 keys). No Secret is
    /// written for such a client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Jwks>,
}

/// The ServiceAccount whose tokens authenticate a client.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRef {
    /// Name of the ServiceAccount, in the namespace of the OAuthClient (always: a
    /// client cannot name another namespace's identity).
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,

    /// The audience the projected token must be issued for (its aud claim; the
    /// `audience` of the projected volume). Defaults to Latchkey's issuer URL. Do not
    /// use the API server's own audience: a token for Latchkey should not also open the
    /// Kubernetes API, and the other way round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub audience: Option<String>,
}

/// A JWK Set (RFC 7517 §5) of public keys.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Jwks {
    /// The keys, each a JWK object (kty, kid, alg, n/e or crv/x/y, ...).
    #[schemars(length(min = 1, max = 8), schema_with = "jwk_list_schema")]
    pub keys: Vec<serde_json::Map<String, serde_json::Value>>,
}

fn jwk_list_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": 8,
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true
        }
    })
}

// A Secret of the client's namespace holding its secret. No doc comment: on an optional
// field the type's description would replace the field's in the schema.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret, in the namespace of this resource.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,

    /// The key in the Secret's data that holds the client secret. Defaults to
    /// client_secret.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// The key of the client secret in a referenced Secret, unless `secretRef.key` says
/// otherwise (the same key the operator's own Secrets use).
pub const DEFAULT_SECRET_KEY: &str = "client_secret";

fn default_secret_key() -> String {
    DEFAULT_SECRET_KEY.to_owned()
}

/// An OAuth 2.0 grant type (RFC 6749).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
    RefreshToken,
}

impl GrantType {
    /// The wire name, as in a token request's `grant_type`.
    pub fn as_str(self) -> &'static str {
        latchkey_store::protocol::GrantType::from(self).as_str()
    }
}

/// The CRD's grants are a subset of the protocol's (no `password`).
impl From<GrantType> for latchkey_store::protocol::GrantType {
    fn from(grant: GrantType) -> Self {
        match grant {
            GrantType::AuthorizationCode => Self::AuthorizationCode,
            GrantType::ClientCredentials => Self::ClientCredentials,
            GrantType::RefreshToken => Self::RefreshToken,
        }
    }
}

// A token endpoint authentication method (RFC 7591 section 2). No doc comment: on an
// optional field the type's description would replace the field's in the schema.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// HTTP Basic authentication with client_id and client_secret.
    ClientSecretBasic,
    /// client_id and client_secret in the form body.
    ClientSecretPost,
    /// No client authentication (public clients).
    None,
    /// A signed JWT client assertion (RFC 7523): set serviceAccount or jwks.
    PrivateKeyJwt,
}

impl TokenEndpointAuthMethod {
    pub fn as_str(self) -> &'static str {
        latchkey_store::protocol::AuthMethod::from(self).as_str()
    }
}

impl From<TokenEndpointAuthMethod> for latchkey_store::protocol::AuthMethod {
    fn from(method: TokenEndpointAuthMethod) -> Self {
        match method {
            TokenEndpointAuthMethod::ClientSecretBasic => Self::ClientSecretBasic,
            TokenEndpointAuthMethod::ClientSecretPost => Self::ClientSecretPost,
            TokenEndpointAuthMethod::None => Self::None,
            TokenEndpointAuthMethod::PrivateKeyJwt => Self::PrivateKeyJwt,
        }
    }
}

/// Rotation of the client secret.
///
/// Raising `generation` makes the operator generate a new secret and write it to the
/// Secret. The previous secret keeps working for `overlap`, so every consumer can pick up
/// the new one (a mounted Secret is refreshed by the kubelet within a minute or two)
/// without a failed request.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRotation {
    /// Rotation counter: set it higher than before to rotate the secret once, e.g.
    /// `kubectl patch oac NAME --type merge -p '{"spec":{"secretRotation":{"generation":2}}}'`.
    /// It can only increase.
    #[serde(default)]
    #[schemars(range(min = 0))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("secretRotation.generation can only increase"))]
    pub generation: i64,

    /// How long the previous secret keeps working after a rotation: seconds or a number
    /// with a unit s, m, h or d. Between 0 (the old secret stops at once) and 30d.
    #[serde(default = "default_overlap")]
    #[schemars(pattern(r"^[0-9]{1,9}[smhd]?$"))]
    pub overlap: String,
}

fn default_overlap() -> String {
    "1h".to_owned()
}

impl Default for SecretRotation {
    fn default() -> Self {
        Self {
            generation: 0,
            overlap: default_overlap(),
        }
    }
}

/// What the operator last did with an `OAuthClient`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientStatus {
    /// The client_id: "<namespace>.<name>". Stable for the life of the resource and
    /// unique across namespaces (namespace names cannot contain dots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,

    /// The Secret holding client_id, client_secret, issuer and token_url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// The metadata.generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The secretRotation.generation the current secret answers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_rotation_generation: Option<i64>,

    /// When the current secret was generated (created, rotated or regenerated after the
    /// Secret was deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_secret_rotation: Option<Time>,

    /// Until when the previous secret still works, during a rotation's overlap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<Time>,

    /// Ready: the database row and the Secret match the spec. When False, the reason
    /// says why (InvalidSpec, PolicyViolation, SecretPending, WeakSecret,
    /// ClientIdConflict, SecretConflict) and the message what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl OAuthClientSpec {
    /// The token endpoint authentication method, with its default applied.
    pub fn auth_method(&self) -> TokenEndpointAuthMethod {
        match (self.token_endpoint_auth_method, self.public) {
            (Some(method), _) => method,
            (None, true) => TokenEndpointAuthMethod::None,
            (None, false) if self.service_account.is_some() || self.jwks.is_some() => {
                TokenEndpointAuthMethod::PrivateKeyJwt
            }
            (None, false) => TokenEndpointAuthMethod::ClientSecretBasic,
        }
    }
}
