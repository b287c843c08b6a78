//! Probe and lifecycle-hook actions: exec (CRI `ExecSync`), httpGet, tcpSocket, gRPC health
//! and sleep, with the kubelet's success rules.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Empty;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{
    Container, ExecAction, GRPCAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;

use crate::runtime::Cri;

/// What a probe or hook found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure(String),
}

/// One action, taken from a probe or a lifecycle handler.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    Exec(ExecAction),
    Http(HTTPGetAction),
    Tcp(TCPSocketAction),
    Grpc(GRPCAction),
    Sleep(i64),
}

impl Action {
    pub(crate) fn from_probe(p: &Probe) -> Option<Self> {
        if let Some(e) = &p.exec {
            Some(Self::Exec(e.clone()))
        } else if let Some(h) = &p.http_get {
            Some(Self::Http(h.clone()))
        } else if let Some(t) = &p.tcp_socket {
            Some(Self::Tcp(t.clone()))
        } else {
            p.grpc.as_ref().map(|g| Self::Grpc(g.clone()))
        }
    }

    pub(crate) fn from_handler(h: &LifecycleHandler) -> Option<Self> {
        if let Some(e) = &h.exec {
            Some(Self::Exec(e.clone()))
        } else if let Some(g) = &h.http_get {
            Some(Self::Http(g.clone()))
        } else if let Some(t) = &h.tcp_socket {
            Some(Self::Tcp(t.clone()))
        } else {
            h.sleep.as_ref().map(|s| Self::Sleep(s.seconds))
        }
    }
}

/// Where the action runs.
#[derive(Debug, Clone)]
pub(crate) struct Target<'a> {
    pub(crate) cri: &'a Cri,
    pub(crate) container_id: &'a str,
    pub(crate) container: &'a Container,
    pub(crate) pod_ip: Option<&'a str>,
}

fn port_number(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port number: {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name))
        }
    }
}

fn address(host: Option<&str>, target: &Target<'_>, port: u16) -> Result<SocketAddr, String> {
    let host = host
        .filter(|h| !h.is_empty())
        .or(target.pod_ip)
        .ok_or("the pod has no IP yet")?;
    let ip: std::net::IpAddr = host
        .parse()
        .map_err(|_| format!("cannot resolve host {host:?}"))?;
    Ok(SocketAddr::new(ip, port))
}

/// Runs the action with `timeout`.
pub(crate) async fn run(action: &Action, target: &Target<'_>, timeout: Duration) -> Outcome {
    let result = match action {
        Action::Exec(e) => exec(e, target, timeout).await,
        Action::Sleep(seconds) => {
            tokio::time::sleep(Duration::from_secs(u64::try_from(*seconds).unwrap_or(0))).await;
            Ok(())
        }
        Action::Http(h) => match tokio::time::timeout(timeout, http_get(h, target)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "Get \"{}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                h.path.as_deref().unwrap_or("/")
            )),
        },
        Action::Tcp(t) => match port_number(&t.port, target.container)
            .and_then(|p| address(t.host.as_deref(), target, p))
        {
            Ok(addr) => match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {e}")),
                Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
            },
            Err(e) => Err(e),
        },
        Action::Grpc(g) => match tokio::time::timeout(timeout, grpc(g, target)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "timeout: health rpc did not complete within {timeout:?}"
            )),
        },
    };
    match result {
        Ok(()) => Outcome::Success,
        Err(message) => Outcome::Failure(message),
    }
}

async fn exec(e: &ExecAction, target: &Target<'_>, timeout: Duration) -> Result<(), String> {
    let response = target
        .cri
        .exec_sync(cri::ExecSyncRequest {
            container_id: target.container_id.to_owned(),
            cmd: e.command.clone().unwrap_or_default(),
            timeout: i64::try_from(timeout.as_secs()).unwrap_or(1).max(1),
        })
        .await
        .map_err(|err| err.to_string())?;
    if response.exit_code == 0 {
        Ok(())
    } else {
        let mut out = String::from_utf8_lossy(&response.stdout).into_owned();
        out.push_str(&String::from_utf8_lossy(&response.stderr));
        Err(if out.is_empty() {
            format!("command exited with {}", response.exit_code)
        } else {
            out
        })
    }
}

async fn http_get(h: &HTTPGetAction, target: &Target<'_>) -> Result<(), String> {
    let port = port_number(&h.port, target.container)?;
    let addr = address(h.host.as_deref(), target, port)?;
    let scheme = h.scheme.as_deref().unwrap_or("HTTP");
    let path = h
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    let url = format!("{}://{addr}{path}", scheme.to_lowercase());
    if scheme.eq_ignore_ascii_case("HTTPS") {
        return Err(format!(
            "Get \"{url}\": HTTPS probes are not supported by this node"
        ));
    }
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("Get \"{url}\": dial tcp {addr}: connect: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let driver = tokio::spawn(connection);
    let mut request = hyper::Request::get(path.as_str())
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::USER_AGENT, "kube-probe/1.33")
        .header(hyper::header::ACCEPT, "*/*");
    for header in h.http_headers.iter().flatten() {
        request = request.header(header.name.as_str(), header.value.as_str());
    }
    let request = request
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"));
    driver.abort();
    let status = response?.status().as_u16();
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {status}"))
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

async fn grpc(g: &GRPCAction, target: &Target<'_>) -> Result<(), String> {
    let port = u16::try_from(g.port).map_err(|_| format!("invalid port number: {}", g.port))?;
    let addr = address(None, target, port)?;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("timeout: failed to connect service \"{addr}\" within 1s: {e}"))?;
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.map_err(|e| e.to_string())?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let request = tonic::Request::new(HealthCheckRequest {
        service: g.service.clone().unwrap_or_default(),
    });
    let response = client
        .unary(request, path, codec)
        .await
        .map_err(|s| format!("rpc error: code = {:?} desc = {}", s.code(), s.message()))?;
    match response.into_inner().status {
        1 => Ok(()),
        other => Err(format!(
            "service unhealthy (responded with \"{}\")",
            match other {
                0 => "UNKNOWN",
                2 => "NOT_SERVING",
                3 => "SERVICE_UNKNOWN",
                _ => "?",
            }
        )),
    }
}
