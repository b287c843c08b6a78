//! Probes of each kind and what the kubelet does with them, against a real containerd:
//! readiness (httpGet, tcpSocket) gates Ready, liveness (exec, gRPC health) restarts, startup
//! gates `started`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use k8s_openapi::api::core::v1::*;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use support::*;

fn probe(f: impl FnOnce(&mut Probe)) -> Option<Probe> {
    let mut p = Probe {
        period_seconds: Some(1),
        failure_threshold: Some(1),
        timeout_seconds: Some(1),
        ..Default::default()
    };
    f(&mut p);
    Some(p)
}

fn exec_action(cmd: &str) -> Option<ExecAction> {
    Some(ExecAction {
        command: Some(vec!["sh".into(), "-c".into(), cmd.into()]),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_liveness_and_startup_probes() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let mut pod = busybox_pod("probed", "");
    let spec = pod.spec.as_mut().unwrap();
    let mut web = container("web", "mkdir -p /www && exec httpd -f -p 8080 -h /www");
    web.readiness_probe = probe(|p| {
        p.http_get = Some(HTTPGetAction {
            path: Some("/ready.html".into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        });
    });
    web.ports = Some(vec![ContainerPort {
        name: Some("http".into()),
        container_port: 8080,
        ..Default::default()
    }]);
    let mut tcp = container(
        "tcp",
        "sleep 2; while true; do nc -l -p 9000 </dev/null; done",
    );
    tcp.readiness_probe = probe(|p| {
        p.tcp_socket = Some(TCPSocketAction {
            port: IntOrString::Int(9000),
            host: None,
        })
    });
    let mut live = container(
        "live",
        "touch /tmp/healthy; sleep 4; rm /tmp/healthy; exec sleep 3600",
    );
    live.liveness_probe = probe(|p| p.exec = exec_action("cat /tmp/healthy"));
    let mut startup = container("startup", "sleep 3; touch /tmp/up; exec sleep 3600");
    startup.startup_probe = probe(|p| {
        p.exec = exec_action("test -f /tmp/up");
        p.failure_threshold = Some(30);
    });
    spec.containers = vec![web, tcp, live, startup];
    h.pods().upsert(pod.clone());
    let s = h
        .wait(&pod, 60, "all running", |s| {
            s.container_statuses
                .iter()
                .flatten()
                .all(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
        })
        .await;
    assert!(
        !container_status(&s, "web").ready,
        "web ready without /ready.html"
    );
    // The startup probe holds `started` (and so readiness) until it passes.
    let s = h
        .wait(&pod, 60, "startup started", |s| {
            container_status(s, "startup").started == Some(true)
        })
        .await;
    assert!(container_status(&s, "startup").ready);
    let history = h.api.statuses(pod.metadata.uid.as_deref().unwrap());
    assert!(
        history.iter().any(|s| {
            let c = container_status(s, "startup");
            c.state.as_ref().is_some_and(|st| st.running.is_some()) && c.started == Some(false)
        }),
        "never reported running-but-not-started"
    );
    // tcpSocket readiness follows the listener.
    h.wait(&pod, 60, "tcp ready", |s| container_status(s, "tcp").ready)
        .await;
    // httpGet readiness: not ready (and the pod not Ready, with upstream's message) until the page exists.
    let s = h.api.status(pod.metadata.uid.as_deref().unwrap()).unwrap();
    let ready = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    assert!(
        ready
            .message
            .as_deref()
            .unwrap()
            .starts_with("containers with unready status: [web"),
        "{:?}",
        ready.message
    );
    exec(&h, &s, "web", &["sh", "-c", "echo ok > /www/ready.html"]).await;
    h.wait(&pod, 60, "web ready", |s| container_status(s, "web").ready)
        .await;
    // exec liveness: /tmp/healthy goes away, the container is killed and restarted.
    let s = h
        .wait(&pod, 60, "live restarted", |s| {
            container_status(s, "live").restart_count >= 1
        })
        .await;
    assert_eq!(container_status(&s, "web").restart_count, 0);
    h.wait(&pod, 60, "pod Ready", |s| {
        condition(s, "Ready").as_deref() == Some("True")
    })
    .await;
    h.stop().await;
}

/// A gRPC health server on 127.0.0.1 answering with `status` (1 SERVING, 2 NOT_SERVING).
async fn health_server(status: Arc<AtomicI32>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let status = Arc::clone(&status);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |_req: hyper::Request<hyper::body::Incoming>| {
                        let value = u8::try_from(status.load(Ordering::SeqCst)).unwrap();
                        async move {
                            // One length-prefixed HealthCheckResponse{status}, then grpc-status 0.
                            let message = bytes::Bytes::from(vec![0, 0, 0, 0, 2, 0x08, value]);
                            let mut trailers = hyper::HeaderMap::new();
                            trailers.insert(
                                "grpc-status",
                                hyper::header::HeaderValue::from_static("0"),
                            );
                            let frames = futures::stream::iter(vec![
                                Ok::<_, Infallible>(hyper::body::Frame::data(message)),
                                Ok(hyper::body::Frame::trailers(trailers)),
                            ]);
                            let response = hyper::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(http_body_util::StreamBody::new(frames))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_liveness_probe_restarts_when_not_serving() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let status = Arc::new(AtomicI32::new(1));
    let port = health_server(Arc::clone(&status)).await;
    let mut pod = busybox_pod("grpc", "exec sleep 3600");
    let spec = pod.spec.as_mut().unwrap();
    spec.host_network = Some(true);
    spec.containers[0].liveness_probe = probe(|p| {
        p.grpc = Some(GRPCAction {
            port: i32::from(port),
            service: None,
        });
        p.failure_threshold = Some(2);
    });
    h.pods().upsert(pod.clone());
    let s = h.wait(&pod, 60, "Running", |s| phase(s) == "Running").await;
    assert_eq!(
        s.pod_ip.as_deref(),
        Some("127.0.0.1"),
        "a host-network pod has the node's IP"
    );
    // Serving: it keeps running for several probe periods.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let s = h.api.status(pod.metadata.uid.as_deref().unwrap()).unwrap();
    assert_eq!(
        container_status(&s, "main").restart_count,
        0,
        "restarted while serving"
    );
    status.store(2, Ordering::SeqCst);
    h.wait(&pod, 60, "restarted", |s| {
        container_status(s, "main").restart_count >= 1
    })
    .await;
    h.stop().await;
}
