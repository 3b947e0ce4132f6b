//! Loading a key directory (`latchkey_store::keydir` and `keys::KeyPair::from_pem`): the
//! mounted Secret's files as the key ring reads and parses them. A file that is not a
//! usable RSA key must be an error (the ring logs and skips it), never a panic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use latchkey_store::keydir;
use latchkey_store::keys::{Alg, KeyPair};
use libfuzzer_sys::fuzz_target;

fn key_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Under TMPDIR, which fuzz/run.sh points at a scratch folder it empties.
        let dir = std::env::temp_dir().join(format!("latchkey-fuzz-pem-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("key directory");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = key_dir();
    std::fs::write(dir.join("key.pem"), data).expect("write key file");
    let files = keydir::read_pem_files(dir).expect("read key directory");
    assert_eq!(files.len(), 1);
    for file in files {
        assert_eq!(file.contents, data);
        if let Ok(key) = KeyPair::from_pem(&file.name, &file.contents) {
            // A key we accept is RSA of at least 2048 bits, P-256 or Ed25519, publishes a
            // JWK whose kid checks, and survives its own PEM round trip.
            assert!(key.alg() != Alg::Rs256 || key.bits() >= 2048);
            assert_eq!(key.jwk().public_key().map(|(alg, _)| alg).ok(), Some(key.alg()));
            let pem = key.to_pem().expect("to_pem");
            let again = KeyPair::from_pem("again.pem", pem.as_bytes()).expect("round trip");
            assert_eq!(again.kid(), key.kid());
        }
    }
});
