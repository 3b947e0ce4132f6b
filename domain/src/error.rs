//! The domain's one error type: every outcome a caller must tell apart, including the
//! OAuth 2.0 outcomes (RFC 6749 §5.2) as [`Error::OAuth`].
//!
//! Nothing here knows HTTP: the service maps each variant to a status, a body and
//! headers in one place (`latchkey::error`), and logs internal causes there, once.

use crate::rate::Decision;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed: bad JSON, wrong content type, missing fields.
    #[error("{0}")]
    BadRequest(String),
    /// The request is well-formed but its values are not acceptable.
    #[error("{message}")]
    Validation {
        message: String,
        details: Vec<String>,
    },
    /// The password fails the strength policy; `rules` names each failed rule.
    #[error("the password does not meet the password policy")]
    WeakPassword { rules: Vec<&'static str> },
    #[error("{0} is already registered")]
    Conflict(&'static str),
    /// Wrong username or password. One message for both, so it cannot tell them apart.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Too many failed logins: answered exactly like [`Error::InvalidCredentials`], plus
    /// `Retry-After` (whole seconds), so it says nothing about whether the account exists.
    #[error("invalid username or password")]
    LockedOut { retry_after: u64 },
    #[error("the account is disabled")]
    AccountDisabled,
    /// The password was right but the account's email address is not confirmed yet.
    #[error(
        "the email address is not verified yet; follow the link in the mail or ask for a new one at /auth/resend-verification"
    )]
    EmailNotVerified,
    /// An emailed link whose token is unknown, expired or already used.
    #[error("the link is invalid, expired or already used")]
    InvalidLink,
    /// A signed-in user's current password, given to change it, is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// A refresh token that is unknown, expired, revoked or reused.
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// A missing, malformed, expired or revoked bearer token (RFC 6750 §3.1).
    #[error("{0}")]
    InvalidToken(&'static str),
    /// A refresh token of a user who is gone or disabled: the session is revoked.
    #[error("the account is no longer active")]
    AccountInactive,
    /// A valid token without the scope this resource needs (RFC 6750 §3.1).
    #[error("{0}")]
    InsufficientScope(&'static str),
    /// An OAuth 2.0 protocol outcome (RFC 6749 §5.2): what the token, introspection and
    /// revocation endpoints answer.
    #[error("{0}")]
    OAuth(OAuthError),
    #[error("not found")]
    NotFound,
    /// The resource is managed by the operator (an `OAuthClient`); change it there.
    #[error(
        "this client is managed by the Kubernetes operator; change its OAuthClient resource instead"
    )]
    ManagedElsewhere,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(&'static str),
    /// A rate limit was exceeded.
    #[error("too many requests; retry after {} seconds", .0.retry_after_secs())]
    RateLimited(Decision),
    /// The service cannot do this right now (no signing key, database down).
    #[error("{0}")]
    Unavailable(&'static str),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<latchkey_store::Error> for Error {
    fn from(err: latchkey_store::Error) -> Self {
        match err {
            err if err.is_storage_full() => {
                Self::Unavailable("the database is out of space; retry later")
            }
            err if err.is_unavailable() => Self::Unavailable("the database is not answering"),
            err if err.is_unstorable_text() => {
                Self::BadRequest("a value contains a character that cannot be stored (NUL)".into())
            }
            latchkey_store::Error::Taken(field) => Self::Conflict(field),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<OAuthError> for Error {
    fn from(err: OAuthError) -> Self {
        Self::OAuth(err)
    }
}

/// The `error` codes Latchkey answers with: RFC 6749 §4.1.2.1 (the authorization
/// endpoint's redirects) and §5.2 (the token endpoint), OpenID Connect Core §3.1.2.6
/// (`login_required`, `consent_required`), and `rate_limited` for a refusal (429).
/// Typed, so an answer's status is chosen by the variant, never by matching a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OAuthCode {
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

impl OAuthCode {
    /// The wire value of the `error` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl std::fmt::Display for OAuthCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the wire value (`code == "invalid_grant"`), as tests and logs read it.
impl PartialEq<&str> for OAuthCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An RFC 6749 §5.2 error: its `error` code and `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
pub struct OAuthError {
    pub code: OAuthCode,
    pub description: String,
}

impl OAuthError {
    pub fn new(code: OAuthCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(OAuthCode::InvalidRequest, description)
    }

    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(OAuthCode::InvalidClient, description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(OAuthCode::InvalidGrant, description)
    }

    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(OAuthCode::InvalidScope, description)
    }

    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(OAuthCode::UnauthorizedClient, description)
    }
}
