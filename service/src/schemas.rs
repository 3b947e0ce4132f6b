//! The shapes of request and response bodies that handlers build by hand (`json!`) or
//! parse by hand (the OAuth forms), described as types for the OpenAPI document
//! ([`crate::openapi`]). Apart from it, so the handlers that name these shapes in their
//! `#[utoipa::path]` do not depend on the module that gathers those handlers.

use serde::Serialize;
use utoipa::ToSchema;

/// The `error` codes of RFC 6749 §5.2 bodies (and of redirects back to a client).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    LoginRequired,
    ConsentRequired,
    RateLimited,
    ServerError,
    TemporarilyUnavailable,
}

/// Client authentication in a form body (RFC 6749 §2.3.1, RFC 7523 §2.2); with HTTP Basic
/// instead, `client_id` may repeat the Basic user and `client_secret` must be absent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientAuthFields {
    /// The client; required unless HTTP Basic names it.
    pub client_id: Option<String>,
    /// `client_secret_post` clients only.
    pub client_secret: Option<String>,
    /// `private_key_jwt` (RFC 7523 §2.2): a JWT signed with the client's key.
    pub client_assertion: Option<String>,
    /// With `client_assertion`: `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    pub client_assertion_type: Option<String>,
}

/// `POST /oauth/token` (RFC 6749 §3.2): `application/x-www-form-urlencoded`. A parameter
/// may appear once; an empty value counts as absent.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenForm {
    pub grant_type: TokenGrant,
    /// `authorization_code`: the code from the redirect.
    pub code: Option<String>,
    /// `authorization_code`: required when the authorization request named one.
    pub redirect_uri: Option<String>,
    /// `authorization_code` with PKCE (RFC 7636): 43 to 128 characters.
    pub code_verifier: Option<String>,
    /// `refresh_token`: the refresh token to rotate.
    pub refresh_token: Option<String>,
    /// `password`: a username or an email address.
    pub username: Option<String>,
    /// `password`.
    pub password: Option<String>,
    /// Space-separated scopes; absent: every scope of the client (a refresh keeps its own).
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion: Option<String>,
    pub client_assertion_type: Option<String>,
}

/// The grants of `/oauth/token` (another value answers 400 `unsupported_grant_type`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenGrant {
    AuthorizationCode,
    ClientCredentials,
    RefreshToken,
    Password,
}

/// `POST /oauth/introspect` (RFC 7662 §2.1) and `POST /oauth/revoke` (RFC 7009 §2.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenHintForm {
    /// An access token or a refresh token.
    pub token: String,
    /// `access_token` or `refresh_token`: which kind is tried first.
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion: Option<String>,
    pub client_assertion_type: Option<String>,
}

/// RFC 7662 §2.2. Anything not live, or not the caller's, is `{"active": false}` alone.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Introspection {
    pub active: bool,
    /// `Bearer` for access tokens, `refresh_token` for refresh tokens.
    pub token_type: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub sub: Option<String>,
    /// Access tokens only.
    pub aud: Option<String>,
    pub iss: Option<String>,
    /// Access tokens only.
    pub jti: Option<String>,
    pub iat: Option<i64>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    /// While the user exists.
    pub username: Option<String>,
}

/// The parameters of an authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OpenID
/// Connect Core §3.1.2.1), in the query of a GET or the form of a POST.
#[derive(Debug, Serialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeQuery {
    /// A registered client; unknown: an error page, never a redirect.
    pub client_id: Option<String>,
    /// One of the client's redirect URIs, exactly; may be left out when it has one.
    pub redirect_uri: Option<String>,
    /// `code` (anything else is redirected back with `unsupported_response_type`).
    pub response_type: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    /// base64url SHA-256 of the verifier (43 characters); required of public clients.
    pub code_challenge: Option<String>,
    /// `S256`.
    pub code_challenge_method: Option<String>,
    pub nonce: Option<String>,
    /// `none`, `login` or `consent`.
    pub prompt: Option<String>,
}

/// What the sign-in and consent forms post to `/oauth/authorize`: the authorization
/// request again (hidden fields), the CSRF token and the action.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizeForm {
    /// Equal to the CSRF cookie (double submit); anything else: 400 page.
    pub csrf_token: Option<String>,
    /// `login` (with `username` and `password`), `approve` or `deny`.
    pub action: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub nonce: Option<String>,
    pub prompt: Option<String>,
}

/// OpenID Connect RP-Initiated Logout 1.0 §2, in the query of a GET or the form of a POST.
#[derive(Debug, Serialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogoutQuery {
    /// An ID token this server signed (expired or not): the request is the client's.
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    /// One of the client's registered `post_logout_redirect_uris`, exactly.
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
}

/// The confirmation form's POST to `/oauth/logout` (or a client's, with `id_token_hint`).
#[derive(Debug, Serialize, ToSchema)]
pub struct LogoutForm {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    /// `logout`, with `csrf_token`, when there is no `id_token_hint`.
    pub action: Option<String>,
    pub csrf_token: Option<String>,
}

/// The `token` of an emailed link.
#[derive(Debug, Serialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// The token from the mail (ours are 43 characters); absent or wrong: 400.
    pub token: Option<String>,
}

/// A JSON answer to an emailed link (without `Accept: text/html`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkAnswer {
    /// `email_verified` or `valid`.
    pub status: String,
    pub message: String,
}

/// `POST /auth/verify-email`'s answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Verified {
    /// `email_verified`.
    pub status: String,
}

/// The one answer of resend and reset requests, whatever the address.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    /// `accepted`.
    pub status: String,
    pub message: String,
}

/// RFC 7517 §5.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Jwks {
    pub keys: Vec<latchkey_store::keys::PublicJwk>,
}

/// RFC 8414 §2 authorization-server metadata, which is also OpenID Provider metadata.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub userinfo_endpoint: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    pub end_session_endpoint: String,
    pub scopes_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub response_modes_supported: Vec<String>,
    pub grant_types_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// What a `private_key_jwt` assertion may be signed with (RFC 8414 §2).
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_endpoint_auth_signing_alg_values_supported: Vec<String>,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub revocation_endpoint_auth_signing_alg_values_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<String>,
    pub subject_types_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub claims_supported: Vec<String>,
    pub authorization_response_iss_parameter_supported: bool,
    pub request_parameter_supported: bool,
    pub request_uri_parameter_supported: bool,
}

/// OpenID Connect Core §5.3.2: `sub`, and the claims the token's scopes release.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInfo {
    pub sub: String,
    /// `profile`.
    pub name: Option<String>,
    /// `profile`.
    pub preferred_username: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// `email`.
    pub email_verified: Option<bool>,
}

/// An HTML page (sign-in, consent, sign-out, an error, an emailed link's answer).
pub type Html = String;
