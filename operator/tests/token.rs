//! The whole path a Kubernetes user takes: `kubectl apply` an `OAuthClient`, read the
//! credentials from the Secret the operator writes, and get a `client_credentials` token
//! from a running Latchkey service that shares the operator's database — also across a
//! secret rotation, where old and new secrets both work until the overlap ends.

mod common;

use std::time::Duration;

use common::{Env, ISSUER, NS, eventually, example, secret_value};
use serde_json::Value;

async fn token(env: &Env, base: &str, client_id: &str, secret: &str) -> (u16, Value) {
    let response = env
        .http
        .post(format!("{base}/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("b64");
    serde_json::from_slice(&bytes).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_the_secret_get_tokens_from_the_service() {
    let env = Env::start(&[]).await;
    let data = tempfile::tempdir().expect("tempdir");
    let service = env.start_service(data.path(), &[]).await;
    let base = service.base.clone();

    let manifest = std::fs::read_to_string(example("oauthclient-service.yaml"))
        .expect("example")
        .replace("overlap: 1h", "overlap: 6s");
    env.apply_yaml(&manifest).await.ok();
    let secret = eventually("the Secret", || async { env.secret("reports-oauth").await }).await;
    let client_id = secret_value(&secret, "client_id").expect("client_id");
    let first = secret_value(&secret, "client_secret").expect("client_secret");
    assert_eq!(
        secret_value(&secret, "token_url").as_deref(),
        Some(format!("{ISSUER}/oauth/token").as_str())
    );

    let (status, body) = token(&env, &base, &client_id, &first).await;
    assert_eq!(status, 200, "{body}");
    let c = claims(body["access_token"].as_str().expect("access token"));
    assert_eq!(c["client_id"], client_id.as_str());
    assert_eq!(c["aud"], "https://api.example.com");
    assert_eq!(c["scope"], "orders:read invoices:read");
    assert_eq!(body["expires_in"], 600);

    // Rotate: both secrets work inside the 6 s overlap, only the new one after it.
    env.kubectl(&[
        "patch",
        "oac",
        "reports",
        "-n",
        NS,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"secretRotation":{"generation":1}}}"#,
    ])
    .await
    .ok();
    let second = eventually("the rotated secret", || async {
        secret_value(&env.secret("reports-oauth").await?, "client_secret").filter(|s| *s != first)
    })
    .await;
    assert_eq!(token(&env, &base, &client_id, &second).await.0, 200);
    assert_eq!(
        token(&env, &base, &client_id, &first).await.0,
        200,
        "old secret inside the overlap"
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        token(&env, &base, &client_id, &first).await.0,
        401,
        "old secret after the overlap"
    );
    assert_eq!(token(&env, &base, &client_id, &second).await.0, 200);
}
