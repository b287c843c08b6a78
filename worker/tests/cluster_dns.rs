//! Cluster DNS served by a node to its pods over UDP and TCP: Service names, NXDOMAIN for missing
//! cluster names, forwarding of other names (and of an ExternalName's target) to the node's
//! resolver, records following Service and EndpointSlice changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod netlab;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use netlab::{Ep, TwoNodes, eventually, lab_or_skip, service, slice};
use tokio_util::sync::CancellationToken;
use worker::dns::proto::op::{Message, Metadata, Query, ResponseCode};
use worker::dns::proto::rr::{Name, RData, Record, RecordType};
use worker::dns::{DnsConfig, add_listen_address, serve};
use worker::network::model::{ClusterObject, ObjectKind};
use worker::network::{Backend, Netns, exec};
use worker::proxy::{DEFAULT_TABLE, ProxyConfig, ServiceProxy};

/// The "node's resolver": answers two names, NXDOMAIN for the rest.
#[derive(Debug)]
struct Upstream;

#[async_trait::async_trait]
impl RequestHandler for Upstream {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut handle: R,
    ) -> ResponseInfo {
        let info = request.request_info().unwrap();
        let qname = info.query.name().to_string();
        let ip = match qname.as_str() {
            "example.org." => Some(Ipv4Addr::new(192, 0, 2, 10)),
            "www.example.com." => Some(Ipv4Addr::new(192, 0, 2, 20)),
            _ => None,
        };
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        let records: Vec<Record> = match ip {
            Some(ip) if info.query.query_type() == RecordType::A => {
                vec![Record::from_rdata(
                    info.query.original().name().clone(),
                    60,
                    RData::A(ip.into()),
                )]
            }
            Some(_) => vec![],
            None => {
                meta.response_code = ResponseCode::NXDomain;
                vec![]
            }
        };
        let builder = MessageResponseBuilder::from_message_request(request);
        handle
            .send_response(builder.build(meta, records.iter(), [].iter(), [].iter(), [].iter()))
            .await
            .unwrap()
    }
}

fn query(netns: &Netns, server: SocketAddr, name: &str, qtype: RecordType, tcp: bool) -> Message {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_str(name).unwrap(), qtype));
    let bytes = msg.to_vec().unwrap();
    let reply = if tcp {
        let mut s = exec::tcp_connect(netns, server, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let len = u16::try_from(bytes.len()).unwrap().to_be_bytes();
        s.write_all(&[&len[..], &bytes].concat()).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).unwrap();
        buf
    } else {
        let sock = exec::in_netns(netns, || std::net::UdpSocket::bind("0.0.0.0:0"))
            .unwrap()
            .unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sock.send_to(&bytes, server).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        buf.truncate(n);
        buf
    };
    Message::from_vec(&reply).unwrap()
}

fn addresses(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .map(|r| r.data.to_string())
        .collect();
    v.sort();
    v
}

async fn ask(
    netns: &Netns,
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    tcp: bool,
) -> Message {
    let netns = netns.clone();
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || query(&netns, server, &name, qtype, tcp))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_resolve_cluster_names_and_the_rest_through_the_node_resolver() {
    let Some(lab) = lab_or_skip("dns").await else {
        return;
    };
    let mut c = TwoNodes::new(lab, Backend::Vxlan).await;
    let pod = c.pod(0, "client").await;
    let dns_ip = c.cluster.cluster_dns();
    // The node's resolver. The forwarder's sockets open in this process's namespace (a worker runs
    // in its node's), so here the resolver listens on this process's loopback.
    let up_udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up_udp.local_addr().unwrap();
    let mut upstream = hickory_server::Server::new(Upstream);
    upstream.register_socket(up_udp);

    // The kube-dns Service exists in the API; the proxy must leave its address to the node.
    c.model.replace(
        ObjectKind::Service,
        vec![
            ClusterObject::Service(service(
                "kube-system",
                "kube-dns",
                &dns_ip.to_string(),
                53,
                |_| {},
            )),
            ClusterObject::Service(service("shop", "web", "10.43.0.20", 80, |_| {})),
            ClusterObject::Service(service("shop", "db", "None", 5432, |_| {})),
            ClusterObject::Service(service("shop", "ext", "", 80, |s| {
                s.type_ = Some("ExternalName".into());
                s.external_name = Some("www.example.com".into());
                s.cluster_ip = None;
                s.cluster_ips = None;
                s.ports = None;
            })),
        ],
    );
    c.model.replace(
        ObjectKind::EndpointSlice,
        vec![ClusterObject::EndpointSlice(slice(
            "shop",
            "db",
            5432,
            &[Ep {
                hostname: Some("db-0"),
                ..Ep::ready(Ipv4Addr::new(10, 42, 2, 9), "node-2")
            }],
        ))],
    );
    ServiceProxy::new(ProxyConfig {
        netns: c.nodes[0].netns.clone(),
        node_name: "node-1".into(),
        cluster_cidr: c.cluster.cluster_cidr,
        skip_cluster_ips: vec![dns_ip],
        table: DEFAULT_TABLE.into(),
    })
    .sync(&c.model.snapshot())
    .await
    .unwrap();
    add_listen_address(&c.nodes[0].netns, dns_ip).await.unwrap();
    let cancel = CancellationToken::new();
    let (_dns, task) = serve(
        DnsConfig {
            netns: c.nodes[0].netns.clone(),
            listen: dns_ip,
            port: 53,
            network: c.cluster.clone(),
            upstreams: vec![up_addr],
        },
        c.model.clone(),
        cancel.clone(),
    )
    .await
    .unwrap();
    let server = SocketAddr::from((dns_ip, 53));
    let p = &pod.netns;

    for tcp in [false, true] {
        let m = ask(p, server, "web.shop.svc.cluster.local.", RecordType::A, tcp).await;
        assert_eq!(
            (m.metadata.response_code, addresses(&m)),
            (ResponseCode::NoError, vec!["10.43.0.20".to_owned()])
        );
    }
    let m = ask(
        p,
        server,
        "db-0.db.shop.svc.cluster.local.",
        RecordType::A,
        false,
    )
    .await;
    assert_eq!(addresses(&m), ["10.42.2.9"]);
    let m = ask(
        p,
        server,
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
        false,
    )
    .await;
    assert_eq!(
        m.answers[0].data.to_string(),
        "0 100 80 web.shop.svc.cluster.local."
    );
    let m = ask(
        p,
        server,
        "missing.shop.svc.cluster.local.",
        RecordType::A,
        false,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        m.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA)
    );
    let m = ask(
        p,
        server,
        "20.0.43.10.in-addr.arpa.",
        RecordType::PTR,
        false,
    )
    .await;
    assert_eq!(m.answers[0].data.to_string(), "web.shop.svc.cluster.local.");
    // Forwarded: an answer and an NXDOMAIN from the node's resolver, and an ExternalName's target.
    let m = ask(p, server, "example.org.", RecordType::A, false).await;
    assert_eq!(addresses(&m), ["192.0.2.10"]);
    let m = ask(p, server, "nowhere.example.", RecordType::A, false).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = ask(
        p,
        server,
        "ext.shop.svc.cluster.local.",
        RecordType::A,
        false,
    )
    .await;
    assert_eq!(m.answers[0].data.to_string(), "www.example.com.");
    assert_eq!(addresses(&m), ["192.0.2.20"]);

    // Records follow the API: a new Service appears, a deleted one is NXDOMAIN.
    c.model.apply(ClusterObject::Service(service(
        "shop",
        "new",
        "10.43.0.77",
        80,
        |_| {},
    )));
    c.model.delete(ObjectKind::Service, Some("shop"), "web");
    eventually(
        "DNS to follow the Services",
        Duration::from_secs(10),
        || async {
            let new = ask(
                p,
                server,
                "new.shop.svc.cluster.local.",
                RecordType::A,
                false,
            )
            .await;
            let old = ask(
                p,
                server,
                "web.shop.svc.cluster.local.",
                RecordType::A,
                false,
            )
            .await;
            addresses(&new) == ["10.43.0.77"]
                && old.metadata.response_code == ResponseCode::NXDomain
        },
    )
    .await;
    cancel.cancel();
    task.await.unwrap();
    let _ = upstream.shutdown_gracefully().await;
}
