//! Access-token and `id_token_hint` verification (`latchkey_domain::tokens`) on arbitrary
//! input: it must answer an error, never panic, and accept only what it should.
//!
//! The harness is a real [`Tokens`]: a SQLite database, a key directory holding
//! `fixtures/signing-key.pem` (published as the Active key, so its `kid` is known), the
//! in-process revocation list. Each input is tried twice:
//! - as a compact JWT (header, `typ`, `alg`, `kid` and signature checks; the seeds are
//!   real tokens signed with the fixture key);
//! - if it is JSON, as the claims of a token that the fixture key signs, so claim
//!   parsing and `exp`/`iss`/`aud` validation are reached past the signature.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use latchkey_domain::ephemeral::Ephemeral;
use latchkey_domain::keyring::KeyRing;
use latchkey_domain::tokens::Tokens;
use latchkey_store::Db;
use latchkey_store::keydir::{self, KeyFile};
use latchkey_store::keys::Alg;
use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "https://issuer.fuzz.invalid";
const AUDIENCE: &str = "https://api.fuzz.invalid";
const KEY_PEM: &[u8] = include_bytes!("../fixtures/signing-key.pem");

struct Harness {
    rt: tokio::runtime::Runtime,
    tokens: Tokens,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Under TMPDIR, which fuzz/run.sh points at a scratch folder it empties.
        let dir = std::env::temp_dir().join(format!("latchkey-fuzz-jwt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let keys_dir = dir.join("keys");
        let file = KeyFile {
            name: "fuzz.pem".to_owned(),
            contents: KEY_PEM.to_vec(),
        };
        keydir::write_atomic(&keys_dir, &[file], &keydir::new_stamp()).expect("key directory");
        let tokens = rt.block_on(async {
            let url = format!("sqlite://{}?mode=rwc", dir.join("fuzz.db").display());
            let db = Db::connect(&url, 2).await.expect("sqlite");
            db.migrate().await.expect("migrations");
            let keys = KeyRing::load(db, keys_dir, true, Alg::Rs256, 2048)
                .await
                .expect("key ring");
            Tokens::new(
                keys,
                Ephemeral::memory(),
                ISSUER.to_owned(),
                AUDIENCE.to_owned(),
                Duration::from_secs(900),
                1,
            )
        });
        Harness { rt, tokens }
    })
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    h.rt.block_on(async {
        if let Ok(token) = std::str::from_utf8(data) {
            check(&h.tokens, token).await;
        }
        if let Ok(claims) = serde_json::from_slice::<serde_json::Value>(data) {
            let token = h.tokens.sign("at+jwt", &claims).await.expect("sign");
            check(&h.tokens, &token).await;
            let token = h.tokens.sign("JWT", &claims).await.expect("sign");
            check(&h.tokens, &token).await;
        }
    });
});

/// Every verification entry point; what one accepts must carry our issuer (and, for
/// [`Tokens::verify`], our audience) and must not have expired.
async fn check(tokens: &Tokens, token: &str) {
    let now = latchkey_store::now_ms() / 1000;
    if let Ok(claims) = tokens.verify(token).await {
        assert_eq!(claims.iss, ISSUER);
        assert_eq!(claims.aud, AUDIENCE);
        assert!(claims.exp >= now - 60, "expired token accepted: {claims:?}");
    }
    if let Ok(claims) = tokens.verify_any_audience(token).await {
        assert_eq!(claims.iss, ISSUER);
        assert!(claims.exp >= now - 60, "expired token accepted: {claims:?}");
    }
    let _ = tokens.verify_id_token_hint(token).await;
}
