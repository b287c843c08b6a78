//! DNS queries per second from one pod to its node's cluster DNS (hickory-server, the worker's
//! real server over the model), against a UDP echo on the same node address returning the same
//! query packets: the echo is the ceiling of this client and the kernel path, so the ratio is the
//! share of it the DNS server keeps.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use worker::dns::proto::op::{Message, Query, ResponseCode};
use worker::dns::proto::rr::{Name, RecordType};
use worker::dns::{self, DnsConfig};
use worker::network::Backend;
use worker::network::exec::{self, Netns};
use worker::network::model::ObjectKind;

use super::{NetworkBenchArgs, cluster, median, service};

/// The echo's port, beside the DNS server's 53 on the same address.
const ECHO_PORT: u16 = 5353;

/// Measures DNS and the echo in alternating rounds and prints both.
pub(super) async fn run(args: &NetworkBenchArgs) -> anyhow::Result<()> {
    let mut c = cluster("benchdns", Backend::HostGw).await?;
    let n1 = c.nodes[0].clone();
    let client = c.lab.add_pod(&n1, c.nets[0].cni(), "client").await?;
    let dns_ip = c.net.cluster_dns();
    c.model.replace(
        ObjectKind::Service,
        (0..100)
            .map(|i| service(&format!("svc-{i}"), Ipv4Addr::new(10, 43, 1, i), 80))
            .collect(),
    );
    c.model.replace(ObjectKind::EndpointSlice, vec![]);
    dns::add_listen_address(&n1.netns, dns_ip).await?;
    let cancel = CancellationToken::new();
    let config = DnsConfig {
        netns: n1.netns.clone(),
        listen: dns_ip,
        port: 53,
        network: c.net.clone(),
        upstreams: vec![],
    };
    let (_dns, task) = dns::serve(config, c.model.clone(), cancel.clone()).await?;
    let stop = Arc::new(AtomicBool::new(false));
    udp_echo(
        &n1.netns,
        SocketAddr::from((dns_ip, ECHO_PORT)),
        stop.clone(),
    )?;
    let (window, secs, rounds) = (
        args.dns_window.max(1),
        args.seconds.max(1.0),
        args.rounds.max(1),
    );
    let netns = client.netns.clone();
    let measured = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(f64, f64)>> {
        let queries = queries()?;
        check_answer(&netns, dns_ip, &queries)?;
        let mut out = Vec::new();
        for _ in 0..rounds {
            let dns = flood(
                &netns,
                SocketAddr::from((dns_ip, 53)),
                &queries,
                window,
                secs,
            )?;
            let echo = flood(
                &netns,
                SocketAddr::from((dns_ip, ECHO_PORT)),
                &queries,
                window,
                secs,
            )?;
            out.push((dns, echo));
        }
        Ok(out)
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    cancel.cancel();
    task.await?;
    let measured = measured?;
    println!(
        "\n== DNS: one pod, UDP, {window} queries in flight, A of `svc-N.bench.svc.cluster.local`, \
         {rounds} rounds of {secs} s each; medians =="
    );
    println!(
        "cluster DNS {:>9.0} answers/s   UDP echo (same packets) {:>9.0}/s   ratio {:.3}",
        median(measured.iter().map(|m| m.0).collect()),
        median(measured.iter().map(|m| m.1).collect()),
        median(measured.iter().map(|m| m.0 / m.1).collect()),
    );
    Ok(())
}

/// 1,024 queries for the A records of 100 Services.
fn queries() -> anyhow::Result<Vec<Vec<u8>>> {
    (0..1024u16)
        .map(|i| {
            let mut m = Message::query();
            m.metadata.id = i;
            m.add_query(Query::query(
                Name::from_ascii(format!("svc-{}.bench.svc.cluster.local.", i % 100))?,
                RecordType::A,
            ));
            Ok(m.to_vec()?)
        })
        .collect()
}

/// One answer checked in full: the server really answers what is asked.
fn check_answer(netns: &Netns, server: Ipv4Addr, queries: &[Vec<u8>]) -> anyhow::Result<()> {
    let sock = client_socket(netns, SocketAddr::from((server, 53)))?;
    let query = queries.get(1).map(Vec::as_slice).unwrap_or_default();
    sock.send(query)?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf)?;
    let reply = Message::from_vec(buf.get(..n).unwrap_or_default())?;
    anyhow::ensure!(
        reply.metadata.response_code == ResponseCode::NoError && reply.answers.len() == 1,
        "bad DNS answer: {reply:?}"
    );
    Ok(())
}

fn client_socket(netns: &Netns, server: SocketAddr) -> anyhow::Result<UdpSocket> {
    let sock: UdpSocket = exec::in_netns(netns, || UdpSocket::bind("0.0.0.0:0"))??;
    sock.connect(server)?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(sock)
}

/// Answers per second with `window` queries in flight for `secs`.
fn flood(
    netns: &Netns,
    server: SocketAddr,
    queries: &[Vec<u8>],
    window: usize,
    secs: f64,
) -> anyhow::Result<f64> {
    let sock = client_socket(netns, server)?;
    let mut next = queries.iter().cycle();
    let mut send = || -> anyhow::Result<()> {
        sock.send(next.next().map(Vec::as_slice).unwrap_or_default())?;
        Ok(())
    };
    let mut buf = [0u8; 1500];
    let mut answered = 0u64;
    let start = Instant::now();
    for _ in 0..window {
        send()?;
    }
    while start.elapsed().as_secs_f64() < secs {
        if sock.recv(&mut buf).is_ok() {
            answered += 1;
            send()?;
        } else {
            // Lost in flight: refill the window.
            for _ in 0..window {
                send()?;
            }
        }
    }
    Ok(answered as f64 / start.elapsed().as_secs_f64())
}

/// A UDP echo at `addr` in `netns` on a thread of its own, until `stop`.
fn udp_echo(netns: &Netns, addr: SocketAddr, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let sock: UdpSocket = exec::in_netns(netns, || UdpSocket::bind(addr))??;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(buf.get(..n).unwrap_or_default(), peer);
            }
        }
    });
    Ok(())
}
