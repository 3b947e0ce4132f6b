//! Black-box tests of the OAuth 2.0 authorization server on both backends: every grant,
//! PKCE, the authorization endpoint's pages, introspection, revocation, discovery and
//! the admin API. A separate independent client library (`oauth2`) completes grants too.

mod common;

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Backend, ISSUER, TestServer};
use latchkey_domain::clients::ClientInput;
use serde_json::Value;
use sqlx::Row;

both_backends!(
    client_credentials_and_client_authentication,
    token_endpoint_errors_follow_rfc6749,
    authorization_code_with_pkce_and_oidc,
    authorization_endpoint_refuses_bad_requests,
    pkce_and_code_failures,
    refresh_and_password_grants,
    introspection_and_revocation,
    discovery_documents,
    admin_api_manages_api_clients_only,
    independent_oauth2_client_library,
    independent_openid_connect_library,
    a_password_change_ends_the_browser_sign_in,
    account_endpoints_take_only_first_party_tokens,
    revoking_a_grant_revokes_its_access_tokens,
    rp_initiated_logout_ends_the_sign_in_and_the_session,
);

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| (*s).to_owned()).collect())
}

fn claims(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

async fn json(response: reqwest::Response) -> Value {
    response.json().await.expect("json body")
}

/// A confidential client allowed everything the tests need.
fn confidential(id: &str, grants: &[&str], scopes: &[&str]) -> ClientInput {
    ClientInput {
        client_id: Some(id.into()),
        grant_types: strings(grants),
        scopes: strings(scopes),
        redirect_uris: strings(&["https://app.example.com/callback", "http://127.0.0.1:9/cb"]),
        ..ClientInput::default()
    }
}

async fn client_credentials_and_client_authentication(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (client, secret) = server
        .client(confidential(
            "svc",
            &["client_credentials"],
            &["read", "write"],
        ))
        .await;
    let secret = secret.expect("secret");

    let response = server
        .post_form(
            "/oauth/token",
            Some(("svc", &secret)),
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body = json(response).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "read");
    assert_eq!(body["expires_in"], 900);
    assert!(
        body.get("refresh_token").is_none(),
        "no refresh token for client_credentials"
    );
    let c = claims(body["access_token"].as_str().expect("token"));
    assert_eq!(c["sub"], "svc");
    assert_eq!(c["client_id"], "svc");
    assert_eq!(c["iss"], ISSUER);

    // No scope asked: the client's whole allowed set.
    let body = json(
        server
            .post_form(
                "/oauth/token",
                Some(("svc", &secret)),
                &[("grant_type", "client_credentials")],
            )
            .await,
    )
    .await;
    assert_eq!(body["scope"], "read write");

    // client_secret_post for a client registered for it; Basic is then refused.
    let (_, post_secret) = server
        .client(ClientInput {
            token_endpoint_auth_method: Some("client_secret_post".into()),
            ..confidential("poster", &["client_credentials"], &["read"])
        })
        .await;
    let post_secret = post_secret.expect("secret");
    let ok = server
        .post_form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "poster"),
                ("client_secret", &post_secret),
            ],
        )
        .await;
    assert_eq!(ok.status(), 200);
    let wrong_method = server
        .post_form(
            "/oauth/token",
            Some(("poster", &post_secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(wrong_method.status(), 401);

    // Wrong secret, unknown client, no credentials: 401 invalid_client with a Basic challenge.
    for (basic, form) in [
        (
            Some(("svc", "wrong-secret")),
            vec![("grant_type", "client_credentials")],
        ),
        (
            Some(("nobody", secret.as_str())),
            vec![("grant_type", "client_credentials")],
        ),
        (None, vec![("grant_type", "client_credentials")]),
    ] {
        let response = server.post_form("/oauth/token", basic, &form).await;
        assert_eq!(response.status(), 401);
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .expect("h")
                .starts_with("Basic")
        );
        assert_eq!(json(response).await["error"], "invalid_client");
    }
    // Secret in both the header and the body.
    let both = server
        .post_form(
            "/oauth/token",
            Some(("svc", &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(both.status(), 400);
    assert_eq!(json(both).await["error"], "invalid_request");

    // The stored row holds a digest of the secret, never the secret.
    let row = sqlx::query("SELECT secret_hash FROM oauth_clients WHERE client_id = 'svc'")
        .fetch_one(server.db.pool())
        .await
        .expect("row");
    let hash: String = row.get("secret_hash");
    assert_eq!(Some(hash), client.secret_hash);
    assert_ne!(client.secret_hash.as_deref(), Some(secret.as_str()));
}

async fn token_endpoint_errors_follow_rfc6749(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, secret) = server
        .client(confidential("svc", &["client_credentials"], &["read"]))
        .await;
    let secret = secret.expect("secret");
    let basic = Some(("svc", secret.as_str()));
    type Case = (Vec<(&'static str, &'static str)>, u16, &'static str);
    let cases: Vec<Case> = vec![
        (
            vec![("grant_type", "implicit")],
            400,
            "unsupported_grant_type",
        ),
        (vec![], 400, "invalid_request"),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "read admin"),
            ],
            400,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("username", "u"),
                ("password", "p"),
            ],
            400,
            "unauthorized_client",
        ),
    ];
    for (form, status, error) in cases {
        let response = server.post_form("/oauth/token", basic, &form).await;
        assert_eq!(response.status(), status, "{form:?}");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body = json(response).await;
        assert_eq!(body["error"], error, "{form:?}");
        assert!(body["error_description"].is_string());
    }
    // Repeated parameter (RFC 6749 §3.2).
    let response = server
        .http
        .post(server.url("/oauth/token"))
        .basic_auth("svc", Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=read&scope=read")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    assert_eq!(json(response).await["error"], "invalid_request");
    // JSON instead of a form.
    let response = server
        .http
        .post(server.url("/oauth/token"))
        .basic_auth("svc", Some(&secret))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
}

/// A user agent: keeps cookies, never follows redirects.
struct Browser<'a> {
    server: &'a TestServer,
    cookies: HashMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(server: &'a TestServer) -> Self {
        Self {
            server,
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().expect("cookie");
            assert!(
                text.contains("HttpOnly") && text.contains("SameSite=Lax"),
                "{text}"
            );
            let (pair, _) = text.split_once(';').expect("attributes");
            let (k, v) = pair.split_once('=').expect("pair");
            self.cookies.insert(k.to_owned(), v.to_owned());
        }
    }

    async fn get(&mut self, path_and_query: &str) -> reqwest::Response {
        let response = self
            .server
            .http
            .get(self.server.url(path_and_query))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("get");
        self.keep(&response);
        response
    }

    async fn post(&mut self, form: &[(String, String)]) -> reqwest::Response {
        let response = self
            .server
            .http
            .post(self.server.url("/oauth/authorize"))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .expect("post");
        self.keep(&response);
        response
    }
}

/// The hidden fields of the page's form.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|chunk| {
            let name = chunk
                .split("name=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .expect("name");
            let value = chunk
                .split("value=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .expect("value");
            (
                name.to_owned(),
                value.replace("&amp;", "&").replace("&quot;", "\""),
            )
        })
        .collect()
}

fn pkce_pair() -> (String, String) {
    let verifier = latchkey_domain::tokens::random_token(48).expect("random");
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(hash.as_ref()))
}

fn location_params(response: &reqwest::Response) -> (String, HashMap<String, String>) {
    assert_eq!(response.status(), 303, "expected a redirect");
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let (base, query) = location.split_once('?').expect("query");
    let params = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    (base.to_owned(), params)
}

fn authorize_query(client_id: &str, redirect: &str, scope: &str, challenge: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", scope)
        .append_pair("state", "st-123")
        .append_pair("nonce", "n-456")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .finish()
}

/// Redeems `code` (issued for the test clients' `https://app.example.com/callback`) at
/// the token endpoint with PKCE `verifier`, authenticating as `client` (Basic).
async fn redeem_code(
    server: &TestServer,
    client: (&str, &str),
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    server
        .post_form(
            "/oauth/token",
            Some(client),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", "https://app.example.com/callback"),
                ("code_verifier", verifier),
            ],
        )
        .await
}

/// Signs `user` in at the `web` client (scope `openid`) in `browser`, approves, and
/// redeems the code: the authorization query (to visit the endpoint again) and the
/// token response.
async fn openid_sign_in(
    server: &TestServer,
    browser: &mut Browser<'_>,
    secret: &str,
    user: &str,
    password: &str,
) -> (String, Value) {
    let (verifier, challenge) = pkce_pair();
    let query = authorize_query(
        "web",
        "https://app.example.com/callback",
        "openid",
        &challenge,
    );
    let code = sign_in_and_approve(server, browser, &query, user, password).await;
    let tokens = json(redeem_code(server, ("web", secret), &code, &verifier).await).await;
    (query, tokens)
}

/// Drives the login and consent pages; returns the code.
async fn sign_in_and_approve(
    server: &TestServer,
    browser: &mut Browser<'_>,
    query: &str,
    user: &str,
    password: &str,
) -> String {
    let page = browser.get(&format!("/oauth/authorize?{query}")).await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/html")
    );
    let html = page.text().await.expect("html");
    assert!(html.contains("name=\"password\""));
    let mut form = hidden_fields(&html);
    form.push(("username".into(), user.into()));
    form.push(("password".into(), password.into()));
    let consent = browser.post(&form).await;
    assert_eq!(consent.status(), 200, "consent page after login");
    let html = consent.text().await.expect("html");
    assert!(html.contains("wants to access your account"), "{html}");
    assert!(
        html.contains(&format!("Signed in as <strong>{user}</strong>")),
        "{html}"
    );
    assert!(
        html.contains("sent to <strong>app.example.com</strong>"),
        "{html}"
    );
    let mut form = hidden_fields(&html);
    form.push(("action".into(), "approve".into()));
    let redirect = browser.post(&form).await;
    let (base, params) = location_params(&redirect);
    assert_eq!(base, "https://app.example.com/callback");
    assert_eq!(params["state"], "st-123");
    assert_eq!(params["iss"], ISSUER);
    let _ = server;
    params["code"].clone()
}

async fn authorization_code_with_pkce_and_oidc(backend: Backend) {
    let server = TestServer::start(backend).await;
    let password = server.register("alice").await;
    let (_, secret) = server
        .client(ClientInput {
            name: Some("Photo Printer".into()),
            ..confidential(
                "web",
                &["authorization_code", "refresh_token"],
                &["openid", "profile", "email", "photos"],
            )
        })
        .await;
    let secret = secret.expect("secret");
    let (verifier, challenge) = pkce_pair();
    let mut browser = Browser::new(&server);
    let code = sign_in_and_approve(
        &server,
        &mut browser,
        &authorize_query(
            "web",
            "https://app.example.com/callback",
            "openid profile email photos",
            &challenge,
        ),
        "alice",
        &password,
    )
    .await;

    let exchange = |code: String, verifier: String| {
        let server = &server;
        let secret = secret.clone();
        async move { redeem_code(server, ("web", &secret), &code, &verifier).await }
    };
    let code_for_check = code.clone();
    let response = exchange(code.clone(), verifier.clone()).await;
    assert_eq!(response.status(), 200);
    let tokens = json(response).await;
    assert_eq!(tokens["scope"], "openid profile email photos");
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    assert!(tokens["refresh_token"].is_string());

    let id = claims(tokens["id_token"].as_str().expect("id_token"));
    assert_eq!(id["aud"], "web");
    assert_eq!(id["iss"], ISSUER);
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["email"], "alice@example.com");
    assert!(id["auth_time"].is_i64());
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes());
    assert_eq!(id["at_hash"], URL_SAFE_NO_PAD.encode(&hash.as_ref()[..16]));

    let userinfo = server.get_with_token("/userinfo", &access).await;
    assert_eq!(userinfo.status(), 200);
    let userinfo = json(userinfo).await;
    assert_eq!(userinfo["sub"], id["sub"]);
    assert_eq!(userinfo["email"], "alice@example.com");

    // A second authorization skips the login page (the session cookie) but not consent.
    let (_, challenge2) = pkce_pair();
    let page = browser
        .get(&format!(
            "/oauth/authorize?{}",
            authorize_query(
                "web",
                "https://app.example.com/callback",
                "photos",
                &challenge2
            )
        ))
        .await;
    assert!(
        page.text()
            .await
            .expect("html")
            .contains("wants to access your account")
    );

    // Replaying the code fails and revokes what it issued.
    let replay = exchange(code, verifier).await;
    assert_eq!(replay.status(), 400);
    assert_eq!(json(replay).await["error"], "invalid_grant");
    assert_eq!(
        server.get_with_token("/userinfo", &access).await.status(),
        401
    );
    let refresh = server
        .post_form(
            "/oauth/token",
            Some(("web", &secret)),
            &[
                ("grant_type", "refresh_token"),
                (
                    "refresh_token",
                    tokens["refresh_token"].as_str().expect("r"),
                ),
            ],
        )
        .await;
    assert_eq!(refresh.status(), 400);

    // Codes are stored as digests only.
    let code_hashes: Vec<String> = sqlx::query("SELECT code_hash FROM authorization_codes")
        .fetch_all(server.db.pool())
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get("code_hash"))
        .collect();
    assert!(code_hashes.contains(&latchkey_domain::tokens::digest(&code_for_check)));
    assert!(!code_hashes.contains(&code_for_check));
}

async fn authorization_endpoint_refuses_bad_requests(backend: Backend) {
    let server = TestServer::start(backend).await;
    let password = server.register("bob").await;
    server
        .client(ClientInput {
            first_party: Some(true),
            ..confidential("web", &["authorization_code"], &["openid", "read"])
        })
        .await;
    server
        .client(ClientInput {
            client_id: Some("spa".into()),
            public: Some(true),
            redirect_uris: strings(&["http://127.0.0.1:9/cb"]),
            scopes: strings(&["read"]),
            ..ClientInput::default()
        })
        .await;
    let (_, challenge) = pkce_pair();
    let mut browser = Browser::new(&server);

    // Unknown client or a redirect URI that is not registered exactly: an error page, never a redirect.
    for query in [
        authorize_query(
            "nobody",
            "https://app.example.com/callback",
            "read",
            &challenge,
        ),
        authorize_query(
            "web",
            "https://app.example.com/callback/../evil",
            "read",
            &challenge,
        ),
        authorize_query(
            "web",
            "https://app.example.com/callbackx",
            "read",
            &challenge,
        ),
        authorize_query(
            "web",
            "https://app.example.com/callback?x=1",
            "read",
            &challenge,
        ),
        authorize_query("web", "https://app.example.com", "read", &challenge),
        authorize_query(
            "web",
            "https://evil.example.com/callback",
            "read",
            &challenge,
        ),
    ] {
        let response = browser.get(&format!("/oauth/authorize?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        assert!(response.headers().get("location").is_none());
        assert!(
            response
                .text()
                .await
                .expect("html")
                .contains("Cannot continue")
        );
    }

    // Other errors go back to the client with error and state.
    let redirect_error = |query: String| {
        let server = &server;
        async move {
            let response = server.get(&format!("/oauth/authorize?{query}")).await;
            let (_, params) = location_params(&response);
            assert_eq!(params["state"], "st-123");
            params["error"].clone()
        }
    };
    let token_type = authorize_query(
        "web",
        "https://app.example.com/callback",
        "read",
        &challenge,
    )
    .replace("response_type=code", "response_type=token");
    assert_eq!(
        redirect_error(token_type).await,
        "unsupported_response_type"
    );
    let plain = authorize_query(
        "web",
        "https://app.example.com/callback",
        "read",
        &challenge,
    )
    .replace("code_challenge_method=S256", "code_challenge_method=plain");
    assert_eq!(redirect_error(plain).await, "invalid_request");
    let widen = authorize_query(
        "web",
        "https://app.example.com/callback",
        "read admin",
        &challenge,
    );
    assert_eq!(redirect_error(widen).await, "invalid_scope");
    let no_pkce = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", "spa")
        .append_pair("state", "st-123")
        .finish();
    assert_eq!(redirect_error(no_pkce).await, "invalid_request");
    let prompt_none = format!(
        "{}&prompt=none",
        authorize_query(
            "web",
            "https://app.example.com/callback",
            "read",
            &challenge
        )
    );
    assert_eq!(redirect_error(prompt_none).await, "login_required");

    // A form post without the CSRF cookie is refused.
    let page = browser
        .get(&format!(
            "/oauth/authorize?{}",
            authorize_query(
                "web",
                "https://app.example.com/callback",
                "read",
                &challenge
            )
        ))
        .await;
    let mut form = hidden_fields(&page.text().await.expect("html"));
    form.push(("username".into(), "bob".into()));
    form.push(("password".into(), password.clone()));
    let forged = server
        .http
        .post(server.url("/oauth/authorize"))
        .form(&form)
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), 400);
    assert!(forged.headers().get("location").is_none());
    let mut tampered = form.clone();
    for field in &mut tampered {
        if field.0 == "csrf_token" {
            field.1 = "forged".into();
        }
    }
    assert_eq!(browser.post(&tampered).await.status(), 400);

    // Wrong password: the login page again, 401, no session.
    let mut wrong = form.clone();
    wrong.retain(|(k, _)| k != "password");
    wrong.push(("password".into(), "not the password".into()));
    let response = browser.post(&wrong).await;
    assert_eq!(response.status(), 401);
    assert!(response.text().await.expect("html").contains("incorrect"));

    // First-party client: no consent page, straight back with a code.
    let response = browser.post(&form).await;
    let (_, params) = location_params(&response);
    assert!(params.contains_key("code"));

    // Deny on a consent page answers access_denied.
    server
        .client(confidential("third", &["authorization_code"], &["read"]))
        .await;
    let page = browser
        .get(&format!(
            "/oauth/authorize?{}",
            authorize_query(
                "third",
                "https://app.example.com/callback",
                "read",
                &challenge
            )
        ))
        .await;
    let mut form = hidden_fields(&page.text().await.expect("html"));
    form.push(("action".into(), "deny".into()));
    let (_, params) = location_params(&browser.post(&form).await);
    assert_eq!(params["error"], "access_denied");
}

async fn pkce_and_code_failures(backend: Backend) {
    let server = TestServer::start(backend).await;
    let password = server.register("carol").await;
    let (_, secret) = server
        .client(ClientInput {
            first_party: Some(true),
            ..confidential("web", &["authorization_code"], &["read"])
        })
        .await;
    let secret = secret.expect("secret");
    server
        .client(confidential("other", &["authorization_code"], &["read"]))
        .await;

    async fn code_for(server: &TestServer, password: &str, challenge: &str) -> String {
        let mut browser = Browser::new(server);
        let page = browser
            .get(&format!(
                "/oauth/authorize?{}",
                authorize_query("web", "https://app.example.com/callback", "read", challenge)
            ))
            .await;
        let mut form = hidden_fields(&page.text().await.expect("html"));
        form.push(("username".into(), "carol".into()));
        form.push(("password".into(), password.into()));
        let (_, params) = location_params(&browser.post(&form).await);
        params["code"].clone()
    }
    let token = |code: String, extra: Vec<(&'static str, String)>| {
        let server = &server;
        let secret = secret.clone();
        async move {
            let mut form: Vec<(&str, String)> =
                vec![("grant_type", "authorization_code".into()), ("code", code)];
            form.extend(extra);
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let response = server
                .post_form("/oauth/token", Some(("web", &secret)), &form)
                .await;
            (response.status().as_u16(), json(response).await)
        }
    };
    let (verifier, challenge) = pkce_pair();
    let redirect = || {
        (
            "redirect_uri",
            "https://app.example.com/callback".to_owned(),
        )
    };

    let (status, body) = token(
        code_for(&server, &password, &challenge).await,
        vec![("code_verifier", "x".repeat(43)), redirect()],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "wrong verifier"
    );
    let (status, body) = token(
        code_for(&server, &password, &challenge).await,
        vec![redirect()],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "missing verifier"
    );
    let (status, body) = token(
        code_for(&server, &password, &challenge).await,
        vec![
            ("code_verifier", verifier.clone()),
            ("redirect_uri", "https://app.example.com/callbackx".into()),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "redirect mismatch"
    );

    // Expired code.
    let code = code_for(&server, &password, &challenge).await;
    sqlx::query("UPDATE authorization_codes SET expires_at = 0 WHERE code_hash = $1")
        .bind(latchkey_domain::tokens::digest(&code))
        .execute(server.db.pool())
        .await
        .expect("expire");
    let (status, body) = token(
        code,
        vec![
            ("code_verifier", verifier.clone()),
            ("redirect_uri", "https://app.example.com/callback".into()),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "expired"
    );

    // A confidential client cannot redeem without its secret.
    let code = code_for(&server, &password, &challenge).await;
    let response = server
        .post_form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", "web"),
            ],
        )
        .await;
    assert_eq!(
        response.status(),
        401,
        "confidential client without its secret"
    );

    // And the happy path still works with the right verifier.
    let code = code_for(&server, &password, &challenge).await;
    let (status, _) = token(
        code,
        vec![
            ("code_verifier", verifier),
            ("redirect_uri", "https://app.example.com/callback".into()),
        ],
    )
    .await;
    assert_eq!(status, 200);
}

async fn refresh_and_password_grants(backend: Backend) {
    let server = TestServer::start(backend).await;
    let password = server.register("dave").await;
    let (_, secret) = server
        .client(confidential(
            "cli",
            &["password", "refresh_token"],
            &["read", "write"],
        ))
        .await;
    let secret = secret.expect("secret");
    let (_, other_secret) = server
        .client(confidential(
            "other",
            &["password", "refresh_token"],
            &["read", "write"],
        ))
        .await;
    let other_secret = other_secret.expect("secret");
    let basic = Some(("cli", secret.as_str()));

    let wrong = server
        .post_form(
            "/oauth/token",
            basic,
            &[
                ("grant_type", "password"),
                ("username", "dave"),
                ("password", "nope nope nope"),
            ],
        )
        .await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(json(wrong).await["error"], "invalid_grant");

    let tokens = json(
        server
            .post_form(
                "/oauth/token",
                basic,
                &[
                    ("grant_type", "password"),
                    ("username", "dave"),
                    ("password", &password),
                ],
            )
            .await,
    )
    .await;
    assert_eq!(tokens["scope"], "read write");
    let r1 = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();

    // Widening is refused and does not consume the token.
    let widen = server
        .post_form(
            "/oauth/token",
            basic,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &r1),
                ("scope", "read admin"),
            ],
        )
        .await;
    assert_eq!(json(widen).await["error"], "invalid_scope");
    // Another client cannot use it, and does not consume it either.
    let stolen = server
        .post_form(
            "/oauth/token",
            Some(("other", &other_secret)),
            &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
        )
        .await;
    assert_eq!(json(stolen).await["error"], "invalid_grant");

    // Narrowing works; the access token gets the narrower scope.
    let narrowed = json(
        server
            .post_form(
                "/oauth/token",
                basic,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &r1),
                    ("scope", "read"),
                ],
            )
            .await,
    )
    .await;
    assert_eq!(narrowed["scope"], "read");
    assert_eq!(
        claims(narrowed["access_token"].as_str().expect("a"))["scope"],
        "read"
    );
    let r2 = narrowed["refresh_token"].as_str().expect("r2").to_owned();

    // The successor keeps the original scope.
    let again = json(
        server
            .post_form(
                "/oauth/token",
                basic,
                &[("grant_type", "refresh_token"), ("refresh_token", &r2)],
            )
            .await,
    )
    .await;
    assert_eq!(again["scope"], "read write");
    let r3 = again["refresh_token"].as_str().expect("r3").to_owned();

    // Reusing r1 revokes the family: r3 dies too.
    let reuse = server
        .post_form(
            "/oauth/token",
            basic,
            &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
        )
        .await;
    assert_eq!(json(reuse).await["error"], "invalid_grant");
    let after = server
        .post_form(
            "/oauth/token",
            basic,
            &[("grant_type", "refresh_token"), ("refresh_token", &r3)],
        )
        .await;
    assert_eq!(json(after).await["error"], "invalid_grant");
}

async fn introspection_and_revocation(backend: Backend) {
    let server = TestServer::start(backend).await;
    let password = server.register("erin").await;
    let (_, secret) = server
        .client(confidential(
            "rs",
            &["client_credentials", "password", "refresh_token"],
            &["read"],
        ))
        .await;
    let secret = secret.expect("secret");
    let (_, other) = server
        .client(confidential("other", &["client_credentials"], &["read"]))
        .await;
    let other = other.expect("secret");
    let basic = Some(("rs", secret.as_str()));
    let tokens = json(
        server
            .post_form(
                "/oauth/token",
                basic,
                &[
                    ("grant_type", "password"),
                    ("username", "erin"),
                    ("password", &password),
                ],
            )
            .await,
    )
    .await;
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();

    let introspect = |token: String, hint: Option<&'static str>| {
        let server = &server;
        let secret = secret.clone();
        async move {
            let mut form = vec![("token", token.as_str())];
            if let Some(hint) = hint {
                form.push(("token_type_hint", hint));
            }
            let response = server
                .post_form("/oauth/introspect", Some(("rs", &secret)), &form)
                .await;
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["cache-control"], "no-store");
            json(response).await
        }
    };
    let active = introspect(access.clone(), None).await;
    assert_eq!(active["active"], true);
    for field in [
        "scope",
        "client_id",
        "username",
        "token_type",
        "exp",
        "iat",
        "nbf",
        "sub",
        "aud",
        "iss",
        "jti",
    ] {
        assert!(
            active.get(field).is_some(),
            "introspection lacks {field}: {active}"
        );
    }
    assert_eq!(active["username"], "erin");
    assert_eq!(active["client_id"], "rs");
    // The hint is only a hint.
    assert_eq!(
        introspect(access.clone(), Some("refresh_token")).await["active"],
        true
    );
    let r = introspect(refresh.clone(), Some("access_token")).await;
    assert_eq!(
        (r["active"].as_bool(), r["token_type"].as_str()),
        (Some(true), Some("refresh_token"))
    );
    for junk in ["garbage", "a.b.c"] {
        assert_eq!(
            introspect(junk.to_owned(), None).await,
            serde_json::json!({"active": false})
        );
    }
    // Introspection needs client authentication.
    let anonymous = server
        .post_form("/oauth/introspect", None, &[("token", &access)])
        .await;
    assert_eq!(anonymous.status(), 401);

    // Revocation: unknown tokens are fine; another client's token is left alone.
    let unknown = server
        .post_form("/oauth/revoke", basic, &[("token", "no-such-token")])
        .await;
    assert_eq!(unknown.status(), 200);
    let foreign = server
        .post_form(
            "/oauth/revoke",
            Some(("other", &other)),
            &[("token", &access)],
        )
        .await;
    assert_eq!(foreign.status(), 200);
    assert_eq!(introspect(access.clone(), None).await["active"], true);

    let revoked = server
        .post_form("/oauth/revoke", basic, &[("token", &access)])
        .await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(introspect(access.clone(), None).await["active"], false);
    assert_eq!(
        server.get_with_token("/users/me", &access).await.status(),
        401
    );

    let revoked = server
        .post_form(
            "/oauth/revoke",
            basic,
            &[("token", &refresh), ("token_type_hint", "refresh_token")],
        )
        .await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(introspect(refresh.clone(), None).await["active"], false);
    let refreshed = server
        .post_form(
            "/oauth/token",
            basic,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(json(refreshed).await["error"], "invalid_grant");
}

async fn discovery_documents(backend: Backend) {
    let server = TestServer::start(backend).await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let doc = json(server.get(path).await).await;
        assert_eq!(doc["issuer"], ISSUER);
        for (field, value) in [
            ("authorization_endpoint", "/oauth/authorize"),
            ("token_endpoint", "/oauth/token"),
            ("jwks_uri", "/.well-known/jwks.json"),
            ("userinfo_endpoint", "/userinfo"),
            ("introspection_endpoint", "/oauth/introspect"),
            ("revocation_endpoint", "/oauth/revoke"),
        ] {
            assert_eq!(doc[field], format!("{ISSUER}{value}"), "{field}");
        }
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            serde_json::json!(["RS256"])
        );
        assert_eq!(
            doc["subject_types_supported"],
            serde_json::json!(["public"])
        );
    }
}

async fn admin_api_manages_api_clients_only(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, secret) = server
        .client(ClientInput {
            admin: Some(true),
            ..confidential("admin", &["client_credentials"], &["latchkey:admin"])
        })
        .await;
    let (_, plain) = server
        .client(confidential("plain", &["client_credentials"], &["read"]))
        .await;
    let token_of = |id: &'static str, secret: String| {
        let server = &server;
        async move {
            let body = json(
                server
                    .post_form(
                        "/oauth/token",
                        Some((id, &secret)),
                        &[("grant_type", "client_credentials")],
                    )
                    .await,
            )
            .await;
            body["access_token"].as_str().expect("token").to_owned()
        }
    };
    let admin = token_of("admin", secret.expect("secret")).await;
    let plain = token_of("plain", plain.expect("secret")).await;

    let forbidden = server.get_with_token("/oauth/clients", &plain).await;
    assert_eq!(forbidden.status(), 403);
    assert!(
        forbidden.headers()["www-authenticate"]
            .to_str()
            .expect("h")
            .contains("insufficient_scope")
    );

    let created = server
        .http
        .post(server.url("/oauth/clients"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"client_id": "made", "grant_types": ["client_credentials"], "scopes": ["read"]}))
        .send()
        .await
        .expect("send");
    assert_eq!(created.status(), 201);
    let created = json(created).await;
    let made_secret = created["client_secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    let works = server
        .post_form(
            "/oauth/token",
            Some(("made", &made_secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(works.status(), 200);

    let shown = json(server.get_with_token("/oauth/clients/made", &admin).await).await;
    assert!(shown.get("client_secret").is_none());
    let listed = json(server.get_with_token("/oauth/clients", &admin).await).await;
    assert_eq!(listed.as_array().expect("list").len(), 3);

    let patched = server
        .http
        .patch(server.url("/oauth/clients/made"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"scopes": ["read", "write"]}))
        .send()
        .await
        .expect("send");
    assert_eq!(
        json(patched).await["scopes"],
        serde_json::json!(["read", "write"])
    );
    let invalid = server
        .http
        .patch(server.url("/oauth/clients/made"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"redirect_uris": ["http://evil.example.com/cb"]}))
        .send()
        .await
        .expect("send");
    assert_eq!(invalid.status(), 422);

    // Operator-managed rows are read-only here.
    let mut managed = latchkey_domain::clients::create(
        confidential("ns.app", &["client_credentials"], &["read"]),
        0,
    )
    .expect("valid")
    .0;
    managed.managed_by = latchkey_store::clients::ManagedBy::Operator;
    latchkey_store::clients::insert(&server.db, &managed)
        .await
        .expect("insert");
    let refused = server
        .http
        .delete(server.url("/oauth/clients/ns.app"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 409);
    assert_eq!(json(refused).await["error"], "managed_by_operator");

    let deleted = server
        .http
        .delete(server.url("/oauth/clients/made"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("send");
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        server
            .get_with_token("/oauth/clients/made", &admin)
            .await
            .status(),
        404
    );
}

/// The `oauth2` crate, an independent client implementation, completes the
/// client-credentials, password, refresh and authorization-code (+PKCE) grants.
async fn independent_oauth2_client_library(backend: Backend) {
    use oauth2::basic::BasicClient;
    use oauth2::{
        AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
        RedirectUrl, ResourceOwnerPassword, ResourceOwnerUsername, Scope, TokenResponse, TokenUrl,
    };

    let server = TestServer::start(backend).await;
    let password = server.register("frank").await;
    let (_, secret) = server
        .client(ClientInput {
            first_party: Some(true),
            ..confidential(
                "lib",
                &[
                    "authorization_code",
                    "client_credentials",
                    "password",
                    "refresh_token",
                ],
                &["read"],
            )
        })
        .await;
    let http = server.http.clone();
    let send = move |request| common::library_http(http.clone(), request);
    let client = BasicClient::new(ClientId::new("lib".into()))
        .set_client_secret(ClientSecret::new(secret.expect("secret")))
        .set_auth_uri(AuthUrl::new(server.url("/oauth/authorize")).expect("url"))
        .set_token_uri(TokenUrl::new(server.url("/oauth/token")).expect("url"))
        .set_redirect_uri(
            RedirectUrl::new("https://app.example.com/callback".into()).expect("url"),
        );

    let cc = client
        .exchange_client_credentials()
        .add_scope(Scope::new("read".into()))
        .request_async(&send)
        .await
        .expect("client_credentials");
    assert_eq!(claims(cc.access_token().secret())["client_id"], "lib");

    let pw = client
        .exchange_password(
            &ResourceOwnerUsername::new("frank".into()),
            &ResourceOwnerPassword::new(password.clone()),
        )
        .request_async(&send)
        .await
        .expect("password");
    let refreshed = client
        .exchange_refresh_token(pw.refresh_token().expect("refresh token"))
        .request_async(&send)
        .await
        .expect("refresh");
    assert!(refreshed.refresh_token().is_some());

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("read".into()))
        .set_pkce_challenge(challenge)
        .url();
    let path = url
        .as_str()
        .strip_prefix(&server.base)
        .expect("our URL")
        .to_owned();
    let mut browser = Browser::new(&server);
    let page = browser.get(&path).await;
    let mut form = hidden_fields(&page.text().await.expect("html"));
    form.push(("username".into(), "frank".into()));
    form.push(("password".into(), password));
    let response = browser.post(&form).await;
    let (_, params) = location_params(&response);
    assert_eq!(&params["state"], csrf.secret());
    let exchanged = client
        .exchange_code(AuthorizationCode::new(params["code"].clone()))
        .set_pkce_verifier(verifier)
        .request_async(&send)
        .await
        .expect("code exchange");
    assert_eq!(claims(exchanged.access_token().secret())["scope"], "read");
}

/// The `openidconnect` crate discovers the provider, runs the authorization-code flow
/// with PKCE and nonce, and validates the ID token (signature from JWKS, iss, aud, nonce,
/// at_hash) and userinfo, with no Latchkey-specific configuration; with a key of each
/// algorithm (its at_hash is SHA-512 based for EdDSA).
async fn independent_openid_connect_library(backend: Backend) {
    for algorithm in ["RS256", "ES256", "EdDSA"] {
        openid_connect_library_with(backend, algorithm).await;
    }
}

async fn openid_connect_library_with(backend: Backend, algorithm: &str) {
    use openidconnect::core::{
        CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
    };
    use openidconnect::{
        AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
        OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
    };

    // The issuer must be where the server really is, so discovery URLs resolve.
    let server = TestServer::start_with_issuer_and(backend, &["--jwt-algorithm", algorithm]).await;
    let password = server.register("grace").await;
    let (_, secret) = server
        .client(ClientInput {
            first_party: Some(true),
            ..confidential(
                "oidc",
                &["authorization_code", "refresh_token"],
                &["openid", "profile", "email"],
            )
        })
        .await;
    let http = server.http.clone();
    let send = move |request| common::library_http(http.clone(), request);

    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(server.base.clone()).expect("issuer"),
        &send,
    )
    .await
    .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("oidc".into()),
        Some(ClientSecret::new(secret.expect("secret"))),
    )
    .set_redirect_uri(RedirectUrl::new("https://app.example.com/callback".into()).expect("url"));

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let path = url
        .as_str()
        .strip_prefix(&server.base)
        .expect("our URL")
        .to_owned();
    let mut browser = Browser::new(&server);
    let page = browser.get(&path).await;
    let mut form = hidden_fields(&page.text().await.expect("html"));
    form.push(("username".into(), "grace".into()));
    form.push(("password".into(), password));
    let (_, params) = location_params(&browser.post(&form).await);
    assert_eq!(&params["state"], csrf.secret());

    let tokens = client
        .exchange_code(AuthorizationCode::new(params["code"].clone()))
        .expect("token endpoint known")
        .set_pkce_verifier(verifier)
        .request_async(&send)
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("id_token");
    let verifier = client.id_token_verifier().set_allowed_algs(vec![
        serde_json::from_value(serde_json::json!(algorithm)).expect("a JWS algorithm"),
    ]);
    let id_claims = id_token
        .claims(&verifier, &nonce)
        .expect("ID token validates");
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().expect("alg"),
        id_token.signing_key(&verifier).expect("key"),
    )
    .expect("hash");
    assert_eq!(
        id_claims.access_token_hash(),
        Some(&expected_hash),
        "{algorithm}"
    );
    assert_eq!(
        id_token
            .signing_alg()
            .map(|alg| serde_json::to_value(alg).expect("alg")),
        Ok(serde_json::json!(algorithm))
    );
    assert_eq!(
        id_claims.preferred_username().map(|u| u.as_str()),
        Some("grace")
    );

    let userinfo: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .expect("userinfo endpoint known")
        .request_async(&send)
        .await
        .expect("userinfo");
    assert_eq!(
        userinfo.email().map(|e| e.as_str()),
        Some("grace@example.com")
    );
}

/// Issue 13, item 1 (its first half): a browser signed in at `/oauth/authorize` kept its
/// session through a password change (or reset) and so got new codes. The change ends
/// every browser session of the user: the same cookie meets the login page again.
async fn a_password_change_ends_the_browser_sign_in(backend: Backend) {
    let server = TestServer::start(backend).await;
    let password = server.register("mallory").await;
    server
        .client(confidential(
            "web",
            &["authorization_code", "refresh_token"],
            &["openid"],
        ))
        .await;
    let (_, challenge) = pkce_pair();
    let query = authorize_query(
        "web",
        "https://app.example.com/callback",
        "openid",
        &challenge,
    );
    let mut browser = Browser::new(&server);
    sign_in_and_approve(&server, &mut browser, &query, "mallory", &password).await;
    let asks_password = |response: reqwest::Response| async move {
        response.status() == 200
            && response
                .text()
                .await
                .expect("html")
                .contains("name=\"password\"")
    };
    // Signed in: the next authorization does not ask for the password.
    let again = browser.get(&format!("/oauth/authorize?{query}")).await;
    assert!(
        !asks_password(again).await,
        "the sign-in is live before the change"
    );

    let login = server
        .post_json(
            "/auth/login",
            &serde_json::json!({ "username": "mallory", "password": password }),
        )
        .await;
    assert_eq!(login.status(), 200);
    let tokens = json(login).await;
    let changed = server
        .http
        .post(server.url("/auth/change-password"))
        .bearer_auth(tokens["access_token"].as_str().expect("access token"))
        .json(&serde_json::json!({
            "current_password": password,
            "new_password": "a much better passphrase 2026",
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(changed.status(), 204);

    let after = browser.get(&format!("/oauth/authorize?{query}")).await;
    assert!(
        asks_password(after).await,
        "the same cookie must sign in again"
    );
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM browser_sessions")
        .fetch_one(server.db.pool())
        .await
        .expect("count");
    assert_eq!(left, 0);
}

/// Issue 13, item 3: a code-flow token of a client allowed only `openid` read the email
/// and full name at `/users/me` and could change the password. The account endpoints
/// now take only first-party tokens (from `/auth/login`); the client reads `/userinfo`,
/// which releases by scope (only `sub` here). No client may be registered as `latchkey`,
/// the first-party client id.
async fn account_endpoints_take_only_first_party_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let password = server.register("trent").await;
    let (_, secret) = server
        .client(confidential(
            "web",
            &["authorization_code", "refresh_token"],
            &["openid"],
        ))
        .await;
    let secret = secret.expect("secret");
    let mut browser = Browser::new(&server);
    let (_, tokens) = openid_sign_in(&server, &mut browser, &secret, "trent", &password).await;
    let access = tokens["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();

    let me = server.get_with_token("/users/me", &access).await;
    assert_eq!(me.status(), 403);
    assert!(
        me.headers()["www-authenticate"]
            .to_str()
            .expect("header")
            .contains("insufficient_scope")
    );
    let change = server
        .http
        .post(server.url("/auth/change-password"))
        .bearer_auth(&access)
        .json(&serde_json::json!({
            "current_password": password,
            "new_password": "a much better passphrase 2026",
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(change.status(), 403);
    let userinfo = json(server.get_with_token("/userinfo", &access).await).await;
    assert!(userinfo["sub"].is_string(), "{userinfo}");
    assert!(
        userinfo.get("email").is_none(),
        "openid alone releases no email: {userinfo}"
    );

    // The first-party token still reads the profile.
    let login = server
        .post_json(
            "/auth/login",
            &serde_json::json!({ "username": "trent", "password": password }),
        )
        .await;
    let first_party = json(login).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let me = json(server.get_with_token("/users/me", &first_party).await).await;
    assert_eq!(me["username"], "trent");

    // The first-party client id cannot be registered.
    let reserved = latchkey_domain::clients::create(
        ClientInput {
            client_id: Some("latchkey".into()),
            ..ClientInput::default()
        },
        0,
    );
    assert!(reserved.is_err());
}

/// Issue 13, item 5 (RFC 7009 §2.1, RFC 6749 §4.1.2): revoking a grant revokes the
/// access tokens issued from it. A refresh token revoked at `/oauth/revoke`, a replayed
/// refresh token, and a replayed code each leave no access token of the family usable,
/// also when the code's redemptions race (8 at once; the winner's token was seen to
/// survive in 3 of 10 trials on SQLite and 2 of 10 on PostgreSQL).
async fn revoking_a_grant_revokes_its_access_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let password = server.register("victor").await;
    let (_, secret) = server
        .client(confidential(
            "web",
            &["authorization_code", "refresh_token", "password"],
            &["openid", "read"],
        ))
        .await;
    let secret = secret.expect("secret");
    let basic = Some(("web", secret.as_str()));
    let active = |token: String| {
        let (server, secret) = (&server, secret.clone());
        async move {
            let response = server
                .post_form(
                    "/oauth/introspect",
                    Some(("web", &secret)),
                    &[("token", &token)],
                )
                .await;
            json(response).await["active"] == true
        }
    };
    let password_grant = || {
        let (server, password) = (&server, password.clone());
        async move {
            json(
                server
                    .post_form(
                        "/oauth/token",
                        basic,
                        &[
                            ("grant_type", "password"),
                            ("username", "victor"),
                            ("password", &password),
                            ("scope", "openid read"),
                        ],
                    )
                    .await,
            )
            .await
        }
    };

    // 1. The refresh token revoked at /oauth/revoke: its access token goes too.
    let tokens = password_grant().await;
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert!(active(access.clone()).await);
    let revoked = server
        .post_form("/oauth/revoke", basic, &[("token", &refresh)])
        .await;
    assert_eq!(revoked.status(), 200);
    assert!(
        !active(access.clone()).await,
        "access token outlived its revoked grant"
    );
    assert_eq!(
        server.get_with_token("/userinfo", &access).await.status(),
        401
    );

    // 2. A replayed refresh token: the successor's access token goes too.
    let tokens = password_grant().await;
    let first = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let rotated = json(
        server
            .post_form(
                "/oauth/token",
                basic,
                &[("grant_type", "refresh_token"), ("refresh_token", &first)],
            )
            .await,
    )
    .await;
    let successor_access = rotated["access_token"].as_str().expect("access").to_owned();
    assert!(active(successor_access.clone()).await);
    let replay = server
        .post_form(
            "/oauth/token",
            basic,
            &[("grant_type", "refresh_token"), ("refresh_token", &first)],
        )
        .await;
    assert_eq!(replay.status(), 400);
    assert!(
        !active(successor_access).await,
        "the replay must revoke the family"
    );

    // 3. Racing redemptions of one code: whoever wins, its access token dies with the
    // replays, every trial.
    for trial in 0..5 {
        let (verifier, challenge) = pkce_pair();
        let query = authorize_query(
            "web",
            "https://app.example.com/callback",
            "openid",
            &challenge,
        );
        let mut browser = Browser::new(&server);
        let code = sign_in_and_approve(&server, &mut browser, &query, "victor", &password).await;
        let redemptions = (0..8).map(|_| {
            let (server, code, verifier, secret) =
                (&server, code.clone(), verifier.clone(), secret.as_str());
            async move {
                let response = redeem_code(server, ("web", secret), &code, &verifier).await;
                (response.status().as_u16(), json(response).await)
            }
        });
        let answers = futures::future::join_all(redemptions).await;
        let winners: Vec<&Value> = answers
            .iter()
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
            .collect();
        assert_eq!(winners.len(), 1, "trial {trial}: {answers:?}");
        let access = winners[0]["access_token"]
            .as_str()
            .expect("access")
            .to_owned();
        assert!(
            !active(access.clone()).await,
            "trial {trial}: the winner's access token survived the replays"
        );
        assert_eq!(
            server.get_with_token("/userinfo", &access).await.status(),
            401
        );
    }
}

/// Issue 13, item 1 (its second half), OpenID Connect RP-Initiated Logout 1.0: discovery
/// names the `end_session_endpoint`; with the ID token as `id_token_hint` the browser's
/// sign-in ends and so does the session the ID token was issued in (its refresh token
/// and access token stop working), and the user is sent to the registered
/// `post_logout_redirect_uri` with `state`. An unregistered return address is an error
/// page, never a redirect; without a hint the user is asked first, and a forged POST
/// without the form's CSRF token ends nothing.
async fn rp_initiated_logout_ends_the_sign_in_and_the_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let password = server.register("wendy").await;
    let (_, secret) = server
        .client(ClientInput {
            post_logout_redirect_uris: strings(&["https://app.example.com/signed-out"]),
            ..confidential("web", &["authorization_code", "refresh_token"], &["openid"])
        })
        .await;
    let secret = secret.expect("secret");
    let metadata = json(server.get("/.well-known/openid-configuration").await).await;
    assert_eq!(
        metadata["end_session_endpoint"],
        format!(
            "{}/oauth/logout",
            metadata["issuer"].as_str().expect("issuer")
        )
    );
    let mut browser = Browser::new(&server);
    let (query, tokens) = openid_sign_in(&server, &mut browser, &secret, "wendy", &password).await;
    let id_token = tokens["id_token"].as_str().expect("id token").to_owned();
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_eq!(
        claims(&id_token)["sid"],
        claims(&access)["sid"],
        "one session id"
    );

    let logout = |query: String, cookie: String| {
        let server = &server;
        async move {
            server
                .http
                .get(server.url(&format!("/oauth/logout?{query}")))
                .header("cookie", cookie)
                .send()
                .await
                .expect("logout")
        }
    };
    let encode = |pairs: &[(&str, &str)]| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    };
    // An unregistered return address: an error page, and nothing ended.
    let refused = logout(
        encode(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ]),
        browser.cookie_header(),
    )
    .await;
    assert_eq!(refused.status(), 400);
    assert!(refused.headers().get("location").is_none());
    // Without a hint the user is asked; a POST without the form's token ends nothing.
    let asked = logout(encode(&[("client_id", "web")]), browser.cookie_header()).await;
    assert_eq!(asked.status(), 200);
    assert!(asked.text().await.expect("html").contains("Sign out?"));
    let forged = server
        .http
        .post(server.url("/oauth/logout"))
        .header("cookie", browser.cookie_header())
        .form(&[("action", "logout"), ("client_id", "web")])
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), 400);
    let still = browser.get(&format!("/oauth/authorize?{query}")).await;
    assert!(
        !still
            .text()
            .await
            .expect("html")
            .contains("name=\"password\""),
        "{backend:?}: still signed in after the refused requests"
    );
    assert_eq!(
        server.get_with_token("/userinfo", &access).await.status(),
        200
    );

    // The client's logout: back to the registered address, with state.
    let done = logout(
        encode(&[
            ("id_token_hint", &id_token),
            (
                "post_logout_redirect_uri",
                "https://app.example.com/signed-out",
            ),
            ("state", "bye-1"),
        ]),
        browser.cookie_header(),
    )
    .await;
    assert_eq!(done.status(), 303, "{backend:?}");
    assert_eq!(
        done.headers()["location"],
        "https://app.example.com/signed-out?state=bye-1"
    );
    let cleared = done
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().expect("cookie").contains("Max-Age=0"));
    assert!(cleared, "the session cookie is cleared");
    // The sign-in is over (even with the old cookie) and so is the session.
    let again = browser.get(&format!("/oauth/authorize?{query}")).await;
    assert!(
        again
            .text()
            .await
            .expect("html")
            .contains("name=\"password\""),
        "{backend:?}: the login page again"
    );
    assert_eq!(
        server.get_with_token("/userinfo", &access).await.status(),
        401
    );
    let refreshed = server
        .post_form(
            "/oauth/token",
            Some(("web", &secret)),
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(
        refreshed.status(),
        400,
        "{backend:?}: the refresh token is revoked"
    );
}
