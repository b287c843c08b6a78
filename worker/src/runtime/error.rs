//! The pod runtime's error type.

use std::path::PathBuf;

/// Errors of the container runtime and the pod lifecycle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// containerd could not be started, or did not open its socket in time.
    #[error("containerd: {message}")]
    Containerd {
        /// What went wrong.
        message: String,
    },
    /// `ctr images import` failed for a local image archive.
    #[error("importing {archive} into containerd: {message}")]
    ImageImport {
        /// The archive.
        archive: PathBuf,
        /// ctr's stderr.
        message: String,
    },
    /// The connection to the CRI socket could not be made.
    #[error("connecting to the CRI socket {socket}")]
    Connect {
        /// The socket's path.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// A CRI call failed.
    #[error("CRI {call}: {}", .status.message())]
    Cri {
        /// The RPC.
        call: &'static str,
        /// containerd's answer.
        #[source]
        status: Box<tonic::Status>,
    },
    /// A call through an API seam (status writes, configmaps, secrets, tokens) failed.
    #[error("API: {0}")]
    Api(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A JSON value could not be encoded or decoded.
    #[error("JSON {what}")]
    Json {
        /// What was encoded or decoded.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A mount or other system call failed.
    #[error("{what}")]
    Sys {
        /// What was being done.
        what: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
}

/// The pod runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with the path it concerns.
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// A failed CRI call.
    pub(crate) fn cri(call: &'static str, status: tonic::Status) -> Self {
        Self::Cri {
            call,
            status: Box::new(status),
        }
    }

    /// The gRPC status code when this is a failed CRI call.
    #[must_use]
    pub fn cri_code(&self) -> Option<tonic::Code> {
        match self {
            Self::Cri { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}
