//! Findings of the black-box attack (issue 13) that did not hold, one test each, on both
//! backends: the answer must be the same whichever storage is behind the service.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{Backend, TestServer};
use latchkey_domain::clients::ClientInput;
use serde_json::Value;

both_backends!(
    a_repeated_parameter_is_refused_even_after_an_empty_copy,
    nul_characters_answer_400_not_500,
    a_redirect_uri_is_judged_on_its_parsed_host,
    invalid_client_does_not_tell_which_clients_exist,
    an_oversized_token_request_is_413,
    client_lifetimes_have_the_service_caps,
    admin_rights_belong_to_the_client_never_to_a_consented_scope,
    introspection_shows_a_client_only_what_concerns_it,
    a_disabled_client_is_refused_everywhere_and_works_again_when_enabled,
);

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| (*s).to_owned()).collect())
}

/// A confidential client allowed the client-credentials and password grants.
async fn client(server: &TestServer) -> String {
    let (_, secret) = server
        .client(ClientInput {
            client_id: Some("svc".into()),
            grant_types: strings(&["client_credentials", "password"]),
            scopes: strings(&["read"]),
            ..ClientInput::default()
        })
        .await;
    secret.expect("a confidential client has a secret")
}

async fn post_raw(
    server: &TestServer,
    path: &str,
    content_type: &str,
    basic: Option<(&str, &str)>,
    body: &str,
) -> (u16, Value) {
    let mut request = server
        .http
        .post(server.url(path))
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

const FORM: &str = "application/x-www-form-urlencoded";

/// A token of an admin client (marked `admin`, holding `latchkey:admin`), for the admin
/// API.
async fn admin_token(server: &TestServer) -> String {
    let (_, secret) = server
        .client(ClientInput {
            client_id: Some("admin".into()),
            grant_types: strings(&["client_credentials"]),
            scopes: strings(&["latchkey:admin"]),
            admin: Some(true),
            ..ClientInput::default()
        })
        .await;
    token_for(
        server,
        "admin",
        &secret.expect("secret"),
        "grant_type=client_credentials",
    )
    .await
}

/// The access token `/oauth/token` answers to `body`, authenticated as `id`.
async fn token_for(server: &TestServer, id: &str, secret: &str, body: &str) -> String {
    let (status, token) = post_raw(server, "/oauth/token", FORM, Some((id, secret)), body).await;
    assert_eq!(status, 200, "{token}");
    token["access_token"].as_str().expect("token").to_owned()
}

/// Finding 4: any self-registered user who could authorize at a client allowed
/// `latchkey:admin` got a token that created clients. Admin rights now belong to the
/// subject: the client-credentials token of a client marked `admin`. A user's token
/// never qualifies, whatever its scope; the scope cannot be given to an unmarked
/// client; and unmarking a client ends its admin access at once.
async fn admin_rights_belong_to_the_client_never_to_a_consented_scope(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = admin_token(&server).await;
    let list = |token: String| {
        let server = &server;
        async move {
            server
                .get_with_token("/oauth/clients", &token)
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(list(admin.clone()).await, 200);

    // The scope is refused to a client that is not marked admin.
    let create = |body: Value| {
        let (server, admin) = (&server, admin.clone());
        async move {
            let response = server
                .http
                .post(server.url("/oauth/clients"))
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await
                .expect("send");
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = create(serde_json::json!({
        "client_id": "portal",
        "grant_types": ["authorization_code", "password"],
        "redirect_uris": ["https://portal.example.com/cb"],
        "scopes": ["openid", "latchkey:admin"],
    }))
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("only for admin clients"),
        "{body}"
    );

    // An admin client that also signs users in: a user's token through it, even with
    // the scope, is not an admin's.
    let (status, body) = create(serde_json::json!({
        "client_id": "console",
        "grant_types": ["client_credentials", "password"],
        "scopes": ["latchkey:admin"],
        "admin": true,
    }))
    .await;
    assert_eq!(status, 201, "{body}");
    let secret = body["client_secret"].as_str().expect("secret").to_owned();
    let password = server.register("eve").await;
    let user_token = token_for(
        &server,
        "console",
        &secret,
        &format!("grant_type=password&username=eve&password={password}&scope=latchkey%3Aadmin"),
    )
    .await;
    assert_eq!(
        list(user_token).await,
        403,
        "a user's token is never an admin's"
    );
    let console = token_for(&server, "console", &secret, "grant_type=client_credentials").await;
    assert_eq!(list(console.clone()).await, 200);

    // Unmarked (here straight in the database): the live token stops working at once.
    let mut record = latchkey_store::clients::get(&server.db, "console")
        .await
        .expect("read")
        .expect("row");
    record.admin = false;
    latchkey_store::clients::upsert(&server.db, &record)
        .await
        .expect("write");
    assert_eq!(list(console).await, 403, "{backend:?}");
}

/// Finding 6 (RFC 7662 §4): any confidential client could introspect any token,
/// other clients' refresh tokens included. A client now sees an access token issued to
/// it or naming it as audience, and its own refresh tokens; a client marked
/// `resource_server` sees every access token, never another client's refresh token.
/// Everything else is `{"active": false}`, exactly like an unknown token.
async fn introspection_shows_a_client_only_what_concerns_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut secrets = std::collections::HashMap::new();
    for (id, grants, audience, resource_server) in [
        ("app", &["password", "refresh_token"][..], None, false),
        ("nosy", &["client_credentials"][..], None, false),
        (
            "billing",
            &["client_credentials"][..],
            Some("orders-api"),
            false,
        ),
        ("orders-api", &["client_credentials"][..], None, false),
        ("gateway", &["client_credentials"][..], None, true),
    ] {
        let (_, secret) = server
            .client(ClientInput {
                client_id: Some(id.into()),
                grant_types: strings(grants),
                scopes: strings(&["read"]),
                audience: audience.map(str::to_owned),
                resource_server: Some(resource_server),
                ..ClientInput::default()
            })
            .await;
        secrets.insert(id, secret.expect("secret"));
    }
    let password = server.register("ruth").await;
    let (status, tokens) = post_raw(
        &server,
        "/oauth/token",
        FORM,
        Some(("app", &secrets["app"])),
        &format!("grant_type=password&username=ruth&password={password}"),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let for_orders = token_for(
        &server,
        "billing",
        &secrets["billing"],
        "grant_type=client_credentials",
    )
    .await;
    let active = |caller: &'static str, token: String| {
        let (server, secret) = (&server, secrets[caller].clone());
        async move {
            let (status, body) = post_raw(
                server,
                "/oauth/introspect",
                FORM,
                Some((caller, &secret)),
                &format!("token={token}"),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            if body["active"] == false {
                assert_eq!(
                    body,
                    serde_json::json!({"active": false}),
                    "nothing else told"
                );
            }
            body["active"] == true
        }
    };
    let cases = [
        ("app", &access, true),
        ("app", &refresh, true),
        ("nosy", &access, false),
        ("nosy", &refresh, false),
        ("orders-api", &access, false),
        ("orders-api", &for_orders, true),
        ("billing", &for_orders, true),
        ("nosy", &for_orders, false),
        ("gateway", &access, true),
        ("gateway", &for_orders, true),
        ("gateway", &refresh, false),
    ];
    for (caller, token, expected) in cases {
        assert_eq!(
            active(caller, token.clone()).await,
            expected,
            "{backend:?}: {caller} introspecting {}",
            &token[..12]
        );
    }
}

/// RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than
/// once", and an empty first copy is a copy (it was skipped, so the second one won).
async fn a_repeated_parameter_is_refused_even_after_an_empty_copy(backend: Backend) {
    let server = TestServer::start(backend).await;
    let secret = client(&server).await;
    let basic = Some(("svc", secret.as_str()));
    for body in [
        "grant_type=client_credentials&scope=&scope=read",
        "grant_type=client_credentials&scope=read&scope=",
        "grant_type=&grant_type=client_credentials",
    ] {
        let (status, answer) = post_raw(&server, "/oauth/token", FORM, basic, body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"], "invalid_request", "{body}: {answer}");
    }
    // The same request without the repetition is fine.
    let (status, answer) = post_raw(
        &server,
        "/oauth/token",
        FORM,
        basic,
        "grant_type=client_credentials&scope=read",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

/// PostgreSQL cannot store a NUL character in text and failed with 500 (and an ERROR
/// line); SQLite answered 400 or 401. Both now refuse it at the edge: 400 for a
/// parameter or a JSON field, 401 for Basic credentials (which identify no client).
async fn nul_characters_answer_400_not_500(backend: Backend) {
    let server = TestServer::start(backend).await;
    let secret = client(&server).await;
    let basic = Some(("svc", secret.as_str()));
    server.register("nul-user").await;

    let json = "application/json";
    /// Path, content type, Basic credentials, body; the status and `error` expected.
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<(&'a str, &'a str)>,
        String,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "/auth/login",
            json,
            None,
            r#"{"username":"nul\u0000user","password":"whatever-password-1"}"#.into(),
            400,
            "invalid_request",
        ),
        (
            "/auth/register",
            json,
            None,
            r#"{"username":"a\u0000b","email":"a@example.com","password":"Sufficiently-long-pass-1"}"#
                .into(),
            400,
            "invalid_request",
        ),
        (
            "/oauth/token",
            FORM,
            basic,
            "grant_type=password&username=nul%00user&password=x".into(),
            400,
            "invalid_request",
        ),
        (
            "/oauth/token",
            FORM,
            None,
            "grant_type=client_credentials&client_id=s%00vc&client_secret=x".into(),
            400,
            "invalid_request",
        ),
        (
            "/oauth/introspect",
            FORM,
            Some(("s\0vc", "x")),
            "token=abc".into(),
            401,
            "invalid_client",
        ),
    ];
    for (path, content_type, basic, body, status, error) in cases {
        let (got, answer) = post_raw(&server, path, content_type, basic, &body).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert_eq!(answer["error"], error, "{path} {body}: {answer}");
        assert!(
            !answer["error_description"]
                .as_str()
                .unwrap_or_default()
                .contains("internal"),
            "{answer}"
        );
    }

    // Basic credentials whose id decodes to a NUL, sent as the raw header.
    let header = format!("Basic {}", STANDARD.encode("s%00vc:x"));
    let response = server
        .http
        .post(server.url("/oauth/token"))
        .header("authorization", header)
        .header("content-type", FORM)
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);

    // The authorization endpoint's query: a page, not a 5xx.
    let response = server
        .get("/oauth/authorize?response_type=code&client_id=s%00vc&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&code_challenge=abc&code_challenge_method=S256")
        .await;
    assert_eq!(response.status(), 400);

    // The account is still usable: nothing was half-written.
    let ok = server
        .post_json(
            "/auth/login",
            &serde_json::json!({"username": "nul-user", "password": "wrong-password-1"}),
        )
        .await;
    assert_eq!(ok.status(), 401);
}

/// RFC 8252 §8.3: `http://localhost:1@evil.example/cb` has the host `evil.example` (the
/// `localhost:1` before `@` is user information); registering it as a loopback redirect
/// would send codes to evil.example. The admin API refuses it (422), and user
/// information in any redirect URI.
async fn a_redirect_uri_is_judged_on_its_parsed_host(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = admin_token(&server).await;
    let create = |uri: &'static str| {
        let (server, token) = (&server, token.clone());
        async move {
            let response = server
                .http
                .post(server.url("/oauth/clients"))
                .bearer_auth(token)
                .json(&serde_json::json!({
                    "grant_types": ["authorization_code"],
                    "redirect_uris": [uri],
                }))
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for uri in [
        "http://localhost:1@evil.example/cb",
        "http://127.0.0.1@evil.example/cb",
        "https://user:pw@app.example.com/cb",
    ] {
        let (status, body) = create(uri).await;
        assert_eq!(status, 422, "{uri}: {body}");
        assert!(body.to_string().contains("redirect URI"), "{uri}: {body}");
    }
    let (status, body) = create("http://localhost:8765/cb").await;
    assert_eq!(status, 201, "{body}");
}

/// Issue 13, item 12: a registered client called with the wrong authentication method
/// answered "this client authenticates with client_secret_post", which an unknown id
/// never gets: enough to list the client ids that exist.
async fn invalid_client_does_not_tell_which_clients_exist(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, secret) = server
        .client(ClientInput {
            client_id: Some("poster".into()),
            grant_types: strings(&["client_credentials"]),
            token_endpoint_auth_method: Some("client_secret_post".into()),
            ..ClientInput::default()
        })
        .await;
    let secret = secret.expect("secret");
    let body = "grant_type=client_credentials";
    let (status, wrong_method) = post_raw(
        &server,
        "/oauth/token",
        FORM,
        Some(("poster", &secret)),
        body,
    )
    .await;
    assert_eq!(status, 401, "{wrong_method}");
    let (status, unknown) = post_raw(
        &server,
        "/oauth/token",
        FORM,
        Some(("nobody", &secret)),
        body,
    )
    .await;
    assert_eq!(status, 401, "{unknown}");
    assert_eq!(wrong_method, unknown);
    // The registered method still works.
    let (status, answer) = post_raw(
        &server,
        "/oauth/token",
        FORM,
        None,
        &format!("grant_type=client_credentials&client_id=poster&client_secret={secret}"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

/// The README: a body over LATCHKEY_BODY_LIMIT answers 413, the token endpoint included
/// (it answered 400), still in the RFC 6749 §5.2 shape.
async fn an_oversized_token_request_is_413(backend: Backend) {
    let server = TestServer::start(backend).await;
    let body = format!("grant_type=client_credentials&pad={}", "x".repeat(70_000));
    // The server answers without reading the rest and closes the connection: a
    // connection of its own, not the shared pool's.
    let response = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .header("content-type", FORM)
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["error"], "invalid_request", "{answer}");
}

/// Issue 13, item 12: the 408 of the request timeout and the CORS preflight answers are
/// made by layers outside the router, and lacked the security headers the README
/// promises on every response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_preflights_carry_the_security_headers() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let server = TestServer::start_with(
        Backend::Sqlite,
        &[
            "--request-timeout",
            "1s",
            "--cors-origins",
            "https://app.example.com",
        ],
    )
    .await;

    let preflight = server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/auth/login"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(preflight.headers()["x-content-type-options"], "nosniff");
    assert!(preflight.headers().contains_key("content-security-policy"));

    // A body that never arrives: the timeout answers 408.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /auth/login HTTP/1.1\r\nHost: latchkey\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 20 s");
    let head = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 408"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(head.contains("content-security-policy:"), "{head}");
}

/// Issue 13, item 11: the admin API took 90-day access tokens while the service caps its
/// own at 24 h (and the `OAuthClient` CRD at 24 h). Now the same caps everywhere: access
/// tokens 60 s to 24 h, refresh tokens 60 s to 365 days. A client id of a user id's
/// form (so its tokens' `sub` could be a user's) is refused too.
async fn client_lifetimes_have_the_service_caps(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = admin_token(&server).await;
    let user = server.register_and_login("uma").await;
    let me = server
        .get_with_token("/users/me", user["access_token"].as_str().expect("token"))
        .await;
    let user_id = me.json::<Value>().await.expect("profile")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (body, status) in [
        (serde_json::json!({ "access_token_ttl": 90 * 86_400 }), 422),
        (serde_json::json!({ "access_token_ttl": 86_401 }), 422),
        (
            serde_json::json!({ "refresh_token_ttl": 366 * 86_400 }),
            422,
        ),
        (
            serde_json::json!({ "access_token_ttl": 86_400, "refresh_token_ttl": 365 * 86_400 }),
            201,
        ),
        // A user's id as a client id: its client-credentials tokens would carry the
        // user's `sub`.
        (serde_json::json!({ "client_id": user_id }), 422),
    ] {
        let response = server
            .http
            .post(server.url("/oauth/clients"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), status, "{body}");
    }
}

/// A client the operator disabled (its namespace policy no longer allows it) is refused
/// wherever a client authenticates or is looked up — the token endpoint (every grant),
/// introspection and revocation (`invalid_client`, 401, like an unknown client), the
/// authorization endpoint (an error page, never a redirect) — and its access tokens
/// introspect as inactive. Enabled again, the same secret works.
async fn a_disabled_client_is_refused_everywhere_and_works_again_when_enabled(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, secret) = server
        .client(ClientInput {
            client_id: Some("tenant".into()),
            grant_types: strings(&["client_credentials", "authorization_code"]),
            redirect_uris: strings(&["https://app.example.com/cb"]),
            scopes: strings(&["read"]),
            ..ClientInput::default()
        })
        .await;
    let secret = secret.expect("secret");
    let (_, gateway) = server
        .client(ClientInput {
            client_id: Some("gateway".into()),
            grant_types: strings(&["client_credentials"]),
            resource_server: Some(true),
            ..ClientInput::default()
        })
        .await;
    let gateway = gateway.expect("secret");
    let issued = token_for(&server, "tenant", &secret, "grant_type=client_credentials").await;
    let introspect = |token: String| {
        let (server, gateway) = (&server, &gateway);
        async move {
            let (status, body) = post_raw(
                server,
                "/oauth/introspect",
                FORM,
                Some(("gateway", gateway)),
                &format!("token={token}"),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["active"].as_bool().expect("active")
        }
    };
    assert!(introspect(issued.clone()).await);

    let set = |disabled: bool| {
        let db = &server.db;
        async move {
            assert!(
                latchkey_store::clients::set_disabled(
                    db,
                    "tenant",
                    disabled,
                    latchkey_store::now_ms()
                )
                .await
                .expect("set_disabled"),
                "the row exists"
            );
        }
    };
    set(true).await;
    let row = latchkey_store::clients::get(&server.db, "tenant")
        .await
        .expect("read")
        .expect("row kept");
    assert!(row.disabled && row.secret_hash.is_some(), "{backend:?}");

    for (path, body) in [
        ("/oauth/token", "grant_type=client_credentials".to_owned()),
        ("/oauth/introspect", format!("token={issued}")),
        ("/oauth/revoke", format!("token={issued}")),
    ] {
        let (status, answer) =
            post_raw(&server, path, FORM, Some(("tenant", &secret)), &body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (401, Some("invalid_client")),
            "{path} {backend:?}: {answer}"
        );
    }
    assert!(
        !introspect(issued.clone()).await,
        "a disabled client's token is inactive"
    );
    let page = server
        .get("/oauth/authorize?response_type=code&client_id=tenant&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256")
        .await;
    assert_eq!(page.status(), 400, "an error page, not a redirect");
    assert!(page.headers().get("location").is_none());
    assert!(page.text().await.expect("page").contains("disabled"));

    set(false).await;
    let again = token_for(&server, "tenant", &secret, "grant_type=client_credentials").await;
    assert!(introspect(again).await);
    assert!(
        introspect(issued).await,
        "enabled again, its tokens are active again"
    );
}
