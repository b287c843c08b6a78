//! The seam between the tunnel and the container runtime.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use protocol::tunnel::channel::{StreamEnd, TerminalSize};
use protocol::tunnel::{LogOptions, PodRef, RefusalKind, StdStreams};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::UsageSample;

/// A boxed future, as the seam's methods return (the tunnel holds the seam as a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Bytes as they come (a log, a process's output).
pub type ByteStream = Pin<Box<dyn futures::Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A connection both ways (a port-forward's connection to the pod).
pub type Duplex = Box<dyn DuplexIo>;

/// What a [`Duplex`] is: a byte stream both ways.
pub trait DuplexIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> DuplexIo for T {}

/// Boxes any connection as a [`Duplex`].
pub fn boxed_duplex(io: impl AsyncRead + AsyncWrite + Send + Unpin + 'static) -> Duplex {
    Box::new(io)
}

/// A running exec or attach session in a container.
pub struct Process {
    /// Its stdin, when the session asked for stdin. Dropping it closes the process's stdin.
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// Its stdout (with a TTY: the terminal), when asked for.
    pub stdout: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Its stderr, when asked for (never with a TTY).
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Where terminal sizes go, with a TTY.
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    /// Resolves when the session ends: the exit code (exec), or how it ended. Dropping it
    /// before it resolves ends the session (an exec's process is killed).
    pub done: BoxFuture<'static, StreamEnd>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the runtime cannot serve a stream; the enclave shows the message to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// No such pod (or a pod of another UID) or container on this node.
    #[error("{0}")]
    NotFound(String),
    /// The container exists but is not running.
    #[error("{0}")]
    NotRunning(String),
    /// The request makes no sense for this container (e.g. no previous instance).
    #[error("{0}")]
    BadRequest(String),
    /// The runtime failed.
    #[error("{0}")]
    Runtime(String),
}

impl StreamError {
    /// How the tunnel answers it.
    pub fn kind(&self) -> RefusalKind {
        match self {
            StreamError::NotFound(_) => RefusalKind::NotFound,
            StreamError::NotRunning(_) => RefusalKind::NotRunning,
            StreamError::BadRequest(_) => RefusalKind::BadRequest,
            StreamError::Runtime(_) => RefusalKind::Internal,
        }
    }
}

/// What the tunnel needs from the container runtime, for the pods of this node.
///
/// Every method checks that `pod` (namespace, name and, when set, UID) is one of this node's
/// and that the container exists, and answers [`StreamError::NotFound`] otherwise.
pub trait ContainerStreams: Send + Sync + 'static {
    /// The container's log as `pods/log` returns it (see [`super::cri_log`] for CRI-format
    /// files). With `follow`, the stream ends when the container does.
    fn logs(
        &self,
        pod: PodRef,
        container: String,
        options: LogOptions,
    ) -> BoxFuture<'_, Result<ByteStream, StreamError>>;

    /// Runs `command` in the container with `streams`.
    fn exec(
        &self,
        pod: PodRef,
        container: String,
        command: Vec<String>,
        streams: StdStreams,
    ) -> BoxFuture<'_, Result<Process, StreamError>>;

    /// Attaches to the container's main process with `streams`.
    fn attach(
        &self,
        pod: PodRef,
        container: String,
        streams: StdStreams,
    ) -> BoxFuture<'_, Result<Process, StreamError>>;

    /// Connects to `port` in the pod's network namespace.
    fn port_forward(&self, pod: PodRef, port: u16) -> BoxFuture<'_, Result<Duplex, StreamError>>;

    /// A sample of the node's and its pods' cumulative usage.
    fn usage(&self) -> BoxFuture<'_, Result<UsageSample, StreamError>>;
}
