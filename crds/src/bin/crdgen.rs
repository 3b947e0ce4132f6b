//! Writes Latchkey's CRDs as YAML from the Rust types.
//!
//! `crdgen` writes them into `charts/latchkey/crds/` of this checkout; `crdgen DIR`
//! into DIR; `crdgen -` prints them on stdout (e.g. `crdgen - | kubectl apply -f -`).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let files = match latchkey_crds::generated_files() {
        Ok(files) => files,
        Err(e) => {
            eprintln!("crdgen: rendering the CRDs failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let target = std::env::args().nth(1);
    if target.as_deref() == Some("-") {
        for (_, body) in &files {
            print!("---\n{body}");
        }
        return ExitCode::SUCCESS;
    }
    let dir = target.map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/latchkey/crds")
    });
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("crdgen: creating {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for (name, body) in &files {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, body) {
            eprintln!("crdgen: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("crdgen: wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
