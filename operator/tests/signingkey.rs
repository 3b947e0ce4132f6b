//! End to end: SigningKey rotation by the real `latchkey-operator` binary against a real
//! kube-apiserver + etcd and a real PostgreSQL, with intervals shortened to seconds.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Env, NS, Relay, eventually, example};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use latchkey_crds::{KeyPhase, SigningKey};
use latchkey_store::keys::KeyPair;
use latchkey_store::signing_keys::{self, KeyState, SigningKeyRow};
use serde_json::json;

const SECRET: &str = "keys";

fn manifest(name: &str, interval: &str, pre_publish: &str, retain: &str) -> String {
    format!(
        "apiVersion: latchkey.dev/v1alpha1
kind: SigningKey
metadata:
  name: {name}
spec:
  rotationInterval: {interval}
  prePublish: {pre_publish}
  retainAfterRetire: {retain}
  secretName: {SECRET}
"
    )
}

fn api(env: &Env) -> Api<SigningKey> {
    Api::namespaced(env.client.clone(), NS)
}

async fn signing_key(env: &Env, name: &str) -> Option<SigningKey> {
    api(env).get_opt(name).await.expect("get SigningKey")
}

/// Every row of the table, expired or not.
async fn rows(env: &Env) -> BTreeMap<String, SigningKeyRow> {
    signing_keys::published(&env.db, 0)
        .await
        .expect("read rows")
        .into_iter()
        .map(|r| (r.kid.clone(), r))
        .collect()
}

/// The kids whose private key the Secret holds, each checked to parse as that kid.
fn private_kids(secret: Option<&Secret>) -> BTreeSet<String> {
    let Some(data) = secret.and_then(|s| s.data.as_ref()) else {
        return BTreeSet::new();
    };
    data.iter()
        .map(|(name, pem)| {
            let kid = name.strip_suffix(".pem").expect("only <kid>.pem files");
            let key = KeyPair::from_pem(name, &pem.0).expect("a PEM private key");
            assert_eq!(key.kid(), kid, "file named after its kid");
            kid.to_owned()
        })
        .collect()
}

async fn annotate(env: &Env, name: &str, key: &str, value: &str) {
    api(env)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await
        .expect("annotate");
}

async fn event_reasons(env: &Env, name: &str) -> Vec<String> {
    env.event_reasons_of("SigningKey", name).await
}

/// A SigningKey rotating every 6 s (published 2 s ahead, retired keys kept 3 s) is
/// watched for 26 s: every key goes Next → Active → Retired → deleted, an Active row's
/// private key is in the Secret whenever it is Active, the Secret never keeps a retired
/// key's private half for long, and the status follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_through_every_state() {
    let env = Env::start(&[]).await;
    let applied = Instant::now();
    env.apply_yaml(&manifest("signer", "6s", "2s", "3s"))
        .await
        .ok();

    let first = eventually("a first Active key", || async {
        signing_key(&env, "signer").await?.status?.active_kid
    })
    .await;
    eprintln!("apply -> first Active key: {:?}", applied.elapsed());

    // kid -> the states the table showed, in order (None: the row is gone).
    let mut history: BTreeMap<String, Vec<Option<KeyState>>> = BTreeMap::new();
    // kid -> when the Secret was first seen holding a private key the table does not
    // (yet, or any more) list as Next or Active: allowed only between two writes.
    let mut retired_but_held: BTreeMap<String, Instant> = BTreeMap::new();
    let mut samples = 0;
    let mut checked_status = 0;
    let watch_until = Instant::now() + Duration::from_secs(26);
    while Instant::now() < watch_until {
        let before = rows(&env).await;
        let secret = env.secret(SECRET).await;
        let held = private_kids(secret.as_ref());
        let after = rows(&env).await;
        samples += 1;
        for (kid, row) in &before {
            // Invariant: Active in the table => the private key is in the Secret (unless
            // it was retired between the two reads).
            if row.state == KeyState::Active {
                let still_active = after.get(kid).is_some_and(|r| r.state == KeyState::Active);
                assert!(
                    held.contains(kid) || !still_active,
                    "{kid} is Active in the database but its private key is not in the Secret"
                );
            }
        }
        for kid in &held {
            if !matches!(
                after.get(kid).map(|r| r.state),
                Some(KeyState::Next | KeyState::Active)
            ) {
                let since = *retired_but_held
                    .entry(kid.clone())
                    .or_insert_with(Instant::now);
                // The operator retires the row, then drops the private key in its next
                // Secret write: a reconcile or two later. 1 s was too short on a loaded
                // 2-core machine (CI); what matters is that it goes, not its pace.
                assert!(
                    since.elapsed() < Duration::from_secs(10),
                    "the Secret holds {kid}, which is neither Next nor Active in the table"
                );
            }
        }
        let kids: BTreeSet<&String> = history.keys().chain(after.keys()).collect();
        let kids: Vec<String> = kids.into_iter().cloned().collect();
        for kid in kids {
            let now = after.get(&kid).map(|r| r.state);
            let seen = history.entry(kid).or_default();
            if seen.last() != Some(&now) {
                seen.push(now);
            }
        }
        // The status names the Active key of the table once it has caught up.
        if let Some(sk) = signing_key(&env, "signer").await
            && let Some(status) = sk.status
        {
            let active: Vec<&String> = after
                .iter()
                .filter(|(_, r)| r.state == KeyState::Active)
                .map(|(k, _)| k)
                .collect();
            assert!(active.len() <= 1, "more than one Active key: {active:?}");
            if status.active_kid.as_ref() == active.first().copied() {
                checked_status += 1;
                let next_at = status.next_transition_at.expect("nextTransitionAt");
                let in_status: BTreeSet<&String> = status.keys.iter().map(|k| &k.kid).collect();
                let in_table: BTreeSet<&String> = after.keys().collect();
                if in_status == in_table {
                    for k in &status.keys {
                        let row = &after[&k.kid];
                        let phase = match row.state {
                            KeyState::Next => KeyPhase::Next,
                            KeyState::Active => KeyPhase::Active,
                            KeyState::Retired => KeyPhase::Retired,
                        };
                        assert_eq!(k.state, phase, "status and table agree on {}", k.kid);
                    }
                }
                assert!(
                    next_at.0.as_millisecond() > latchkey_store::now_ms() - 2_000,
                    "nextTransitionAt is not in the past: {next_at:?}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("samples: {samples}, status checks: {checked_status}");
    for (kid, states) in &history {
        eprintln!("{kid}: {states:?}");
    }
    // The first key: created Active (nobody else could sign), retired, deleted.
    assert_eq!(
        history[&first][..3],
        [Some(KeyState::Active), Some(KeyState::Retired), None],
        "first key"
    );
    // Keys created by a rotation went through the whole cycle.
    let full: Vec<&String> = history
        .iter()
        .filter(|(_, s)| {
            s.starts_with(&[
                Some(KeyState::Next),
                Some(KeyState::Active),
                Some(KeyState::Retired),
                None,
            ])
        })
        .map(|(k, _)| k)
        .collect();
    assert!(
        full.len() >= 2,
        "at least two keys went Next -> Active -> Retired -> deleted: {history:?}"
    );
    for states in history.values() {
        for pair in states.windows(2) {
            assert!(
                matches!(
                    pair,
                    [None, Some(KeyState::Next)]
                        | [None, Some(KeyState::Active)]
                        | [Some(KeyState::Next), Some(KeyState::Active)]
                        | [Some(KeyState::Active), Some(KeyState::Retired)]
                        | [Some(KeyState::Retired), None]
                ),
                "illegal transition {pair:?} in {states:?}"
            );
        }
    }

    // Timing, from the rows still there: how long a key signed, how long it stayed
    // published after, and how late each activation came after prePublish.
    let table = rows(&env).await;
    for row in table.values() {
        if let (Some(act), Some(ret), Some(exp)) =
            (row.activated_at, row.retired_at, row.expires_at)
        {
            eprintln!(
                "{}: active for {} ms (interval 6000), retired -> expires {} ms",
                row.kid,
                ret - act,
                exp - ret
            );
            assert_eq!(exp - ret, 3_000, "retainAfterRetire");
            assert!(
                (6_000..7_500).contains(&(ret - act)),
                "signed {} ms",
                ret - act
            );
        }
        if let Some(act) = row.activated_at
            && row.kid != first
            && act > row.created_at
        {
            let late = act - row.created_at - 2_000;
            eprintln!("{}: activated {late} ms after prePublish ended", row.kid);
            assert!((0..1_000).contains(&late), "activation {late} ms late");
        }
    }

    let table = env.kubectl(&["get", "sk", "-n", NS]).await.ok();
    assert!(
        table.contains("ACTIVE KID") && table.contains("NEXT TRANSITION"),
        "{table}"
    );
    let reasons = event_reasons(&env, "signer").await;
    for r in ["KeyCreated", "KeyActivated", "KeyRetired", "KeyDeleted"] {
        assert!(reasons.iter().any(|x| x == r), "no {r} Event: {reasons:?}");
    }
    assert!(!reasons.iter().any(|r| r.contains("Fail")), "{reasons:?}");
    let metrics = env.metrics().await;
    assert!(
        metrics.contains(
            r#"latchkey_operator_reconciles_total{controller="signingkey",result="success"}"#
        ),
        "{metrics}"
    );
}

/// Rotate-now, an operator killed between every pair of transitions, and an emergency
/// revocation that removes the kid from the table at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_between_transitions_and_emergency_revoke() {
    let mut env = Env::start(&[]).await;
    // Nonsense is refused by the API server (CEL).
    let refused = env.apply_yaml(&manifest("bad", "10s", "10s", "5s")).await;
    assert!(!refused.success, "prePublish >= rotationInterval accepted");
    assert!(
        refused.stderr.contains("prePublish must be shorter"),
        "{}",
        refused.stderr
    );
    // The example is accepted as is (validated by the API server, not stored: its keys
    // would share the table with this test's).
    env.kubectl(&[
        "apply",
        "--dry-run=server",
        "-n",
        NS,
        "-f",
        &example("signingkey.yaml"),
    ])
    .await
    .ok();

    env.apply_yaml(&manifest("manual", "1h", "3s", "4s"))
        .await
        .ok();
    let a = eventually("key A Active", || async {
        signing_key(&env, "manual").await?.status?.active_kid
    })
    .await;
    assert!(
        env.secret(SECRET)
            .await
            .is_some_and(|s| private_kids(Some(&s)) == BTreeSet::from([a.clone()]))
    );

    // Rotate now: B is published at once, and the operator dies before it activates.
    annotate(&env, "manual", "latchkey.dev/rotate-now", "1").await;
    let b = eventually("key B Next", || async {
        signing_key(&env, "manual").await?.status?.next_kid
    })
    .await;
    assert_eq!(rows(&env).await[&b].state, KeyState::Next);
    env.kill_operator();
    let b_created = rows(&env).await[&b].created_at;
    // Stay down past B's activation time, then resume.
    let due = b_created + 3_000;
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(due - latchkey_store::now_ms()).unwrap_or(0) + 1_000,
    ))
    .await;
    assert_eq!(
        rows(&env).await[&b].state,
        KeyState::Next,
        "nothing moves without the operator"
    );
    let restarted = Instant::now();
    env.start_operator().await;
    eventually("B Active after the restart", || async {
        let t = rows(&env).await;
        (t.get(&b)?.state == KeyState::Active && t.get(&a)?.state == KeyState::Retired)
            .then_some(())
    })
    .await;
    eprintln!(
        "restart -> overdue activation done: {:?}",
        restarted.elapsed()
    );
    let secret = eventually("A's private key gone", || async {
        let s = env.secret(SECRET).await?;
        (private_kids(Some(&s)) == BTreeSet::from([b.clone()])).then_some(s)
    })
    .await;
    assert!(secret.metadata.annotations.is_some());
    let status = eventually("status caught up", || async {
        let st = signing_key(&env, "manual").await?.status?;
        (st.active_kid.as_ref() == Some(&b) && st.next_kid.is_none()).then_some(st)
    })
    .await;
    assert_eq!(status.keys.len(), 2);
    // The same rotate-now value does not rotate again.
    assert_eq!(rows(&env).await.len(), 2);

    // Down again across A's expiry: the row is deleted on restart.
    env.kill_operator();
    let a_expires = rows(&env).await[&a].expires_at.expect("expiry");
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(a_expires - latchkey_store::now_ms()).unwrap_or(0) + 500,
    ))
    .await;
    env.start_operator().await;
    eventually("A deleted after the restart", || async {
        (!rows(&env).await.contains_key(&a)).then_some(())
    })
    .await;
    assert_eq!(
        rows(&env).await.len(),
        1,
        "no key created twice across restarts"
    );

    // Emergency revoke of the Active key: its row goes at once, a new key signs.
    let asked = Instant::now();
    annotate(&env, "manual", "latchkey.dev/revoke-kid", &b).await;
    eventually("B's row deleted", || async {
        (!rows(&env).await.contains_key(&b)).then_some(())
    })
    .await;
    let revoke_took = asked.elapsed();
    eprintln!("revoke annotation -> row deleted: {revoke_took:?}");
    assert!(revoke_took < Duration::from_secs(3), "{revoke_took:?}");
    let c = eventually("a new Active key", || async {
        signing_key(&env, "manual")
            .await?
            .status?
            .active_kid
            .filter(|k| *k != b)
    })
    .await;
    let s = env.secret(SECRET).await.expect("secret");
    assert_eq!(private_kids(Some(&s)), BTreeSet::from([c.clone()]));
    assert_eq!(rows(&env).await[&c].state, KeyState::Active);
    let reasons = eventually("a KeyRevoked event", || async {
        let r = event_reasons(&env, "manual").await;
        r.iter().any(|r| r == "KeyRevoked").then_some(r)
    })
    .await;
    assert!(reasons.iter().any(|r| r == "KeyActivated"), "{reasons:?}");

    // Deleting the Secret loses the private key: C is retired (not left Active in the
    // table for ever) and a new key D signs.
    env.secrets()
        .delete(SECRET, &Default::default())
        .await
        .expect("delete Secret");
    let d = eventually("a new key after the Secret was deleted", || async {
        let t = rows(&env).await;
        let d = signing_key(&env, "manual")
            .await?
            .status?
            .active_kid
            .filter(|k| *k != c)?;
        (t.get(&c)?.state == KeyState::Retired && t.get(&d)?.state == KeyState::Active).then_some(d)
    })
    .await;
    assert_eq!(
        private_kids(env.secret(SECRET).await.as_ref()),
        BTreeSet::from([d.clone()])
    );
    eventually("a KeyLost event", || async {
        let r = event_reasons(&env, "manual").await;
        r.iter().any(|r| r == "KeyLost").then_some(())
    })
    .await;

    // Deleting the resource takes its keys out of the table and deletes the Secret.
    env.kubectl(&["delete", "signingkey", "manual", "-n", NS])
        .await
        .ok();
    eventually("rows and Secret gone", || async {
        let gone = rows(&env).await.is_empty() && env.secret(SECRET).await.is_none();
        gone.then_some(())
    })
    .await;
}

/// Two operator processes: only the Lease holder reconciles; when it is killed, the other
/// takes over within the lease duration (2 s in the tests) and rotation continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_when_the_leader_dies() {
    let mut env = Env::start(&[]).await;
    let [port] = latchkey_testkit::free_ports().expect("port");
    let standby_addr = format!("127.0.0.1:{port}");
    let standby = env.spawn_operator(&standby_addr).await;

    env.apply_yaml(&manifest("ha", "1h", "2s", "3s")).await.ok();
    let a = eventually("key A Active", || async {
        signing_key(&env, "ha").await?.status?.active_kid
    })
    .await;
    let lease: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.client.clone(), "default");
    let holder = lease
        .get("latchkey-operator")
        .await
        .expect("the Lease exists")
        .spec
        .and_then(|s| s.holder_identity)
        .expect("a holder");
    // The standby waits: it has reconciled nothing.
    let standby_metrics = env
        .http
        .get(format!("http://{standby_addr}/metrics"))
        .send()
        .await
        .expect("standby /metrics")
        .text()
        .await
        .expect("body");
    assert!(
        !standby_metrics.contains("latchkey_operator_reconciles_total"),
        "the standby reconciled while the leader was alive:\n{standby_metrics}"
    );
    assert!(
        env.operator_log().contains("became the leader"),
        "the first process leads"
    );

    // The leader dies mid-life; the standby takes over and serves a rotation.
    env.kill_operator();
    let killed = Instant::now();
    annotate(&env, "ha", "latchkey.dev/rotate-now", "failover").await;
    let b = eventually("the standby creates key B", || async {
        let st = signing_key(&env, "ha").await?.status?;
        st.next_kid.filter(|k| *k != a)
    })
    .await;
    let failover = killed.elapsed();
    eprintln!("leader killed -> standby acted: {failover:?}");
    assert!(failover < Duration::from_secs(6), "{failover:?}");
    eventually("B Active under the new leader", || async {
        (rows(&env).await.get(&b)?.state == KeyState::Active).then_some(())
    })
    .await;
    let new_holder = lease
        .get("latchkey-operator")
        .await
        .expect("the Lease")
        .spec
        .and_then(|s| s.holder_identity)
        .expect("a holder");
    assert_ne!(new_holder, holder, "the Lease changed hands");
    drop(standby);
}

/// A leader stopped gracefully (SIGTERM, as when Kubernetes stops its pod) gives the
/// Lease up, so the standby takes over at its next attempt instead of waiting out the
/// lease duration (9 s here; the standby tries every 3 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_releases_the_lease() {
    let mut env = Env::start_with_lease(&[], "9s").await;
    let [port] = latchkey_testkit::free_ports().expect("port");
    let standby = env.spawn_operator(&format!("127.0.0.1:{port}")).await;
    env.apply_yaml(&manifest("handover", "1h", "2s", "3s"))
        .await
        .ok();
    let a = eventually("key A Active", || async {
        signing_key(&env, "handover").await?.status?.active_kid
    })
    .await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.client.clone(), "default");
    let holder = || async {
        leases
            .get("latchkey-operator")
            .await
            .ok()?
            .spec?
            .holder_identity
    };
    let leader = holder().await.expect("a leader");

    let mut old = env.operator.take().expect("the leader process");
    let stopped = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = old.terminate(Duration::from_secs(10));
        (status, old.log_tail(20))
    })
    .await
    .expect("terminate");
    let (status, log) = status;
    assert!(
        status.is_some_and(|s| s.success()),
        "the leader did not exit cleanly on SIGTERM: {status:?}\n{log}"
    );
    assert!(log.contains("released the Lease"), "{log}");
    let successor = eventually("the standby holds the Lease", || async {
        holder().await.filter(|h| *h != leader)
    })
    .await;
    let handover = stopped.elapsed();
    eprintln!("SIGTERM to the leader -> standby holds the Lease: {handover:?} (lease 9 s)");
    assert!(
        handover < Duration::from_secs(6),
        "{handover:?}: the standby waited for the Lease to expire"
    );
    assert!(!successor.is_empty());

    annotate(&env, "handover", "latchkey.dev/rotate-now", "1").await;
    eventually("the new leader rotates", || async {
        signing_key(&env, "handover")
            .await?
            .status?
            .next_kid
            .filter(|k| *k != a)
    })
    .await;
    drop(standby);
}

/// Issue 15: a leader whose API connections hang (a partition that keeps sockets open
/// and passes nothing, so no request ever errors) must step down and exit (status 1)
/// before a standby can take over: never two leaders. Each renewal runs under a timeout
/// of the time left; the leader gives up a renew period before the Lease can expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_steps_down_before_a_standby_takes_over() {
    let mut env = Env::start_with_lease(&[], "6s").await;
    let upstream: std::net::SocketAddr = env
        .plane
        .server()
        .trim_start_matches("https://")
        .parse()
        .expect("the API server address");
    let relay = Relay::start(upstream).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relayed = dir.path().join("relayed.kubeconfig");
    let config = std::fs::read_to_string(env.plane.kubeconfig()).expect("kubeconfig");
    std::fs::write(
        &relayed,
        config.replace(env.plane.server(), &format!("https://{}", relay.addr)),
    )
    .expect("write kubeconfig");

    // The first leader goes; one behind the relay leads (once its Lease expired).
    env.kill_operator();
    let [p1, p2] = latchkey_testkit::free_ports().expect("ports");
    let mut leader = env
        .spawn_operator_via(&format!("127.0.0.1:{p1}"), &relayed)
        .await;
    eventually("the relayed operator leads", || async {
        leader
            .log_tail(200)
            .contains("became the leader")
            .then_some(())
    })
    .await;
    let standby = env.spawn_operator(&format!("127.0.0.1:{p2}")).await;

    relay.cut();
    let cut = Instant::now();
    let status = loop {
        if let Some(status) = leader.exited() {
            break status;
        }
        assert!(
            cut.elapsed() < Duration::from_secs(20),
            "the partitioned leader is still running 20 s after the cut:\n{}",
            leader.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let exited = cut.elapsed();
    assert!(!status.success(), "{status:?}");
    let log = leader.log_tail(40);
    assert!(log.contains("leadership lost"), "{log}");
    eventually("the standby leads", || async {
        standby
            .log_tail(200)
            .contains("became the leader")
            .then_some(())
    })
    .await;
    let took_over = cut.elapsed();
    eprintln!(
        "partition: leader exited {exited:?} after the cut, standby led {took_over:?} after it (lease 6 s)"
    );
    assert!(
        exited < took_over,
        "two leaders: the standby led at {took_over:?}, the old leader exited at {exited:?}"
    );
}
