//! Shared by the network tests: a lab (or a skip), a two-node cluster on it, API objects, and tiny
//! servers and clients inside pods.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Namespace, Pod, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use worker::network::lab::{self, Lab, LabNode, LabPod};
use worker::network::model::{ClusterModel, ClusterObject, ObjectKind, SERVICE_NAME_LABEL};
use worker::network::{Backend, ClusterNetwork, Netns, PodNetwork, PodNetworkConfig};

/// A lab, or `None` (with a message) where network namespaces are unavailable; under CI the
/// missing capability fails the test instead.
pub async fn lab_or_skip(label: &str) -> Option<Lab> {
    if let Err(why) = Lab::check_available() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "1" || v == "true");
        assert!(
            !ci,
            "network tests need root and network namespaces under CI: {why}"
        );
        eprintln!("SKIPPED (needs root and network namespaces): {why}");
        return None;
    }
    Some(Lab::new(label).await.expect("creating the lab"))
}

/// Two nodes with their pod networks set up, and the model holding them.
pub struct TwoNodes {
    pub lab: Lab,
    pub nodes: Vec<LabNode>,
    pub networks: Vec<PodNetwork>,
    pub model: ClusterModel,
    pub cluster: ClusterNetwork,
}

impl TwoNodes {
    pub async fn new(lab: Lab, backend: Backend) -> Self {
        let mut lab = lab;
        let cluster = ClusterNetwork::default();
        let mut nodes = Vec::new();
        let mut networks = Vec::new();
        for i in 1..=2u8 {
            let node = lab.add_node(&format!("node-{i}"), i).await.expect("node");
            let net = PodNetwork::setup(
                PodNetworkConfig {
                    netns: node.netns.clone(),
                    node_name: node.name.clone(),
                    node_ip: node.ip,
                    pod_cidr: node.pod_cidr,
                    backend,
                    cni_conf_dir: node.cni_conf_dir(),
                    ipam_data_dir: node.ipam_dir(),
                    bridge: "cni0".into(),
                },
                &cluster,
            )
            .await
            .expect("pod network setup");
            nodes.push(node);
            networks.push(net);
        }
        let model = ClusterModel::new();
        model.replace(
            ObjectKind::Node,
            nodes
                .iter()
                .map(|n| ClusterObject::Node(n.node_object()))
                .collect(),
        );
        let state = model.snapshot();
        for (i, net) in networks.iter().enumerate() {
            let peers = worker::network::routes::PeerNode::all_except(&state, &nodes[i].name);
            net.sync_peers(&peers).await.expect("routes");
        }
        Self {
            lab,
            nodes,
            networks,
            model,
            cluster,
        }
    }

    pub async fn pod(&mut self, node: usize, name: &str) -> LabPod {
        let cni = self.networks[node].cni().clone();
        let n = self.nodes[node].clone();
        self.lab.add_pod(&n, &cni, name).await.expect("pod")
    }
}

/// A Service `ns/name` with one TCP port `http` (plus whatever `edit` changes).
pub fn service(
    ns: &str,
    name: &str,
    cluster_ip: &str,
    port: i32,
    edit: impl FnOnce(&mut ServiceSpec),
) -> Service {
    let mut svc = Service::default();
    svc.metadata.namespace = Some(ns.into());
    svc.metadata.name = Some(name.into());
    let mut spec = ServiceSpec {
        cluster_ip: Some(cluster_ip.into()),
        cluster_ips: (cluster_ip != "None").then(|| vec![cluster_ip.into()]),
        ports: Some(vec![ServicePort {
            name: Some("http".into()),
            port,
            protocol: Some("TCP".into()),
            target_port: Some(IntOrString::Int(8080)),
            ..Default::default()
        }]),
        type_: Some("ClusterIP".into()),
        ..Default::default()
    };
    edit(&mut spec);
    svc.spec = Some(spec);
    svc
}

/// One endpoint of a slice: address, node, ready/serving/terminating.
pub struct Ep<'a> {
    pub ip: Ipv4Addr,
    pub node: &'a str,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub hostname: Option<&'a str>,
}

impl<'a> Ep<'a> {
    pub fn ready(ip: Ipv4Addr, node: &'a str) -> Self {
        Self {
            ip,
            node,
            ready: true,
            serving: true,
            terminating: false,
            hostname: None,
        }
    }
}

/// The EndpointSlice of Service `ns/name` with port `http`/`port`.
pub fn slice(ns: &str, name: &str, port: i32, eps: &[Ep<'_>]) -> EndpointSlice {
    let mut s = EndpointSlice {
        address_type: "IPv4".into(),
        endpoints: eps
            .iter()
            .map(|e| Endpoint {
                addresses: vec![e.ip.to_string()],
                node_name: Some(e.node.into()),
                hostname: e.hostname.map(str::to_owned),
                conditions: Some(EndpointConditions {
                    ready: Some(e.ready),
                    serving: Some(e.serving),
                    terminating: Some(e.terminating),
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    s.metadata.namespace = Some(ns.into());
    s.metadata.name = Some(format!("{name}-abcde"));
    s.metadata.labels = Some(BTreeMap::from([(
        SERVICE_NAME_LABEL.to_owned(),
        name.to_owned(),
    )]));
    s
}

pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.into());
    let mut l: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    l.insert("kubernetes.io/metadata.name".into(), name.into());
    ns.metadata.labels = Some(l);
    ns
}

/// The Pod object of a lab pod (namespace, labels, node, IP, a container port `http` 8080).
pub fn pod_object(p: &LabPod, ns: &str, labels: &[(&str, &str)]) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.namespace = Some(ns.into());
    pod.metadata.name = Some(p.name.clone());
    pod.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    pod.spec = Some(PodSpec {
        node_name: Some(p.node.clone()),
        containers: vec![k8s_openapi::api::core::v1::Container {
            name: "c".into(),
            ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }],
        ..Default::default()
    });
    pod.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some(p.ip.to_string()),
        pod_ips: Some(vec![k8s_openapi::api::core::v1::PodIP {
            ip: p.ip.to_string(),
        }]),
        ..Default::default()
    });
    pod
}

/// Starts a TCP server in `netns` on `port` that answers each connection with `name` and the
/// peer's address (`name peer-ip\n`), then echoes lines until the client closes.
pub fn serve(netns: &Netns, port: u16, name: &str) -> tokio::task::JoinHandle<()> {
    let listener =
        lab::tcp_listener(netns, SocketAddr::from(([0, 0, 0, 0], port))).expect("listen");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let name = name.to_owned();
    tokio::spawn(async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        loop {
            let Ok((mut conn, peer)) = listener.accept().await else {
                return;
            };
            let name = name.clone();
            tokio::spawn(async move {
                let greeting = format!("{name} {}\n", peer.ip());
                if conn.write_all(greeting.as_bytes()).await.is_err() {
                    return;
                }
                let (r, mut w) = conn.split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

/// A connection from inside `netns` to `addr`, with its greeting read: (server name, peer IP as the
/// server saw it).
pub struct Conn {
    pub server: String,
    pub seen_as: String,
    reader: BufReader<std::net::TcpStream>,
}

impl Conn {
    /// Sends a line and reads the echo.
    pub fn echo(&mut self, line: &str) -> std::io::Result<String> {
        self.reader
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())?;
        let mut got = String::new();
        self.reader.read_line(&mut got)?;
        Ok(got.trim_end().to_owned())
    }
}

/// Connects from `netns` to `addr` (blocking; run it in `spawn_blocking`), reading the greeting.
pub fn connect(netns: &Netns, addr: SocketAddr) -> std::io::Result<Conn> {
    let stream = match lab::tcp_connect(netns, addr, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(worker::network::Error::Socket { source, .. }) => return Err(source),
        Err(e) => return Err(std::io::Error::other(e.to_string())),
    };
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let server = words.next().unwrap_or_default().to_owned();
    let seen_as = words.next().unwrap_or_default().to_owned();
    Ok(Conn {
        server,
        seen_as,
        reader,
    })
}

/// `connect` off the async runtime.
pub async fn connect_async(netns: &Netns, addr: SocketAddr) -> std::io::Result<Conn> {
    let netns = netns.clone();
    tokio::task::spawn_blocking(move || connect(&netns, addr))
        .await
        .expect("join")
}

/// Polls `check` until it returns true, failing after `limit` (a generous bound for slow machines,
/// not a performance threshold).
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
