//! Workload identity on a real kube-apiserver: an `OAuthClient` with `spec.serviceAccount`
//! gets no Secret; a ServiceAccount token minted through the TokenRequest API (what a
//! projected volume holds) gets an access token from the service, which never talks to
//! Kubernetes — the operator publishes the cluster's issuer and keys to the database.
//! Every other token is refused with 401 `invalid_client`, and a restarted API server with
//! a new signing key is followed without restarting the service or the operator.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Env, ISSUER, NS, eventually, is_ready, ready};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use latchkey_store::protocol::AuthMethod;
use serde_json::{Value, json};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const CLIENT_ID: &str = "shop.reports";

async fn create_service_account(env: &Env, ns: &str, name: &str) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(env.client.clone(), ns);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    api.create(&PostParams::default(), &sa)
        .await
        .expect("ServiceAccount")
        .metadata
        .uid
        .expect("uid")
}

/// `kubectl create token`: the TokenRequest API, as the kubelet uses it for a projected
/// volume.
async fn token_for(env: &Env, ns: &str, name: &str, audience: &str) -> String {
    env.kubectl(&[
        "create",
        "token",
        name,
        "-n",
        ns,
        "--audience",
        audience,
        "--duration",
        "10m",
    ])
    .await
    .ok()
    .trim()
    .to_owned()
}

async fn exchange(env: &Env, base: &str, assertion: &str) -> (u16, Value) {
    let response = env
        .http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .expect("token request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

async fn refused(env: &Env, base: &str, assertion: &str, why: &str) {
    let (status, body) = exchange(env, base, assertion).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{why}: {body}"
    );
}

fn part(token: &str, i: usize) -> Value {
    let bytes = URL_SAFE_NO_PAD
        .decode(token.split('.').nth(i).expect("part"))
        .expect("b64");
    serde_json::from_slice(&bytes).expect("json")
}

/// The token re-signed with `key` (PKCS#8 PEM, ES256) after `edit`, keeping its kid: what
/// someone holding the cluster's key (or another key under a known kid) could make.
fn resign(token: &str, key_pem: &[u8], edit: impl Fn(&mut Value)) -> String {
    let header = part(token, 0);
    let mut claims = part(token, 1);
    edit(&mut claims);
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = header["kid"].as_str().map(str::to_owned);
    let key = jsonwebtoken::EncodingKey::from_ec_pem(key_pem).expect("EC key");
    jsonwebtoken::encode(&h, &claims, &key).expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_authenticate_their_client_and_nothing_else() {
    // A lease that outlives the API server's restart below: the operator keeps leading
    // (a shorter one would make it step down and exit, as it must when cut off).
    let mut env = Env::start_with_lease(&["--cluster-issuer-refresh", "1s"], "30s").await;
    let data = tempfile::tempdir().expect("tempdir");
    let service = env.start_service(data.path(), &[]).await;
    let base = service.base.clone();

    let uid = create_service_account(&env, NS, "reports").await;
    create_service_account(&env, NS, "intruder").await;
    let elsewhere = Namespace {
        metadata: ObjectMeta {
            name: Some("elsewhere".into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(env.client.clone())
        .create(&PostParams::default(), &elsewhere)
        .await
        .expect("namespace");
    create_service_account(&env, "elsewhere", "reports").await;

    env.apply_yaml(&format!(
        r#"apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata:
  name: reports
  namespace: {NS}
spec:
  grantTypes: [client_credentials]
  scopes: [orders:read]
  serviceAccount:
    name: reports
"#
    ))
    .await
    .ok();
    let client = eventually("Ready", || async {
        env.oauth_client("reports").await.filter(is_ready)
    })
    .await;
    assert_eq!(
        client.status.as_ref().and_then(|s| s.secret_name.clone()),
        None
    );
    assert!(
        env.secret("reports-oauth").await.is_none(),
        "no Secret for a workload-identity client"
    );
    let row = env.row(CLIENT_ID).await.expect("row");
    assert_eq!(row.token_endpoint_auth_method, AuthMethod::PrivateKeyJwt);
    assert!(row.secret_hash.is_none());
    let binding = row.service_account.expect("binding");
    assert_eq!(
        (binding.namespace.as_str(), binding.name.as_str()),
        (NS, "reports")
    );
    assert_eq!(binding.uid.as_deref(), Some(uid.as_str()));

    // The projected token gets an access token (once the operator has published the
    // cluster's keys: at most one refresh interval).
    let good = token_for(&env, NS, "reports", ISSUER).await;
    let body = eventually("a token for the ServiceAccount", || async {
        let (status, body) = exchange(&env, &base, &good).await;
        (status == 200).then_some(body)
    })
    .await;
    let at = part(body["access_token"].as_str().expect("access token"), 1);
    assert_eq!(at["client_id"], CLIENT_ID);
    assert_eq!(at["sub"], CLIENT_ID);
    assert_eq!(at["scope"], "orders:read");
    // Not single-use: the kubelet presents the same token until it refreshes it.
    assert_eq!(exchange(&env, &base, &good).await.0, 200);

    // Everything else is refused.
    refused(
        &env,
        &base,
        &token_for(&env, NS, "intruder", ISSUER).await,
        "another ServiceAccount",
    )
    .await;
    refused(
        &env,
        &base,
        &token_for(&env, "elsewhere", "reports", ISSUER).await,
        "another namespace",
    )
    .await;
    refused(
        &env,
        &base,
        &token_for(&env, NS, "reports", "https://kubernetes.default.svc").await,
        "the API server's audience",
    )
    .await;
    let cluster_key = std::fs::read(&env.plane.certs().sa_key).expect("sa.key");
    let now = latchkey_store::now_ms() / 1000;
    let expired = resign(&good, &cluster_key, |c| {
        c["iat"] = json!(now - 7_200);
        c["nbf"] = json!(now - 7_200);
        c["exp"] = json!(now - 3_600);
    });
    refused(&env, &base, &expired, "expired").await;
    // Proof that re-signing itself works: the same claims re-signed are accepted.
    assert_eq!(
        exchange(&env, &base, &resign(&good, &cluster_key, |_| {}))
            .await
            .0,
        200
    );
    let other_key = rcgen::KeyPair::generate().expect("key").serialize_pem();
    refused(
        &env,
        &base,
        &resign(&good, other_key.as_bytes(), |_| {}),
        "a forged signature under the cluster's kid",
    )
    .await;
    let forged_kid = {
        let mut header = part(&good, 0);
        header["kid"] = json!("not-a-cluster-key");
        let rest = good.split_once('.').expect("jwt").1;
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
    };
    refused(&env, &base, &forged_kid, "an unknown kid").await;
    for alg in ["HS256", "none"] {
        let header = json!({"alg": alg, "kid": part(&good, 0)["kid"]});
        let payload = good.split('.').nth(1).expect("payload");
        let token = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(header.to_string()));
        refused(&env, &base, &token, alg).await;
    }

    // Deleted and created again under the same name: another identity. Its old tokens
    // stop working as soon as the operator sees the deletion; the new one's work once it
    // has recorded the new uid.
    Api::<ServiceAccount>::namespaced(env.client.clone(), NS)
        .delete("reports", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the deletion recorded", || async {
        let row = env.row(CLIENT_ID).await?;
        row.service_account?.uid.is_none().then_some(())
    })
    .await;
    let (_, reason, _) = ready(&env.oauth_client("reports").await.expect("client")).expect("Ready");
    assert_eq!(reason, "ServiceAccountMissing");
    refused(&env, &base, &good, "a deleted ServiceAccount's token").await;
    let new_uid = create_service_account(&env, NS, "reports").await;
    assert_ne!(new_uid, uid);
    let renewed = token_for(&env, NS, "reports", ISSUER).await;
    eventually("the new ServiceAccount accepted", || async {
        (exchange(&env, &base, &renewed).await.0 == 200).then_some(())
    })
    .await;
    refused(
        &env,
        &base,
        &good,
        "the old ServiceAccount's token after recreation",
    )
    .await;

    // The cluster rotates its ServiceAccount key (API server restarted with a new one):
    // new tokens work without restarting the service or the operator.
    let old_kid = part(&renewed, 0)["kid"].clone();
    env.plane
        .rotate_service_account_key()
        .await
        .expect("API server restarted with a new key");
    let rotated = token_for(&env, NS, "reports", ISSUER).await;
    assert_ne!(part(&rotated, 0)["kid"], old_kid, "signed with the new key");
    eventually("a token of the new cluster key accepted", || async {
        (exchange(&env, &base, &rotated).await.0 == 200).then_some(())
    })
    .await;
    let operator = env.operator.as_mut().expect("operator");
    assert!(
        operator.exited().is_none(),
        "the operator was not restarted"
    );
    // Tokens of the old key stay valid while the API server still publishes it.
    assert_eq!(exchange(&env, &base, &renewed).await.0, 200);
    drop(service);
}
