//! `--registry` URLs: `local:PATH`, `sui:RPC_URL#CLUSTER_OBJECT_ID`, or `relay:ENDPOINT` (the
//! host's registry relay, as an enclave reaches it).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::relay::RelayEndpoint;
use crate::types::Address;

/// Where a cluster's registry lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryUrl {
    /// A [`crate::FileRegistry`] file.
    Local(PathBuf),
    /// A `Cluster` object on a Sui network, reached through a fullnode's gRPC endpoint.
    Sui {
        /// Fullnode URL, e.g. `https://fullnode.testnet.sui.io`.
        rpc: String,
        /// Object ID of the shared `Cluster` (all zeros until `init` creates one).
        cluster: Address,
    },
    /// The host's registry relay (`daas-host registry`): `relay:unix:PATH` or
    /// `relay:vsock:CID:PORT`.
    Relay(RelayEndpoint),
}

/// A `--registry` value that is neither `local:PATH` nor `sui:RPC_URL#CLUSTER_OBJECT_ID`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad registry URL {url:?}: {reason} (expected local:PATH, sui:RPC_URL#CLUSTER_OBJECT_ID or \
     relay:unix:PATH|relay:vsock:CID:PORT)"
)]
pub struct RegistryUrlError {
    url: String,
    reason: &'static str,
}

impl FromStr for RegistryUrl {
    type Err = RegistryUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| RegistryUrlError {
            url: s.to_owned(),
            reason,
        };
        if let Some(path) = s.strip_prefix("local:") {
            if path.is_empty() {
                return Err(err("empty path"));
            }
            return Ok(Self::Local(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("sui:") {
            let (rpc, cluster) = match rest.rsplit_once('#') {
                Some((rpc, id)) => (rpc, id.parse().map_err(|_| err("bad cluster object ID"))?),
                None => (rest, Address::ZERO),
            };
            if !(rpc.starts_with("https://") || rpc.starts_with("http://")) {
                return Err(err("the RPC URL must start with http:// or https://"));
            }
            return Ok(Self::Sui {
                rpc: rpc.to_owned(),
                cluster,
            });
        }
        if let Some(endpoint) = s.strip_prefix("relay:") {
            return endpoint.parse().map(Self::Relay).map_err(err);
        }
        Err(err("unknown scheme"))
    }
}

impl fmt::Display for RegistryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(f, "local:{}", path.display()),
            Self::Sui { rpc, cluster } => write!(f, "sui:{rpc}#{cluster}"),
            Self::Relay(endpoint) => write!(f, "relay:{endpoint}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes_and_round_trips() {
        let local: RegistryUrl = "local:/tmp/r.json".parse().unwrap();
        assert_eq!(local, RegistryUrl::Local("/tmp/r.json".into()));
        let sui: RegistryUrl = "sui:https://fullnode.testnet.sui.io:443#0x6"
            .parse()
            .unwrap();
        let RegistryUrl::Sui { rpc, cluster } = &sui else {
            panic!("not sui")
        };
        assert_eq!(rpc, "https://fullnode.testnet.sui.io:443");
        assert_eq!(*cluster, "0x6".parse().unwrap());
        assert_eq!(sui.to_string().parse::<RegistryUrl>().unwrap(), sui);
        for relay in ["relay:vsock:3:7005", "relay:unix:/run/registry.sock"] {
            let url: RegistryUrl = relay.parse().unwrap();
            assert!(matches!(url, RegistryUrl::Relay(_)));
            assert_eq!(url.to_string(), relay);
        }
    }

    #[test]
    fn bad_urls_say_why() {
        for bad in [
            "",
            "local:",
            "file:/x",
            "sui:ftp://x#0x1",
            "sui:https://x#0xzz",
            "relay:tcp:1.2.3.4:5",
        ] {
            let err = bad.parse::<RegistryUrl>().unwrap_err();
            assert!(err.to_string().contains("expected local:PATH"), "{err}");
        }
    }
}
