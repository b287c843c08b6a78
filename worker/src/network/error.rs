//! The one error type of the worker's networking modules (pod network, service proxy, cluster DNS,
//! NetworkPolicy, dev topology).

use std::path::PathBuf;

/// What went wrong while programming the node's network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A program (`ip`, `bridge`, `nft`, `conntrack`, a CNI plugin) could not be started.
    #[error("cannot run `{program}`")]
    Spawn {
        /// The program.
        program: String,
        /// Why it did not start.
        #[source]
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error("`{command}` exited with {status}: {stderr}")]
    Command {
        /// The command line, as run.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// A program's JSON output could not be read.
    #[error("cannot read the JSON output of `{command}`")]
    Output {
        /// The command line.
        command: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A file could not be read or written.
    #[error("{path}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A socket could not be bound or used.
    #[error("socket {what}")]
    Socket {
        /// Which socket, and what was done with it.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is not usable (a CIDR too small, a name too long, ...).
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// Switching network namespace failed.
    #[error("network namespace {name}")]
    Netns {
        /// The namespace.
        name: String,
        /// The system error.
        #[source]
        source: nix::Error,
    },
}

/// The networking modules' result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
