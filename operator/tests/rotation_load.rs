//! Rotation under load: the operator rotates a `SigningKey` every few seconds while three
//! Latchkey service replicas share one PostgreSQL database. Each replica reads its keys
//! from its own directory, refreshed from the Secret by this test the way the kubelet
//! does (atomic `..data` swap), each after a different delay. A client gets tokens
//! round-robin from the replicas and verifies every one against the JWKS of a *different*
//! replica and by introspection at the third. Not one verification may fail, and the kids
//! seen prove the rotations happened.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Env, ISSUER, eventually, example, secret_value};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use latchkey_store::keydir::{self, KeyFile};
use serde_json::Value;

const SECRET: &str = "signing-keys";
/// How late each replica's "kubelet" delivers a Secret change.
const DELAYS_MS: [u64; 3] = [0, 400, 1_200];

/// The service, re-reading its keys from `keys_dir` every `reload_interval`.
async fn start_replica(
    env: &Env,
    data_dir: &std::path::Path,
    keys_dir: &std::path::Path,
    reload_interval: &str,
) -> latchkey_testkit::Service {
    let keys_dir = keys_dir.display().to_string();
    env.start_service(
        data_dir,
        &[
            "--keys-dir",
            &keys_dir,
            "--manage-keys",
            "false",
            "--keys-reload-interval",
            reload_interval,
            "--jwks-max-age",
            "1s",
            // One client hammers the token endpoint on purpose.
            "--rate-limiting-default",
            "off",
            "--rate-limiting-client",
            "off",
        ],
    )
    .await
}

/// The PEM files of a Secret, sorted, as the kubelet would project them.
fn key_files(secret: k8s_openapi::api::core::v1::Secret) -> Vec<KeyFile> {
    let mut files: Vec<KeyFile> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| KeyFile {
            name,
            contents: value.0,
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

/// The PEM files of the Secret, as the kubelet would project them.
async fn secret_files(env: &Env) -> Option<Vec<KeyFile>> {
    env.secret(SECRET).await.map(key_files)
}

/// A kubelet stand-in: polls the Secret and projects each new version into `dir`
/// `delay` after it appeared, in order.
async fn kubelet(env_client: kube::Client, dir: PathBuf, delay: Duration) {
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(env_client, common::NS);
    let mut last: Option<Vec<KeyFile>> = None;
    loop {
        if let Ok(Some(secret)) = secrets.get_opt(SECRET).await {
            let files = key_files(secret);
            if last.as_ref() != Some(&files) {
                let dir = dir.clone();
                let snapshot = files.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tokio::task::spawn_blocking(move || {
                        keydir::write_atomic(&dir, &snapshot, &keydir::new_stamp())
                    })
                    .await;
                });
                last = Some(files);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn header_kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("JWT header")
        .kid
        .expect("kid")
}

/// A `SigningKey` with the given durations, the `reports` client, and one service
/// replica per entry of `delays_ms` (how late its "kubelet" delivers Secret changes),
/// each re-reading its keys every `reload_interval`.
struct Fleet {
    bases: Vec<String>,
    client_id: String,
    client_secret: String,
    _replicas: Vec<latchkey_testkit::Service>,
    _root: tempfile::TempDir,
}

async fn fleet(
    env: &Env,
    (interval, pre_publish, retain): (&str, &str, &str),
    delays_ms: &[u64],
    reload_interval: &str,
) -> Fleet {
    fleet_of(
        env,
        "RS256",
        (interval, pre_publish, retain),
        delays_ms,
        reload_interval,
    )
    .await
}

/// [`fleet`] whose `SigningKey` starts with `algorithm`.
async fn fleet_of(
    env: &Env,
    algorithm: &str,
    (interval, pre_publish, retain): (&str, &str, &str),
    delays_ms: &[u64],
    reload_interval: &str,
) -> Fleet {
    env.kubectl(&[
        "apply",
        "-n",
        common::NS,
        "-f",
        &example("oauthclient-service.yaml"),
    ])
    .await
    .ok();
    env.apply_yaml(&format!(
        "apiVersion: latchkey.dev/v1alpha1
kind: SigningKey
metadata:
  name: latchkey
spec:
  algorithm: {algorithm}
  rotationInterval: {interval}
  prePublish: {pre_publish}
  retainAfterRetire: {retain}
  secretName: {SECRET}
"
    ))
    .await
    .ok();
    let initial = eventually("the signing-key Secret", || async {
        secret_files(env).await.filter(|f| !f.is_empty())
    })
    .await;
    let secret = eventually("client credentials", || async {
        env.secret("reports-oauth").await
    })
    .await;
    let root = tempfile::tempdir().expect("tempdir");
    let (mut bases, mut stops) = (Vec::new(), Vec::new());
    for (i, delay) in delays_ms.iter().enumerate() {
        let keys_dir = root.path().join(format!("keys-{i}"));
        keydir::write_atomic(&keys_dir, &initial, &keydir::new_stamp()).expect("initial keys");
        tokio::spawn(kubelet(
            env.client.clone(),
            keys_dir.clone(),
            Duration::from_millis(*delay),
        ));
        let data_dir = root.path().join(format!("data-{i}"));
        let replica = start_replica(env, &data_dir, &keys_dir, reload_interval).await;
        bases.push(replica.base.clone());
        stops.push(replica);
    }
    Fleet {
        bases,
        client_id: secret_value(&secret, "client_id").expect("client_id"),
        client_secret: secret_value(&secret, "client_secret").expect("client_secret"),
        _replicas: stops,
        _root: root,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_rotate_keys_without_a_failed_verification() {
    let mut env = Env::start(&[]).await;
    // Rotate every 6 s; publish 3 s ahead (> the slowest replica's 1.2 s + its 1 s
    // reload); keep retired keys 10 s (tokens here are verified within a second of issue,
    // and a replica may sign with a retired key until its next reload).
    let fleet = fleet(&env, ("6s", "3s", "10s"), &DELAYS_MS, "1s").await;
    let bases = &fleet.bases;

    let mut issued = 0u32;
    let mut failures: Vec<String> = Vec::new();
    let mut kids: BTreeMap<String, u32> = BTreeMap::new();
    let mut jwks_cache = JwksCache::new();
    let started = Instant::now();
    // The operator crashes (SIGKILL) twice mid-run, between transitions, and a new
    // process takes over once the dead one's Lease expires (2 s in the tests).
    let mut crashes = vec![Duration::from_secs(20), Duration::from_secs(9)];
    let mut i = 0usize;
    while started.elapsed() < Duration::from_secs(32) {
        if crashes.last().is_some_and(|at| started.elapsed() >= *at) {
            crashes.pop();
            env.kill_operator();
            eprintln!("operator killed at {:?}", started.elapsed());
            env.start_operator().await;
        }
        let round = round(&env, &fleet, i, &mut jwks_cache).await;
        i += 1;
        match round {
            Ok((kid, _)) => {
                issued += 1;
                *kids.entry(kid).or_default() += 1;
            }
            Err(failure) => failures.push(failure),
        }
    }
    assert!(crashes.is_empty(), "the operator was not killed twice");
    let took = started.elapsed();
    let sk = env
        .kubectl(&["get", "sk", "latchkey", "-n", common::NS, "-o", "name"])
        .await
        .ok();
    eprintln!(
        "{issued} tokens in {took:?} across {} replicas, operator killed twice; kids seen: {kids:?}; failures: {}",
        bases.len(),
        failures.len()
    );
    assert!(sk.contains("latchkey"), "{sk}");
    assert!(
        failures.is_empty(),
        "{} failed verifications, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let distinct: BTreeSet<&String> = kids.keys().collect();
    assert!(
        distinct.len() >= 4,
        "at least three rotations seen in the tokens' kids: {kids:?}"
    );
    assert!(issued > 100, "only {issued} tokens");
}

/// The keys of each replica's JWKS (by replica and kid), each with the `alg` its JWK
/// names, fetched again whenever a kid is not cached, as a resource server would.
type JwksCache = BTreeMap<(usize, String), (DecodingKey, Algorithm)>;

/// One round of the load: a token from replica `i % 3`, verified against the JWKS of the
/// next replica (with the algorithm its JWK names, which the token's header must match)
/// and by introspection at the third. Returns the token's kid and `alg`, or what failed.
async fn round(
    env: &Env,
    fleet: &Fleet,
    i: usize,
    jwks_cache: &mut JwksCache,
) -> Result<(String, Algorithm), String> {
    let (bases, client_id, client_secret) = (&fleet.bases, &fleet.client_id, &fleet.client_secret);
    let (issuer, verifier, introspector) = (i % 3, (i + 1) % 3, (i + 2) % 3);
    let token = token(env, &bases[issuer], client_id, client_secret)
        .await
        .map_err(|e| format!("replica {issuer}: token request {e}"))?;
    let header = jsonwebtoken::decode_header(&token).map_err(|e| format!("header: {e}"))?;
    let kid = header.kid.ok_or("no kid")?;
    if !jwks_cache.contains_key(&(verifier, kid.clone())) {
        let jwks: jsonwebtoken::jwk::JwkSet = env
            .http
            .get(format!("{}/.well-known/jwks.json", bases[verifier]))
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("a JWK Set");
        for jwk in &jwks.keys {
            if let (Some(k), Some(alg), Ok(decoding)) = (
                jwk.common.key_id.as_deref(),
                jwk.common.key_algorithm,
                DecodingKey::from_jwk(jwk),
            ) && let Ok(alg) = alg.to_string().parse::<Algorithm>()
            {
                jwks_cache.insert((verifier, k.to_owned()), (decoding, alg));
            }
        }
    }
    let (key, alg) = jwks_cache.get(&(verifier, kid.clone())).ok_or_else(|| {
        format!("replica {verifier}'s JWKS lacks {kid} (signed by replica {issuer})")
    })?;
    if header.alg != *alg {
        return Err(format!(
            "{kid}: header alg {:?}, JWK alg {alg:?}",
            header.alg
        ));
    }
    let mut validation = Validation::new(*alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&["https://api.example.com"]);
    jsonwebtoken::decode::<Value>(&token, key, &validation)
        .map_err(|e| format!("replica {verifier} JWKS: {kid}: {e}"))?;
    if !active(env, &bases[introspector], client_id, client_secret, &token).await {
        return Err(format!(
            "replica {introspector} introspection of {kid}: inactive"
        ));
    }
    Ok((kid, *alg))
}

/// SigningKey.spec.algorithm changes twice under load (RS256 → ES256 → EdDSA): each
/// change applies to the next key, the old key's tokens keep verifying while it is
/// published, and not one verification fails across the switches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_between_algorithms() {
    let env = Env::start(&[]).await;
    let fleet = fleet_of(&env, "RS256", ("6s", "3s", "10s"), &DELAYS_MS, "1s").await;
    let api: kube::Api<latchkey_crds::SigningKey> =
        kube::Api::namespaced(env.client.clone(), common::NS);
    let mut switches = vec![
        (Duration::from_secs(12), "EdDSA"),
        (Duration::from_secs(2), "ES256"),
    ];
    let (mut issued, mut failures) = (0u32, Vec::new());
    let mut algs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut jwks_cache = JwksCache::new();
    let started = Instant::now();
    let mut i = 0usize;
    while started.elapsed() < Duration::from_secs(26) {
        if let Some((_, alg)) = switches.pop_if(|(at, _)| started.elapsed() >= *at) {
            api.patch(
                "latchkey",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(serde_json::json!({"spec": {"algorithm": alg}})),
            )
            .await
            .expect("patch spec.algorithm");
            eprintln!("spec.algorithm = {alg} at {:?}", started.elapsed());
        }
        match round(&env, &fleet, i, &mut jwks_cache).await {
            Ok((kid, alg)) => {
                issued += 1;
                algs.entry(format!("{alg:?}")).or_default().insert(kid);
            }
            Err(failure) => failures.push(failure),
        }
        i += 1;
    }
    eprintln!(
        "{issued} tokens in {:?}; kids per algorithm: {algs:?}; failures: {}",
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed verifications, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let seen: Vec<&str> = algs.keys().map(String::as_str).collect();
    assert_eq!(seen, ["ES256", "EdDSA", "RS256"], "{algs:?}");
    // The Secret holds the new algorithm's key as PKCS#8.
    let files = secret_files(&env).await.expect("the Secret");
    let held: BTreeSet<&str> = files
        .iter()
        .filter_map(|f| latchkey_store::keys::KeyPair::from_pem(&f.name, &f.contents).ok())
        .map(|k| k.alg().as_str())
        .collect();
    assert!(held.contains("EdDSA"), "{held:?}");
}

async fn token(env: &Env, base: &str, id: &str, secret: &str) -> Result<String, String> {
    let response = env
        .http
        .post(format!("{base}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match body["access_token"].as_str() {
        Some(t) if status.is_success() => Ok(t.to_owned()),
        _ => Err(format!("{status}: {body}")),
    }
}

async fn active(env: &Env, base: &str, id: &str, secret: &str, token: &str) -> bool {
    let body: Value = env
        .http
        .post(format!("{base}/oauth/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("introspection JSON");
    body["active"] == Value::Bool(true)
}

async fn jwks_kids(env: &Env, base: &str) -> BTreeSet<String> {
    let jwks: Value = env
        .http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

/// Emergency revocation reaches every replica at once: their periodic reload is an
/// hour here, so only the database's change notification can explain a token signed by
/// the revoked kid being refused within a second, and the new key signing as soon as
/// the Secret lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_kid_is_refused_at_once_by_every_replica() {
    let env = Env::start(&[]).await;
    let fleet = fleet(&env, ("24h", "1h", "1h"), &[0, 0], "1h").await;
    let (bases, id, pw) = (&fleet.bases, &fleet.client_id, &fleet.client_secret);
    let issued = token(&env, &bases[0], id, pw).await.expect("a token");
    let revoked = header_kid(&issued);
    for base in bases {
        assert!(active(&env, base, id, pw, &issued).await, "{base}");
        assert!(jwks_kids(&env, base).await.contains(&revoked));
    }

    let api: kube::Api<latchkey_crds::SigningKey> =
        kube::Api::namespaced(env.client.clone(), common::NS);
    let asked = Instant::now();
    api.patch(
        "latchkey",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({
            "metadata": {"annotations": {"latchkey.dev/revoke-kid": revoked}}
        })),
    )
    .await
    .expect("annotate");
    let mut refused_after = Vec::new();
    for base in bases {
        loop {
            if !active(&env, base, id, pw, &issued).await {
                refused_after.push(asked.elapsed());
                break;
            }
            assert!(
                asked.elapsed() < Duration::from_secs(10),
                "{base} still accepts a token signed by the revoked {revoked}\n{}",
                env.operator_log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!jwks_kids(&env, base).await.contains(&revoked), "{base}");
    }
    eprintln!("revoke annotation -> token refused at each replica: {refused_after:?}");
    for took in &refused_after {
        assert!(*took < Duration::from_secs(2), "{refused_after:?}");
    }

    // The replacement key signs as soon as the Secret has landed, at both replicas.
    for base in bases {
        let fresh = eventually("a token signed by the new key", || async {
            token(&env, base, id, pw)
                .await
                .ok()
                .filter(|t| header_kid(t) != revoked)
        })
        .await;
        for other in bases {
            assert!(active(&env, other, id, pw, &fresh).await, "{other}");
        }
    }
    eprintln!(
        "revoke annotation -> both replicas sign with the new key: {:?}",
        asked.elapsed()
    );
}
