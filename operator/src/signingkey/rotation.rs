//! What the SigningKey controller should do, decided without touching the cluster or the
//! database: every function here is pure and takes the time (Unix ms) as a parameter.
//!
//! # The state and where it lives
//! The operator's record of a resource's keys (kid, public JWK, state, times) lives in an
//! annotation of the Secret that holds the private keys, so the record and the private
//! keys change in one request and a crash cannot separate them. The `signing_keys` rows
//! and the status are derived from that record on every reconcile.
//!
//! # The life of a key
//! ```text
//!   created ──(created + prePublish)──► Active ──(a newer key activates)──► Retired
//!    Next                                                                     │
//!                                                   (retired + retainAfterRetire)
//!                                                                             ▼
//!                                                                          deleted
//! ```
//! The next key is created `prePublish` before the Active key has signed for
//! `rotationInterval`. Without any Active key (the first reconcile, or after the Active
//! key was revoked) a key is created Active at once, or the Next key is activated at once:
//! someone must be able to sign.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use latchkey_crds::{Algorithm, KeyPhase, KeyStatus, SigningKeySpec, duration};
use latchkey_store::keys::{ALLOWED_BITS, Alg, PublicJwk};
use latchkey_store::signing_keys::{KeyState, SigningKeyRow};
use serde::{Deserialize, Serialize};

use crate::controller::{Found, MANAGED_BY_LABEL, MANAGED_BY_VALUE, found};

/// Label naming the SigningKey a Secret belongs to.
pub const SIGNINGKEY_LABEL: &str = "latchkey.dev/signingkey";
/// The operator's record of the keys (JSON list of [`Key`]), on the Secret.
pub const KEYS_ANNOTATION: &str = "latchkey.dev/signing-keys";
/// The last `latchkey.dev/rotate-now` value acted on, on the Secret.
pub const ROTATE_HANDLED_ANNOTATION: &str = "latchkey.dev/rotate-now-handled";

/// The spec's durations, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub rotation_interval: i64,
    pub pre_publish: i64,
    pub retain_after_retire: i64,
    pub algorithm: Alg,
    pub key_size: usize,
}

/// Checks the spec beyond what the CRD schema can, and parses it. `Err` lists every
/// problem.
pub fn validate(spec: &SigningKeySpec) -> Result<Params, Vec<String>> {
    let mut problems = Vec::new();
    let mut ms = |field: &str, value: &str| match duration::parse(value) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => {
            problems.push(format!("{field}: {e}"));
            0
        }
    };
    let rotation_interval = ms("rotationInterval", &spec.rotation_interval);
    let pre_publish = ms("prePublish", &spec.pre_publish);
    let retain_after_retire = ms("retainAfterRetire", &spec.retain_after_retire);
    if pre_publish < 1_000 {
        problems.push("prePublish must be at least 1s".to_owned());
    }
    if pre_publish >= rotation_interval {
        problems.push("prePublish must be shorter than rotationInterval".to_owned());
    }
    let key_size = usize::try_from(spec.key_size).unwrap_or(0);
    if !ALLOWED_BITS.contains(&key_size) {
        problems.push(format!(
            "keySize {} is not one of 2048, 3072, 4096",
            spec.key_size
        ));
    }
    let algorithm = match spec.algorithm {
        Algorithm::RS256 => Alg::Rs256,
        Algorithm::ES256 => Alg::Es256,
        Algorithm::EdDSA => Alg::EdDsa,
    };
    if problems.is_empty() {
        Ok(Params {
            rotation_interval,
            pre_publish,
            retain_after_retire,
            algorithm,
            key_size,
        })
    } else {
        Err(problems)
    }
}

/// One key as the operator records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Key {
    pub kid: String,
    pub jwk: PublicJwk,
    pub state: KeyPhase,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Key {
    /// A freshly generated key entering the cycle in `state` (Next, or Active when nobody
    /// can sign).
    pub fn new(jwk: PublicJwk, state: KeyPhase, now: i64) -> Self {
        Self {
            kid: jwk.kid.clone(),
            jwk,
            state,
            created_at: now,
            activated_at: (state == KeyPhase::Active).then_some(now),
            retired_at: None,
            expires_at: None,
        }
    }

    /// A key known only from its row (the Secret's record was lost): kept in the record so
    /// it is retired and deleted on schedule rather than left published for ever.
    pub fn from_row(row: &SigningKeyRow) -> Self {
        Self {
            kid: row.kid.clone(),
            jwk: row.jwk.clone(),
            state: match row.state {
                KeyState::Next => KeyPhase::Next,
                KeyState::Active => KeyPhase::Active,
                KeyState::Retired => KeyPhase::Retired,
            },
            created_at: row.created_at,
            activated_at: row.activated_at,
            retired_at: row.retired_at,
            expires_at: row.expires_at,
        }
    }

    /// Whether the Secret must hold this key's private half.
    pub fn needs_private(&self) -> bool {
        matches!(self.state, KeyPhase::Next | KeyPhase::Active)
    }

    /// The `signing_keys` row for this key.
    pub fn row(&self) -> SigningKeyRow {
        SigningKeyRow {
            kid: self.kid.clone(),
            algorithm: self.jwk.alg.clone(),
            jwk: self.jwk.clone(),
            state: match self.state {
                KeyPhase::Next => KeyState::Next,
                KeyPhase::Active => KeyState::Active,
                KeyPhase::Retired => KeyState::Retired,
            },
            created_at: self.created_at,
            activated_at: self.activated_at,
            retired_at: self.retired_at,
            expires_at: self.expires_at,
        }
    }
}

/// The operator's state as read back from its Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub keys: Vec<Key>,
    /// Kids whose `<kid>.pem` the Secret holds (the PEMs themselves stay in the Secret).
    pub private: BTreeMap<String, ByteString>,
    pub rotate_handled: Option<String>,
}

/// Reads the state from `secret`, which must be owned by the resource `owner_uid`.
pub fn read_secret(secret: Option<&Secret>, owner_uid: &str) -> Found<Stored> {
    found(secret, owner_uid, read_stored)
}

fn read_stored(secret: &Secret) -> Stored {
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let keys: Vec<Key> = annotations
        .get(KEYS_ANNOTATION)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    let private = secret
        .data
        .iter()
        .flatten()
        .filter_map(|(name, pem)| {
            let kid = name.strip_suffix(".pem")?;
            Some((kid.to_owned(), pem.clone()))
        })
        .collect();
    Stored {
        keys: keys.into_iter().filter(|k| k.kid == k.jwk.kid).collect(),
        private,
        rotate_handled: annotations.get(ROTATE_HANDLED_ANNOTATION).cloned(),
    }
}

/// The manual actions asked for through annotations on the resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manual {
    pub rotate_now: Option<String>,
    pub revoke_kid: Option<String>,
}

/// What changes in this reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The keys after this reconcile (before a created key is added).
    pub keys: Vec<Key>,
    /// A new key must be generated, entering in this state.
    pub create: Option<KeyPhase>,
    pub activated: Vec<String>,
    pub retired: Vec<String>,
    /// Retired keys past `expiresAt`: rows to delete.
    pub deleted: Vec<String>,
    /// Revoked at the resource's request: rows to delete at once.
    pub revoked: Vec<String>,
    /// Next or Active keys whose private half vanished from the Secret: retired at once.
    pub lost: Vec<String>,
    pub rotate_handled: Option<String>,
}

impl Plan {
    /// Whether anything happens beyond keeping the state.
    pub fn changes(&self) -> bool {
        self.create.is_some()
            || !self.activated.is_empty()
            || !self.retired.is_empty()
            || !self.deleted.is_empty()
            || !self.revoked.is_empty()
            || !self.lost.is_empty()
    }
}

/// Decides the transitions due at `now`. `private` names the kids whose private key the
/// Secret holds.
pub fn plan(
    params: &Params,
    stored: &[Key],
    private: &BTreeSet<String>,
    manual: &Manual,
    rotate_handled: Option<&str>,
    now: i64,
) -> Plan {
    let mut out = Plan {
        rotate_handled: rotate_handled.map(str::to_owned),
        ..Plan::default()
    };
    let mut keys: Vec<Key> = Vec::with_capacity(stored.len() + 1);
    for key in stored {
        if manual.revoke_kid.as_deref() == Some(key.kid.as_str()) {
            out.revoked.push(key.kid.clone());
            continue;
        }
        let mut key = key.clone();
        if key.needs_private() && !private.contains(&key.kid) {
            retire(&mut key, params, now);
            out.lost.push(key.kid.clone());
        }
        if key.state == KeyPhase::Retired && key.expires_at.is_none_or(|t| t <= now) {
            out.deleted.push(key.kid.clone());
            continue;
        }
        keys.push(key);
    }

    // At most one Active key: the newest; more can only come from a hand-edited record.
    let newest_active = keys
        .iter()
        .filter(|k| k.state == KeyPhase::Active)
        .max_by_key(|k| (k.activated_at, k.created_at))
        .map(|k| k.kid.clone());
    // The Next key activates once it has been published for prePublish, or at once when
    // nobody can sign.
    let next = keys
        .iter()
        .filter(|k| k.state == KeyPhase::Next)
        .max_by_key(|k| k.created_at)
        .map(|k| (k.kid.clone(), k.created_at));
    let activate = next.and_then(|(kid, created)| {
        (newest_active.is_none() || created.saturating_add(params.pre_publish) <= now)
            .then_some(kid)
    });
    let signer = activate.clone().or(newest_active);
    for key in &mut keys {
        if Some(&key.kid) == activate.as_ref() {
            key.state = KeyPhase::Active;
            key.activated_at = Some(now);
            out.activated.push(key.kid.clone());
        } else if key.state == KeyPhase::Active && Some(&key.kid) != signer.as_ref() {
            retire(key, params, now);
            out.retired.push(key.kid.clone());
        } else if key.state == KeyPhase::Next && activate.is_some() {
            // An older Next key (hand-edited record): never signs.
            retire(key, params, now);
            out.retired.push(key.kid.clone());
        }
    }

    let rotate_asked = manual
        .rotate_now
        .as_ref()
        .filter(|v| rotate_handled != Some(v.as_str()));
    let has_next = keys.iter().any(|k| k.state == KeyPhase::Next);
    let active = keys.iter().find(|k| k.state == KeyPhase::Active);
    out.create = match active {
        None => Some(KeyPhase::Active),
        Some(_) if has_next => None,
        Some(_) if rotate_asked.is_some() => Some(KeyPhase::Next),
        Some(a) if rotation_due(a, params) <= now => Some(KeyPhase::Next),
        Some(_) => None,
    };
    if let Some(v) = rotate_asked {
        // A rotation is under way (or just started): the request is served.
        out.rotate_handled = Some(v.clone());
    }
    out.keys = keys;
    out
}

fn retire(key: &mut Key, params: &Params, now: i64) {
    key.state = KeyPhase::Retired;
    key.retired_at = Some(now);
    key.expires_at = Some(now.saturating_add(params.retain_after_retire));
}

/// When the successor of Active key `a` must be created: `prePublish` before `a` has
/// signed for `rotationInterval`.
fn rotation_due(a: &Key, params: &Params) -> i64 {
    a.activated_at
        .unwrap_or(a.created_at)
        .saturating_add(params.rotation_interval)
        .saturating_sub(params.pre_publish)
}

/// The next moment a transition is due: a Next key's activation, the Active key's
/// successor's creation, or a Retired key's deletion.
pub fn next_transition(params: &Params, keys: &[Key]) -> Option<i64> {
    let has_next = keys.iter().any(|k| k.state == KeyPhase::Next);
    keys.iter()
        .filter_map(|k| match k.state {
            KeyPhase::Next => Some(k.created_at.saturating_add(params.pre_publish)),
            KeyPhase::Active if !has_next => Some(rotation_due(k, params)),
            KeyPhase::Active => None,
            KeyPhase::Retired => k.expires_at,
        })
        .min()
}

/// How long to wait before the reconcile at `at`: a little after it, so the check sees
/// it due.
pub fn requeue_after(at: i64, now: i64) -> Duration {
    Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0) + 50)
}

/// The Secret: the private keys in `private` as `<kid>.pem`, and the record.
pub fn desired_secret(
    namespace: &str,
    secret_name: &str,
    resource_name: &str,
    owner: OwnerReference,
    keys: &[Key],
    private: &BTreeMap<String, ByteString>,
    rotate_handled: Option<&str>,
) -> Secret {
    let data = private
        .iter()
        .map(|(kid, pem)| (format!("{kid}.pem"), pem.clone()))
        .collect();
    let mut annotations = BTreeMap::from([(
        KEYS_ANNOTATION.to_owned(),
        serde_json::to_string(keys).unwrap_or_else(|_| "[]".to_owned()),
    )]);
    if let Some(v) = rotate_handled {
        annotations.insert(ROTATE_HANDLED_ANNOTATION.to_owned(), v.to_owned());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
                (SIGNINGKEY_LABEL.to_owned(), resource_name.to_owned()),
            ])),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The status list of keys, newest first.
pub fn key_statuses(keys: &[Key]) -> Vec<KeyStatus> {
    let mut keys: Vec<&Key> = keys.iter().collect();
    keys.sort_by_key(|k| std::cmp::Reverse((k.created_at, k.kid.clone())));
    keys.into_iter()
        .map(|k| KeyStatus {
            kid: k.kid.clone(),
            state: k.state,
            created_at: time(k.created_at),
            activated_at: k.activated_at.map(time),
            retired_at: k.retired_at.map(time),
            expires_at: k.expires_at.map(time),
        })
        .collect()
}

pub fn time(ms: i64) -> Time {
    Time(Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_store::keys::KeyPair;

    const S: i64 = 1_000;
    const T0: i64 = 1_800_000_000_000;

    fn params() -> Params {
        // Rotate every 100 s, publish 10 s ahead, keep retired keys 30 s.
        Params {
            rotation_interval: 100 * S,
            pre_publish: 10 * S,
            retain_after_retire: 30 * S,
            algorithm: Alg::Rs256,
            key_size: 2048,
        }
    }

    fn jwk(n: u8) -> PublicJwk {
        PublicJwk::rsa(&[n; 256], &[1, 0, 1])
    }

    fn held(keys: &[Key]) -> BTreeSet<String> {
        keys.iter()
            .filter(|k| k.needs_private())
            .map(|k| k.kid.clone())
            .collect()
    }

    /// Runs `plan` at `now`, adding the created key (made from `n`) as the controller does.
    fn step(keys: &[Key], manual: &Manual, handled: Option<&str>, now: i64, n: u8) -> Plan {
        let mut p = plan(&params(), keys, &held(keys), manual, handled, now);
        if let Some(state) = p.create {
            p.keys.push(Key::new(jwk(n), state, now));
        }
        p
    }

    fn states(keys: &[Key]) -> Vec<(String, KeyPhase)> {
        keys.iter().map(|k| (k.kid.clone(), k.state)).collect()
    }

    #[test]
    fn first_key_is_active_at_once() {
        let p = step(&[], &Manual::default(), None, T0, 1);
        assert_eq!(p.create, Some(KeyPhase::Active));
        assert_eq!(states(&p.keys), [(jwk(1).kid, KeyPhase::Active)]);
        assert_eq!(p.keys[0].activated_at, Some(T0));
        // Next: create the successor prePublish before the interval ends.
        assert_eq!(next_transition(&params(), &p.keys), Some(T0 + 90 * S));
    }

    #[test]
    fn full_cycle_next_active_retired_deleted() {
        let a = step(&[], &Manual::default(), None, T0, 1).keys;
        let none = &Manual::default();
        // Nothing to do before the rotation is due, at any time.
        for t in [T0 + S, T0 + 50 * S, T0 + 90 * S - 1] {
            let p = step(&a, none, None, t, 2);
            assert!(!p.changes(), "at {t}: {p:?}");
            assert_eq!(p.keys, a);
        }
        // At T0+90s: the Next key is created and published; A still signs.
        let p = step(&a, none, None, T0 + 90 * S, 2);
        assert_eq!(p.create, Some(KeyPhase::Next));
        let b_kid = jwk(2).kid;
        assert_eq!(
            states(&p.keys),
            [
                (jwk(1).kid, KeyPhase::Active),
                (b_kid.clone(), KeyPhase::Next)
            ]
        );
        let ab = p.keys;
        assert_eq!(next_transition(&params(), &ab), Some(T0 + 100 * S));
        assert!(!step(&ab, none, None, T0 + 100 * S - 1, 3).changes());
        // At T0+100s: B activates, A retires, kept until T0+130s.
        let p = step(&ab, none, None, T0 + 100 * S, 3);
        assert_eq!(p.activated, std::slice::from_ref(&b_kid));
        assert_eq!(p.retired, [jwk(1).kid]);
        assert_eq!(p.create, None);
        let retired = &p.keys[0];
        assert_eq!(retired.retired_at, Some(T0 + 100 * S));
        assert_eq!(retired.expires_at, Some(T0 + 130 * S));
        assert!(!retired.needs_private(), "a retired key leaves the Secret");
        let ba = p.keys;
        assert_eq!(next_transition(&params(), &ba), Some(T0 + 130 * S));
        // At T0+130s A is deleted; next: B's successor at T0+190s.
        let p = step(&ba, none, None, T0 + 130 * S, 3);
        assert_eq!(p.deleted, [jwk(1).kid]);
        assert_eq!(states(&p.keys), [(b_kid, KeyPhase::Active)]);
        assert_eq!(next_transition(&params(), &p.keys), Some(T0 + 190 * S));
    }

    #[test]
    fn every_step_is_idempotent() {
        let none = &Manual::default();
        let mut keys = step(&[], none, None, T0, 1).keys;
        for (i, t) in [90, 100, 130, 190, 200, 230].into_iter().enumerate() {
            let n = u8::try_from(i + 2).expect("small");
            keys = step(&keys, none, None, T0 + t * S, n).keys;
            let again = step(&keys, none, None, T0 + t * S, 99);
            assert!(!again.changes(), "at +{t}s: {again:?}");
            assert_eq!(again.keys, keys);
        }
    }

    #[test]
    fn late_reconcile_catches_up_without_skipping_pre_publish() {
        // The operator was down from T0+50s to T0+500s: the successor is created late
        // and still published for prePublish before it signs.
        let none = &Manual::default();
        let a = step(&[], none, None, T0, 1).keys;
        let p = step(&a, none, None, T0 + 500 * S, 2);
        assert_eq!(p.create, Some(KeyPhase::Next));
        assert!(p.activated.is_empty());
        assert_eq!(next_transition(&params(), &p.keys), Some(T0 + 510 * S));
    }

    #[test]
    fn rotate_now_starts_a_rotation_once() {
        let a = step(&[], &Manual::default(), None, T0, 1).keys;
        let asked = Manual {
            rotate_now: Some("1".to_owned()),
            revoke_kid: None,
        };
        let p = step(&a, &asked, None, T0 + 5 * S, 2);
        assert_eq!(p.create, Some(KeyPhase::Next));
        assert_eq!(p.rotate_handled.as_deref(), Some("1"));
        // The Next key still waits prePublish.
        assert_eq!(next_transition(&params(), &p.keys), Some(T0 + 15 * S));
        let p = step(&p.keys, &asked, Some("1"), T0 + 15 * S, 3);
        assert_eq!(p.activated, [jwk(2).kid]);
        // The same value again does nothing more.
        let p = step(&p.keys, &asked, Some("1"), T0 + 16 * S, 4);
        assert!(!p.changes(), "{p:?}");
    }

    #[test]
    fn revoking_the_active_key_activates_the_next_at_once() {
        let none = &Manual::default();
        let a = step(&[], none, None, T0, 1).keys;
        let ab = step(&a, none, None, T0 + 90 * S, 2).keys;
        let revoke = Manual {
            rotate_now: None,
            revoke_kid: Some(jwk(1).kid),
        };
        let p = step(&ab, &revoke, None, T0 + 91 * S, 3);
        assert_eq!(p.revoked, [jwk(1).kid]);
        assert_eq!(p.activated, [jwk(2).kid]);
        assert_eq!(states(&p.keys), [(jwk(2).kid, KeyPhase::Active)]);
        // Idempotent: the revoked kid is gone, the annotation does nothing more.
        assert!(!step(&p.keys, &revoke, None, T0 + 92 * S, 4).changes());
    }

    #[test]
    fn revoking_the_only_key_creates_an_active_one() {
        let a = step(&[], &Manual::default(), None, T0, 1).keys;
        let revoke = Manual {
            rotate_now: None,
            revoke_kid: Some(jwk(1).kid),
        };
        let p = step(&a, &revoke, None, T0 + S, 2);
        assert_eq!(p.revoked, [jwk(1).kid]);
        assert_eq!(p.create, Some(KeyPhase::Active));
    }

    #[test]
    fn revoking_a_retired_key_removes_it_early() {
        let none = &Manual::default();
        let mut keys = step(&[], none, None, T0, 1).keys;
        keys = step(&keys, none, None, T0 + 90 * S, 2).keys;
        keys = step(&keys, none, None, T0 + 100 * S, 3).keys;
        let revoke = Manual {
            rotate_now: None,
            revoke_kid: Some(jwk(1).kid),
        };
        let p = step(&keys, &revoke, None, T0 + 101 * S, 3);
        assert_eq!(p.revoked, [jwk(1).kid]);
        assert!(p.activated.is_empty() && p.create.is_none());
    }

    #[test]
    fn a_key_whose_private_half_vanished_is_retired() {
        let none = &Manual::default();
        let ab = step(
            &step(&[], none, None, T0, 1).keys,
            none,
            None,
            T0 + 90 * S,
            2,
        )
        .keys;
        // The Secret lost both private keys (edited by hand).
        let p = plan(&params(), &ab, &BTreeSet::new(), none, None, T0 + 95 * S);
        assert_eq!(p.lost.len(), 2);
        assert_eq!(p.create, Some(KeyPhase::Active));
        assert!(p.keys.iter().all(|k| k.state == KeyPhase::Retired));
    }

    #[test]
    fn a_key_recovered_from_its_row_round_trips() {
        let key = Key {
            retired_at: Some(T0 + S),
            expires_at: Some(T0 + 2 * S),
            state: KeyPhase::Retired,
            ..Key::new(jwk(7), KeyPhase::Active, T0)
        };
        assert_eq!(Key::from_row(&key.row()), key);
    }

    #[test]
    fn validate_checks_sizes_and_order() {
        let spec = SigningKeySpec {
            algorithm: Algorithm::RS256,
            key_size: 1024,
            rotation_interval: "1h".to_owned(),
            pre_publish: "2h".to_owned(),
            retain_after_retire: "1d".to_owned(),
            secret_name: None,
        };
        assert_eq!(validate(&spec).expect_err("invalid").len(), 2);
        let ok = SigningKeySpec {
            key_size: 3072,
            pre_publish: "10m".to_owned(),
            ..spec
        };
        assert_eq!(
            validate(&ok),
            Ok(Params {
                rotation_interval: 3_600_000,
                pre_publish: 600_000,
                retain_after_retire: 86_400_000,
                algorithm: Alg::Rs256,
                key_size: 3072
            })
        );
        let ed = SigningKeySpec {
            algorithm: Algorithm::EdDSA,
            ..ok
        };
        assert_eq!(validate(&ed).map(|p| p.algorithm), Ok(Alg::EdDsa));
    }

    #[test]
    fn state_round_trips_through_the_secret() {
        let key = KeyPair::generate(2048).expect("key");
        let keys = vec![Key::new(key.jwk().clone(), KeyPhase::Active, T0)];
        let private = BTreeMap::from([(
            key.kid().to_owned(),
            ByteString(key.to_pem().expect("pem").into_bytes()),
        )]);
        let owner = OwnerReference {
            uid: "uid-1".to_owned(),
            controller: Some(true),
            ..OwnerReference::default()
        };
        let secret = desired_secret("ns", "s", "r", owner, &keys, &private, Some("x"));
        assert!(
            secret
                .data
                .as_ref()
                .is_some_and(|d| d.contains_key(&format!("{}.pem", key.kid())))
        );
        assert_eq!(
            read_secret(Some(&secret), "uid-1"),
            Found::Owned(Stored {
                keys,
                private,
                rotate_handled: Some("x".to_owned())
            })
        );
        assert_eq!(read_secret(Some(&secret), "other"), Found::Foreign);
    }

    #[test]
    fn requeue_is_a_little_after_the_transition() {
        assert_eq!(requeue_after(T0 + 2 * S, T0), Duration::from_millis(2_050));
        assert_eq!(requeue_after(T0 - S, T0), Duration::from_millis(50));
    }
}
