//! The crate's error type.

/// What went wrong on a SPDY session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame the specification does not allow.
    #[error("SPDY protocol error: {0}")]
    Protocol(&'static str),
    /// A control frame of another SPDY version.
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    /// A header block zlib could not (de)compress.
    #[error("SPDY header compression: {0}")]
    Compression(String),
    /// A header block that decompresses to more than the limit.
    #[error("SPDY header block larger than {limit} bytes")]
    HeadersTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Reading or writing the connection failed.
    #[error("SPDY connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer reset the stream.
    #[error("SPDY stream {stream_id} was reset (status {status})")]
    Reset {
        /// The stream.
        stream_id: u32,
        /// The RST_STREAM status.
        status: u32,
    },
    /// The session is gone (closed, or its connection failed).
    #[error("the SPDY session is closed")]
    Closed,
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
