//! `private_key_jwt` client authentication with a client's own keys (RFC 7523 §2.2 and
//! §3): an independent client library gets tokens with an assertion; every way of
//! forging, stretching or replaying one is refused with 401 `invalid_client`, on both
//! backends; a replay is refused by another replica too. (ServiceAccount tokens, the
//! other kind of assertion, are tested against a real API server in the operator's
//! tests.)

mod common;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Backend, ISSUER, TestServer};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use latchkey_domain::clients::ClientInput;
use latchkey_store::protocol::AuthMethod;
use serde_json::{Value, json};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A private key the test signs with and its public JWK.
struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

fn es256(kid: &str) -> Signer {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("P-256 key");
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("parse");
    let point = pair.public_key().as_ref();
    assert_eq!(point.len(), 65, "uncompressed point");
    Signer {
        kid: kid.to_owned(),
        alg: Algorithm::ES256,
        key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }),
    }
}

fn ed25519(kid: &str) -> Signer {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("Ed25519 key");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse");
    Signer {
        kid: kid.to_owned(),
        alg: Algorithm::EdDSA,
        key: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        }),
    }
}

fn now() -> i64 {
    latchkey_store::now_ms() / 1000
}

/// The claims of a well-formed assertion of `client_id` for our issuer.
fn claims(client_id: &str) -> Value {
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": ISSUER,
        "iat": now(),
        "exp": now() + 300,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

fn sign(signer: &Signer, claims: &Value) -> String {
    let mut header = Header::new(signer.alg);
    header.kid = Some(signer.kid.clone());
    jsonwebtoken::encode(&header, claims, &signer.key).expect("sign")
}

async fn client_with_keys(server: &TestServer, id: &str, keys: &[&Signer]) {
    let (record, secret) = server
        .client(ClientInput {
            client_id: Some(id.into()),
            grant_types: Some(vec!["client_credentials".into()]),
            scopes: Some(vec!["read".into()]),
            jwks: Some(Some(
                json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }),
            )),
            ..ClientInput::default()
        })
        .await;
    assert_eq!(record.token_endpoint_auth_method, AuthMethod::PrivateKeyJwt);
    assert!(
        secret.is_none() && record.secret_hash.is_none(),
        "no secret"
    );
}

async fn token_with(
    server: &TestServer,
    assertion: &str,
    client_id: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ];
    if let Some(id) = client_id {
        form.push(("client_id", id));
    }
    server.post_form("/oauth/token", None, &form).await
}

async fn refused(response: reqwest::Response, why: &str) {
    let status = response.status();
    let www = response.headers().get("www-authenticate").cloned();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, 401, "{why}: {body}");
    assert_eq!(body["error"], "invalid_client", "{why}: {body}");
    assert!(www.is_some(), "{why}: 401 without WWW-Authenticate");
}

async fn an_independent_client_library_authenticates_with_its_own_keys(backend: Backend) {
    use oauth2::basic::BasicClient;
    use oauth2::{AuthType, ClientId, Scope, TokenResponse, TokenUrl};

    let server = TestServer::start(backend).await;
    let (es, ed) = (es256("es-1"), ed25519("ed-1"));
    client_with_keys(&server, "billing", &[&es, &ed]).await;

    let http = server.http.clone();
    let send = move |request| common::library_http(http.clone(), request);
    let library = BasicClient::new(ClientId::new("billing".into()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(server.url("/oauth/token")).expect("url"));
    for signer in [&es, &ed] {
        let token = library
            .exchange_client_credentials()
            .add_scope(Scope::new("read".into()))
            .add_extra_param("client_assertion_type", JWT_BEARER)
            .add_extra_param("client_assertion", sign(signer, &claims("billing")))
            .request_async(&send)
            .await
            .unwrap_or_else(|e| panic!("{:?} assertion: {e:?}", signer.alg));
        let part = token
            .access_token()
            .secret()
            .split('.')
            .nth(1)
            .expect("payload");
        let at: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json");
        assert_eq!(at["client_id"], "billing");
        assert_eq!(at["scope"], "read");
    }

    // Without client_id: the assertion's sub names the client (RFC 7523 §3). The token
    // endpoint URL is an accepted audience too.
    let mut by_sub = claims("billing");
    by_sub["aud"] = json!(format!("{ISSUER}/oauth/token"));
    assert_eq!(
        token_with(&server, &sign(&es, &by_sub), None)
            .await
            .status(),
        200
    );

    // Introspection and revocation authenticate the same way.
    let token: Value = token_with(&server, &sign(&es, &claims("billing")), Some("billing"))
        .await
        .json()
        .await
        .expect("json");
    let access = token["access_token"].as_str().expect("token");
    let assertion = sign(&ed, &claims("billing"));
    let introspected: Value = server
        .post_form(
            "/oauth/introspect",
            None,
            &[
                ("token", access),
                ("client_id", "billing"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &assertion),
            ],
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(introspected["active"], true, "{introspected}");

    // The metadata says so (RFC 8414 §2: the signing algorithms must be listed).
    let metadata: Value = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .expect("json");
    let methods = metadata["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods.contains("private_key_jwt"), "{methods}");
    let algs = metadata["token_endpoint_auth_signing_alg_values_supported"].to_string();
    assert!(
        algs.contains("ES256") && algs.contains("EdDSA") && !algs.contains("HS256"),
        "{algs}"
    );
}

async fn forged_stretched_and_replayed_assertions_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let es = es256("es-1");
    client_with_keys(&server, "billing", &[&es]).await;
    client_with_keys(&server, "other", &[&es256("es-other")]).await;

    // Used once, then refused: the jti is spent.
    let once = sign(&es, &claims("billing"));
    assert_eq!(
        token_with(&server, &once, Some("billing")).await.status(),
        200
    );
    refused(
        token_with(&server, &once, Some("billing")).await,
        "replayed",
    )
    .await;

    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims("billing");
        edit(&mut c);
        sign(&es, &c)
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("https://elsewhere.example")),
        ),
        ("expired", with(&|c| c["exp"] = json!(now() - 120))),
        ("not valid yet", with(&|c| c["nbf"] = json!(now() + 600))),
        (
            "lives two hours",
            with(&|c| c["exp"] = json!(now() + 7_200)),
        ),
        (
            "no jti",
            with(&|c| {
                c.as_object_mut().expect("object").remove("jti");
            }),
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().expect("object").remove("exp");
            }),
        ),
        (
            "iss is another client",
            with(&|c| c["iss"] = json!("other")),
        ),
        (
            "sub is another client",
            with(&|c| c["sub"] = json!("other")),
        ),
        // The same kid, another key: a forged signature.
        ("forged signature", sign(&es256("es-1"), &claims("billing"))),
        ("unknown kid", sign(&es256("es-9"), &claims("billing"))),
        // A symmetric token "signed" with the public key's coordinates as the secret.
        ("HS256", {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("es-1".into());
            let secret = es.jwk["x"].as_str().expect("x").as_bytes().to_vec();
            jsonwebtoken::encode(
                &header,
                &claims("billing"),
                &EncodingKey::from_secret(&secret).expect("hmac key"),
            )
            .expect("hs256")
        }),
        ("alg none", {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"es-1"}"#);
            let body = URL_SAFE_NO_PAD.encode(claims("billing").to_string());
            format!("{header}.{body}.")
        }),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (why, assertion) in &cases {
        refused(token_with(&server, assertion, Some("billing")).await, why).await;
    }
    // Another client's valid assertion, presented as ours.
    let theirs = sign(&es, &claims("other"));
    refused(
        token_with(&server, &theirs, Some("billing")).await,
        "another client's",
    )
    .await;

    // A private_key_jwt client has no secret to try.
    let response = server
        .post_form(
            "/oauth/token",
            Some(("billing", "guessed-secret")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    refused(response, "a secret for a private_key_jwt client").await;

    // Malformed requests are 400, not 401.
    let fresh = sign(&es, &claims("billing"));
    let response = server
        .post_form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion", &fresh),
            ],
        )
        .await;
    assert_eq!(response.status(), 400, "an assertion without its type");
    let response = server
        .post_form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:example:saml"),
                ("client_assertion", &fresh),
            ],
        )
        .await;
    refused(response, "an unsupported assertion type").await;
    // The fresh assertion was never accepted, so it still works.
    assert_eq!(
        token_with(&server, &fresh, Some("billing")).await.status(),
        200
    );
}

/// The admin API takes and checks a JWK Set like the CLI does.
async fn bad_key_sets_are_refused_at_registration(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut private = es256("p").jwk;
    private["d"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
    for (set, needle) in [
        (json!({"keys":[private]}), "private member"),
        (
            json!({"keys":[{"kty":"oct","k":"c2VjcmV0"}]}),
            "private member",
        ),
        (json!({"keys":[]}), "no keys"),
        (json!({"keys":[es256("a").jwk, es256("a").jwk]}), "repeated"),
    ] {
        let problems = latchkey_domain::clients::create(
            ClientInput {
                jwks: Some(Some(set)),
                ..ClientInput::default()
            },
            0,
        )
        .expect_err("refused");
        assert!(problems.join("; ").contains(needle), "{problems:?}");
    }
    // private_key_jwt without keys is refused too.
    let problems = latchkey_domain::clients::create(
        ClientInput {
            token_endpoint_auth_method: Some("private_key_jwt".into()),
            ..ClientInput::default()
        },
        0,
    )
    .expect_err("no keys");
    assert!(problems.join("; ").contains("jwks"), "{problems:?}");
    drop(server);
}

both_backends!(
    an_independent_client_library_authenticates_with_its_own_keys,
    forged_stretched_and_replayed_assertions_are_refused,
    bad_key_sets_are_refused_at_registration,
);

/// RFC 7523 §3: a `jti` is single-use across the deployment, not per replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_assertion_is_refused_by_another_replica() {
    let first = TestServer::start(Backend::Postgres).await;
    let second = first.start_replica(&[]).await;
    let es = es256("es-1");
    client_with_keys(&first, "billing", &[&es]).await;
    let assertion = sign(&es, &claims("billing"));
    assert_eq!(
        token_with(&first, &assertion, Some("billing"))
            .await
            .status(),
        200
    );
    refused(
        token_with(&second, &assertion, Some("billing")).await,
        "replayed on the other replica",
    )
    .await;
    // A fresh one works on that replica.
    let fresh = sign(&es, &claims("billing"));
    assert_eq!(
        token_with(&second, &fresh, Some("billing")).await.status(),
        200
    );
}
