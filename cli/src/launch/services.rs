//! The host services `daas launch` runs for the enclave, and where the enclave finds them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};

use host::launcher::RestartPolicy;
use protocol::parent;
use tokio_util::sync::CancellationToken;

use super::LaunchArgs;
use crate::dev::ChildSpec;

/// How the enclave and the host reach each other.
#[derive(Debug, Clone)]
pub(crate) enum Transport {
    /// AF_VSOCK on a Nitro parent: services on `vsock:any:PORT`, the enclave at `vsock:CID:PORT`.
    Vsock,
    /// QEMU's nitro-enclave machine with vhost-device-vsock: services on
    /// `unix:DIR/host.vsock_PORT`, the enclave with CID N through `DIR/vm{N}.vsock`.
    VhostUser(PathBuf),
}

impl Transport {
    pub(crate) fn of(args: &LaunchArgs) -> Self {
        match &args.vhost_user_vsock_dir {
            Some(dir) => Transport::VhostUser(dir.clone()),
            None => Transport::Vsock,
        }
    }

    /// Where a host service on `port` listens for the enclave.
    pub(crate) fn service(&self, port: u32) -> String {
        match self {
            Transport::Vsock => format!("vsock:any:{port}"),
            Transport::VhostUser(dir) => {
                format!("unix:{}", dir.join(format!("host.vsock_{port}")).display())
            }
        }
    }

    /// How the host reaches the enclave with `cid` on `port`.
    pub(crate) fn enclave(&self, cid: u64, port: u32) -> String {
        match self {
            Transport::Vsock => format!("vsock:{cid}:{port}"),
            Transport::VhostUser(dir) => format!(
                "hybrid-vsock:{}:{port}",
                dir.join(format!("vm{cid}.vsock")).display()
            ),
        }
    }
}

/// Paths under the state directory.
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    pub(crate) journal: PathBuf,
    pub(crate) keybroker: PathBuf,
    pub(crate) control: PathBuf,
}

impl StateDir {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            journal: dir.join("journal"),
            keybroker: dir.join("keybroker"),
            control: dir.join("launch.sock"),
        }
    }
}

fn os(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

/// The KMS endpoint's `host:port` for the outbound allowlist.
fn kms_target(args: &LaunchArgs) -> Option<String> {
    let url = match (&args.kms_endpoint, &args.region) {
        (Some(url), _) => url.clone(),
        (None, Some(region)) => format!("https://kms.{region}.amazonaws.com"),
        (None, None) => return None,
    };
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    if authority.contains(':') {
        Some(authority.to_owned())
    } else {
        Some(format!(
            "{authority}:{}",
            if scheme == "http" { 80 } else { 443 }
        ))
    }
}

/// The services that do not depend on the enclave's CID: journal, key broker, outbound proxy.
pub(crate) fn host_services(
    args: &LaunchArgs,
    daas_host: &Path,
    state: &StateDir,
    transport: &Transport,
) -> anyhow::Result<Vec<ChildSpec>> {
    let spec = |name: &str, args: Vec<OsString>| ChildSpec {
        name: name.to_owned(),
        program: daas_host.to_owned(),
        args,
        policy: RestartPolicy::default(),
    };
    let mut specs = Vec::new();
    let mut journal = os(&["journal", "--dir"]);
    journal.push(state.journal.clone().into());
    journal.extend(os(&["--listen", &transport.service(parent::JOURNAL_PORT)]));
    specs.push(spec("journal", journal));
    if let Some(key_id) = &args.kms_key_id {
        let Some(region) = &args.region else {
            bail!("--kms-key-id needs --region (or AWS_REGION)");
        };
        let mut broker = os(&[
            "keybroker",
            "--listen",
            &transport.service(parent::KEY_BROKER_PORT),
            "--region",
            region,
            "--key-id",
            key_id,
            "--state-dir",
        ]);
        broker.push(state.keybroker.clone().into());
        if let Some(endpoint) = &args.kms_endpoint {
            broker.extend(os(&["--kms-endpoint", endpoint]));
        }
        specs.push(spec("keybroker", broker));
    }
    // The enclave's only ways out: KMS, the Sui fullnode and the audit webhook, each on its
    // own route, and the admission webhooks through the CONNECT proxy.
    let mut outbound = os(&["outbound"]);
    let mut port = parent::OUTBOUND_PORT;
    for target in [kms_target(args), args.sui_fullnode.clone()]
        .into_iter()
        .flatten()
    {
        let route = format!("{}={target}", transport.service(port));
        outbound.extend(os(&["--route", &route, "--allow", &target]));
        port += 1;
    }
    if let Some(target) = &args.audit_webhook {
        let route = format!("{}={target}", transport.service(parent::AUDIT_WEBHOOK_PORT));
        outbound.extend(os(&["--route", &route, "--allow", target]));
    }
    if !args.admission_webhook.is_empty() {
        outbound.extend(os(&[
            "--connect",
            &transport.service(parent::ADMISSION_WEBHOOK_PORT),
        ]));
        for target in &args.admission_webhook {
            outbound.extend(os(&["--allow", target]));
        }
    }
    if port > parent::OUTBOUND_PORT
        || args.audit_webhook.is_some()
        || !args.admission_webhook.is_empty()
    {
        specs.push(spec("outbound", outbound));
    }
    Ok(specs)
}

/// A relay running in this process: public TCP (or any endpoint) to one enclave.
#[derive(Debug)]
pub(crate) struct RunningRelay {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<host::DrainReport>,
    /// Where it listens (the bound address, port 0 resolved).
    pub(crate) local: host::Endpoint,
}

impl RunningRelay {
    /// Binds `listen` and relays it to the enclave with `cid`.
    pub(crate) async fn start(
        listen: &host::Endpoint,
        transport: &Transport,
        cid: u64,
    ) -> anyhow::Result<Self> {
        let upstream: host::Endpoint = transport.enclave(cid, parent::API_PORT).parse()?;
        let config = host::RelayConfig::builder(upstream.clone())
            .drain_timeout(std::time::Duration::from_secs(5))
            .build()?;
        let mut metrics_registry = prometheus_client::registry::Registry::default();
        let metrics = host::TrafficMetrics::register(&mut metrics_registry, "relay");
        let listener = host::Listener::bind(listen)
            .await
            .with_context(|| format!("binding the relay on {listen}"))?;
        let local = listener.local_endpoint()?;
        let stop = CancellationToken::new();
        let relay = host::Relay::new(config, metrics);
        let token = stop.clone();
        let task = tokio::spawn(async move { relay.serve(listener, token).await });
        eprintln!("daas launch: relay {local} -> {upstream}");
        Ok(Self { stop, task, local })
    }

    /// Stops accepting, lets open connections drain, and waits.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Serves the registry relay for the enclave in this process (it holds the registry and, for
/// Sui, the keystore that pays for anchors).
pub(crate) async fn registry_relay(
    registry: Arc<chain::AnyRegistry>,
    transport: &Transport,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let endpoint: host::Endpoint = transport.service(parent::REGISTRY_PORT).parse()?;
    let listener = host::Listener::bind(&endpoint)
        .await
        .with_context(|| format!("binding the registry relay on {endpoint}"))?;
    eprintln!("daas launch: registry relay listening on {endpoint}");
    Ok(tokio::spawn(host::serve_registry_relay(
        registry, listener, shutdown,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: LaunchArgs,
    }

    fn parse(extra: &[&str]) -> LaunchArgs {
        let base = [
            "daas-launch",
            "--eif",
            "/x.eif",
            "--registry",
            "local:/r.json",
            "--state-dir",
            "/s",
            "--admin-token-file",
            "/t",
        ];
        Wrapper::parse_from(base.iter().chain(extra.iter())).args
    }

    /// The outbound proxy's command line for launch arguments `extra` (vsock transport).
    fn outbound_command(extra: &[&str]) -> String {
        let specs = host_services(
            &parse(extra),
            Path::new("daas-host"),
            &StateDir::new(Path::new("/s")),
            &Transport::Vsock,
        )
        .unwrap();
        let outbound = specs.iter().find(|s| s.name == "outbound").unwrap();
        outbound
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn services_listen_where_the_enclave_dials_and_egress_is_allowlisted() {
        let args = parse(&[
            "--kms-key-id",
            "k",
            "--region",
            "eu-west-1",
            "--sui-fullnode",
            "fullnode.testnet.sui.io:443",
        ]);
        let specs = host_services(
            &args,
            Path::new("daas-host"),
            &StateDir::new(&args.state_dir),
            &Transport::Vsock,
        )
        .unwrap();
        let lines: Vec<String> = specs
            .iter()
            .map(|s| {
                s.args
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(lines[0], "journal --dir /s/journal --listen vsock:any:7001");
        assert!(
            lines[1].starts_with("keybroker --listen vsock:any:7002 --region eu-west-1 --key-id k")
        );
        assert_eq!(
            lines[2],
            "outbound --route vsock:any:8000=kms.eu-west-1.amazonaws.com:443 --allow kms.eu-west-1.amazonaws.com:443 \
             --route vsock:any:8001=fullnode.testnet.sui.io:443 --allow fullnode.testnet.sui.io:443"
        );
        let qemu = Transport::VhostUser("/v".into());
        assert_eq!(qemu.service(7001), "unix:/v/host.vsock_7001");
        assert_eq!(qemu.enclave(5, 6443), "hybrid-vsock:/v/vm5.vsock:6443");
        // Without KMS settings no key broker runs (the enclave waits for `daas unseal`).
        let specs = host_services(
            &parse(&[]),
            Path::new("daas-host"),
            &StateDir::new(Path::new("/s")),
            &qemu,
        )
        .unwrap();
        assert_eq!(
            specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["journal"]
        );
        // The audit webhook alone still gets the outbound proxy, on its own port.
        assert_eq!(
            outbound_command(&["--audit-webhook", "audit.example.com:443"]),
            "outbound --route vsock:any:8010=audit.example.com:443 --allow audit.example.com:443"
        );
        // Admission webhooks: the CONNECT proxy, allowing exactly the named servers.
        assert_eq!(
            outbound_command(&[
                "--admission-webhook",
                "hooks.example.com:443",
                "--admission-webhook",
                "10.0.0.7:8443",
            ]),
            "outbound --connect vsock:any:8011 --allow hooks.example.com:443 --allow 10.0.0.7:8443"
        );
    }
}
