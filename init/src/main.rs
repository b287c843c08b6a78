//! `daas-init`: PID 1 of the enclave. See the `init` crate for what it does.

fn main() -> std::process::ExitCode {
    match init::boot() {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("daas-init: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
