//! Black-box tests of the HTTP API, each run against SQLite and against PostgreSQL +
//! Redis (see `common`).

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Backend, ISSUER, TestServer};
use latchkey_store::keydir::{self, KeyFile};
use latchkey_store::keys::{Alg, KeyPair};
use serde_json::{Value, json};
use sqlx::Row;

both_backends!(
    register_login_me_and_what_is_stored,
    duplicate_username_or_email_is_409,
    weak_password_is_422_with_every_failed_rule,
    bad_input_is_4xx_never_500,
    unknown_user_and_wrong_password_answer_alike,
    refresh_rotates_and_reuse_revokes_the_family,
    logout_revokes_access_and_refresh_tokens,
    users_me_rejects_every_bad_token,
    jwks_publishes_the_signing_key_and_verifies_tokens,
    keys_reload_when_the_directory_changes,
    es256_and_eddsa_keys_sign_verify_and_take_over,
    metadata_health_ready_metrics_and_headers,
);

/// `latchkey::routes::TEMPLATES` (what RATE_LIMITING_ROUTES may name) is exactly what the
/// router matches: each template, requested, is reported under that template.
#[tokio::test]
async fn every_listed_route_template_is_served() {
    let server = TestServer::start(Backend::Sqlite).await;
    let http = reqwest::Client::new();
    for template in latchkey::routes::TEMPLATES {
        let path = template.replace("{client_id}", "no-such-client");
        let status = http
            .get(server.url(&path))
            .send()
            .await
            .expect("request")
            .status();
        assert_ne!(status, 500, "{template}");
    }
    let metrics = server.metrics().await;
    for template in latchkey::routes::TEMPLATES {
        assert!(
            metrics.contains(&format!(r#"route="{template}""#)),
            "{template} was not matched by the router"
        );
    }
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

/// Signs `header.claims` with `key`, as an attacker holding (or not) a key would.
fn forge(key: &KeyPair, header: &Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature = key.sign(message.as_bytes()).expect("sign");
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn decode_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("jwt part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
}

fn server_key(server: &TestServer) -> KeyPair {
    let files = keydir::read_pem_files(&server.keys_dir).expect("key dir");
    assert_eq!(files.len(), 1, "one generated key");
    KeyPair::from_pem(&files[0].name, &files[0].contents).expect("key")
}

fn now_secs() -> i64 {
    latchkey_store::now_ms() / 1000
}

fn sha256_hex(s: &str) -> String {
    latchkey_domain::tokens::digest(s)
}

async fn register_login_me_and_what_is_stored(backend: Backend) {
    let server = TestServer::start(backend).await;
    let response = server
        .post_json(
            "/auth/register",
            &json!({"username": "Alice", "email": "Alice@Example.com", "password": "correct horse battery", "full_name": "Alice A."}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/users/me");
    let created: Value = response.json().await.expect("json");
    assert_eq!(created["username"], "Alice");
    assert_eq!(created["email"], "Alice@Example.com");
    assert_eq!(created["full_name"], "Alice A.");
    assert!(created.get("password").is_none() && created.get("password_hash").is_none());

    // Login by username (any case) and by email.
    for login in ["alice", "alice@example.com"] {
        let response = server
            .post_json(
                "/auth/login",
                &json!({"username": login, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(response.status(), 200, "login as {login}");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert!(body["refresh_token"].as_str().expect("refresh").len() >= 43);

        let access = body["access_token"].as_str().expect("access token");
        let header = decode_part(access, 0);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["typ"], "at+jwt");
        let claims = decode_part(access, 1);
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["aud"], ISSUER);
        assert_eq!(claims["sub"], created["id"]);
        assert_eq!(claims["client_id"], "latchkey");
        assert_eq!(
            claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
            900
        );
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));

        let me = server.get_with_token("/users/me", access).await;
        assert_eq!(me.status(), 200);
        assert_eq!(me.headers()["cache-control"], "no-store");
        let profile: Value = me.json().await.expect("json");
        assert_eq!(profile["id"], created["id"]);
        assert_eq!(profile["username"], "Alice");
    }

    // The database holds an argon2id hash, never the password; refresh tokens only as digests.
    let row = sqlx::query("SELECT password_hash FROM users WHERE username_key = 'alice'")
        .fetch_one(server.db.pool())
        .await
        .expect("user row");
    let hash: String = row.get("password_hash");
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains("correct horse"));

    let login: Value = server
        .post_json(
            "/auth/login",
            &json!({"username": "alice", "password": "correct horse battery"}),
        )
        .await
        .json()
        .await
        .expect("json");
    let refresh = login["refresh_token"].as_str().expect("refresh");
    let stored: Vec<String> = sqlx::query("SELECT token_hash FROM refresh_tokens")
        .fetch_all(server.db.pool())
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get("token_hash"))
        .collect();
    assert_eq!(stored.len(), 3);
    assert!(stored.contains(&sha256_hex(refresh)));
    assert!(!stored.iter().any(|h| h == refresh));
}

async fn duplicate_username_or_email_is_409(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("bob").await;
    for body in [
        json!({"username": "BOB", "email": "other@example.com", "password": "a long unusual passphrase"}),
        json!({"username": "robert", "email": "Bob@EXAMPLE.com", "password": "a long unusual passphrase"}),
    ] {
        let response = server.post_json("/auth/register", &body).await;
        assert_eq!(response.status(), 409);
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["error"], "already_exists");
    }
    let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(server.db.pool())
        .await
        .expect("count")
        .get("n");
    assert_eq!(count, 1);
}

async fn weak_password_is_422_with_every_failed_rule(backend: Backend) {
    let server = TestServer::start_with(backend, &["--password-require-digit", "true"]).await;
    for (password, rules) in [
        ("short", vec!["min_length", "digit"]),
        ("password1234", vec!["common"]),
        ("carol-secret-12", vec!["contains_identity"]),
    ] {
        let response = server
            .post_json(
                "/auth/register",
                &json!({"username": "carol", "email": "c@example.com", "password": password}),
            )
            .await;
        assert_eq!(response.status(), 422, "{password}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"], "weak_password");
        assert_eq!(body["failed_rules"], json!(rules), "{password}");
    }
}

async fn bad_input_is_4xx_never_500(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url("/auth/register");
    let raw = |body: &'static str, content_type: &'static str| {
        server
            .http
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases = [
        (raw("{not json", "application/json").await.expect("send"), 400),
        (raw(r#"{"username":"x"}"#, "text/plain").await.expect("send"), 415),
        (raw(r#"{"username":"dave"}"#, "application/json").await.expect("send"), 422),
        (
            raw(
                r#"{"username":"dave","email":"d@example.com","password":"a long unusual passphrase","admin":true}"#,
                "application/json",
            )
            .await
            .expect("send"),
            422,
        ),
        (
            raw(
                r#"{"username":"d a v e","email":"nope","password":"a long unusual passphrase"}"#,
                "application/json",
            )
            .await
            .expect("send"),
            422,
        ),
    ];
    for (response, status) in cases {
        assert_eq!(response.status(), status);
        let body: Value = response.json().await.expect("error bodies are JSON");
        assert!(
            body["error"].is_string() && body["error_description"].is_string(),
            "{body}"
        );
    }
    // The server answers 413 without reading the rest of the body and closes the
    // connection, so this goes over a connection of its own rather than the shared pool.
    let huge = "x".repeat(200 * 1024);
    let response = reqwest::Client::new()
        .post(server.url("/auth/login"))
        .json(&json!({"username": huge, "password": "p"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 413);

    let response = server.get("/no/such/path").await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.expect("json")["error"],
        "not_found"
    );
    let response = server
        .http
        .delete(server.url("/auth/login"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.json::<Value>().await.expect("json")["error"],
        "method_not_allowed"
    );
}

async fn unknown_user_and_wrong_password_answer_alike(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("erin").await;
    let wrong = server
        .post_json(
            "/auth/login",
            &json!({"username": "erin", "password": "not the password at all"}),
        )
        .await;
    let unknown = server
        .post_json(
            "/auth/login",
            &json!({"username": "nobody", "password": "not the password at all"}),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    let (wrong, unknown): (Value, Value) = (
        wrong.json().await.expect("json"),
        unknown.json().await.expect("json"),
    );
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"], "invalid_credentials");
}

async fn refresh_rotates_and_reuse_revokes_the_family(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = server.register_and_login("frank").await;
    let r1 = first["refresh_token"].as_str().expect("r1");

    let response = server
        .post_json("/auth/refresh", &json!({"refresh_token": r1}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let second: Value = response.json().await.expect("json");
    let r2 = second["refresh_token"].as_str().expect("r2");
    assert_ne!(r1, r2);
    let access2 = second["access_token"].as_str().expect("access");
    assert_eq!(
        server.get_with_token("/users/me", access2).await.status(),
        200
    );
    // Both access tokens carry the same session (family) id.
    assert_eq!(
        decode_part(access2, 1)["sid"],
        decode_part(first["access_token"].as_str().expect("a1"), 1)["sid"]
    );

    // Reusing r1 fails and revokes the family, so r2 dies with it.
    let reuse = server
        .post_json("/auth/refresh", &json!({"refresh_token": r1}))
        .await;
    assert_eq!(reuse.status(), 401);
    assert_eq!(
        reuse.json::<Value>().await.expect("json")["error"],
        "invalid_grant"
    );
    let after = server
        .post_json("/auth/refresh", &json!({"refresh_token": r2}))
        .await;
    assert_eq!(after.status(), 401);

    let live: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM refresh_tokens WHERE revoked_at IS NULL")
            .fetch_one(server.db.pool())
            .await
            .expect("count")
            .get("n");
    assert_eq!(live, 0);

    let garbage = server
        .post_json("/auth/refresh", &json!({"refresh_token": "garbage"}))
        .await;
    assert_eq!(garbage.status(), 401);
}

async fn logout_revokes_access_and_refresh_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let session = server.register_and_login("grace").await;
    let access = session["access_token"].as_str().expect("access");
    let other = server
        .post_json(
            "/auth/login",
            &json!({"username": "grace", "password": server_password("grace")}),
        )
        .await
        .json::<Value>()
        .await
        .expect("json");

    let response = server
        .http
        .post(server.url("/auth/logout"))
        .bearer_auth(access)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 204);

    let me = server.get_with_token("/users/me", access).await;
    assert_eq!(me.status(), 401);
    let challenge = me.headers()["www-authenticate"]
        .to_str()
        .expect("header")
        .to_owned();
    assert!(
        challenge.starts_with(r#"Bearer error="invalid_token""#),
        "{challenge}"
    );
    let refresh = server
        .post_json(
            "/auth/refresh",
            &json!({"refresh_token": session["refresh_token"]}),
        )
        .await;
    assert_eq!(refresh.status(), 401);

    // Another session of the same user is untouched.
    let other_access = other["access_token"].as_str().expect("access");
    assert_eq!(
        server
            .get_with_token("/users/me", other_access)
            .await
            .status(),
        200
    );
    let refresh = server
        .post_json(
            "/auth/refresh",
            &json!({"refresh_token": other["refresh_token"]}),
        )
        .await;
    assert_eq!(refresh.status(), 200);
}

fn server_password(username: &str) -> String {
    format!("{username}-is-not-my-password!").replace(username, "correct-horse")
}

async fn users_me_rejects_every_bad_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let session = server.register_and_login("heidi").await;
    let access = session["access_token"].as_str().expect("access");
    let key = server_key(&server);
    let header = decode_part(access, 0);
    let claims = decode_part(access, 1);

    let expired = {
        let mut c = claims.clone();
        c["iat"] = json!(now_secs() - 3600);
        c["exp"] = json!(now_secs() - 600);
        forge(&key, &header, &c)
    };
    let tampered = {
        let mut c = claims.clone();
        c["sub"] = json!("someone-else");
        let parts: Vec<&str> = access.split('.').collect();
        format!("{}.{}.{}", parts[0], b64(&c), parts[2])
    };
    let unknown_kid = {
        let stranger = KeyPair::generate(2048).expect("key");
        let mut h = header.clone();
        h["kid"] = json!(stranger.kid());
        forge(&stranger, &h, &claims)
    };
    let kid_swapped = {
        // Signed by a stranger, claiming the server's kid.
        let stranger = KeyPair::generate(2048).expect("key");
        forge(&stranger, &header, &claims)
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt", "kid": key.kid()})),
        b64(&claims)
    );
    let alg_hs256 = {
        // Algorithm confusion: HMAC keyed with the public modulus.
        let h = json!({"alg": "HS256", "typ": "at+jwt", "kid": key.kid()});
        let message = format!("{}.{}", b64(&h), b64(&claims));
        let hkey = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            key.jwk().n.as_deref().expect("an RSA key").as_bytes(),
        );
        let tag = aws_lc_rs::hmac::sign(&hkey, message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    };
    let wrong_typ = {
        let mut h = header.clone();
        h["typ"] = json!("JWT");
        forge(&key, &h, &claims)
    };
    let wrong_aud = {
        let mut c = claims.clone();
        c["aud"] = json!("https://elsewhere.example");
        forge(&key, &header, &c)
    };
    let wrong_iss = {
        let mut c = claims.clone();
        c["iss"] = json!("https://evil.example");
        forge(&key, &header, &c)
    };
    // Control: a token forged with the real key and unchanged claims is accepted, so each
    // rejection above is about the one thing that case changes.
    let control = forge(&key, &header, &claims);
    assert_eq!(
        server.get_with_token("/users/me", &control).await.status(),
        200
    );

    for (name, token) in [
        ("garbage", "not-a-jwt".to_owned()),
        ("expired", expired),
        ("tampered", tampered),
        ("unknown kid", unknown_kid),
        ("kid swapped", kid_swapped),
        ("alg none", alg_none),
        ("alg HS256", alg_hs256),
        ("typ JWT", wrong_typ),
        ("wrong aud", wrong_aud),
        ("wrong iss", wrong_iss),
    ] {
        let response = server.get_with_token("/users/me", &token).await;
        assert_eq!(response.status(), 401, "{name}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .expect("header")
            .to_owned();
        assert!(
            challenge.starts_with(r#"Bearer error="invalid_token""#),
            "{name}: {challenge}"
        );
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"], "invalid_token", "{name}");
    }

    let missing = server.get("/users/me").await;
    assert_eq!(missing.status(), 401);
    assert!(
        missing.headers()["www-authenticate"]
            .to_str()
            .expect("h")
            .contains("invalid_token")
    );
    let basic = server
        .http
        .get(server.url("/users/me"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .expect("send");
    assert_eq!(basic.status(), 401);
}

async fn jwks_publishes_the_signing_key_and_verifies_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let response = server.get("/.well-known/jwks.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = response.json().await.expect("json");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    let jwk = &keys[0];
    let key = server_key(&server);
    assert_eq!(jwk["kid"], key.kid());
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["alg"], "RS256");
    assert_eq!(jwk["use"], "sig");
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(jwk.get(private).is_none(), "JWKS leaks {private}");
    }

    // An independent verifier (jsonwebtoken with the JWK from JWKS) accepts our token.
    let session = server.register_and_login("ivan").await;
    let access = session["access_token"].as_str().expect("access");
    assert_eq!(decode_part(access, 0)["kid"], key.kid());
    let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).expect("jwk");
    let decoding = jsonwebtoken::DecodingKey::from_jwk(&parsed).expect("decoding key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[ISSUER]);
    let data = jsonwebtoken::decode::<Value>(access, &decoding, &validation)
        .expect("verifies against JWKS");
    assert_eq!(data.claims["client_id"], "latchkey");

    // The table holds the public key only.
    let row = sqlx::query("SELECT public_jwk, state FROM signing_keys")
        .fetch_one(server.db.pool())
        .await
        .expect("row");
    let stored: Value = serde_json::from_str(&row.get::<String, _>("public_jwk")).expect("json");
    assert_eq!(&stored, jwk);
    assert_eq!(row.get::<String, _>("state"), "active");
}

/// Replaces the server's key directory with `keys`, the way the kubelet updates a
/// mounted Secret.
fn swap_keys(server: &TestServer, keys: &[&KeyPair]) {
    let files: Vec<KeyFile> = keys
        .iter()
        .map(|key| KeyFile {
            name: format!("{}.pem", key.kid()),
            contents: key.to_pem().expect("pem").into_bytes(),
        })
        .collect();
    keydir::write_atomic(&server.keys_dir, &files, &keydir::new_stamp()).expect("swap");
}

/// Logs `username` in until its access token is signed by `key` (at most 15 s).
async fn login_until_signed_by(server: &TestServer, username: &str, key: &KeyPair) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let login: Value = server
            .post_json(
                "/auth/login",
                &json!({"username": username, "password": server_password(username)}),
            )
            .await
            .json()
            .await
            .expect("json");
        let token = login["access_token"].as_str().expect("access").to_owned();
        if decode_part(&token, 0)["kid"] == key.kid() {
            return token;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "key {} ({}) never signed",
            key.kid(),
            key.alg()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn keys_reload_when_the_directory_changes(backend: Backend) {
    let server = TestServer::start_with(backend, &["--keys-reload-interval", "1s"]).await;
    let old = server_key(&server);
    let first = server.register_and_login("judy").await;
    let old_token = first["access_token"].as_str().expect("access").to_owned();
    assert_eq!(decode_part(&old_token, 0)["kid"], old.kid());

    // Swap in old + new key the way the kubelet updates a mounted Secret.
    let new = KeyPair::generate(2048).expect("key");
    swap_keys(&server, &[&old, &new]);
    let new_token = login_until_signed_by(&server, "judy", &new).await;
    let jwks: Value = server
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .expect("json");
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(
        kids.contains(&old.kid()) && kids.contains(&new.kid()),
        "{kids:?}"
    );
    // Tokens from both keys verify.
    assert_eq!(
        server
            .get_with_token("/users/me", &old_token)
            .await
            .status(),
        200
    );
    assert_eq!(
        server
            .get_with_token("/users/me", &new_token)
            .await
            .status(),
        200
    );
}

/// The published keys, by kid.
async fn jwks_by_kid(server: &TestServer) -> std::collections::BTreeMap<String, Value> {
    let jwks: Value = server
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .expect("json");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| (k["kid"].as_str().expect("kid").to_owned(), k.clone()))
        .collect()
}

/// Verifies `token` as a third-party resource server would: the JWK of its kid from
/// JWKS, with the algorithm that JWK names.
fn verify_with_jwk(jwk: &Value, token: &str) -> Result<Value, String> {
    let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).expect("jwk");
    let decoding = jsonwebtoken::DecodingKey::from_jwk(&parsed).map_err(|e| e.to_string())?;
    let alg: jsonwebtoken::Algorithm = jwk["alg"].as_str().expect("alg").parse().expect("alg");
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[ISSUER]);
    jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

/// JWT_ALGORITHM=ES256: the embedded default generates a P-256 key, signs with it,
/// publishes it as an EC JWK and discovery names it. Each key verifies its own algorithm
/// only. An Ed25519 key added to the directory then takes over: both keys' tokens verify.
async fn es256_and_eddsa_keys_sign_verify_and_take_over(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &["--jwt-algorithm", "ES256", "--keys-reload-interval", "1s"],
    )
    .await;
    let es = server_key(&server);
    assert_eq!(es.alg(), Alg::Es256);
    let jwks = jwks_by_kid(&server).await;
    let jwk = &jwks[es.kid()];
    assert_eq!(
        (&jwk["kty"], &jwk["crv"], &jwk["alg"], &jwk["use"]),
        (
            &json!("EC"),
            &json!("P-256"),
            &json!("ES256"),
            &json!("sig")
        )
    );
    assert!(jwk.get("d").is_none() && jwk.get("n").is_none(), "{jwk}");
    let metadata: Value = server
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        metadata["id_token_signing_alg_values_supported"],
        json!(["RS256", "ES256"])
    );

    let session = server.register_and_login("peggy").await;
    let es_token = session["access_token"].as_str().expect("access").to_owned();
    let header = decode_part(&es_token, 0);
    assert_eq!(
        (&header["alg"], &header["kid"]),
        (&json!("ES256"), &json!(es.kid()))
    );
    let signature = URL_SAFE_NO_PAD
        .decode(es_token.rsplit('.').next().expect("signature"))
        .expect("base64url");
    assert_eq!(signature.len(), 64, "an ES256 signature is r || s");
    let claims = verify_with_jwk(jwk, &es_token).expect("verifies against JWKS");
    assert_eq!(claims["client_id"], "latchkey");
    assert_eq!(
        server.get_with_token("/users/me", &es_token).await.status(),
        200
    );

    // The algorithm is the key's: the same kid under another alg is refused, whoever
    // signed it (a valid ES256 signature relabelled, an RSA or Ed25519 signature).
    let claims = decode_part(&es_token, 1);
    let relabelled = |alg: &str| {
        let mut parts: Vec<String> = es_token.split('.').map(str::to_owned).collect();
        parts[0] = b64(&json!({"alg": alg, "typ": "at+jwt", "kid": es.kid()}));
        parts.join(".")
    };
    let rsa = KeyPair::generate(2048).expect("key");
    let ed = KeyPair::generate_for(Alg::EdDsa, 0).expect("key");
    for forged in [
        relabelled("EdDSA"),
        relabelled("RS256"),
        relabelled("HS256"),
        relabelled("none"),
        forge(
            &rsa,
            &json!({"alg": "RS256", "typ": "at+jwt", "kid": es.kid()}),
            &claims,
        ),
        forge(
            &ed,
            &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": es.kid()}),
            &claims,
        ),
    ] {
        let response = server.get_with_token("/users/me", &forged).await;
        assert_eq!(response.status(), 401, "{}", decode_part(&forged, 0));
    }

    // An Ed25519 key lands beside the P-256 one and signs from the next reload.
    let eddsa = KeyPair::generate_for(Alg::EdDsa, 0).expect("key");
    swap_keys(&server, &[&es, &eddsa]);
    let ed_token = login_until_signed_by(&server, "peggy", &eddsa).await;
    assert_eq!(decode_part(&ed_token, 0)["alg"], "EdDSA");
    let jwks = jwks_by_kid(&server).await;
    let jwk = &jwks[eddsa.kid()];
    assert_eq!(
        (&jwk["kty"], &jwk["crv"], &jwk["alg"]),
        (&json!("OKP"), &json!("Ed25519"), &json!("EdDSA"))
    );
    verify_with_jwk(jwk, &ed_token).expect("the EdDSA token verifies against JWKS");
    verify_with_jwk(&jwks[es.kid()], &es_token).expect("the ES256 token still verifies");
    for token in [&es_token, &ed_token] {
        assert_eq!(
            server.get_with_token("/users/me", token).await.status(),
            200
        );
    }
    let metadata: Value = server
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        metadata["id_token_signing_alg_values_supported"],
        json!(["RS256", "ES256", "EdDSA"])
    );
}

async fn metadata_health_ready_metrics_and_headers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let metadata: Value = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(metadata["issuer"], ISSUER);
    assert_eq!(
        metadata["jwks_uri"],
        format!("{ISSUER}/.well-known/jwks.json")
    );
    assert!(metadata["response_types_supported"].is_array());

    let health = server.get("/health").await;
    assert_eq!(health.status(), 200);
    let ready = server.get("/ready").await;
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["signing_key"], "ok");
    match backend {
        Backend::Postgres => assert_eq!(ready["checks"]["redis"], "ok"),
        Backend::Sqlite => assert!(ready["checks"].get("redis").is_none()),
    }

    let root = server.get("/").await;
    let headers = root.headers().clone();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(headers.contains_key("content-security-policy"));
    assert!(
        !headers.contains_key("strict-transport-security"),
        "no HSTS over plain http"
    );
    assert!(headers["x-request-id"].to_str().expect("id").len() >= 32);
    let root: Value = root.json().await.expect("json");
    assert_eq!(root["name"], "latchkey");

    server.register_and_login("mallory").await;
    let metrics = server.metrics_response().await;
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/plain")
    );
    let text = metrics.text().await.expect("text");
    // Only on the metrics listener: metrics describe every user's traffic.
    assert_eq!(server.get("/metrics").await.status(), 404);
    assert!(
        text.contains(
            r#"latchkey_http_requests_total{route="/auth/login",method="POST",status="200"}"#
        ),
        "{text}"
    );
    assert!(text.contains("latchkey_http_request_duration_seconds_bucket"));
    assert!(text.contains(r#"latchkey_tokens_issued_total{kind="access"}"#));
}
