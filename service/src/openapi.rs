//! The OpenAPI 3.1 document of the whole HTTP API, served at `GET /openapi.json`.
//!
//! Every operation is a `#[utoipa::path]` on its handler, next to the handler; request and
//! response bodies are the handlers' own types (`ToSchema`), except where a handler
//! builds its answer with `json!` or parses a form by hand ([`crate::oauth::form`]):
//! those shapes are described here, by the types below. What the layers answer for every
//! route (408 after `LATCHKEY_REQUEST_TIMEOUT`, 429 and 503 of the per-IP rate limit) is
//! added to each operation by [`Layers`], so the handlers list only their own answers.
//!
//! `/metrics` is on its own listener (`LATCHKEY_METRICS_LISTEN`): it is in the document
//! with that listener as its `servers` entry.
//!
//! Two checks keep the document whole: a unit test below reads every `.route(...)` of
//! this crate's source and compares it with the document's paths and methods (a route
//! added without documenting it fails), and `tests/openapi.rs` requests every documented
//! operation of a running server and checks the router matched it. Schemathesis
//! (`tests/schemathesis.rs`) then checks that every answer conforms to the document.

use std::sync::OnceLock;

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::{ServerBuilder, ServerVariableBuilder};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi as Document, Ref, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi};

use crate::schemas::OAuthErrorCode;
use crate::{oauth, oidc, routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latchkey",
        description = "OAuth 2.0 / OpenID Connect authorization server and account API. \
            Errors of the account API are `ApiError` bodies; the OAuth endpoints answer \
            RFC 6749 §5.2 `OAuthError` bodies; the browser endpoints (`/oauth/authorize`, \
            `/oauth/logout`, the emailed links with `Accept: text/html`) answer HTML pages.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::meta::root,
        routes::meta::health,
        routes::meta::ready,
        routes::meta::openapi_json,
        routes::meta::metrics,
        routes::wellknown::jwks,
        routes::wellknown::metadata,
        routes::wellknown::openid_configuration,
        routes::auth::register,
        routes::auth::login,
        routes::auth::refresh,
        routes::auth::logout,
        routes::email::verify_email_link,
        routes::email::verify_email,
        routes::email::resend_verification,
        routes::email::password_reset,
        routes::email::check_reset_link,
        routes::email::confirm_reset,
        routes::email::change_password,
        routes::users::me,
        routes::admin::list,
        routes::admin::create,
        routes::admin::show,
        routes::admin::update,
        routes::admin::remove,
        oauth::authorize::authorize_get,
        oauth::authorize::authorize_post,
        oauth::token::token,
        oauth::introspect::introspect,
        oauth::introspect::revoke,
        oauth::logout::logout_get,
        oauth::logout::logout_post,
        oidc::userinfo,
    ),
    components(schemas(OAuthErrorCode)),
    modifiers(&Layers),
    tags(
        (name = "meta", description = "Service information, probes, this document, metrics."),
        (name = "discovery", description = "JWKS and RFC 8414 / OpenID Connect discovery."),
        (name = "accounts", description = "First-party accounts: register, sign in, sessions, email links, passwords."),
        (name = "oauth", description = "The OAuth 2.0 authorization server (RFC 6749, 7636, 7662, 7009) and OpenID Connect."),
        (name = "admin", description = "Managing API-managed OAuth clients."),
    ),
)]
struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// Paths that [`Layers`] leaves without the rate limit's answers (see
/// `latchkey_domain::limits::EXEMPT`), or that are not on the API listener.
const UNLIMITED: [&str; 3] = ["/health", "/ready", "/metrics"];

/// Security schemes, the layers' answers on every operation, and the metrics listener.
struct Layers;

impl Modify for Layers {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "user_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A first-party access token (RFC 9068 JWT) from /auth/login or /auth/refresh.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "client_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token issued at /oauth/token. /userinfo needs one with the \
                         openid scope issued for a user; the admin API a client-credentials \
                         token of a client marked admin, with the latchkey:admin scope.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "client_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "client_secret_basic (RFC 6749 §2.3.1): client_id and client_secret, \
                         each form-urlencoded. Clients registered for client_secret_post send \
                         them in the form instead, public clients only client_id.",
                    ))
                    .build(),
            ),
        );

        let error = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ApiError")))
                .build()
        };
        let integer_header = |description: &str| {
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                .description(Some(description))
                .build()
        };
        let timeout = ResponseBuilder::new()
            .description("LATCHKEY_REQUEST_TIMEOUT passed before the answer was ready (no body).")
            .build();
        let limited = ResponseBuilder::new()
            .description("The per-IP rate limit of this route (RATE_LIMITING_DEFAULT, RATE_LIMITING_ROUTES) refused the request: `rate_limited`.")
            .content("application/json", error())
            .header("retry-after", integer_header("Seconds until a request may succeed."))
            .header("ratelimit-limit", integer_header("Requests allowed in the window."))
            .header("ratelimit-remaining", integer_header("Requests left in the window."))
            .header("ratelimit-reset", integer_header("Seconds until the window resets."))
            .build();
        let unavailable = ResponseBuilder::new()
            .description(
                "A backend (the database, Redis) does not answer: `temporarily_unavailable`.",
            )
            .content("application/json", error())
            .build();
        for (path, item) in doc.paths.paths.iter_mut() {
            let limits = !UNLIMITED.contains(&path.as_str());
            for operation in operations(item) {
                let responses = &mut operation.responses.responses;
                if path != "/metrics" {
                    responses
                        .entry("408".into())
                        .or_insert_with(|| timeout.clone().into());
                }
                if limits {
                    responses
                        .entry("429".into())
                        .or_insert_with(|| limited.clone().into());
                    responses
                        .entry("503".into())
                        .or_insert_with(|| unavailable.clone().into());
                }
            }
            if path == "/metrics" {
                item.servers = Some(vec![
                    ServerBuilder::new()
                        .url("http://{metrics_listen}")
                        .description(Some("The metrics listener, never the API's."))
                        .parameter(
                            "metrics_listen",
                            ServerVariableBuilder::new()
                                .default_value("127.0.0.1:9464")
                                .description(Some("LATCHKEY_METRICS_LISTEN")),
                        )
                        .build(),
                ]);
            }
        }
    }
}

/// The operations of a path item, whatever their method.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    /// Every `(path, method)` the document has.
    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(document()).expect("json");
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in ["get", "put", "post", "delete", "patch", "options", "head"] {
                if item.get(method).is_some() {
                    out.insert((path.clone(), method.to_owned()));
                }
            }
        }
        out
    }

    /// Every `(path, method)` the source routes: each `.route("<path>", <method>(..)
    /// .<method>(..))` of this crate. Any other way of adding routes (`nest`,
    /// `route_service`, a path that is not a literal) fails the test, so the check
    /// cannot be walked around.
    fn routed() -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        let mut files = Vec::new();
        collect_rs(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        // This file names the methods it looks for, and routes nothing.
        files.retain(|f| !f.ends_with("openapi.rs"));
        for file in files {
            let text = std::fs::read_to_string(&file).expect("source");
            let text = strip_comments(&text);
            for banned in [
                ".nest(",
                ".nest_service(",
                ".route_service(",
                ".fallback_service(",
            ] {
                assert!(
                    !text.contains(banned),
                    "{}: `{banned}` adds routes this check cannot see; use .route(\"...\", ...)",
                    file.display()
                );
            }
            let mut rest = text.as_str();
            while let Some(at) = rest.find(".route(") {
                rest = &rest[at + ".route(".len()..];
                let call = balanced(rest);
                let call_trim = call.trim_start();
                assert!(
                    call_trim.starts_with('"'),
                    "{}: .route({call}) does not start with a literal path",
                    file.display()
                );
                let path: String = call_trim[1..].chars().take_while(|c| *c != '"').collect();
                let handlers = &call_trim[path.len() + 2..];
                let mut found = 0;
                for method in ["get", "put", "post", "delete", "patch", "options", "head"] {
                    let mut h = handlers;
                    while let Some(i) = h.find(method) {
                        let before = h[..i].chars().last();
                        let after = &h[i + method.len()..];
                        if matches!(before, Some(',' | '.' | ' ' | '\n' | '('))
                            && after.starts_with('(')
                        {
                            out.insert((path.clone(), method.to_owned()));
                            found += 1;
                        }
                        h = after;
                    }
                }
                assert!(found > 0, "{}: no method in .route({call})", file.display());
            }
        }
        out
    }

    fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                collect_rs(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The text up to the parenthesis that closes the one just opened.
    fn balanced(text: &str) -> &str {
        let mut depth = 1;
        let mut in_string = false;
        for (i, c) in text.char_indices() {
            match c {
                '"' => in_string = !in_string,
                '(' if !in_string => depth += 1,
                ')' if !in_string => {
                    depth -= 1;
                    if depth == 0 {
                        return &text[..i];
                    }
                }
                _ => {}
            }
        }
        text
    }

    /// Source without `//` comments (doc comments mention routes too).
    fn strip_comments(text: &str) -> String {
        text.lines()
            .map(|line| match line.find("//") {
                Some(i) if !line[..i].contains('"') => &line[..i],
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_route_is_documented_and_every_documented_path_is_routed() {
        let documented = documented();
        let routed = routed();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routes without an OpenAPI operation (add a #[utoipa::path] and list it in \
             openapi::ApiDoc): {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "documented operations no router serves: {unrouted:?}"
        );
        // The check itself sees the routes (a parser that finds nothing passes nothing).
        assert!(routed.contains(&("/oauth/token".to_owned(), "post".to_owned())));
        assert!(routed.contains(&("/oauth/clients/{client_id}".to_owned(), "delete".to_owned())));
        assert!(routed.len() >= 34, "{routed:?}");
    }

    /// The API listener's documented paths are the route templates the rate limits and
    /// their configuration name (`latchkey_domain::limits::ROUTES`).
    #[test]
    fn documented_paths_are_the_route_templates() {
        let paths: BTreeSet<&str> = document()
            .paths
            .paths
            .keys()
            .map(String::as_str)
            .filter(|p| *p != "/metrics")
            .collect();
        let templates: BTreeSet<&str> = routes::TEMPLATES.iter().copied().collect();
        assert_eq!(paths, templates);
    }

    #[test]
    fn the_document_is_openapi_3_1_with_its_security_schemes() {
        let doc = serde_json::to_value(document()).expect("json");
        assert_eq!(doc["openapi"], "3.1.0");
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["client_basic"]["scheme"], "basic");
        assert_eq!(schemes["user_token"]["scheme"], "bearer");
        let token = &doc["paths"]["/oauth/token"]["post"];
        let form = &token["requestBody"]["content"]["application/x-www-form-urlencoded"];
        assert!(form.is_object(), "{token}");
        for status in ["200", "400", "401", "408", "413", "429", "503"] {
            assert!(token["responses"][status].is_object(), "{status}: {token}");
        }
    }
}
