//! The Latchkey operator. Its controllers arrive with the operator issues; until then the
//! binary only reports that it has nothing to run, so nobody mistakes it for a working one.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    eprintln!(
        "latchkey-operator {}: no controllers are implemented yet",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::FAILURE
}
