//! Pod to pod and pod to ClusterIP across the two nodes, against node to node: one TCP stream's
//! throughput and 1-byte request latency, the paths interleaved round by round so that noise from
//! other work on the machine falls on all of them alike.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use worker::network::Backend;
use worker::network::exec::{self, Netns};
use worker::network::model::ObjectKind;

use super::{NetworkBenchArgs, cluster, median, proxy_for, service, slice};
use crate::percentiles;

/// The echo Service's ClusterIP (latency).
const ECHO_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 20);
/// The sink Service's ClusterIP (throughput).
const SINK_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 21);
/// The sink's port: reads to EOF, then answers the byte count.
const SINK_PORT: u16 = 5001;
/// The echo's port.
const ECHO_PORT: u16 = 5002;

/// One measured path: a name, where the client runs, the sink's and the echo's addresses.
struct Path {
    name: &'static str,
    from: Netns,
    sink: SocketAddr,
    echo: SocketAddr,
}

/// One round of one path: bytes per second, latency p50 and p99.
#[derive(Clone, Copy)]
struct Round {
    bytes_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// Measures the paths on a fresh two-node cluster with `backend` and prints them.
pub(super) async fn run(args: &NetworkBenchArgs, backend: Backend) -> anyhow::Result<()> {
    let label = if backend == Backend::Vxlan {
        "benchvx"
    } else {
        "benchgw"
    };
    let mut c = cluster(label, backend).await?;
    let (n1, n2) = (c.nodes[0].clone(), c.nodes[1].clone());
    let client = c.lab.add_pod(&n1, c.nets[0].cni(), "client").await?;
    let server = c.lab.add_pod(&n2, c.nets[1].cni(), "server").await?;
    servers(&server.netns)?;
    servers(&n2.netns)?;
    c.model.replace(
        ObjectKind::Service,
        vec![
            service("echo", ECHO_IP, ECHO_PORT),
            service("sink", SINK_IP, SINK_PORT),
        ],
    );
    c.model.replace(
        ObjectKind::EndpointSlice,
        vec![
            slice("echo", &[server.ip], ECHO_PORT, "node-2"),
            slice("sink", &[server.ip], SINK_PORT, "node-2"),
        ],
    );
    let state = c.model.snapshot();
    proxy_for(&c, 0).sync(&state).await?;
    proxy_for(&c, 1).sync(&state).await?;
    let at = |ip: Ipv4Addr, port: u16| SocketAddr::from((ip, port));
    let paths = vec![
        Path {
            name: "node to node (direct)",
            from: n1.netns.clone(),
            sink: at(n2.ip, SINK_PORT),
            echo: at(n2.ip, ECHO_PORT),
        },
        Path {
            name: "pod to pod",
            from: client.netns.clone(),
            sink: at(server.ip, SINK_PORT),
            echo: at(server.ip, ECHO_PORT),
        },
        Path {
            name: "pod to ClusterIP",
            from: client.netns.clone(),
            sink: at(SINK_IP, SINK_PORT),
            echo: at(ECHO_IP, ECHO_PORT),
        },
    ];
    let (secs, requests, rounds) = (args.seconds, args.requests, args.rounds.max(1));
    let (paths, results) =
        tokio::task::spawn_blocking(move || measure(paths, secs, requests, rounds)).await??;
    println!(
        "\n== {backend}: one TCP stream for {secs} s and {requests} x 1-byte requests per path and \
         round, {rounds} rounds; medians over rounds, ratios per round against node to node =="
    );
    println!(
        "{:<24} {:>10} {:>8} {:>9} {:>9} {:>11}",
        "path", "MB/s", "ratio", "p50 us", "p99 us", "added p99"
    );
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let direct = results.first().cloned().unwrap_or_default();
    for (path, rounds) in paths.iter().zip(&results) {
        let ratio = rounds
            .iter()
            .zip(&direct)
            .map(|(r, d)| r.bytes_per_sec / d.bytes_per_sec);
        let added = rounds
            .iter()
            .zip(&direct)
            .map(|(r, d)| us(r.p99) - us(d.p99));
        println!(
            "{:<24} {:>10.0} {:>8.3} {:>9.1} {:>9.1} {:>9.1}us",
            path.name,
            median(rounds.iter().map(|r| r.bytes_per_sec).collect()) / 1e6,
            median(ratio.collect()),
            median(rounds.iter().map(|r| us(r.p50)).collect()),
            median(rounds.iter().map(|r| us(r.p99)).collect()),
            median(added.collect()),
        );
    }
    Ok(())
}

/// `rounds` rounds over all paths in turn.
fn measure(
    paths: Vec<Path>,
    secs: f64,
    requests: usize,
    rounds: usize,
) -> anyhow::Result<(Vec<Path>, Vec<Vec<Round>>)> {
    let mut out: Vec<Vec<Round>> = paths.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (path, rounds) in paths.iter().zip(out.iter_mut()) {
            let bytes_per_sec = throughput(&path.from, path.sink, secs)?;
            let (p50, p99) = percentiles(latency(&path.from, path.echo, requests)?);
            rounds.push(Round {
                bytes_per_sec,
                p50,
                p99,
            });
        }
    }
    Ok((paths, out))
}

/// A sink and an echo server in `netns`, each connection on a thread of its own.
fn servers(netns: &Netns) -> anyhow::Result<()> {
    for (port, echo) in [(SINK_PORT, false), (ECHO_PORT, true)] {
        let l = exec::tcp_listener(netns, SocketAddr::from(([0, 0, 0, 0], port)))?;
        l.set_nonblocking(false)?;
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                std::thread::spawn(move || serve_conn(conn, echo));
            }
        });
    }
    Ok(())
}

fn serve_conn(mut conn: TcpStream, echo: bool) {
    let _ = conn.set_nodelay(true);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n as u64;
                if echo && conn.write_all(buf.get(..n).unwrap_or_default()).is_err() {
                    return;
                }
            }
        }
    }
    let _ = conn.write_all(&total.to_be_bytes());
}

/// Bytes per second of one stream from `from` to `addr` for `secs`, as the sink counted them.
fn throughput(from: &Netns, addr: SocketAddr, secs: f64) -> anyhow::Result<f64> {
    let mut s = exec::tcp_connect(from, addr, Duration::from_secs(2))?;
    let buf = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        s.write_all(&buf)?;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let mut total = [0u8; 8];
    s.read_exact(&mut total)?;
    Ok(u64::from_be_bytes(total) as f64 / start.elapsed().as_secs_f64())
}

/// Round-trip times of `n` sequential 1-byte requests (after 100 unmeasured ones).
fn latency(from: &Netns, addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut s = exec::tcp_connect(from, addr, Duration::from_secs(2))?;
    s.set_nodelay(true)?;
    let mut b = [0u8; 1];
    for _ in 0..100 {
        s.write_all(&[1])?;
        s.read_exact(&mut b)?;
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&[1])?;
        s.read_exact(&mut b)?;
        lat.push(t.elapsed());
    }
    Ok(lat)
}
