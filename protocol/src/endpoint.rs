//! [`Endpoint`]: where a service listens or is reached, in one syntax for every binary.
//!
//! | form | meaning |
//! |---|---|
//! | `vsock:CID:PORT` | AF_VSOCK; `CID` is a number or `any` ([`VSOCK_CID_ANY`], bind to every CID) |
//! | `unix:PATH` | a Unix stream socket at `PATH` |
//! | `tcp:ADDR:PORT` or `ADDR:PORT` | TCP; `ADDR` is an IP literal (`[::1]` for IPv6) |
//!
//! Production uses vsock between the parent instance and the enclave (the parent is CID 3);
//! dev mode and tests use Unix sockets; public listeners are TCP. Which transports a given
//! client or server supports is its own business: the enclave's journal and key broker
//! clients, for one, refuse TCP when they connect.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// The vsock context id that binds to every CID (`VMADDR_CID_ANY`), written `any`.
pub const VSOCK_CID_ANY: u32 = u32::MAX;

/// A place to listen on or connect to.
///
/// Deliberately exhaustive: the transports are a closed set every listener and dialer handles.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// TCP.
    Tcp(SocketAddr),
    /// A Unix stream socket.
    Unix(PathBuf),
    /// AF_VSOCK: context id and port.
    Vsock {
        /// Context id; [`VSOCK_CID_ANY`] binds to every CID.
        cid: u32,
        /// Port.
        port: u32,
    },
}

/// An endpoint string that did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointError {
    input: String,
    reason: &'static str,
}

impl EndpointError {
    /// The string as given.
    #[must_use]
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong with it.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid endpoint {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for EndpointError {}

impl FromStr for Endpoint {
    type Err = EndpointError;

    /// Parses the forms in the module documentation.
    fn from_str(input: &str) -> Result<Self, EndpointError> {
        let bad = |reason| EndpointError {
            input: input.to_owned(),
            reason,
        };
        if let Some(rest) = input.strip_prefix("vsock:") {
            let (cid, port) = rest
                .split_once(':')
                .ok_or_else(|| bad("expected vsock:CID:PORT"))?;
            let cid = match cid {
                "any" => VSOCK_CID_ANY,
                _ => cid
                    .parse()
                    .map_err(|_| bad("vsock CID must be a number or `any`"))?,
            };
            let port = port
                .parse()
                .map_err(|_| bad("vsock port must be a number"))?;
            Ok(Self::Vsock { cid, port })
        } else if let Some(path) = input.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("expected unix:PATH"));
            }
            Ok(Self::Unix(PathBuf::from(path)))
        } else {
            let addr = input.strip_prefix("tcp:").unwrap_or(input);
            addr.parse()
                .map(Self::Tcp)
                .map_err(|_| bad("expected vsock:CID:PORT, unix:PATH or [tcp:]IP:PORT"))
        }
    }
}

impl fmt::Display for Endpoint {
    /// The `tcp:`, `unix:` or `vsock:` form, which parses back to the same endpoint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "tcp:{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Vsock { cid, port } if *cid == VSOCK_CID_ANY => write!(f, "vsock:any:{port}"),
            Self::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_round_trips() {
        for (input, want) in [
            (
                "vsock:16:6443",
                Endpoint::Vsock {
                    cid: 16,
                    port: 6443,
                },
            ),
            (
                "vsock:any:7000",
                Endpoint::Vsock {
                    cid: VSOCK_CID_ANY,
                    port: 7000,
                },
            ),
            (
                "unix:/run/daas/enclave.sock",
                Endpoint::Unix("/run/daas/enclave.sock".into()),
            ),
            (
                "tcp:127.0.0.1:6443",
                Endpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], 6443))),
            ),
            (
                "[::1]:6443",
                Endpoint::Tcp(SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 6443))),
            ),
        ] {
            let got: Endpoint = input.parse().unwrap();
            assert_eq!(got, want, "{input}");
            assert_eq!(got.to_string().parse::<Endpoint>().unwrap(), want);
        }
        assert_eq!(
            "vsock:3:7000".parse::<Endpoint>().unwrap().to_string(),
            "vsock:3:7000"
        );
    }

    #[test]
    fn rejects_malformed_endpoints_with_a_reason() {
        for (input, reason) in [
            ("vsock:16", "expected vsock:CID:PORT"),
            ("vsock:x:1", "vsock CID must be a number or `any`"),
            ("vsock:3:99999999999", "vsock port must be a number"),
            ("unix:", "expected unix:PATH"),
            (
                "localhost:6443",
                "expected vsock:CID:PORT, unix:PATH or [tcp:]IP:PORT",
            ),
            (
                "tcp:1.2.3.4",
                "expected vsock:CID:PORT, unix:PATH or [tcp:]IP:PORT",
            ),
            (
                "/tmp/x",
                "expected vsock:CID:PORT, unix:PATH or [tcp:]IP:PORT",
            ),
        ] {
            let err = input.parse::<Endpoint>().unwrap_err();
            assert_eq!(err.input(), input);
            assert_eq!(err.reason(), reason, "{input}");
        }
    }
}
