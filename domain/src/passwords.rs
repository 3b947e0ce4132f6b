//! Human passwords: the strength policy and argon2id hashing.
//!
//! Hashing uses OWASP's argon2id parameters (19 MiB, 2 passes, 1 lane). Each hash costs
//! tens of milliseconds of CPU and 19 MiB of memory, so it runs on the blocking pool
//! behind a semaphore sized to the cores: a flood of logins queues here instead of
//! starving the runtime or exhausting memory.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// OWASP Password Storage Cheat Sheet, argon2id minimum configuration.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

/// Longest password accepted (ASVS 2.1.2 asks that at least 64 be allowed).
pub const MAX_LENGTH: usize = 128;

/// Built-in list of passwords too common to allow, one per line.
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

fn argon2() -> Argon2<'static> {
    // The parameters are constants within argon2's documented ranges.
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .unwrap_or_else(|_| Params::default());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes and verifies passwords off the async runtime, with bounded concurrency.
#[derive(Clone, Debug)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when the user does not exist so
    /// that "no such user" costs the same time as "wrong password".
    dummy_hash: Arc<str>,
}

impl Hasher {
    pub async fn new(concurrency: usize) -> Result<Self> {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut random = [0u8; 32];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| anyhow::anyhow!("RNG failure"))?;
        let throwaway = base64_url(&random);
        let dummy_hash = tokio::task::spawn_blocking(move || hash_blocking(&throwaway))
            .await
            .context("hash task")??;
        Ok(Self {
            permits,
            dummy_hash: dummy_hash.into(),
        })
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) of `password`.
    pub async fn hash(&self, password: String) -> Result<String> {
        let _permit = self.permits.acquire().await.context("hasher closed")?;
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .context("hash task")?
    }

    /// Whether `password` matches `stored`; with `None` it verifies against the dummy
    /// hash and answers false, taking the same time.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool> {
        let _permit = self.permits.acquire().await.context("hasher closed")?;
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let matched = tokio::task::spawn_blocking(move || verify_blocking(&password, &stored))
            .await
            .context("verify task")??;
        // An unknown user counts as a mismatch: no label tells who has an account.
        metrics::counter!(
            "latchkey_password_verifications_total",
            "result" => if matched && known { "match" } else { "mismatch" }
        )
        .increment(1);
        Ok(matched && known)
    }
}

fn hash_blocking(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| anyhow::anyhow!("RNG failure"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = argon2()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(hash.to_string())
}

fn verify_blocking(password: &str, stored: &str) -> Result<bool> {
    let parsed = PasswordHash::new(stored).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
    // Parameters come from the stored string, so older hashes keep verifying.
    Ok(argon2()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The non-empty lines of a password list, lower-cased.
fn lines(list: &str) -> impl Iterator<Item = String> + '_ {
    list.lines()
        .map(|l| l.trim().to_lowercase())
        .filter(|l| !l.is_empty())
}

/// What a new password must satisfy. Composition rules are off by default, as NIST
/// SP 800-63B and ASVS 2.1.9 advise; length and the rejected list are always on.
#[derive(Clone, Debug)]
pub struct Policy {
    pub min_length: usize,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub require_digit: bool,
    pub require_symbol: bool,
    rejected: Arc<HashSet<String>>,
}

impl Policy {
    /// A policy of `min_length` with the built-in rejected list and no composition rules.
    pub fn new(min_length: usize) -> Self {
        Self {
            min_length,
            require_uppercase: false,
            require_lowercase: false,
            require_digit: false,
            require_symbol: false,
            rejected: Arc::new(lines(COMMON_PASSWORDS).collect()),
        }
    }

    /// Also rejects the passwords in `list`, one per line (`PASSWORD_REJECT_LIST`).
    pub fn reject_also(mut self, list: &str) -> Self {
        Arc::make_mut(&mut self.rejected).extend(lines(list));
        self
    }

    /// Checks `password` for an account with these identifiers; every failed rule is
    /// reported, not just the first.
    pub fn check(&self, password: &str, username: &str, email: &str) -> Result<()> {
        let mut failed = Vec::new();
        let length = password.chars().count();
        if length < self.min_length {
            failed.push("min_length");
        }
        if length > MAX_LENGTH {
            failed.push("max_length");
        }
        if self.require_uppercase && !password.chars().any(char::is_uppercase) {
            failed.push("uppercase");
        }
        if self.require_lowercase && !password.chars().any(char::is_lowercase) {
            failed.push("lowercase");
        }
        if self.require_digit && !password.chars().any(|c| c.is_ascii_digit()) {
            failed.push("digit");
        }
        if self.require_symbol && password.chars().all(char::is_alphanumeric) {
            failed.push("symbol");
        }
        let lowered = password.to_lowercase();
        if self.rejected.contains(&lowered) {
            failed.push("common");
        }
        let local_part = email.split('@').next().unwrap_or_default().to_lowercase();
        let username = username.to_lowercase();
        if (username.len() >= 3 && lowered.contains(&username))
            || (local_part.len() >= 3 && lowered.contains(&local_part))
        {
            failed.push("contains_identity");
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::WeakPassword { rules: failed })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min_length: 12,
            require_uppercase: true,
            require_lowercase: false,
            require_digit: true,
            require_symbol: false,
            rejected: Arc::new(["password1234".to_owned()].into_iter().collect()),
        }
    }

    fn rules(result: Result<()>) -> Vec<&'static str> {
        match result {
            Ok(()) => vec![],
            Err(Error::WeakPassword { rules }) => rules,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn reports_every_failed_rule() {
        assert_eq!(
            rules(policy().check("short", "alice", "a@x.io")),
            ["min_length", "uppercase", "digit"]
        );
        assert_eq!(
            rules(policy().check("PASSWORD1234", "bob", "b@x.io")),
            ["common"]
        );
        assert_eq!(
            rules(policy().check("Alice-Secret-99", "alice", "a@x.io")),
            ["contains_identity"]
        );
        assert_eq!(
            rules(policy().check("Correct-Horse-7", "alice", "a@x.io")),
            Vec::<&str>::new()
        );
        assert_eq!(
            rules(policy().check(&"A1".repeat(65), "alice", "a@x.io")),
            ["max_length"]
        );
    }

    #[test]
    fn built_in_list_is_loaded() {
        assert!(COMMON_PASSWORDS.lines().count() > 100);
        assert!(COMMON_PASSWORDS.lines().any(|l| l == "123456789012"));
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let hasher = Hasher::new(2).await.expect("hasher");
        let hash = hasher
            .hash("correct horse battery".into())
            .await
            .expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            hasher
                .verify("correct horse battery".into(), Some(hash.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify("wrong".into(), Some(hash))
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify("anything".into(), None)
                .await
                .expect("verify")
        );
    }
}
