//! `daas-init`: PID 1 of the enclave. See `image::init` for what it does.

fn main() -> std::process::ExitCode {
    match image::init::boot() {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("daas-init: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
