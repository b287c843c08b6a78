//! Starting the enclave: [`NitroCli`] drives `nitro-cli` on a Nitro parent instance; [`DevSupervisor`] runs the
//! enclave binary as a child process in dev mode and restarts it when it dies.

mod dev;
mod nitro;
#[cfg(test)]
mod tests;

pub use dev::{DevSupervisor, RestartPolicy};
pub use nitro::{
    CommandRunner, EnclaveDescription, EnclaveRun, EnclaveState, EnclaveTermination, NitroCli,
    ProcessRunner, RunEnclaveRequest, supervise_enclave,
};
