//! Tenancy and bring-your-own secrets, end to end: the real `latchkey-operator` binary,
//! a real kube-apiserver + etcd with the chart's CRDs and its ValidatingAdmissionPolicy
//! (rendered by the real `helm`), a real PostgreSQL, and the real service answering the
//! token endpoint. A namespace editor acts through impersonation (`kubectl --as`) with
//! RBAC granting edit on `oauthclients` in one namespace only.

mod common;

use std::time::Instant;

use common::{Env, NS, eventually, ready, repo_root};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use latchkey_store::now_ms;
use serde_json::{Value, json};

/// The user the tests impersonate: may edit OAuthClients in `shop`, nothing else.
const EDITOR: &str = "jane@example.com";

/// `helm template` of the chart's ValidatingAdmissionPolicy and binding, applied.
async fn install_admission_policy(env: &Env) {
    let helm = latchkey_testkit::helm_path().unwrap_or_else(|e| panic!("{e}"));
    let home = tempfile::tempdir().expect("helm home");
    let chart = repo_root().join("charts/latchkey");
    let out = tokio::process::Command::new(helm)
        .args([
            "template",
            "latchkey",
            &chart.display().to_string(),
            "-n",
            "latchkey",
            "--show-only",
            "templates/oauthclient-admission.yaml",
        ])
        .env_clear()
        .env("HOME", home.path())
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .await
        .expect("helm runs");
    let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && yaml.contains("kind: ValidatingAdmissionPolicyBinding"),
        "helm template: {}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = home.path().join("admission.yaml");
    std::fs::write(&path, yaml).expect("write");
    env.kubectl(&["apply", "-f", &path.display().to_string()])
        .await
        .ok();
}

/// A Role in `shop` letting [`EDITOR`] do everything with OAuthClients there (what the
/// aggregated `edit` ClusterRole would give a namespace editor).
async fn grant_editor(env: &Env) {
    env.apply_yaml(&format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: oauthclient-editor
rules:
  - apiGroups: [latchkey.dev]
    resources: [oauthclients]
    verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: oauthclient-editor
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: oauthclient-editor
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: {EDITOR}
"#
    ))
    .await
    .ok();
}

/// `kubectl --as EDITOR apply -n NAMESPACE` of `yaml`.
async fn apply_as_editor(
    env: &Env,
    namespace: &str,
    yaml: &str,
) -> latchkey_testkit::KubectlOutput {
    editor_kubectl(env, "apply", &[], namespace, yaml).await
}

/// `kubectl VERB EXTRA --as EDITOR -n NAMESPACE -f` a file holding `yaml`.
async fn editor_kubectl(
    env: &Env,
    verb: &str,
    extra: &[&str],
    namespace: &str,
    yaml: &str,
) -> latchkey_testkit::KubectlOutput {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, yaml).expect("write");
    let path = path.display().to_string();
    let mut args = vec![verb];
    args.extend_from_slice(extra);
    args.extend(["--as", EDITOR, "-n", namespace, "-f", &path]);
    env.kubectl(&args).await
}

fn client(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

/// The notes of the Events with `reason` about OAuthClient `name` in `namespace`.
async fn event_notes(env: &Env, namespace: &str, name: &str, reason: &str) -> Vec<String> {
    Api::<Event>::namespaced(env.client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .expect("list events")
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().is_some_and(|r| {
                    r.name.as_deref() == Some(name) && r.kind.as_deref() == Some("OAuthClient")
                })
        })
        .filter_map(|e| e.note)
        .collect()
}

/// `POST /oauth/token` with client_credentials and Basic authentication.
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

/// The Ready condition's (status, reason, message) of `namespace/name`, once it has one
/// with `reason`.
async fn reason_of(env: &Env, namespace: &str, name: &str, reason: &str) -> String {
    let api: Api<latchkey_crds::OAuthClient> = Api::namespaced(env.client.clone(), namespace);
    eventually(&format!("{namespace}/{name} {reason}"), || async {
        let oac = api.get_opt(name).await.expect("get")?;
        let (_, r, message) = ready(&oac)?;
        (r == reason).then_some(message)
    })
    .await
}

/// A namespace editor is held to the policies of their namespace: each forbidden field
/// is refused by the ValidatingAdmissionPolicy with its rule's message at `kubectl
/// apply`; a compliant client is admitted and works; they can write neither policies nor
/// other namespaces' clients. In a namespace no policy selects, the operator enforces
/// the built-in defaults (no row, PolicyViolation naming the rule).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_editor_gets_no_more_than_the_policy_allows() {
    let env = Env::start(&[]).await;
    env.kubectl(&["create", "namespace", "billing"]).await.ok();
    env.kubectl(&["label", "namespace", NS, "latchkey.dev/tenant=shop"])
        .await
        .ok();
    install_admission_policy(&env).await;
    grant_editor(&env).await;
    env.apply_yaml(
        r#"apiVersion: latchkey.dev/v1alpha1
kind: OAuthClientPolicy
metadata:
  name: tenants
spec:
  namespaceSelector:
    matchExpressions:
      - {key: latchkey.dev/tenant, operator: Exists}
  grantTypes: [client_credentials, authorization_code]
  scopes: [openid, "invoices:*"]
  redirectHosts: ["*.example.com"]
  audiences: [https://api.example.com]
  maxAccessTokenTTL: 30m
  maxRefreshTokenTTL: 7d
"#,
    )
    .await
    .ok();

    // The editor's reach: OAuthClients in shop, nothing else.
    let out = apply_as_editor(
        &env,
        "billing",
        &client("x", "  grantTypes: [client_credentials]\n"),
    )
    .await;
    assert!(
        !out.success && out.stderr.contains("forbidden"),
        "{}",
        out.stderr
    );
    let out = apply_as_editor(
        &env,
        NS,
        "apiVersion: latchkey.dev/v1alpha1\nkind: OAuthClientPolicy\nmetadata:\n  name: mine\nspec:\n  namespaceSelector: {}\n  allowFirstParty: true\n",
    )
    .await;
    assert!(
        !out.success && out.stderr.contains("forbidden"),
        "{}",
        out.stderr
    );

    // The API server picks up a new policy, binding and parameter within a moment.
    let first_party = client(
        "phish",
        "  grantTypes: [authorization_code]\n  redirectUris: [https://app.example.com/cb]\n  firstParty: true\n",
    );
    let started = Instant::now();
    eventually("the ValidatingAdmissionPolicy in force", || async {
        // A dry run: admitted before the policy is in force, it must not be created.
        let out = editor_kubectl(&env, "create", &["--dry-run=server"], NS, &first_party).await;
        (!out.success && out.stderr.contains("OAuthClientPolicy tenants")).then_some(())
    })
    .await;
    eprintln!("admission policy in force after {:?}", started.elapsed());

    let auth_code =
        "  grantTypes: [authorization_code]\n  redirectUris: [https://app.example.com/cb]\n";
    let cases = [
        (
            format!("{auth_code}  firstParty: true\n"),
            "OAuthClientPolicy tenants: allowFirstParty is false",
        ),
        (
            "  grantTypes: [client_credentials]\n  resourceServer: true\n".to_owned(),
            "OAuthClientPolicy tenants: allowResourceServer is false",
        ),
        (
            "  grantTypes: [authorization_code, refresh_token]\n  redirectUris: [https://app.example.com/cb]\n"
                .to_owned(),
            "OAuthClientPolicy tenants: grantTypes does not allow refresh_token",
        ),
        (
            "  grantTypes: [client_credentials]\n  scopes: [invoices:read, orders:write]\n"
                .to_owned(),
            "OAuthClientPolicy tenants: scopes does not allow orders:write",
        ),
        (
            "  grantTypes: [authorization_code]\n  redirectUris: [https://app.example.com/cb, https://evil.example.net/cb]\n"
                .to_owned(),
            "OAuthClientPolicy tenants: redirectHosts does not allow https://evil.example.net/cb",
        ),
        (
            "  grantTypes: [authorization_code]\n  redirectUris: [https://example.com/cb]\n"
                .to_owned(),
            "OAuthClientPolicy tenants: redirectHosts does not allow https://example.com/cb",
        ),
        (
            format!("{auth_code}  postLogoutRedirectUris: [https://evil.example.net/bye]\n"),
            "OAuthClientPolicy tenants: redirectHosts does not allow https://evil.example.net/bye",
        ),
        (
            "  grantTypes: [authorization_code]\n  redirectUris: ['http://127.0.0.1:8400/cb']\n"
                .to_owned(),
            "OAuthClientPolicy tenants: allowLoopbackRedirects is false",
        ),
        (
            "  grantTypes: [client_credentials]\n  audience: https://other.example.com\n"
                .to_owned(),
            "OAuthClientPolicy tenants: audiences does not allow https://other.example.com",
        ),
        (
            "  grantTypes: [client_credentials]\n  accessTokenTTL: 1h\n".to_owned(),
            "OAuthClientPolicy tenants: accessTokenTTL 1h is longer than maxAccessTokenTTL 30m",
        ),
        (
            format!("{auth_code}  refreshTokenTTL: 14d\n"),
            "OAuthClientPolicy tenants: refreshTokenTTL 14d is longer than maxRefreshTokenTTL 7d",
        ),
    ];
    for (spec, message) in &cases {
        let out = apply_as_editor(&env, NS, &client("bad", spec)).await;
        assert!(!out.success, "admitted:\n{spec}");
        assert!(
            out.stderr.contains(message),
            "expected {message:?} for\n{spec}\ngot: {}",
            out.stderr
        );
    }
    assert!(env.oauth_client("bad").await.is_none());

    // What complies is admitted and stored; its later non-compliant edit is refused too.
    let good = client(
        "invoices",
        "  grantTypes: [client_credentials]\n  scopes: [invoices:read]\n  audience: https://api.example.com\n  accessTokenTTL: 30m\n",
    );
    apply_as_editor(&env, NS, &good).await.ok();
    let row = eventually("the compliant client's row", || async {
        env.row("shop.invoices").await
    })
    .await;
    assert!(!row.disabled);
    let out = env
        .kubectl(&[
            "patch",
            "oac",
            "invoices",
            "-n",
            NS,
            "--as",
            EDITOR,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"scopes":["invoices:read","orders:read"]}}"#,
        ])
        .await;
    assert!(
        !out.success && out.stderr.contains("scopes does not allow orders:read"),
        "{}",
        out.stderr
    );

    // Namespace billing: no policy selects it, so the defaults apply, enforced by the
    // operator (the admission policy cannot know that no policy matched).
    env.kubectl(&[
        "apply",
        "-n",
        "billing",
        "-f",
        &common::example("oauthclient-webapp.yaml"),
    ])
    .await
    .ok();
    let message = reason_of(&env, "billing", "dashboard", "PolicyViolation").await;
    assert!(
        message.contains("the built-in defaults")
            && message.contains("allowFirstParty is false")
            && message.contains("allowLoopbackRedirects is false")
            && message.contains("nothing is stored"),
        "{message}"
    );
    assert!(
        env.row("billing.dashboard").await.is_none(),
        "no row for a forbidden client"
    );
    assert!(
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(env.client.clone(), "billing")
            .get_opt("dashboard-credentials")
            .await
            .expect("get")
            .is_none(),
        "no Secret either"
    );
    let notes = eventually("a PolicyViolation Event", || async {
        let notes = event_notes(&env, "billing", "dashboard", "PolicyViolation").await;
        (!notes.is_empty()).then_some(notes)
    })
    .await;
    assert!(notes[0].contains("allowFirstParty"), "{notes:?}");
}

/// An admin's change disables a stored client that no longer complies — at once: its row
/// is disabled, the token endpoint answers invalid_client, its Secret is kept — and
/// enables it again, with the same secret, when it complies again. Both a policy change
/// and a namespace label change (which decides which policies select it) count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_and_namespace_changes_disable_and_reenable_clients() {
    // A resync far longer than the test: every reaction below comes from a watch.
    let env = Env::start(&["--resync-interval", "1h"]).await;
    let data = tempfile::tempdir().expect("tempdir");
    let service = env.start_service(data.path(), &[]).await;
    let base = service.base.clone();
    env.kubectl(&["label", "namespace", NS, "trust=first-party"])
        .await
        .ok();
    env.apply_yaml(
        r#"apiVersion: latchkey.dev/v1alpha1
kind: OAuthClientPolicy
metadata:
  name: trusted
spec:
  namespaceSelector:
    matchLabels: {trust: first-party}
  scopes: ["invoices:*"]
  allowFirstParty: true
"#,
    )
    .await
    .ok();
    env.apply_yaml(&client(
        "console",
        "  grantTypes: [client_credentials]\n  scopes: [invoices:read]\n  firstParty: true\n",
    ))
    .await
    .ok();
    let secret = eventually("the client's secret", || async {
        common::secret_value(&env.secret("console-oauth").await?, "client_secret")
    })
    .await;
    eventually("Ready", || async {
        env.oauth_client("console").await.filter(common::is_ready)
    })
    .await;
    let id = "shop.console";
    assert_eq!(token(&env, &base, id, &secret).await.0, 200);

    let policies: Api<latchkey_crds::OAuthClientPolicy> = Api::all(env.client.clone());
    let set_scopes = |scopes: Value| {
        let policies = policies.clone();
        async move {
            policies
                .patch(
                    "trusted",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"scopes": scopes}})),
                )
                .await
                .expect("patch policy");
        }
    };

    // 1. The policy narrows the scopes: disabled at once.
    let changed = Instant::now();
    set_scopes(json!(["orders:*"])).await;
    eventually("the row disabled", || async {
        env.row(id).await.filter(|r| r.disabled)
    })
    .await;
    eprintln!("policy change -> row disabled: {:?}", changed.elapsed());
    let (status, body) = token(&env, &base, id, &secret).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let message = reason_of(&env, NS, "console", "PolicyViolation").await;
    assert!(
        message.contains("OAuthClientPolicy trusted: scopes does not allow invoices:read")
            && message.contains("disabled"),
        "{message}"
    );
    eventually("a Disabled Event naming the rule", || async {
        let notes = event_notes(&env, NS, "console", "Disabled").await;
        notes
            .iter()
            .any(|n| n.contains("OAuthClientPolicy trusted: scopes"))
            .then_some(())
    })
    .await;
    assert_eq!(
        common::secret_value(
            &env.secret("console-oauth").await.expect("kept"),
            "client_secret"
        )
        .as_deref(),
        Some(secret.as_str()),
        "the Secret is kept as it was"
    );

    // ... and enabled again, with the same secret, when the policy allows it again.
    let changed = Instant::now();
    set_scopes(json!(["invoices:*"])).await;
    eventually("the row enabled", || async {
        env.row(id).await.filter(|r| !r.disabled)
    })
    .await;
    eprintln!("policy change -> row enabled: {:?}", changed.elapsed());
    assert_eq!(token(&env, &base, id, &secret).await.0, 200);
    eventually("Ready again", || async {
        env.oauth_client("console").await.filter(common::is_ready)
    })
    .await;
    eventually("an Enabled Event", || async {
        env.event_reasons("console")
            .await
            .contains(&"Enabled".to_owned())
            .then_some(())
    })
    .await;

    // 2. The namespace loses the label that selected it: the defaults (no firstParty).
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let label = |value: Value| {
        let namespaces = namespaces.clone();
        async move {
            namespaces
                .patch(
                    NS,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {"trust": value}}})),
                )
                .await
                .expect("label namespace");
        }
    };
    let changed = Instant::now();
    label(Value::Null).await;
    eventually("the row disabled by the defaults", || async {
        env.row(id).await.filter(|r| r.disabled)
    })
    .await;
    eprintln!(
        "namespace label removed -> row disabled: {:?}",
        changed.elapsed()
    );
    assert_eq!(token(&env, &base, id, &secret).await.0, 401);
    let message = reason_of(&env, NS, "console", "PolicyViolation").await;
    assert!(
        message.contains("the built-in defaults") && message.contains("allowFirstParty"),
        "{message}"
    );
    label(json!("first-party")).await;
    eventually("the row enabled", || async {
        env.row(id).await.filter(|r| !r.disabled)
    })
    .await;
    assert_eq!(token(&env, &base, id, &secret).await.0, 200);
    let row = env.row(id).await.expect("row");
    assert!(row.verify_secret(&secret, now_ms()));
}

/// `spec.secretRef`: SecretPending until the Secret exists, and no row (no invented
/// value) meanwhile; a weak value is refused; then Ready, and the token endpoint accepts
/// that value; a changed value is a rotation with the overlap (both work); the operator
/// notices the change through its watch, not the resync; the Secret is never written or
/// deleted by the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referenced_secret_is_waited_for_and_rotated_with_overlap() {
    // A resync far longer than the test: every reaction below comes from a watch.
    let env = Env::start(&["--resync-interval", "1h"]).await;
    let data = tempfile::tempdir().expect("tempdir");
    let service = env.start_service(data.path(), &[]).await;
    let base = service.base.clone();
    env.apply_yaml(&client(
        "reports",
        "  grantTypes: [client_credentials]\n  scopes: [invoices:read]\n  secretRef:\n    name: vault-reports\n  secretRotation:\n    overlap: 1h\n",
    ))
    .await
    .ok();
    let message = reason_of(&env, NS, "reports", "SecretPending").await;
    assert!(
        message.contains("vault-reports") && message.contains("nothing is stored"),
        "{message}"
    );
    let id = "shop.reports";
    assert!(
        env.row(id).await.is_none(),
        "no row before the Secret exists"
    );
    assert!(env.secret("vault-reports").await.is_none());
    assert!(
        env.secret("reports-oauth").await.is_none(),
        "the operator writes no Secret of its own"
    );

    // A weak value: refused, nothing stored, the value never in the message.
    env.kubectl(&[
        "create",
        "secret",
        "generic",
        "vault-reports",
        "-n",
        NS,
        "--from-literal=client_secret=hunter2hunter2",
    ])
    .await
    .ok();
    let message = reason_of(&env, NS, "reports", "WeakSecret").await;
    assert!(
        message.contains("at least 43") && !message.contains("hunter2"),
        "{message}"
    );
    assert!(env.row(id).await.is_none());

    // A strong value: stored within a moment, and it gets tokens.
    let first = latchkey_store::clients::ClientSecret::generate()
        .expect("value")
        .expose()
        .to_owned();
    let set_value = |value: String| {
        let secrets = env.secrets();
        async move {
            secrets
                .patch(
                    "vault-reports",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"stringData": {"client_secret": value}})),
                )
                .await
                .expect("write the Secret");
        }
    };
    let written = Instant::now();
    set_value(first.clone()).await;
    eventually("the row with the Secret's value", || async {
        env.row(id)
            .await
            .filter(|r| r.verify_secret(&first, now_ms()))
    })
    .await;
    eprintln!("Secret written -> row stored: {:?}", written.elapsed());
    eventually("Ready", || async {
        env.oauth_client("reports").await.filter(common::is_ready)
    })
    .await;
    let (status, body) = token(&env, &base, id, &first).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(token(&env, &base, id, "not-the-secret").await.0, 401);

    // The value changes: a rotation, the old value working for the overlap.
    let second = latchkey_store::clients::ClientSecret::generate()
        .expect("value")
        .expose()
        .to_owned();
    let written = Instant::now();
    set_value(second.clone()).await;
    let row = eventually("the rotated row", || async {
        env.row(id)
            .await
            .filter(|r| r.verify_secret(&second, now_ms()))
    })
    .await;
    eprintln!("Secret changed -> rotation stored: {:?}", written.elapsed());
    let now = now_ms();
    assert!(
        row.verify_secret(&first, now),
        "the old value inside the overlap"
    );
    let expires = row.previous_secret_expires_at.expect("overlap end");
    assert!(
        expires > now + 3_500_000 && expires <= now + 3_600_000,
        "{expires} vs {now}"
    );
    assert_eq!(token(&env, &base, id, &second).await.0, 200);
    assert_eq!(
        token(&env, &base, id, &first).await.0,
        200,
        "old value, overlap"
    );
    eventually("a SecretRotated Event", || async {
        env.event_reasons("reports")
            .await
            .contains(&"SecretRotated".to_owned())
            .then_some(())
    })
    .await;
    let theirs = env.secret("vault-reports").await.expect("secret");
    assert!(
        theirs.metadata.owner_references.is_none(),
        "the operator never takes the Secret over"
    );

    // Deleting the client removes its row, never the Secret it referenced.
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
    assert!(env.row(id).await.is_none(), "the row is gone");
    assert!(
        env.secret("vault-reports").await.is_some(),
        "the referenced Secret stays"
    );
}
