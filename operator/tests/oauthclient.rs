//! End to end: the real `latchkey-operator` binary against a real kube-apiserver + etcd
//! and a real PostgreSQL, driven with the real `kubectl`.

mod common;

use std::time::{Duration, Instant};

use common::{Env, NS, eventually, example, is_ready, ready, secret_value};
use kube::api::{DeleteParams, Patch, PatchParams};
use latchkey_store::clients::{self, ManagedBy};
use latchkey_store::now_ms;
use serde_json::json;

/// A confidential client from `examples/` becomes a row, a Secret and Ready=True within
/// seconds; the printer columns, Events and status say so; a scope change reaches the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_manifests_become_ready_clients() {
    let env = Env::start(&[]).await;
    // The policy that allows namespace shop the first-party web app.
    env.kubectl(&["apply", "-f", &example("oauthclientpolicy.yaml")])
        .await
        .ok();
    let applied = Instant::now();
    env.kubectl(&[
        "apply",
        "-n",
        NS,
        "-f",
        &example("oauthclient-service.yaml"),
    ])
    .await
    .ok();
    let kubectl_took = applied.elapsed();
    // Usable: the Secret holds a client_secret the database accepts.
    let secret = eventually("a usable Secret", || async {
        let secret = env.secret("reports-oauth").await?;
        let value = secret_value(&secret, "client_secret")?;
        let row = env.row("shop.reports").await?;
        row.verify_secret(&value, now_ms()).then_some(secret)
    })
    .await;
    eprintln!(
        "kubectl apply -> usable Secret: {:?} (kubectl itself: {kubectl_took:?})",
        applied.elapsed()
    );

    assert_eq!(
        secret_value(&secret, "client_id").as_deref(),
        Some("shop.reports")
    );
    assert_eq!(
        secret_value(&secret, "issuer").as_deref(),
        Some(common::ISSUER)
    );
    assert_eq!(
        secret_value(&secret, "token_url").as_deref(),
        Some("https://auth.latchkey.test/oauth/token")
    );
    let owner = &secret.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("OAuthClient", "reports")
    );
    assert_eq!(owner.controller, Some(true));

    let row = env.row("shop.reports").await.expect("row");
    assert_eq!(row.name, "Reports backend");
    assert_eq!(row.grant_types, ["client_credentials"]);
    assert_eq!(row.scopes, ["orders:read", "invoices:read"]);
    assert_eq!(row.token_endpoint_auth_method, "client_secret_basic");
    assert_eq!(row.access_token_ttl, Some(600));
    assert_eq!(row.refresh_token_ttl, None);
    assert_eq!(row.audience.as_deref(), Some("https://api.example.com"));
    assert_eq!(row.managed_by, ManagedBy::Operator);
    assert_eq!(row.owner.as_deref(), Some("shop/reports"));
    assert!(!row.public);
    let plaintext = secret_value(&secret, "client_secret").expect("secret");
    assert_ne!(
        row.secret_hash.as_deref(),
        Some(plaintext.as_str()),
        "only a digest is stored"
    );

    let oac = eventually("Ready", || async {
        env.oauth_client("reports").await.filter(is_ready)
    })
    .await;
    let status = oac.status.clone().expect("status");
    assert_eq!(status.client_id.as_deref(), Some("shop.reports"));
    assert_eq!(status.secret_name.as_deref(), Some("reports-oauth"));
    assert_eq!(status.secret_rotation_generation, Some(0));
    assert!(status.last_secret_rotation.is_some());
    assert_eq!(ready(&oac).expect("ready").1, "Reconciled");

    let table = env.kubectl(&["get", "oac", "-n", NS]).await.ok();
    assert!(
        table.contains("CLIENT ID") && table.contains("shop.reports"),
        "{table}"
    );
    assert!(
        table.contains("True") && table.contains("client_credentials"),
        "{table}"
    );
    let reasons = eventually("a Created event", || async {
        let r = env.event_reasons("reports").await;
        r.iter().any(|r| r == "Created").then_some(r)
    })
    .await;
    assert!(!reasons.iter().any(|r| r.contains("Fail")), "{reasons:?}");

    // The other examples: a confidential web app and a public SPA.
    env.kubectl(&["apply", "-n", NS, "-f", &example("oauthclient-webapp.yaml")])
        .await
        .ok();
    env.kubectl(&["apply", "-n", NS, "-f", &example("oauthclient-spa.yaml")])
        .await
        .ok();
    let web = eventually("the web app's row", || async {
        env.row("shop.dashboard").await
    })
    .await;
    assert_eq!(web.grant_types, ["authorization_code", "refresh_token"]);
    assert_eq!(web.token_endpoint_auth_method, "client_secret_post");
    assert!(web.first_party);
    assert_eq!(web.refresh_token_ttl, Some(14 * 86_400));
    assert_eq!(web.redirect_uris.len(), 2);
    let web_secret = eventually("the web app's Secret", || async {
        env.secret("dashboard-credentials").await
    })
    .await;
    assert!(web.verify_secret(
        &secret_value(&web_secret, "client_secret").expect("secret"),
        now_ms()
    ));

    let spa = eventually("the SPA's row", || async {
        env.row("shop.storefront").await
    })
    .await;
    assert!(spa.public);
    assert_eq!(spa.secret_hash, None);
    assert_eq!(spa.token_endpoint_auth_method, "none");
    let spa_secret = eventually("the SPA's Secret", || async {
        env.secret("storefront-oauth").await
    })
    .await;
    assert_eq!(secret_value(&spa_secret, "client_secret"), None);
    assert_eq!(
        secret_value(&spa_secret, "client_id").as_deref(),
        Some("shop.storefront")
    );

    // Update: scopes change -> the row changes, the secret does not.
    env.kubectl(&[
        "patch",
        "oac",
        "reports",
        "-n",
        NS,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"scopes":["orders:read","orders:write"]}}"#,
    ])
    .await
    .ok();
    let row = eventually("the new scopes in the row", || async {
        env.row("shop.reports")
            .await
            .filter(|r| r.scopes == ["orders:read", "orders:write"])
    })
    .await;
    assert!(
        row.verify_secret(&plaintext, now_ms()),
        "the secret survives a spec change"
    );
    let oac = eventually("Ready at generation 2", || async {
        env.oauth_client("reports")
            .await
            .filter(|o| is_ready(o) && o.metadata.generation == Some(2))
    })
    .await;
    assert_eq!(oac.status.and_then(|s| s.observed_generation), Some(2));
    let after = env.secret("reports-oauth").await.expect("secret");
    assert_eq!(
        secret_value(&after, "client_secret").as_deref(),
        Some(plaintext.as_str())
    );

    // Metrics and health.
    let metrics = env.metrics().await;
    assert!(
        metrics.contains(
            r#"latchkey_operator_reconciles_total{controller="oauthclient",result="success"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("latchkey_operator_reconcile_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"latchkey_operator_events_total{controller="oauthclient",reason="Created"}"#
        ),
        "{metrics}"
    );
}

/// Raising secretRotation.generation: both secrets work inside the overlap, only the new
/// one after it, and the operator drops the old digest when the overlap ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_old_secret_for_the_overlap() {
    let env = Env::start(&[]).await;
    let manifest = std::fs::read_to_string(example("oauthclient-service.yaml"))
        .expect("example")
        .replace("overlap: 1h", "overlap: 6s");
    env.apply_yaml(&manifest).await.ok();
    let old = eventually("the first secret", || async {
        secret_value(&env.secret("reports-oauth").await?, "client_secret")
    })
    .await;
    eventually("Ready", || async {
        env.oauth_client("reports").await.filter(is_ready)
    })
    .await;

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
    let new = eventually("a rotated secret", || async {
        secret_value(&env.secret("reports-oauth").await?, "client_secret").filter(|s| *s != old)
    })
    .await;
    let row = env.row("shop.reports").await.expect("row");
    let now = now_ms();
    assert!(row.verify_secret(&new, now), "the new secret works");
    assert!(
        row.verify_secret(&old, now),
        "the old secret still works inside the overlap"
    );
    let expires = row.previous_secret_expires_at.expect("overlap end");
    assert!(
        expires > now && expires <= now + 6_000,
        "{expires} vs {now}"
    );

    let oac = eventually("status after rotation", || async {
        env.oauth_client("reports")
            .await
            .filter(|o| o.status.as_ref().and_then(|s| s.secret_rotation_generation) == Some(1))
    })
    .await;
    assert!(
        oac.status
            .as_ref()
            .and_then(|s| s.previous_secret_expires_at.clone())
            .is_some()
    );
    eventually("a SecretRotated event", || async {
        env.event_reasons("reports")
            .await
            .contains(&"SecretRotated".to_owned())
            .then_some(())
    })
    .await;

    // After the overlap: only the new one; the operator requeued itself and cleaned up.
    let wait = u64::try_from(expires - now_ms()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let row = eventually("the previous digest dropped", || async {
        env.row("shop.reports")
            .await
            .filter(|r| r.previous_secret_hash.is_none())
    })
    .await;
    assert!(row.verify_secret(&new, now_ms()));
    assert!(
        !row.verify_secret(&old, now_ms()),
        "the old secret stops after the overlap"
    );
    let oac = eventually("status without the overlap", || async {
        env.oauth_client("reports").await.filter(|o| {
            o.status
                .as_ref()
                .is_some_and(|s| s.previous_secret_expires_at.is_none())
        })
    })
    .await;
    assert!(is_ready(&oac));
    let secret = env.secret("reports-oauth").await.expect("secret");
    let annotations = secret.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key("latchkey.dev/previous-secret-sha256"),
        "{annotations:?}"
    );
}

/// Things changed behind the operator's back are put right: a deleted Secret gets a new
/// secret, a tampered or deleted row is restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_secret_and_tampered_row_are_restored() {
    let env = Env::start(&[]).await;
    env.kubectl(&[
        "apply",
        "-n",
        NS,
        "-f",
        &example("oauthclient-service.yaml"),
    ])
    .await
    .ok();
    let old = eventually("the first secret", || async {
        secret_value(&env.secret("reports-oauth").await?, "client_secret")
    })
    .await;
    eventually("Ready", || async {
        env.oauth_client("reports").await.filter(is_ready)
    })
    .await;

    // Secret deleted -> a new secret; the old one is gone for good.
    env.kubectl(&["delete", "secret", "reports-oauth", "-n", NS])
        .await
        .ok();
    let new = eventually("a regenerated secret", || async {
        secret_value(&env.secret("reports-oauth").await?, "client_secret").filter(|s| *s != old)
    })
    .await;
    let row = eventually("the row with the new digest", || async {
        env.row("shop.reports")
            .await
            .filter(|r| r.verify_secret(&new, now_ms()))
    })
    .await;
    assert!(
        !row.verify_secret(&old, now_ms()),
        "a deleted Secret's value stops working"
    );
    eventually("a SecretRegenerated event", || async {
        env.event_reasons("reports")
            .await
            .contains(&"SecretRegenerated".to_owned())
            .then_some(())
    })
    .await;

    // Row tampered with: restored at the next resync (1 s here).
    let mut tampered = row.clone();
    tampered.scopes.push("admin".into());
    tampered
        .grant_types
        .push(latchkey_store::protocol::GrantType::AuthorizationCode);
    tampered.secret_hash = Some(clients::secret_digest("attacker"));
    clients::upsert(&env.db, &tampered).await.expect("tamper");
    let restored = eventually("the row restored", || async {
        env.row("shop.reports")
            .await
            .filter(|r| r.scopes == row.scopes)
    })
    .await;
    assert_eq!(restored.grant_types, ["client_credentials"]);
    assert!(restored.verify_secret(&new, now_ms()));
    assert!(!restored.verify_secret("attacker", now_ms()));
    eventually("a DatabaseRowRestored event", || async {
        env.event_reasons("reports")
            .await
            .contains(&"DatabaseRowRestored".to_owned())
            .then_some(())
    })
    .await;

    // Row deleted: restored with the same secret.
    assert!(
        clients::delete(&env.db, "shop.reports")
            .await
            .expect("delete")
    );
    let back = eventually("the row back", || async { env.row("shop.reports").await }).await;
    assert!(back.verify_secret(&new, now_ms()));
    let secret = env.secret("reports-oauth").await.expect("secret");
    assert_eq!(
        secret_value(&secret, "client_secret").as_deref(),
        Some(new.as_str())
    );
}

/// Deleting the resource removes its row (finalizer) and its Secret; another namespace's
/// client of the same name is a different client and is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_resource_removes_its_row_and_secret() {
    let env = Env::start(&[]).await;
    env.kubectl(&["create", "namespace", "billing"]).await.ok();
    for ns in [NS, "billing"] {
        env.kubectl(&[
            "apply",
            "-n",
            ns,
            "-f",
            &example("oauthclient-service.yaml"),
        ])
        .await
        .ok();
    }
    eventually("both rows", || async {
        let a = env.row("shop.reports").await?;
        let b = env.row("billing.reports").await?;
        (a.secret_hash != b.secret_hash).then_some(())
    })
    .await;
    let oac = eventually("Ready", || async {
        env.oauth_client("reports").await.filter(is_ready)
    })
    .await;
    assert!(
        oac.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"latchkey.dev/oauthclient-cleanup".to_owned())
    );

    env.kubectl(&[
        "delete",
        "oac",
        "reports",
        "-n",
        NS,
        "--wait=true",
        "--timeout=20s",
    ])
    .await
    .ok();
    assert!(
        env.oauth_client("reports").await.is_none(),
        "the finalizer was removed"
    );
    assert!(env.row("shop.reports").await.is_none(), "the row is gone");
    assert!(
        env.secret("reports-oauth").await.is_none(),
        "the Secret is gone"
    );
    assert!(
        env.row("billing.reports").await.is_some(),
        "the other namespace's client stays"
    );
}

/// The CRD's CEL rules reject what the schema alone cannot, with the rule's message, as
/// `kubectl` shows it. `kubectl explain` shows the field docs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_are_rejected_with_the_rules_message() {
    let env = Env::start(&[]).await;
    let manifest = |spec: &str| {
        format!(
            "apiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: bad\nspec:\n{spec}"
        )
    };
    let cases = [
        (
            "  public: true\n  grantTypes: [client_credentials]\n",
            "public clients cannot use the client_credentials grant",
        ),
        (
            "  grantTypes: [authorization_code]\n",
            "the authorization_code grant needs at least one redirect URI",
        ),
        (
            "  grantTypes: [authorization_code]\n  redirectUris: [http://app.example.com/cb]\n",
            "redirect URIs must be https:// URIs or http:// URIs on a loopback address",
        ),
        (
            "  grantTypes: [authorization_code]\n  redirectUris: ['https://app.example.com/cb#frag']\n",
            "redirect URIs must be https:// URIs or http:// URIs on a loopback address",
        ),
        (
            "  grantTypes: [authorization_code]\n  redirectUris: ['https://user:pw@app.example.com/cb']\n",
            "redirect URIs must be https:// URIs or http:// URIs on a loopback address",
        ),
        (
            "  grantTypes: [authorization_code]\n  redirectUris: ['http://localhost:1@evil.example/cb']\n",
            "redirect URIs must be https:// URIs or http:// URIs on a loopback address",
        ),
        (
            "  grantTypes: [authorization_code]\n  redirectUris: [https://app.example.com/cb]\n  postLogoutRedirectUris: ['http://app.example.com/bye']\n",
            "post-logout redirect URIs must be https:// URIs",
        ),
        (
            "  grantTypes: [client_credentials, refresh_token]\n",
            "the refresh_token grant needs authorization_code",
        ),
        (
            "  grantTypes: [client_credentials]\n  scopes: ['orders read']\n",
            "scopes are RFC 6749 scope tokens",
        ),
        (
            "  grantTypes: [client_credentials]\n  scopes: [orders:read, 'latchkey:admin']\n",
            "the latchkey:admin scope is reserved to admin clients",
        ),
        (
            "  grantTypes: [client_credentials]\n  tokenEndpointAuthMethod: none\n",
            "public clients use tokenEndpointAuthMethod none",
        ),
        (
            "  grantTypes: [client_credentials]\n  accessTokenTTL: 1w\n",
            "spec.accessTokenTTL",
        ),
    ];
    for (spec, message) in cases {
        let out = env.apply_yaml(&manifest(spec)).await;
        assert!(!out.success, "admitted:\n{spec}");
        assert!(
            out.stderr.contains(message),
            "expected {message:?} for\n{spec}\ngot: {}",
            out.stderr
        );
    }
    // Loopback http:// is fine.
    env.apply_yaml(&manifest(
        "  grantTypes: [authorization_code]\n  redirectUris: ['http://127.0.0.1:8400/cb', 'http://[::1]/cb', 'https://app.example.com/cb?x=1']\n  secretName: bad-creds\n",
    ))
    .await
    .ok();
    // secretName is immutable, also from set to unset.
    for patch in [
        r#"{"spec":{"secretName":"other"}}"#,
        r#"{"spec":{"secretName":null}}"#,
    ] {
        let out = env
            .kubectl(&[
                "patch", "oac", "bad", "-n", NS, "--type", "merge", "-p", patch,
            ])
            .await;
        assert!(
            !out.success && out.stderr.contains("secretName is immutable"),
            "{}",
            out.stderr
        );
    }
    // The rotation counter only goes up.
    env.kubectl(&[
        "patch",
        "oac",
        "bad",
        "-n",
        NS,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"secretRotation":{"generation":3}}}"#,
    ])
    .await
    .ok();
    let out = env
        .kubectl(&[
            "patch",
            "oac",
            "bad",
            "-n",
            NS,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"secretRotation":{"generation":2}}}"#,
        ])
        .await;
    assert!(
        !out.success
            && out
                .stderr
                .contains("secretRotation.generation can only increase"),
        "{}",
        out.stderr
    );

    let explain = env
        .kubectl(&["explain", "oauthclient.spec.secretRotation"])
        .await
        .ok();
    assert!(
        explain.contains("Rotation counter") && explain.contains("overlap"),
        "{explain}"
    );
    let explain = env.kubectl(&["explain", "oac.spec"]).await.ok();
    for field in [
        "grantTypes",
        "redirectUris",
        "accessTokenTTL",
        "secretName",
        "firstParty",
    ] {
        assert!(explain.contains(field), "{field} missing from\n{explain}");
    }
}

/// What the CRD admits but the deployment refuses is reported, not crash-looped on; a
/// Secret or client_id the resource does not own is never taken over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn specs_the_deployment_refuses_are_reported_not_ready() {
    let env = Env::start(&["--allowed-scopes", "orders:read,orders:write,invoices:read"]).await;
    let manifest = std::fs::read_to_string(example("oauthclient-service.yaml"))
        .expect("example")
        .replace(
            "[orders:read, invoices:read]",
            "[orders:read, admin:everything]",
        );
    env.apply_yaml(&manifest).await.ok();
    let oac = eventually("Ready=False", || async {
        env.oauth_client("reports")
            .await
            .filter(|o| ready(o).is_some_and(|(s, _, _)| s == "False"))
    })
    .await;
    let (_, reason, message) = ready(&oac).expect("condition");
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("admin:everything"), "{message}");
    assert!(
        env.row("shop.reports").await.is_none(),
        "nothing is stored for an invalid spec"
    );
    eventually("an InvalidSpec event", || async {
        env.event_reasons("reports")
            .await
            .contains(&"InvalidSpec".to_owned())
            .then_some(())
    })
    .await;
    let table = env
        .kubectl(&["get", "oac", "-n", NS, "-o", "wide"])
        .await
        .ok();
    assert!(
        table.contains("False") && table.contains("InvalidSpec"),
        "{table}"
    );

    // Fixed -> Ready.
    env.kubectl(&[
        "patch",
        "oac",
        "reports",
        "-n",
        NS,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"scopes":["orders:read"]}}"#,
    ])
    .await
    .ok();
    eventually("Ready after the fix", || async {
        env.oauth_client("reports").await.filter(is_ready)
    })
    .await;
    assert!(env.operator_log().lines().count() > 0);

    // A Secret that belongs to someone else is not taken over.
    env.kubectl(&[
        "create",
        "secret",
        "generic",
        "theirs",
        "-n",
        NS,
        "--from-literal=client_secret=keep-me",
    ])
    .await
    .ok();
    env.apply_yaml(
        "apiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: squatter\nspec:\n  grantTypes: [client_credentials]\n  secretName: theirs\n",
    )
    .await
    .ok();
    let oac = eventually("SecretConflict", || async {
        env.oauth_client("squatter")
            .await
            .filter(|o| ready(o).is_some_and(|(_, r, _)| r == "SecretConflict"))
    })
    .await;
    assert!(ready(&oac).expect("cond").2.contains("theirs"));
    let theirs = env.secret("theirs").await.expect("secret");
    assert_eq!(
        secret_value(&theirs, "client_secret").as_deref(),
        Some("keep-me")
    );
    assert!(env.row("shop.squatter").await.is_none());

    // A client_id created through the API is not taken over either.
    let mut api_row = env.row("shop.reports").await.expect("row");
    api_row.client_id = "shop.apiowned".into();
    api_row.managed_by = ManagedBy::Api;
    api_row.owner = None;
    clients::insert(&env.db, &api_row).await.expect("insert");
    env.apply_yaml(
        "apiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: apiowned\nspec:\n  grantTypes: [client_credentials]\n  scopes: [orders:read]\n",
    )
    .await
    .ok();
    eventually("ClientIdConflict", || async {
        env.oauth_client("apiowned")
            .await
            .filter(|o| ready(o).is_some_and(|(_, r, _)| r == "ClientIdConflict"))
    })
    .await;
    let row = env.row("shop.apiowned").await.expect("row");
    assert_eq!(row.managed_by, ManagedBy::Api);
    // Deleting the resource leaves the API's row alone.
    env.clients()
        .delete("apiowned", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the resource gone", || async {
        env.oauth_client("apiowned").await.is_none().then_some(())
    })
    .await;
    assert!(env.row("shop.apiowned").await.is_some());
}

/// The operator dies (SIGKILL) right after a change and again during a rotation; once
/// back, the world is consistent, the client_id and secret are unchanged by the restart,
/// and a rotation requested while it was down happens exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_restart_midway_converges() {
    let mut env = Env::start(&[]).await;
    env.kubectl(&[
        "apply",
        "-n",
        NS,
        "-f",
        &example("oauthclient-service.yaml"),
    ])
    .await
    .ok();
    // Killed about when the first reconcile runs.
    tokio::time::sleep(Duration::from_millis(150)).await;
    env.kill_operator();
    env.start_operator().await;
    let first = eventually("a usable secret", || async {
        let value = secret_value(&env.secret("reports-oauth").await?, "client_secret")?;
        env.row("shop.reports")
            .await?
            .verify_secret(&value, now_ms())
            .then_some(value)
    })
    .await;
    eventually("Ready", || async {
        env.oauth_client("reports").await.filter(is_ready)
    })
    .await;

    // A restart with nothing to do changes nothing.
    env.kill_operator();
    env.start_operator().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let secret = env.secret("reports-oauth").await.expect("secret");
    assert_eq!(
        secret_value(&secret, "client_secret").as_deref(),
        Some(first.as_str())
    );
    assert_eq!(
        secret_value(&secret, "client_id").as_deref(),
        Some("shop.reports")
    );

    // A rotation requested while the operator is down happens once it is back, once.
    env.kill_operator();
    env.clients()
        .patch(
            "reports",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"secretRotation": {"generation": 1}}})),
        )
        .await
        .expect("patch");
    env.start_operator().await;
    let second = eventually("the rotated secret", || async {
        secret_value(&env.secret("reports-oauth").await?, "client_secret").filter(|s| *s != first)
    })
    .await;
    env.kill_operator();
    env.start_operator().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let secret = env.secret("reports-oauth").await.expect("secret");
    assert_eq!(
        secret_value(&secret, "client_secret").as_deref(),
        Some(second.as_str()),
        "a restart does not rotate again"
    );
    let row = env.row("shop.reports").await.expect("row");
    assert!(row.verify_secret(&second, now_ms()));
    assert!(
        row.verify_secret(&first, now_ms()),
        "the 1h overlap survives restarts"
    );
    let oac = eventually("Ready", || async {
        env.oauth_client("reports").await.filter(is_ready)
    })
    .await;
    assert_eq!(
        oac.status.and_then(|s| s.secret_rotation_generation),
        Some(1)
    );
}
