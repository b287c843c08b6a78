use super::*;

#[test]
fn parses_targets_and_routes() {
    let t: Target = "KMS.us-east-1.amazonaws.com:443".parse().unwrap();
    assert_eq!((t.host(), t.port()), ("kms.us-east-1.amazonaws.com", 443));
    let t6: Target = "[2001:db8::1]:9000".parse().unwrap();
    assert_eq!(t6.host(), "2001:db8::1");
    assert_eq!(t6.to_string(), "[2001:db8::1]:9000");
    let r: OutboundRoute = "vsock:any:8000=fullnode.mainnet.sui.io:443"
        .parse()
        .unwrap();
    assert_eq!(
        r.listen,
        Endpoint::Vsock {
            cid: u32::MAX,
            port: 8000
        }
    );
    assert_eq!(r.target.to_string(), "fullnode.mainnet.sui.io:443");
}

#[test]
fn rejects_malformed_targets_and_routes() {
    for (input, reason) in [
        ("example.com", "expected HOST:PORT"),
        (":443", "expected HOST:PORT (IPv6 as [addr]:port)"),
        (
            "2001:db8::1:443",
            "expected HOST:PORT (IPv6 as [addr]:port)",
        ),
        ("example.com:0", "port must be a number from 1 to 65535"),
        ("example.com:70000", "port must be a number from 1 to 65535"),
        (
            "user@example.com:443",
            "expected HOST:PORT (IPv6 as [addr]:port)",
        ),
    ] {
        match input.parse::<Target>() {
            Err(Error::InvalidEndpoint { reason: r, .. }) => assert_eq!(r, reason, "{input}"),
            other => panic!("{input}: {other:?}"),
        }
    }
    assert!(matches!(
        "vsock:any:8000".parse::<OutboundRoute>(),
        Err(Error::InvalidEndpoint {
            reason: "expected LISTEN_ENDPOINT=HOST:PORT",
            ..
        })
    ));
}

#[test]
fn a_route_off_the_allowlist_is_refused_before_binding() {
    let allow = Allowlist::new(["kms.us-east-1.amazonaws.com:443".parse().unwrap()]);
    let ok: OutboundRoute = "unix:/nonexistent/a.sock=kms.us-east-1.amazonaws.com:443"
        .parse()
        .unwrap();
    let other_port: OutboundRoute = "unix:/nonexistent/b.sock=kms.us-east-1.amazonaws.com:80"
        .parse()
        .unwrap();
    let other_host: OutboundRoute = "unix:/nonexistent/c.sock=evil.example:443".parse().unwrap();
    assert!(OutboundProxy::new(vec![ok.clone()], &allow, TrafficMetrics::unregistered()).is_ok());
    for bad in [other_port, other_host] {
        let want = bad.target.to_string();
        match OutboundProxy::new(
            vec![ok.clone(), bad],
            &allow,
            TrafficMetrics::unregistered(),
        ) {
            Err(Error::NotAllowed { target }) => assert_eq!(target, want),
            other => panic!("{other:?}"),
        }
    }
}
