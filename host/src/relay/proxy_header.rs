//! The PROXY protocol v2 header the relay may send to the enclave ahead of the client's bytes.

use std::io;
use std::net::{IpAddr, SocketAddr};

use ppp::v2::{Addresses, Builder, Command, Protocol, Version};

use crate::transport::PeerAddr;

/// Builds the header: `PROXY` with TCP source and destination addresses when the client came over TCP (IPv4 and
/// IPv6 mixed are both written as IPv6, v4-mapped), otherwise `LOCAL` with no addresses.
pub(crate) fn proxy_v2_header(peer: &PeerAddr, local: Option<SocketAddr>) -> io::Result<Vec<u8>> {
    match (peer, local) {
        (PeerAddr::Tcp(src), Some(dst)) => {
            let (src, dst) = same_family(*src, dst);
            Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (src, dst))
                .build()
        }
        _ => Builder::with_addresses(
            Version::Two | Command::Local,
            Protocol::Unspecified,
            Addresses::Unspecified,
        )
        .build(),
    }
}

fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a.is_ipv4() == b.is_ipv4() {
        return (a, b);
    }
    let v6 = |s: SocketAddr| match s.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    (v6(a), v6(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::Header;

    #[test]
    fn tcp_client_gets_a_proxy_header_that_parses_back() {
        let src: SocketAddr = "203.0.113.7:51234".parse().unwrap();
        let dst: SocketAddr = "10.0.0.5:6443".parse().unwrap();
        let bytes = proxy_v2_header(&PeerAddr::Tcp(src), Some(dst)).unwrap();
        let header = Header::try_from(bytes.as_slice()).unwrap();
        assert_eq!(header.command, Command::Proxy);
        assert_eq!(header.addresses, Addresses::from((src, dst)));
        assert_eq!(header.len(), bytes.len(), "nothing after the header");
    }

    #[test]
    fn mixed_families_become_v4_mapped_ipv6() {
        let src: SocketAddr = "203.0.113.7:1".parse().unwrap();
        let dst: SocketAddr = "[2001:db8::1]:6443".parse().unwrap();
        let bytes = proxy_v2_header(&PeerAddr::Tcp(src), Some(dst)).unwrap();
        let header = Header::try_from(bytes.as_slice()).unwrap();
        let Addresses::IPv6(a) = header.addresses else {
            panic!("{:?}", header.addresses)
        };
        assert_eq!(
            a.source_address,
            "::ffff:203.0.113.7".parse::<std::net::Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn non_tcp_clients_get_a_local_header() {
        let bytes = proxy_v2_header(&PeerAddr::Unix, None).unwrap();
        let header = Header::try_from(bytes.as_slice()).unwrap();
        assert_eq!(header.command, Command::Local);
        assert_eq!(header.addresses, Addresses::Unspecified);
    }
}
