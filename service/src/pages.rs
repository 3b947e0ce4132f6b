//! The HTML the service answers with: the sign-in and consent pages of
//! `/oauth/authorize`, its error page, and the small page a browser gets for an emailed
//! link. Every value is escaped here, with this module's own [`escape`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use latchkey_domain::scopes;
use latchkey_store::clients::ClientRecord;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b}\
h1{font-size:1.4rem}label{display:block;margin-top:1rem;font-weight:600}\
input[type=text],input[type=password]{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}\
button{margin-top:1.2rem;padding:.55rem 1.2rem;font-size:1rem;margin-right:.5rem}\
.error{color:#a00000;font-weight:600}.brand{color:#555;font-size:.9rem;letter-spacing:.05em;margin-bottom:0}ul{padding-left:1.2rem}";

/// A page of the authorization endpoint: `body` inside the shared frame, with a strict
/// CSP, never cached.
pub fn page(
    status: StatusCode,
    title: &str,
    body: &str,
    set_cookie: Option<HeaderValue>,
) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} – Latchkey</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        title = escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(cookie) = set_cookie {
        headers.append(header::SET_COOKIE, cookie);
    }
    response
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Cannot continue",
        &format!(
            "<h1>Cannot continue</h1><p role=\"alert\">{}</p>",
            escape(message)
        ),
        None,
    )
}

/// The CSRF token and the carried request parameters, as hidden form fields.
pub fn hidden_fields(carried: &[(&'static str, String)], csrf: &str) -> String {
    let mut out = format!(
        "<input type=\"hidden\" name=\"csrf_token\" value=\"{}\">",
        escape(csrf)
    );
    for (name, value) in carried {
        out.push_str(&format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        ));
    }
    out
}

/// The name a client is shown by: its display name, else its id.
pub fn app_name(client: &ClientRecord) -> String {
    if client.name.is_empty() {
        client.client_id.clone()
    } else {
        client.name.clone()
    }
}

/// The sign-in form, with `error` above it when the last attempt failed.
pub fn sign_in(
    status: StatusCode,
    name: &str,
    hidden: &str,
    error: Option<&str>,
    set_cookie: Option<HeaderValue>,
) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<p class=\"brand\">Latchkey</p><h1>Sign in to continue to {name}</h1>{error}\
         <form method=\"post\" action=\"/oauth/authorize\">{hidden}\
         <input type=\"hidden\" name=\"action\" value=\"login\">\
         <label for=\"username\">Username or email</label>\
         <input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>",
        name = escape(name),
    );
    page(status, "Sign in", &body, set_cookie)
}

fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are (your account id)".to_owned(),
        "profile" => "See your name and username".to_owned(),
        "email" => "See your email address".to_owned(),
        scopes::ADMIN => "Administer Latchkey (manage OAuth clients)".to_owned(),
        other => format!("Access: {other}"),
    }
}

/// The host a redirect URI sends the browser to, shown so a look-alike client name
/// cannot hide where the user is going.
fn redirect_host(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// The consent page: who asks, for what, and where the browser goes next.
pub fn consent(
    name: &str,
    username: &str,
    switch_href: &str,
    scope: &str,
    redirect_uri: &str,
    hidden: &str,
    set_cookie: Option<HeaderValue>,
) -> Response {
    let items: String = scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| format!("<li>{}</li>", escape(&describe_scope(s))))
        .collect();
    let body = format!(
        "<p class=\"brand\">Latchkey</p><h1>{name} wants to access your account</h1>\
         <p>Signed in as <strong>{user}</strong>. <a href=\"{switch}\">Not you?</a></p>\
         <p>It asks to:</p><ul>{items}</ul>\
         <p>After you choose, you will be sent to <strong>{host}</strong>.</p>\
         <form method=\"post\" action=\"/oauth/authorize\">{hidden}\
         <button type=\"submit\" name=\"action\" value=\"approve\">Approve</button>\
         <button type=\"submit\" name=\"action\" value=\"deny\">Deny</button></form>",
        name = escape(name),
        user = escape(username),
        switch = escape(switch_href),
        host = escape(redirect_host(redirect_uri)),
    );
    page(StatusCode::OK, "Approve access", &body, set_cookie)
}

/// Asks whether to sign out: a logout request without a valid `id_token_hint` could
/// come from any site, so only a form the user submits ends the session.
pub fn sign_out_confirm(hidden: &str, set_cookie: Option<HeaderValue>) -> Response {
    let body = format!(
        "<p class=\"brand\">Latchkey</p><h1>Sign out?</h1>\
         <p>You will be signed out of Latchkey in this browser.</p>\
         <form method=\"post\" action=\"/oauth/logout\">{hidden}\
         <button type=\"submit\" name=\"action\" value=\"logout\">Sign out</button></form>"
    );
    page(StatusCode::OK, "Sign out", &body, set_cookie)
}

/// The answer of a logout with nowhere to send the user back to.
pub fn signed_out(clear_cookie: Option<HeaderValue>) -> Response {
    page(
        StatusCode::OK,
        "Signed out",
        "<p class=\"brand\">Latchkey</p><h1>You are signed out</h1>\
         <p>You can close this window.</p>",
        clear_cookie,
    )
}

/// The small page a browser gets for an emailed link: one sentence, never cached.
pub fn link_answer(status: StatusCode, message: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Latchkey</title></head>\
         <body><p>{}</p></body></html>\n",
        escape(message)
    );
    let mut response = (status, Html(page)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_hosts_and_escaping() {
        assert_eq!(
            redirect_host("https://app.example.com/callback"),
            "app.example.com"
        );
        assert_eq!(redirect_host("http://127.0.0.1:9/cb?x=1"), "127.0.0.1:9");
        assert_eq!(
            redirect_host("https://app.example.com?x=/y"),
            "app.example.com"
        );
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
