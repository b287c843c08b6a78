//! Harness of the streams tests: the real `daas-enclave --dev` (built once, as the join tests
//! build it), a relay in front of it standing in for the host (it can cut every connection),
//! workers running the real tunnel code in-process with [`FakeContainers`] behind it, and the
//! real kubectl of every installed version.
//!
//! Node identity: until nodes join through attestation, a worker's certificate is issued
//! here from the dev CA (`DIR/pki/ca.key`, which dev mode keeps): `CN=system:node:NAME`,
//! `O=system:nodes`, signed as the enclave's `DevPki::issue_client_certificate` does. Once the
//! join lands, [`node_credentials`] is the one place to switch to the join's credentials.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

pub mod kubectl;
pub mod relay;

#[path = "../../../testing/workspace_bins.rs"]
mod workspace_bins;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use worker::tunnel::fake::FakeContainers;
use worker::tunnel::{Backoff, PemCredentials, TunnelConfig, TunnelState};

pub use kubectl::{Kubectl, versions};
pub use relay::Relay;

/// The runtime the in-process workers, relays and test servers run on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// This workspace's `daas-enclave`, built once for this test binary.
pub fn enclave_bin() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let me = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test> → target/<profile>
        let profile_dir = me.parent().unwrap().parent().unwrap().to_path_buf();
        let target_dir = profile_dir.parent().unwrap();
        let status = workspace_bins::build(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"),
            target_dir,
            profile_dir.ends_with("release"),
            &[("enclave", "daas-enclave")],
        );
        assert!(status.success(), "building daas-enclave failed");
        let own = profile_dir
            .join("daas-test-bins")
            .join(me.file_name().unwrap());
        let _ = std::fs::remove_dir_all(&own);
        std::fs::create_dir_all(&own).unwrap();
        let bin = own.join("daas-enclave");
        std::fs::hard_link(profile_dir.join("daas-enclave"), &bin)
            .or_else(|_| std::fs::copy(profile_dir.join("daas-enclave"), &bin).map(drop))
            .unwrap();
        bin
    })
}

/// A running `daas-enclave --dev`; killed on drop.
pub struct Enclave {
    child: Child,
    /// The data directory.
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Enclave {
    pub fn start() -> Enclave {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(enclave_bin())
            .args(["--dev", "--listen", "tcp:127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("ready ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("daas-enclave did not report ready");
        let addr = url.trim_start_matches("https://").to_string();
        Enclave { child, dir, addr }
    }

    pub fn pki(&self, name: &str) -> PathBuf {
        self.dir.path().join("pki").join(name)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    /// kubectl 1.33 as the admin, for setting things up.
    pub fn admin(&self) -> Kubectl {
        let (v, bin) = versions().pop().unwrap();
        Kubectl::new(&v, &bin, &self.kubeconfig())
    }
}

impl Drop for Enclave {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node's credentials (PEM files under `dir`) for `node`, issued from the enclave's dev CA.
pub fn node_credentials(enclave: &Enclave, node: &str, dir: &Path) -> PemCredentials {
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(enclave.pki("ca.key")).unwrap()).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "k3s-daas dev CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let creds = PemCredentials {
        ca: enclave.pki("server.crt"),
        certificate: dir.join(format!("{node}.crt")),
        key: dir.join(format!("{node}.key")),
    };
    std::fs::write(&creds.certificate, cert.pem()).unwrap();
    std::fs::write(&creds.key, key.serialize_pem()).unwrap();
    creds
}

/// A kubeconfig authenticating as `node` (its client certificate).
pub fn node_kubeconfig(enclave: &Enclave, creds: &PemCredentials, path: &Path) {
    use base64::Engine;
    let b64 =
        |p: &Path| base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap());
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{}\n    certificate-authority-data: {}\nusers:\n- name: node\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: node\ncurrent-context: c\n",
            enclave.addr,
            b64(&creds.ca),
            b64(&creds.certificate),
            b64(&creds.key)
        ),
    )
    .unwrap();
}

/// A worker's tunnel, in-process, with fake containers behind it.
pub struct Worker {
    pub name: String,
    pub containers: FakeContainers,
    pub state: watch::Receiver<TunnelState>,
    pub creds: PemCredentials,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Worker {
    /// Starts `name`'s tunnel to `address` (a relay in front of the enclave).
    pub fn start(name: &str, enclave: &Enclave, address: &str) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        let creds = node_credentials(enclave, name, &dir.path().join("pki"));
        let containers = FakeContainers::new(dir.path().join("logs"));
        let (tx, state) = watch::channel(TunnelState::Connecting { attempt: 0 });
        let stop = CancellationToken::new();
        let config = TunnelConfig {
            address: address.to_string(),
            server_name: "localhost".try_into().unwrap(),
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(1),
            },
        };
        let task = runtime().spawn(worker::tunnel::run(
            config,
            Arc::new(creds.clone()),
            Arc::new(containers.clone()),
            tx,
            stop.clone(),
        ));
        let w = Worker {
            name: name.to_string(),
            containers,
            state,
            creds,
            stop,
            task: Some(task),
            _dir: dir,
        };
        w.wait_connected();
        w
    }

    /// Waits (up to 30 s) for the tunnel to be up.
    pub fn wait_connected(&self) {
        let mut state = self.state.clone();
        let mut last = None;
        let up = runtime().block_on(async {
            tokio::time::timeout(
                Duration::from_secs(30),
                state.wait_for(|s| {
                    if let TunnelState::Lost { reason } = s {
                        last = Some(reason.clone());
                    }
                    *s == TunnelState::Connected
                }),
            )
            .await
        });
        assert!(
            matches!(up, Ok(Ok(_))),
            "the tunnel did not come up within 30 s; last failure: {last:?}"
        );
    }

    /// Stops the worker's tunnel for good (the node is gone).
    pub fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            runtime().block_on(t).unwrap();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Polls `f` until it returns `Some`, for up to 30 s (a hang guard, not a timing assertion).
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One test cluster: an enclave, a relay in front of it, and worker `w1` through the relay.
pub struct Cluster {
    pub enclave: Enclave,
    pub relay: Relay,
    pub worker: Worker,
}

impl Cluster {
    pub fn start() -> Cluster {
        let enclave = Enclave::start();
        let relay = Relay::start(&enclave.addr);
        let admin = enclave.admin();
        create_node(&admin, "w1");
        let worker = Worker::start("w1", &enclave, &relay.addr);
        Cluster {
            enclave,
            relay,
            worker,
        }
    }

    /// A running pod on `w1` with `containers` (each a busybox container in the spec), known
    /// to the fake; returns its UID.
    pub fn pod(&self, name: &str, containers: &[&str], extra_meta: Value) -> String {
        let uid = create_pod(&self.enclave.admin(), name, "w1", containers, extra_meta);
        self.worker
            .containers
            .add_pod("default", name, &uid, containers);
        uid
    }
}

/// Creates Node `name` with some allocatable CPU and memory.
pub fn create_node(admin: &Kubectl, name: &str) {
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
    });
    admin.ok_stdin(&["create", "-f", "-"], &node.to_string());
    let status = json!({"status": {
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready"}],
    }});
    admin.ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

/// Creates a pod bound to `node`, marks it Running with its containers started, and returns its
/// UID. `extra_meta` is merged into its metadata (labels, annotations, owners).
pub fn create_pod(
    admin: &Kubectl,
    name: &str,
    node: &str,
    containers: &[&str],
    extra_meta: Value,
) -> String {
    let mut meta = json!({"name": name, "namespace": "default"});
    if let (Some(m), Some(extra)) = (meta.as_object_mut(), extra_meta.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    let specs: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "docker.io/library/busybox:1.35"}))
        .collect();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"nodeName": node, "containers": specs}});
    admin.ok_stdin(&["create", "-f", "-"], &pod.to_string());
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            json!({
                "name": c, "ready": true, "restartCount": 0, "started": true,
                "image": "docker.io/library/busybox:1.35", "imageID": "",
                "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}},
            })
        })
        .collect();
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": statuses,
        "podIP": "10.0.0.1",
    }});
    admin.ok(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
    admin.ok(&["get", "pod", name, "-o", "jsonpath={.metadata.uid}"])
}
