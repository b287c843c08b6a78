//! SPDY/3.1, as kubectl uses it for `exec`, `attach` (kubectl ≤ 1.29, and as the fallback of
//! later versions) and `port-forward` (every version; from 1.31 tunnelled in WebSocket
//! messages). Written from the SPDY/3 draft (draft-mbelshe-httpbis-spdy-00) and SPDY/3.1's
//! session flow control; no code from other implementations.
//!
//! Layering: depends on nothing of ours; the enclave's API server uses it to speak to kubectl.
//!
//! Where to start:
//!
//! - [`start`] starts a session on an upgraded connection: a [`Session`] handle,
//!   the [`Incoming`] streams the peer opens, and the [`Driver`] to run.
//! - [`frame`]: the frames, [`FrameEncoder`] and [`FrameDecoder`].
//! - [`Headers`]: header blocks and their zlib compression with the SPDY dictionary.

mod dictionary;
pub mod error;
pub mod frame;
pub mod headers;
pub mod session;

pub use error::{Error, Result};
pub use frame::{Frame, FrameDecoder, FrameEncoder};
pub use headers::Headers;
pub use session::{Driver, Incoming, Role, Session, Stream, StreamReader, StreamWriter, start};

/// The Adler-32 of the SPDY/3 header dictionary: the dictionary id in every header block's
/// zlib stream.
pub const DICTIONARY_ID: u32 = 0xe3c6_a7c2;
