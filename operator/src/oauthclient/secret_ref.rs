//! Bring-your-own secret (`spec.secretRef`): the client secret is read from a Secret the
//! operator does not own (External Secrets, Sealed Secrets, another cluster's operator),
//! never generated, never written and never deleted. Pure functions, like [`super::plan`].
//!
//! # The state and where it lives
//! The operator owns no Secret for such a client, so its record of which value is current
//! is the database row itself: `secret_hash` is the digest of the value last read,
//! `previous_secret_hash` / `previous_secret_expires_at` the value before it during the
//! overlap. A value that differs from the row's current digest is a rotation, and one
//! upsert records it, so a crash can never count it twice. Nothing is written until the
//! Secret holds an acceptable value: the client is `SecretPending` (or `WeakSecret`) and
//! no value is ever invented meanwhile.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use latchkey_crds::SecretRef;
use latchkey_store::clients::ClientRecord;

use super::plan::{Plaintext, Previous, SecretChange, SecretPlan};

/// The fewest characters a bring-your-own secret may have: what 256 random bits take in
/// unpadded base64 (the operator's own secrets are exactly that). The service stores a
/// plain SHA-256 digest, which is safe only for a value nobody can guess: a low-entropy
/// value (a password, a word) could be recovered from its digest by brute force.
pub const MIN_LEN: usize = 43;
/// The most characters accepted (a client sends it in every token request).
pub const MAX_LEN: usize = 1024;
/// The fewest distinct characters: refuses "aaaa…" and "0000…", which have the length
/// but no entropy. A random 43-character base64 or 64-character hex value has far more.
const MIN_DISTINCT: usize = 8;

/// What the referenced Secret holds for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Referenced {
    /// No such Secret (yet).
    Missing,
    /// The Secret exists but has no such key (yet).
    NoKey,
    /// The value is refused; the text says why, without the value.
    Weak(String),
    /// An acceptable value.
    Value(Plaintext),
}

/// Reads `reference.key` of `secret`, checking its strength.
pub fn read(secret: Option<&Secret>, reference: &SecretRef) -> Referenced {
    let Some(secret) = secret else {
        return Referenced::Missing;
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&reference.key))
        .map(|b| b.0.as_slice());
    let Some(bytes) = value else {
        return Referenced::NoKey;
    };
    match check_strength(bytes) {
        Ok(value) => Referenced::Value(Plaintext::from_value(value)),
        Err(why) => Referenced::Weak(why),
    }
}

/// Accepts printable ASCII without spaces (what fits in HTTP Basic and form bodies
/// unchanged) of [`MIN_LEN`]..=[`MAX_LEN`] characters with some variety. A trailing
/// newline (`echo` into a file) is dropped; other whitespace is refused.
pub fn check_strength(bytes: &[u8]) -> Result<String, String> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(
            "the value must be printable ASCII without spaces (e.g. `openssl rand -base64 32`)"
                .to_owned(),
        );
    }
    if bytes.len() < MIN_LEN {
        return Err(format!(
            "the value has {} characters; at least {MIN_LEN} are needed (256 random bits, e.g. `openssl rand -base64 32`): it is stored as a plain SHA-256 digest, safe only for a value nobody can guess",
            bytes.len()
        ));
    }
    if bytes.len() > MAX_LEN {
        return Err(format!(
            "the value has {} characters; at most {MAX_LEN} are accepted",
            bytes.len()
        ));
    }
    let mut seen = [false; 128];
    for b in bytes {
        seen[usize::from(*b)] = true;
    }
    if seen.iter().filter(|s| **s).count() < MIN_DISTINCT {
        return Err(format!(
            "the value uses fewer than {MIN_DISTINCT} distinct characters: it is not random"
        ));
    }
    // Printable ASCII only, so this cannot fail.
    String::from_utf8(bytes.to_vec()).map_err(|_| "the value is not text".to_owned())
}

/// The secret state after this reconcile, from the value read and the row as stored
/// (`None` when there is none, or it is not ours). `last_change` is when the operator
/// last saw the value change (the status's lastSecretRotation).
pub fn plan(
    value: &Plaintext,
    row: Option<&ClientRecord>,
    overlap: Duration,
    rotation_generation: i64,
    last_change: Option<i64>,
    now: i64,
) -> SecretPlan {
    let digest = value.digest();
    let stored = row.and_then(|r| r.secret_hash.clone());
    let live_previous =
        row.and_then(
            |r| match (&r.previous_secret_hash, r.previous_secret_expires_at) {
                (Some(digest), Some(expires_at)) if expires_at > now => Some(Previous {
                    digest: digest.clone(),
                    expires_at,
                }),
                _ => None,
            },
        );
    let (change, previous, generated_at) = match stored {
        None => (SecretChange::Created, None, Some(now)),
        Some(current) if current == digest => (
            SecretChange::Unchanged,
            live_previous,
            last_change.or(Some(now)),
        ),
        Some(current) => {
            let overlap_ms = i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX);
            let previous = (overlap_ms > 0).then(|| Previous {
                digest: current,
                expires_at: now.saturating_add(overlap_ms),
            });
            (SecretChange::Rotated, previous, Some(now))
        }
    };
    SecretPlan {
        change,
        current: Some(value.clone()),
        previous,
        rotation_generation,
        generated_at,
    }
}

/// What to do with what the referenced Secret holds: the secret plan, or Ready=False
/// (`reason`, `message`) with nothing written. `row` must be this client's own.
pub fn decide(
    found: Referenced,
    reference: &SecretRef,
    row: Option<&ClientRecord>,
    overlap: Duration,
    rotation_generation: i64,
    last_change: Option<i64>,
    now: i64,
) -> Result<SecretPlan, (&'static str, String)> {
    let kept = if row.is_some() {
        "the value stored before keeps working until then"
    } else {
        "nothing is stored until then"
    };
    let (name, key) = (&reference.name, &reference.key);
    match found {
        Referenced::Value(value) => Ok(plan(
            &value,
            row,
            overlap,
            rotation_generation,
            last_change,
            now,
        )),
        Referenced::Missing => Err((
            "SecretPending",
            format!("waiting for Secret {name} (spec.secretRef) to exist; {kept}"),
        )),
        Referenced::NoKey => Err((
            "SecretPending",
            format!("waiting for key {key} in Secret {name} (spec.secretRef); {kept}"),
        )),
        Referenced::Weak(why) => Err((
            "WeakSecret",
            format!("key {key} of Secret {name} is refused: {why}; {kept}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use latchkey_store::clients::{ClientSecret, ManagedBy, secret_digest};
    use latchkey_store::protocol::{AuthMethod, GrantType};

    use super::*;

    fn reference() -> SecretRef {
        SecretRef {
            name: "ext".into(),
            key: "client_secret".into(),
        }
    }

    fn secret(key: &str, value: &str) -> Secret {
        Secret {
            data: Some(BTreeMap::from([(
                key.to_owned(),
                ByteString(value.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        }
    }

    fn strong() -> String {
        ClientSecret::generate()
            .expect("secret")
            .expose()
            .to_owned()
    }

    fn row(digest: Option<String>) -> ClientRecord {
        ClientRecord {
            client_id: "ns.x".into(),
            name: "x".into(),
            secret_hash: digest,
            previous_secret_hash: None,
            previous_secret_expires_at: None,
            public: false,
            grant_types: vec![GrantType::ClientCredentials],
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            scopes: vec![],
            token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
            first_party: false,
            admin: false,
            resource_server: false,
            access_token_ttl: None,
            refresh_token_ttl: None,
            audience: None,
            jwks: None,
            service_account: None,
            managed_by: ManagedBy::Operator,
            owner: Some("ns/x".into()),
            disabled: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn decide_reports_what_is_missing() {
        let r = reference();
        let d = |found| decide(found, &r, None, Duration::ZERO, 0, None, 0);
        let (reason, message) = d(Referenced::Missing).expect_err("pending");
        assert_eq!(reason, "SecretPending");
        assert!(
            message.contains("Secret ext") && message.contains("nothing is stored"),
            "{message}"
        );
        let (reason, message) = d(Referenced::NoKey).expect_err("pending");
        assert_eq!(reason, "SecretPending");
        assert!(message.contains("key client_secret"), "{message}");
        let (reason, _) = d(Referenced::Weak("short".into())).expect_err("weak");
        assert_eq!(reason, "WeakSecret");
        let stored = row(Some(secret_digest("x")));
        let (_, message) = decide(
            Referenced::Missing,
            &r,
            Some(&stored),
            Duration::ZERO,
            0,
            None,
            0,
        )
        .expect_err("pending");
        assert!(message.contains("keeps working"), "{message}");
        let value = Plaintext::from_value(strong());
        let plan = d(Referenced::Value(value.clone())).expect("a plan");
        assert_eq!(plan.current, Some(value));
    }

    #[test]
    fn a_missing_secret_or_key_is_pending_and_nothing_is_invented() {
        assert_eq!(read(None, &reference()), Referenced::Missing);
        assert_eq!(
            read(Some(&secret("other", &strong())), &reference()),
            Referenced::NoKey
        );
        let value = strong();
        assert_eq!(
            read(Some(&secret("client_secret", &value)), &reference()),
            Referenced::Value(Plaintext::from_value(value))
        );
    }

    #[test]
    fn weak_values_are_refused_with_a_reason_but_never_the_value() {
        for weak in [
            "hunter2",
            "correct horse battery staple and some more words",
            &"a".repeat(64),
            &"ab".repeat(40),
            "ünïcödé-ünïcödé-ünïcödé-ünïcödé-ünïcödé-xyz",
        ] {
            match read(Some(&secret("client_secret", weak)), &reference()) {
                Referenced::Weak(why) => assert!(!why.contains(weak), "{why}"),
                other => panic!("{weak:?} accepted: {other:?}"),
            }
        }
        // What the README suggests: `openssl rand -base64 32` (44 chars, with padding),
        // `openssl rand -hex 32` (64), with the newline `echo` adds.
        for ok in [
            "q9x3ZP0e1VbJ0Yk0mXwZ1d5yN3l8Qh2sR4tU6vW8xY0=\n",
            "8f2d6c1a9b7e4f3a2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b",
        ] {
            assert!(check_strength(ok.as_bytes()).is_ok(), "{ok:?}");
        }
        assert_eq!(
            check_strength(b"q9x3ZP0e1VbJ0Yk0mXwZ1d5yN3l8Qh2sR4tU6vW8xY0=\n").as_deref(),
            Ok("q9x3ZP0e1VbJ0Yk0mXwZ1d5yN3l8Qh2sR4tU6vW8xY0=")
        );
    }

    #[test]
    fn a_changed_value_is_a_rotation_with_overlap() {
        let old = Plaintext::from_value(strong());
        let new = Plaintext::from_value(strong());
        let hour = Duration::from_secs(3_600);
        let first = plan(&old, None, hour, 0, None, 1_000);
        assert_eq!(first.change, SecretChange::Created);
        assert_eq!(first.previous, None);

        let stored = row(Some(old.digest()));
        let same = plan(&old, Some(&stored), hour, 0, Some(1_000), 2_000);
        assert_eq!(same.change, SecretChange::Unchanged);
        assert_eq!(same.generated_at, Some(1_000));

        let rotated = plan(&new, Some(&stored), hour, 0, Some(1_000), 5_000);
        assert_eq!(rotated.change, SecretChange::Rotated);
        assert_eq!(
            rotated.previous,
            Some(Previous {
                digest: old.digest(),
                expires_at: 5_000 + 3_600_000
            })
        );
        // Seen again (a crash, a resync): recorded once, the overlap kept until its end.
        let mut after = stored.clone();
        after.secret_hash = Some(new.digest());
        after.previous_secret_hash = Some(old.digest());
        after.previous_secret_expires_at = Some(5_000 + 3_600_000);
        let again = plan(&new, Some(&after), hour, 0, Some(5_000), 6_000);
        assert_eq!(again.change, SecretChange::Unchanged);
        assert_eq!(again.previous, rotated.previous);
        let later = plan(&new, Some(&after), hour, 0, Some(5_000), 5_000 + 3_600_000);
        assert_eq!(later.previous, None);
        // Overlap 0: the old value stops at once.
        let now = plan(&new, Some(&stored), Duration::ZERO, 0, None, 5_000);
        assert_eq!((now.change, now.previous), (SecretChange::Rotated, None));
        assert_ne!(secret_digest(new.expose()), old.digest());
    }
}
