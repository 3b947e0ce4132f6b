//! `GET`/`POST /oauth/logout`: OpenID Connect RP-Initiated Logout 1.0, the
//! `end_session_endpoint`.
//!
//! With a valid `id_token_hint` (an ID token we signed, expired or not) the request is
//! the client's: the browser session ends at once, so does the session (refresh-token
//! family, and with it its access tokens) the ID token was issued in. Without one,
//! anyone could link a user here, so the user is asked first (a CSRF-protected form),
//! and only the browser session ends. `post_logout_redirect_uri` must equal one of the
//! client's registered `post_logout_redirect_uris` exactly; anything else is an error
//! page and never a redirect.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use latchkey_domain::sessions;
use latchkey_domain::tokens::{IdTokenHint, digest};
use latchkey_store::clients::{self, ClientRecord};
use latchkey_store::{browser_sessions, now_ms};

use super::authorize::{
    SESSION_COOKIE, cookie, csrf_ok, csrf_token, query_params, read_cookie, redirect_to,
};
use super::form::Params;
use crate::pages::{self, error_page};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/oauth/logout", get(logout_get).post(logout_post))
}

/// Parameters the confirmation form carries along.
const CARRIED: [&str; 3] = ["client_id", "post_logout_redirect_uri", "state"];

/// A checked logout request.
struct Logout {
    hint: Option<IdTokenHint>,
    client: Option<ClientRecord>,
    /// Registered for `client`, checked.
    redirect: Option<String>,
    state: Option<String>,
}

async fn check(app: &AppState, params: &Params) -> Result<Logout, Response> {
    let bad = |message: &str| error_page(StatusCode::BAD_REQUEST, message);
    let hint = match params.get("id_token_hint") {
        Some(token) if !token.is_empty() => match app.tokens.verify_id_token_hint(token).await {
            Ok(hint) => Some(hint),
            Err(_) => return Err(bad("The sign-out request is invalid (id_token_hint).")),
        },
        _ => None,
    };
    let client_id = match (params.get("client_id"), &hint) {
        (Some(id), Some(hint)) if id != hint.aud => {
            return Err(bad(
                "The sign-out request is invalid: client_id is not the ID token's audience.",
            ));
        }
        (Some(id), _) => Some(id.to_owned()),
        (None, Some(hint)) => Some(hint.aud.clone()),
        (None, None) => None,
    };
    let client = match &client_id {
        Some(id) => match clients::get(&app.db, id).await {
            Ok(Some(client)) => Some(client),
            Ok(None) => return Err(bad("The sign-out request names an unknown application.")),
            Err(_) => {
                return Err(error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Please try again later.",
                ));
            }
        },
        None => None,
    };
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => match &client {
            // A disabled client's addresses are never redirected to (its policy may
            // have refused exactly those).
            Some(client)
                if !client.disabled
                    && client.post_logout_redirect_uris.iter().any(|u| u == uri) =>
            {
                Some(uri.to_owned())
            }
            Some(_) => {
                return Err(bad(
                    "The address to return to after signing out is not registered for this application.",
                ));
            }
            None => {
                return Err(bad(
                    "post_logout_redirect_uri needs id_token_hint or client_id.",
                ));
            }
        },
    };
    Ok(Logout {
        hint,
        client,
        redirect,
        state: params.get("state").map(str::to_owned),
    })
}

/// OpenID Connect RP-Initiated Logout (the `end_session_endpoint`).
///
/// With a valid `id_token_hint` the browser session and the session of the ID token end
/// at once; without one the user is asked first.
#[utoipa::path(get, path = "/oauth/logout", tag = "oauth",
    params(crate::schemas::LogoutQuery),
    responses(
        (status = 200, description = "The confirmation page, or the signed-out page.", content_type = "text/html", body = crate::schemas::Html),
        (status = 303, description = "To the registered `post_logout_redirect_uri`, with `state`.", headers(("location" = String))),
        (status = 400, description = "Error page: invalid `id_token_hint`, unknown client, unregistered `post_logout_redirect_uri`, `client_id` not the hint's audience.", content_type = "text/html", body = crate::schemas::Html),
    ))]
async fn logout_get(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match query_params(query) {
        Ok(params) => params,
        Err(page) => return page,
    };
    let logout = match check(&app, &params).await {
        Ok(logout) => logout,
        Err(page) => return page,
    };
    if logout.hint.is_some() {
        return sign_out(&app, &headers, logout).await;
    }
    let carried: Vec<(&'static str, String)> = CARRIED
        .iter()
        .filter_map(|name| params.get(name).map(|v| (*name, v.to_owned())))
        .collect();
    let (csrf, set_cookie) = csrf_token(&app, &headers);
    pages::sign_out_confirm(&pages::hidden_fields(&carried, &csrf), set_cookie)
}

/// A POST with a valid `id_token_hint` is the client's request; otherwise it must be the
/// confirmation form (same-site, with its CSRF token).
#[utoipa::path(post, path = "/oauth/logout", tag = "oauth",
    request_body(content = crate::schemas::LogoutForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The signed-out page.", content_type = "text/html", body = crate::schemas::Html),
        (status = 303, description = "To the registered `post_logout_redirect_uri`, with `state`.", headers(("location" = String))),
        (status = 400, description = "Error page (as for GET, or the form's CSRF token is missing), or `invalid_request` JSON for a body that is not a form.", content(
            (crate::schemas::Html = "text/html"), (crate::error::OAuthBody = "application/json"))),
        (status = 413, description = "`invalid_request`: the body is over LATCHKEY_BODY_LIMIT.", body = crate::error::OAuthBody),
    ))]
async fn logout_post(State(app): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    let logout = match check(&app, &params).await {
        Ok(logout) => logout,
        Err(page) => return page,
    };
    if logout.hint.is_none()
        && (params.get("action") != Some("logout")
            || !csrf_ok(&app, &headers, params.get("csrf_token")))
    {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The form expired or did not come from this site. Go back and try again.",
        );
    }
    sign_out(&app, &headers, logout).await
}

/// Ends the browser session of this browser and, with a hint, the session it names;
/// then sends the user back, or says they are signed out.
async fn sign_out(app: &AppState, headers: &HeaderMap, logout: Logout) -> Response {
    let now = now_ms();
    let unavailable = || error_page(StatusCode::SERVICE_UNAVAILABLE, "Please try again later.");
    if let Some(id) = read_cookie(app, headers, SESSION_COOKIE)
        && id.len() <= 64
        && browser_sessions::delete(&app.db, &digest(&id))
            .await
            .is_err()
    {
        return unavailable();
    }
    if let (Some(hint), Some(client)) = (&logout.hint, &logout.client)
        && let Some(sid) = &hint.sid
        && sessions::revoke(app, None, Some(sid), &client.client_id, now)
            .await
            .is_err()
    {
        return unavailable();
    }
    tracing::info!(
        client_id = logout.client.as_ref().map(|c| c.client_id.as_str()),
        with_hint = logout.hint.is_some(),
        "signed out"
    );
    let clear = cookie(app, SESSION_COOKIE, "", 0);
    let mut response = match &logout.redirect {
        Some(uri) => {
            let query = match &logout.state {
                Some(state) => form_urlencoded::Serializer::new(String::new())
                    .append_pair("state", state)
                    .finish(),
                None => String::new(),
            };
            redirect_to(uri, &query)
        }
        None => return pages::signed_out(Some(clear)),
    };
    response.headers_mut().append(header::SET_COOKIE, clear);
    response
}
