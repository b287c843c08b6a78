//! The crate's one error type.

use std::path::PathBuf;

/// What can go wrong on the host side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An endpoint string such as `vsock:16:6443`, `unix:/run/x.sock` or `tcp:127.0.0.1:6443` did not parse.
    #[error("invalid endpoint {input:?}: {reason}")]
    InvalidEndpoint {
        /// The string as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A configuration value is out of range; checked before any I/O.
    #[error("invalid configuration: {field} {reason}")]
    InvalidConfig {
        /// The option's name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Binding a listening endpoint failed.
    #[error("cannot listen on {endpoint}")]
    Bind {
        /// The endpoint, as displayed.
        endpoint: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A Unix socket path is taken by a live listener or by a file that is not a socket.
    #[error("{path} is in use (a live socket or not a socket); refusing to replace it")]
    SocketPathInUse {
        /// The path.
        path: PathBuf,
    },
    /// An outbound route names a target that is not on the allowlist.
    #[error("outbound target {target} is not on the allowlist")]
    NotAllowed {
        /// The refused `host:port`.
        target: String,
    },
    /// Running an external command (nitro-cli, a dev enclave) failed to start.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// nitro-cli exited with an error; `stderr` carries its `[ Exx ] ...` message.
    #[error("{program} {subcommand} failed ({status}): {stderr}")]
    NitroCli {
        /// The program.
        program: String,
        /// The subcommand, e.g. `run-enclave`.
        subcommand: &'static str,
        /// The exit status, as displayed.
        status: String,
        /// The tool's standard error, trimmed.
        stderr: String,
    },
    /// nitro-cli printed output that is not the JSON it documents.
    #[error("cannot parse the output of nitro-cli {subcommand}")]
    NitroCliOutput {
        /// The subcommand.
        subcommand: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Serving the metrics endpoint failed.
    #[error("metrics endpoint")]
    Metrics(#[source] std::io::Error),
    /// A benchmark step failed (`daas bench relay`).
    #[error("benchmark: {what}")]
    Bench {
        /// The step.
        what: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A journal file operation failed (`daas-host journal`).
    #[error("journal: {op} {path}")]
    JournalIo {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The journal file's own length framing is damaged (not a sealed-record check: the host cannot do those).
    #[error("journal file framing damaged at byte {offset}: {reason}")]
    JournalFraming {
        /// Byte offset in the journal file.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// Another key broker holds the state directory's lock.
    #[error("key broker state directory {path} is in use by another key broker")]
    KeyBrokerLocked {
        /// The directory.
        path: PathBuf,
    },
    /// Another journal service holds the directory's lock.
    #[error("journal directory {path} is in use by another journal service")]
    JournalLocked {
        /// The directory.
        path: PathBuf,
    },
    /// An earlier failed append could not be rolled back; the journal refuses writes until the service restarts.
    #[error("journal is poisoned by an earlier failure: {0}")]
    JournalPoisoned(String),
    /// A journal request is out of order or inconsistent (e.g. a snapshot chunk without a begin).
    #[error("journal request refused: {reason}")]
    JournalRequest {
        /// What is wrong.
        reason: &'static str,
    },
    /// The key broker could not read or store its KMS-wrapped root secret (`daas-host keybroker`).
    #[error("key broker: {op} {path}")]
    KeyBrokerIo {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A KMS call failed or was refused.
    #[error(transparent)]
    Kms(#[from] crate::kms::KmsError),
    /// Any other I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<protocol::EndpointError> for Error {
    fn from(e: protocol::EndpointError) -> Self {
        Self::InvalidEndpoint {
            input: e.input().to_owned(),
            reason: e.reason(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `e` and its causes on one line, `: `-separated, for a message sent to the enclave.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
