//! `GET`/`POST /oauth/authorize` (RFC 6749 §4.1, RFC 7636, RFC 9700): the login page,
//! the consent page and the redirect with a code.
//!
//! The client and the exact redirect URI are checked first; if either is wrong the user
//! sees an error page and is never redirected (RFC 6749 §4.1.2.1). The request's
//! parameters travel through the forms as hidden fields and are validated again on every
//! POST, so no server state exists before sign-in. Forms carry a CSRF token that must
//! equal the value of a SameSite cookie (double submit).

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use latchkey_domain::tokens::{digest, random_token};
use latchkey_domain::{Error, OAuthCode, login, scopes};
use latchkey_store::clients::{self, ClientRecord};
use latchkey_store::codes::{self, NewCode};
use latchkey_store::protocol::GrantType;
use latchkey_store::{browser_sessions, now_ms};
use subtle::ConstantTimeEq;

use super::form::Params;
use crate::extract::ClientAddr;
use crate::pages::{self, error_page};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/oauth/authorize", get(authorize_get).post(authorize_post))
}

/// Parameters of the authorization request that the forms carry along.
const CARRIED: [&str; 9] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "prompt",
];

/// A validated authorization request.
struct Request {
    client: ClientRecord,
    redirect_uri: String,
    redirect_given: bool,
    scope: String,
    state: Option<String>,
    code_challenge: Option<String>,
    nonce: Option<String>,
    prompt: Option<String>,
    carried: Vec<(&'static str, String)>,
}

/// Why a request cannot go on.
enum Refusal {
    /// Client or redirect URI unusable: an error page, never a redirect.
    Page(StatusCode, String),
    /// Everything else: back to the client with `error` (RFC 6749 §4.1.2.1).
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: OAuthCode,
        description: String,
    },
}

impl Refusal {
    fn redirect(request: &Request, error: OAuthCode, description: impl Into<String>) -> Self {
        Self::Redirect {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
            error,
            description: description.into(),
        }
    }
}

async fn validate(app: &AppState, params: &Params) -> Result<Request, Refusal> {
    let page = |m: &str| Refusal::Page(StatusCode::BAD_REQUEST, m.to_owned());
    let client_id = params
        .get("client_id")
        .ok_or_else(|| page("The request has no client_id."))?;
    let client = clients::get(&app.db, client_id)
        .await
        .map_err(|_| {
            Refusal::Page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again later.".into(),
            )
        })?
        .ok_or_else(|| page("The application is not registered."))?;
    // Never a redirect for a disabled client: what its policy refused may be the
    // redirect URI itself.
    if client.disabled {
        return Err(page("The application is disabled."));
    }
    let (redirect_uri, redirect_given) = match params.get("redirect_uri") {
        // Exact string comparison: no prefix, suffix or normalisation tricks.
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => (uri.to_owned(), true),
        Some(_) => {
            return Err(page(
                "The redirect URI is not registered for this application.",
            ));
        }
        None if client.redirect_uris.len() == 1 => (client.redirect_uris[0].clone(), false),
        None => {
            return Err(page(
                "The request must name one of the application's redirect URIs.",
            ));
        }
    };
    let carried = CARRIED
        .iter()
        .filter_map(|k| params.get(k).map(|v| (*k, v.to_owned())))
        .collect();
    let mut request = Request {
        redirect_uri,
        redirect_given,
        scope: String::new(),
        state: params.get("state").map(str::to_owned),
        code_challenge: params.get("code_challenge").map(str::to_owned),
        nonce: params.get("nonce").map(str::to_owned),
        prompt: params.get("prompt").map(str::to_owned),
        carried,
        client,
    };
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(Refusal::redirect(
                &request,
                OAuthCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
        None => {
            return Err(Refusal::redirect(
                &request,
                OAuthCode::InvalidRequest,
                "response_type is required",
            ));
        }
    }
    if !request.client.allows_grant(GrantType::AuthorizationCode) {
        return Err(Refusal::redirect(
            &request,
            OAuthCode::UnauthorizedClient,
            "this client may not use the authorization code grant",
        ));
    }
    request.scope = scopes::resolve(params.get("scope"), &request.client.scopes)
        .map_err(|e| Refusal::redirect(&request, OAuthCode::InvalidScope, e.description))?;
    match (params.get("code_challenge_method"), &request.code_challenge) {
        (Some("S256"), Some(_)) | (None, Some(_)) | (None, None) => {}
        (Some("S256"), None) => {
            return Err(Refusal::redirect(
                &request,
                OAuthCode::InvalidRequest,
                "code_challenge is required",
            ));
        }
        (Some(_), _) => {
            return Err(Refusal::redirect(
                &request,
                OAuthCode::InvalidRequest,
                "only the S256 code_challenge_method is supported",
            ));
        }
    }
    if let Some(challenge) = &request.code_challenge {
        let valid = challenge.len() == 43
            && challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(Refusal::redirect(
                &request,
                OAuthCode::InvalidRequest,
                "code_challenge must be a base64url SHA-256 (43 characters)",
            ));
        }
    } else if request.client.public {
        return Err(Refusal::redirect(
            &request,
            OAuthCode::InvalidRequest,
            "public clients must use PKCE (code_challenge)",
        ));
    }
    Ok(request)
}

/// The parameters of a browser's GET, or the error page for a malformed query.
#[expect(
    clippy::result_large_err,
    reason = "the error is the page to answer, made once per bad request"
)]
pub(super) fn query_params(query: Option<String>) -> Result<Params, Response> {
    Params::parse(query.unwrap_or_default().as_bytes())
        .map_err(|e| error_page(StatusCode::BAD_REQUEST, &e.description))
}

/// The authorization endpoint (RFC 6749 §4.1.1): the sign-in page, the consent page,
/// or the redirect back.
///
/// An unknown client or an unregistered redirect URI is an error page, never a redirect.
#[utoipa::path(get, path = "/oauth/authorize", tag = "oauth",
    params(crate::schemas::AuthorizeQuery),
    responses(
        (status = 200, description = "The sign-in page or the consent page.", content_type = "text/html", body = crate::schemas::Html),
        (status = 303, description = "Back to the client's redirect URI: `code`, `state`, `iss`, or `error`, `error_description`, `state`, `iss`.",
            headers(("location" = String))),
        (status = 400, description = "Error page: no or unknown client, unregistered redirect URI, malformed query.", content_type = "text/html", body = crate::schemas::Html),
    ))]
async fn authorize_get(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match query_params(query) {
        Ok(params) => params,
        Err(page) => return page,
    };
    let request = match validate(&app, &params).await {
        Ok(request) => request,
        Err(refusal) => return refuse(&app, refusal),
    };
    let session = if request.prompt.as_deref() == Some("login") {
        None
    } else {
        current_session(&app, &headers).await
    };
    proceed(&app, &headers, &request, session).await
}

/// Where a validated request goes next, given who is signed in.
async fn proceed(
    app: &AppState,
    headers: &HeaderMap,
    request: &Request,
    session: Option<(String, i64)>,
) -> Response {
    let Some((user_id, auth_time)) = session else {
        if request.prompt.as_deref() == Some("none") {
            return refuse(
                app,
                Refusal::redirect(
                    request,
                    OAuthCode::LoginRequired,
                    "the user is not signed in",
                ),
            );
        }
        return login_page(app, headers, request, None, StatusCode::OK);
    };
    if request.client.first_party {
        return issue_code(app, request, &user_id, auth_time).await;
    }
    if request.prompt.as_deref() == Some("none") {
        return refuse(
            app,
            Refusal::redirect(
                request,
                OAuthCode::ConsentRequired,
                "the user has not approved this application",
            ),
        );
    }
    let username = match latchkey_store::users::find_by_id(&app.db, &user_id).await {
        Ok(Some(user)) => user.username,
        Ok(None) => return login_page(app, headers, request, None, StatusCode::OK),
        Err(_) => return error_page(StatusCode::SERVICE_UNAVAILABLE, "Please try again later."),
    };
    consent_page(app, headers, request, &username)
}

/// What the sign-in and consent forms post: `action=login|approve|deny`.
#[utoipa::path(post, path = "/oauth/authorize", tag = "oauth",
    request_body(content = crate::schemas::AuthorizeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The consent page (after signing in), or the sign-in page again.", content_type = "text/html", body = crate::schemas::Html),
        (status = 303, description = "Back to the client's redirect URI: `code`, `state`, `iss`, or `error`, `error_description`, `state`, `iss`.",
            headers(("location" = String))),
        (status = 400, description = "Error page (the CSRF check failed, an unknown action, an invalid request), or `invalid_request` JSON for a body that is not a form.", content(
            (crate::schemas::Html = "text/html"), (crate::error::OAuthBody = "application/json"))),
        (status = 401, description = "The sign-in page: the username or password is incorrect.", content_type = "text/html", body = crate::schemas::Html),
        (status = 403, description = "The sign-in page: the email address is not verified yet.", content_type = "text/html", body = crate::schemas::Html),
        (status = 413, description = "`invalid_request`: the body is over LATCHKEY_BODY_LIMIT.", body = crate::error::OAuthBody),
    ))]
async fn authorize_post(
    State(app): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    params: Params,
) -> Response {
    if !csrf_ok(&app, &headers, params.get("csrf_token")) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The form expired or did not come from this site. Go back and try again.",
        );
    }
    let request = match validate(&app, &params).await {
        Ok(request) => request,
        Err(refusal) => return refuse(&app, refusal),
    };
    match params.get("action") {
        Some("login") => {
            let username = params.get("username").unwrap_or_default();
            let password = params.get("password").unwrap_or_default().to_owned();
            match login::verify(&app, username, password, ip).await {
                Ok(user) => {
                    let now = now_ms();
                    let Ok(session_id) = random_token(32) else {
                        return error_page(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Something went wrong.",
                        );
                    };
                    let expires = now
                        + i64::try_from(app.web.session_ttl.as_millis()).unwrap_or(i64::MAX / 4);
                    if browser_sessions::insert(
                        &app.db,
                        &digest(&session_id),
                        &user.id,
                        now,
                        expires,
                    )
                    .await
                    .is_err()
                    {
                        return error_page(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "Please try again later.",
                        );
                    }
                    let mut response =
                        proceed(&app, &headers, &request, Some((user.id, now))).await;
                    let cookie = cookie(
                        &app,
                        SESSION_COOKIE,
                        &session_id,
                        app.web.session_ttl.as_secs(),
                    );
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                    response
                }
                Err(Error::InvalidCredentials | Error::AccountDisabled) => login_page(
                    &app,
                    &headers,
                    &request,
                    Some("The username or password is incorrect."),
                    StatusCode::UNAUTHORIZED,
                ),
                Err(Error::EmailNotVerified) => login_page(
                    &app,
                    &headers,
                    &request,
                    Some("Confirm your email address first: follow the link in the mail we sent."),
                    StatusCode::FORBIDDEN,
                ),
                Err(Error::RateLimited(_)) => login_page(
                    &app,
                    &headers,
                    &request,
                    Some("Too many sign-in attempts. Wait a minute and try again."),
                    StatusCode::TOO_MANY_REQUESTS,
                ),
                Err(_) => error_page(StatusCode::SERVICE_UNAVAILABLE, "Please try again later."),
            }
        }
        Some("approve") => match current_session(&app, &headers).await {
            Some((user_id, auth_time)) => issue_code(&app, &request, &user_id, auth_time).await,
            None => login_page(&app, &headers, &request, None, StatusCode::OK),
        },
        Some("deny") => refuse(
            &app,
            Refusal::redirect(
                &request,
                OAuthCode::AccessDenied,
                "the user denied the request",
            ),
        ),
        _ => error_page(StatusCode::BAD_REQUEST, "Unknown action."),
    }
}

async fn issue_code(app: &AppState, request: &Request, user_id: &str, auth_time: i64) -> Response {
    let now = now_ms();
    let Ok(code) = random_token(32) else {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong.");
    };
    let family_id = uuid::Uuid::new_v4().to_string();
    let stored = codes::insert(
        &app.db,
        &NewCode {
            code_hash: &digest(&code),
            client_id: &request.client.client_id,
            user_id,
            redirect_uri: &request.redirect_uri,
            redirect_given: request.redirect_given,
            scope: &request.scope,
            code_challenge: request.code_challenge.as_deref(),
            nonce: request.nonce.as_deref(),
            auth_time,
            family_id: &family_id,
            expires_at: now + i64::try_from(app.web.code_ttl.as_millis()).unwrap_or(60_000),
        },
        now,
    )
    .await;
    if stored.is_err() {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, "Please try again later.");
    }
    metrics::counter!("latchkey_authorization_codes_issued_total").increment(1);
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("code", &code);
    if let Some(state) = &request.state {
        query.append_pair("state", state);
    }
    query.append_pair("iss", &app.settings.issuer);
    redirect_to(&request.redirect_uri, &query.finish())
}

fn refuse(app: &AppState, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(status, message) => error_page(status, &message),
        Refusal::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("error", error.as_str());
            query.append_pair("error_description", &description);
            if let Some(state) = &state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", &app.settings.issuer);
            redirect_to(&redirect_uri, &query.finish())
        }
    }
}

/// A 303 to `uri` with `query` appended (nothing appended when it is empty), never cached.
pub(super) fn redirect_to(uri: &str, query: &str) -> Response {
    let target = if query.is_empty() {
        uri.to_owned()
    } else {
        let separator = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{separator}{query}")
    };
    let mut response = Redirect::to(&target).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// === cookies and CSRF ===

pub(super) const SESSION_COOKIE: &str = "latchkey_session";
const CSRF_COOKIE: &str = "latchkey_csrf";

/// Cookie names get the `__Host-` prefix (and `Secure`) when the issuer is https://.
fn cookie_name(app: &AppState, base: &str) -> String {
    if app.web.secure_cookies {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

pub(super) fn cookie(app: &AppState, base: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if app.web.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        cookie_name(app, base)
    );
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
}

pub(super) fn read_cookie(app: &AppState, headers: &HeaderMap, base: &str) -> Option<String> {
    let name = cookie_name(app, base);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

async fn current_session(app: &AppState, headers: &HeaderMap) -> Option<(String, i64)> {
    let id = read_cookie(app, headers, SESSION_COOKIE)?;
    if id.len() > 64 {
        return None;
    }
    browser_sessions::find_live(&app.db, &digest(&id), now_ms())
        .await
        .ok()
        .flatten()
}

pub(super) fn csrf_ok(app: &AppState, headers: &HeaderMap, form_value: Option<&str>) -> bool {
    match (read_cookie(app, headers, CSRF_COOKIE), form_value) {
        (Some(cookie), Some(form)) if !cookie.is_empty() => {
            bool::from(cookie.as_bytes().ct_eq(form.as_bytes()))
        }
        _ => false,
    }
}

/// The CSRF token for a form: the browser's existing one, or a new one to set.
pub(super) fn csrf_token(app: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match read_cookie(app, headers, CSRF_COOKIE) {
        Some(token) if token.len() == 43 => (token, None),
        _ => {
            let token = random_token(32).unwrap_or_default();
            let set = cookie(app, CSRF_COOKIE, &token, 3600);
            (token, Some(set))
        }
    }
}

// === pages ===

fn login_page(
    app: &AppState,
    headers: &HeaderMap,
    request: &Request,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (csrf, set_cookie) = csrf_token(app, headers);
    pages::sign_in(
        status,
        &pages::app_name(&request.client),
        &pages::hidden_fields(&request.carried, &csrf),
        error,
        set_cookie,
    )
}

/// The same authorization request with `prompt=login`, to sign in as someone else.
fn switch_account_href(request: &Request) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in request.carried.iter().filter(|(n, _)| *n != "prompt") {
        query.append_pair(name, value);
    }
    query.append_pair("prompt", "login");
    format!("/oauth/authorize?{}", query.finish())
}

fn consent_page(
    app: &AppState,
    headers: &HeaderMap,
    request: &Request,
    username: &str,
) -> Response {
    let (csrf, set_cookie) = csrf_token(app, headers);
    pages::consent(
        &pages::app_name(&request.client),
        username,
        &switch_account_href(request),
        &request.scope,
        &request.redirect_uri,
        &pages::hidden_fields(&request.carried, &csrf),
        set_cookie,
    )
}
