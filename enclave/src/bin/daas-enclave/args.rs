//! The command line, and what it means in each mode.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use attestation::Mode;
use chain::RegistryUrl;
use clap::{Parser, ValueEnum};
use enclave::api::ListenAddr;
use enclave::boot::KeyBrokerEndpoint;
use enclave::boot::parent;
use enclave::controllers::ClusterCidr;
use enclave::registry::kinds::ServiceCidr;
use enclave::store::journal::JournalEndpoint;

#[derive(Debug, Parser)]
#[command(name = "daas-enclave", about = "The K3s-DaaS control plane")]
pub(crate) struct Args {
    /// Dev mode: simulated NSM, dev-labelled keys, local dev credentials. Without it the
    /// enclave runs in production mode: the hardware NSM (/dev/nsm), production keys, the
    /// root secret only from KMS or the operator, vsock to the parent instance.
    #[arg(long)]
    pub(crate) dev: bool,
    /// Directory for the store index and the per-boot TLS identity (in an enclave: a tmpfs).
    #[arg(long)]
    pub(crate) data_dir: PathBuf,
    /// Where to listen: tcp:HOST:PORT, unix:PATH or vsock:CID:PORT [default: dev
    /// tcp:127.0.0.1:6443, production vsock:4294967295:6443 (any CID)].
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// The URL clients use (written to admin.kubeconfig); defaults to the TCP listen address.
    #[arg(long)]
    pub(crate) advertise: Option<String>,
    /// More hostnames or IP addresses the serving certificate is valid for, besides localhost
    /// and the host of `--advertise` (as k3s's `--tls-san`; repeat or comma-separate).
    #[arg(long = "tls-san", value_delimiter = ',')]
    pub(crate) tls_sans: Vec<String>,
    /// Production: the parent instance's vsock CID, for the default journal, key broker and
    /// registry endpoints (3 on Nitro; QEMU's emulator with vhost-device-vsock uses 2).
    #[arg(long, default_value_t = parent::DEFAULT_PARENT_CID)]
    pub(crate) parent_cid: u32,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 60)]
    pub(crate) bookmark_interval: u64,
    /// The host's journal service, `unix:PATH` or `vsock:CID:PORT` [default: dev a local
    /// journal file under the data directory, production vsock:PARENT:7001].
    #[arg(long)]
    pub(crate) journal: Option<JournalEndpoint>,
    /// Seconds to keep trying to reach the journal service at startup.
    #[arg(long, default_value_t = 30)]
    pub(crate) journal_connect_timeout: u64,
    /// Seconds between sealed snapshots (written only if the store changed since the last
    /// one); each snapshot lets the journal drop the records it covers. 0 disables them.
    #[arg(long, default_value_t = 300)]
    pub(crate) snapshot_interval: u64,
    /// How long an event lives after its last write, as kube-apiserver's `--event-ttl`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub(crate) event_ttl: Duration,
    /// The range nodes' pod subnets (`spec.podCIDR`) come from, as k3s's `--cluster-cidr`.
    #[arg(long, default_value = "10.42.0.0/16", value_parser = ClusterCidr::parse)]
    pub(crate) cluster_cidr: ClusterCidr,
    /// The range Services' ClusterIPs come from, as k3s's `--service-cidr`; its first address
    /// is the `default/kubernetes` Service's. Workers must be given the same range.
    #[arg(long, default_value = "10.43.0.0/16", value_parser = ServiceCidr::parse)]
    pub(crate) service_cidr: ServiceCidr,
    /// The prefix length of each node's pod subnet.
    #[arg(long, default_value_t = 24)]
    pub(crate) node_cidr_mask_size: u8,
    /// The IP address `default/kubernetes` points at; default: the host of `--advertise` (or
    /// of the TCP listen address) if it is an IP address.
    #[arg(long)]
    pub(crate) advertise_address: Option<std::net::IpAddr>,
    /// Keep the current state in memory and answer LIST and GET from it (kube-apiserver's
    /// `--watch-cache`); `false` reads every request from the sealed index.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) watch_cache: bool,
    /// Most MiB of keys and values the watch cache keeps; a state that outgrows it is read
    /// from the sealed index until the next start.
    #[arg(long, default_value_t = 512)]
    pub(crate) watch_cache_max_mib: usize,
    /// Commit groups buffered for watchers (each with its objects decoded once for all of
    /// them); a watcher further behind replays the sealed history instead. 256 keeps the
    /// decoded objects of `daas bench scheduler`'s bursts to about 50 MiB less than 1024
    /// did, at no measured cost in its rate.
    #[arg(long, default_value_t = 256)]
    pub(crate) watch_event_buffer: usize,
    /// Which controllers run, as kube-controller-manager's `--controllers`: `*` for all,
    /// `name` to add one, `-name` to leave one out (e.g. `*,-node-lifecycle-controller`).
    #[arg(long, default_value = "*", value_delimiter = ',')]
    pub(crate) controllers: Vec<String>,
    /// How often the horizontal pod autoscaler syncs (kube-controller-manager's
    /// `--horizontal-pod-autoscaler-sync-period`).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub(crate) horizontal_pod_autoscaler_sync_period: Duration,
    /// How often the node lifecycle controller checks nodes.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) node_monitor_period: Duration,
    /// How long a node may go without a heartbeat (Ready condition or Lease renewal) before
    /// it is marked Unknown.
    #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
    pub(crate) node_monitor_grace_period: Duration,
    /// How long a node that never reported may stay silent.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) node_startup_grace_period: Duration,
    /// Nodes per second (per zone) that get the NoExecute taint which evicts their pods.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) node_eviction_rate: f64,
    /// Terminated pods kept before the oldest are deleted (0: no limit).
    #[arg(long, default_value_t = 12_500)]
    pub(crate) terminated_pod_gc_threshold: usize,
    /// How often the pod garbage collector runs; pods of a deleted node go after twice this.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub(crate) pod_gc_period: Duration,
    /// Endpoints per EndpointSlice.
    #[arg(long, default_value_t = 100)]
    pub(crate) max_endpoints_per_slice: usize,
    /// Seconds pods tolerate the `not-ready` NoExecute taint unless they say otherwise.
    #[arg(long, default_value_t = 300)]
    pub(crate) default_not_ready_toleration_seconds: i64,
    /// Seconds pods tolerate the `unreachable` NoExecute taint unless they say otherwise.
    #[arg(long, default_value_t = 300)]
    pub(crate) default_unreachable_toleration_seconds: i64,
    /// Shut down (as on SIGTERM) once the process with this pid is no longer our parent.
    #[arg(long, value_name = "PID")]
    pub(crate) exit_with_parent: Option<u32>,
    /// Where the cluster's root secret comes from [default: dev file, production kms].
    #[arg(long, value_enum)]
    pub(crate) root_secret_source: Option<RootSecretSource>,
    /// The host's key broker, `unix:PATH` or `vsock:CID:PORT` [default in production:
    /// vsock:PARENT:7002]; required with `--root-secret-source kms` in dev mode.
    #[arg(long)]
    pub(crate) key_broker: Option<KeyBrokerEndpoint>,
    /// Seconds to keep trying to reach the key broker at startup.
    #[arg(long, default_value_t = 30)]
    pub(crate) key_broker_connect_timeout: u64,
    /// The `iss` of service-account tokens and the OIDC discovery issuer
    /// (kube-apiserver's `--service-account-issuer`).
    #[arg(long, default_value = enclave::auth::serviceaccount::DEFAULT_ISSUER)]
    pub(crate) service_account_issuer: String,
    /// Audiences the API accepts tokens for (comma-separated; default: the issuer).
    #[arg(long, value_delimiter = ',')]
    pub(crate) api_audiences: Vec<String>,
    /// The `jwks_uri` OIDC discovery advertises (default:
    /// `https://<advertised host>/openid/v1/jwks`).
    #[arg(long)]
    pub(crate) service_account_jwks_uri: Option<String>,
    /// An audit Policy file (`audit.k8s.io/v1`, YAML or JSON); without one
    /// nothing is audited, as kube-apiserver.
    #[arg(long)]
    pub(crate) audit_policy_file: Option<PathBuf>,
    /// How long audit events are kept in the sealed store.
    #[arg(long, default_value = "168h", value_parser = humantime::parse_duration)]
    pub(crate) audit_retention: Duration,
    /// An audit webhook, as kube-apiserver's `--audit-webhook-config-file`: a kubeconfig
    /// naming an `https://` server, its CA and a token or client certificate. The audit log's
    /// events are POSTed there as `audit.k8s.io/v1 EventList`s, TLS end to end through the
    /// host's outbound route `--audit-webhook-via`. Needs `--audit-policy-file`.
    #[arg(long, requires = "audit_policy_file")]
    pub(crate) audit_webhook_config_file: Option<PathBuf>,
    /// The host's outbound route to the webhook server, `unix:PATH` or `vsock:CID:PORT`
    /// [default: dev none (required with a webhook), production vsock:PARENT:8010].
    #[arg(long)]
    pub(crate) audit_webhook_via: Option<protocol::Endpoint>,
    /// The host's CONNECT proxy (`daas-host outbound --connect ENDPOINT --allow HOST:PORT`)
    /// through which admission webhooks' `clientConfig.url`s are called, TLS end to end;
    /// `unix:PATH` or `vsock:CID:PORT` [default: dev none (dialed directly), production
    /// vsock:PARENT:8011].
    #[arg(long)]
    pub(crate) admission_webhook_via: Option<protocol::Endpoint>,
    /// Most events per webhook request (kube-apiserver's `--audit-webhook-batch-max-size`).
    #[arg(long, default_value_t = enclave::api::audit::webhook::DEFAULT_BATCH_MAX_SIZE)]
    pub(crate) audit_webhook_batch_max_size: usize,
    /// The wait after a failed delivery, doubling up to 5 minutes (kube-apiserver's
    /// `--audit-webhook-initial-backoff`). Undelivered events stay in the sealed log.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) audit_webhook_initial_backoff: Duration,
    /// The registry: rollback anchors are recorded on and checked against it, and nodes join
    /// against its stakes (without it the join endpoints answer 503). `local:PATH` (a file on
    /// the host's disk: dev only), `sui:RPC_URL#CLUSTER` or `relay:unix:PATH|relay:vsock:CID:PORT`
    /// (the host's registry relay) [default: dev none, production relay:vsock:PARENT:7003].
    #[arg(long, value_name = "REGISTRY")]
    pub(crate) registry: Option<RegistryUrl>,
    /// How often to record a rollback anchor while the store moves (also on clean shutdown).
    /// `0` turns anchors off (dev mode only; the registry still admits nodes).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) anchor_interval: Duration,
    /// Lifetime of node client certificates (e.g. `1h`, `90s`); nodes renew at two thirds.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub(crate) node_cert_lifetime: Duration,
    /// How often the registry is read to revoke nodes whose stake stopped admitting them.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) registry_poll_interval: Duration,
    /// If the registry cannot be read at boot, start anyway WITHOUT checking the journal
    /// against the latest rollback anchor (logged as a degraded start). Without it the
    /// enclave serves nothing until the anchor is read.
    #[arg(long)]
    pub(crate) degraded_start_without_registry: bool,
    /// SHA-256 (hex) of the admin bearer token: requests bearing that token act as
    /// `admin` (system:masters). Required in production, where it is part of the measured
    /// enclave arguments; the token itself stays with the operator.
    #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
    pub(crate) admin_token_sha256: Option<[u8; 32]>,
}

/// Where the root secret comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RootSecretSource {
    /// A 0600 file under the data directory, created on first start. Dev mode only.
    File,
    /// AWS KMS, released to this enclave's attested key through the host's key broker. If
    /// KMS refuses, the enclave stays sealed (attestation served) and the operator may unseal.
    Kms,
    /// The operator, after verifying this enclave's attestation: `daas unseal` sends it over
    /// TLS to the attested key (`POST /unseal`).
    Operator,
}

fn parse_sha256(s: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|_| "expected 64 hex digits".to_owned())?;
    Ok(out)
}

/// The arguments resolved for one mode: defaults filled in, production rules applied.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) mode: Mode,
    pub(crate) listen: ListenAddr,
    pub(crate) journal: Option<JournalEndpoint>,
    pub(crate) source: RootSecretSource,
    pub(crate) key_broker: Option<KeyBrokerEndpoint>,
    pub(crate) registry: Option<RegistryUrl>,
    /// Whether the journal is checked against, and anchored on, the registry.
    pub(crate) anchors: bool,
    /// The outbound route to the audit webhook, when one is configured.
    pub(crate) audit_webhook_via: Option<protocol::Endpoint>,
    /// The CONNECT proxy admission webhooks are called through; `None` dials them directly.
    pub(crate) admission_webhook_via: Option<protocol::Endpoint>,
}

impl Args {
    /// Fills in the mode's defaults and refuses what the mode does not allow.
    pub(crate) fn plan(&self) -> Result<Plan> {
        let mode = if self.dev {
            Mode::Dev
        } else {
            Mode::Production
        };
        let parent = self.parent_cid;
        let listen = match (&self.listen, mode) {
            (Some(l), _) => l.parse()?,
            (None, Mode::Dev) => "tcp:127.0.0.1:6443".parse()?,
            (None, Mode::Production) => ListenAddr::Vsock {
                cid: u32::MAX,
                port: parent::API_PORT,
            },
        };
        let source = match (self.root_secret_source, mode) {
            (Some(s), _) => s,
            (None, Mode::Dev) => RootSecretSource::File,
            (None, Mode::Production) => RootSecretSource::Kms,
        };
        let vsock = |port| JournalEndpoint::Vsock { cid: parent, port };
        let plan = match mode {
            Mode::Dev => Plan {
                mode,
                listen,
                journal: self.journal.clone(),
                source,
                key_broker: self.key_broker.clone(),
                registry: self.registry.clone(),
                anchors: self.registry.is_some() && !self.anchor_interval.is_zero(),
                audit_webhook_via: self.audit_webhook_via.clone(),
                admission_webhook_via: self.admission_webhook_via.clone(),
            },
            Mode::Production => {
                if source == RootSecretSource::File {
                    bail!(
                        "--root-secret-source file is a dev artefact: a production enclave takes its root \
                         secret only from KMS (--root-secret-source kms) or from its operator \
                         (--root-secret-source operator, then `daas unseal`), never from a file"
                    );
                }
                if self.admin_token_sha256.is_none() {
                    bail!(
                        "production mode needs --admin-token-sha256 (the SHA-256 of the admin bearer \
                         token, part of the measured enclave arguments; `daas image build` sets it)"
                    );
                }
                Plan {
                    mode,
                    listen,
                    journal: Some(
                        self.journal
                            .clone()
                            .unwrap_or_else(|| vsock(parent::JOURNAL_PORT)),
                    ),
                    source,
                    key_broker: Some(
                        self.key_broker
                            .clone()
                            .unwrap_or_else(|| vsock(parent::KEY_BROKER_PORT)),
                    ),
                    registry: Some(self.registry.clone().unwrap_or(RegistryUrl::Relay(
                        chain::RelayEndpoint::Vsock {
                            cid: parent,
                            port: parent::REGISTRY_PORT,
                        },
                    ))),
                    anchors: true,
                    audit_webhook_via: Some(
                        self.audit_webhook_via
                            .clone()
                            .unwrap_or_else(|| vsock(parent::AUDIT_WEBHOOK_PORT)),
                    ),
                    admission_webhook_via: Some(
                        self.admission_webhook_via
                            .clone()
                            .unwrap_or_else(|| vsock(parent::ADMISSION_WEBHOOK_PORT)),
                    ),
                }
            }
        };
        if self.audit_webhook_config_file.is_some() && plan.audit_webhook_via.is_none() {
            bail!(
                "--audit-webhook-config-file needs --audit-webhook-via, the host's outbound route to \
                 the webhook server (`daas-host outbound --route ENDPOINT=HOST:PORT`): the enclave \
                 has no network of its own"
            );
        }
        if plan.source == RootSecretSource::Kms && plan.key_broker.is_none() {
            bail!("--key-broker is required with --root-secret-source kms");
        }
        if plan.mode == Mode::Production && self.anchor_interval.is_zero() {
            bail!(
                "--anchor-interval 0 turns rollback anchors off, which only dev mode allows: a \
                 production enclave always checks its journal against the registry's anchors"
            );
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("daas-enclave").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn production_fills_in_the_parent_endpoints_and_refuses_dev_sources() {
        let token = "ab".repeat(32);
        let plan = parse(&[
            "--data-dir",
            "/tmp/d",
            "--admin-token-sha256",
            &token,
            "--parent-cid",
            "2",
        ])
        .plan()
        .unwrap();
        assert_eq!(plan.mode, Mode::Production);
        assert_eq!(plan.source, RootSecretSource::Kms);
        assert_eq!(
            plan.journal,
            Some(JournalEndpoint::Vsock { cid: 2, port: 7001 })
        );
        assert_eq!(
            plan.registry.map(|r| r.to_string()).as_deref(),
            Some("relay:vsock:2:7003")
        );
        let err = parse(&[
            "--data-dir",
            "/tmp/d",
            "--admin-token-sha256",
            &token,
            "--root-secret-source",
            "file",
        ])
        .plan()
        .unwrap_err();
        assert!(err.to_string().contains("dev artefact"), "{err}");
        let err = parse(&["--data-dir", "/tmp/d"]).plan().unwrap_err();
        assert!(err.to_string().contains("--admin-token-sha256"), "{err}");
        let dev = parse(&["--dev", "--data-dir", "/tmp/d"]).plan().unwrap();
        assert_eq!((dev.mode, dev.source), (Mode::Dev, RootSecretSource::File));
        assert!(dev.registry.is_none() && dev.journal.is_none() && !dev.anchors);
        let dev = parse(&[
            "--dev",
            "--data-dir",
            "/tmp/d",
            "--registry",
            "local:/tmp/r.json",
            "--anchor-interval",
            "0s",
        ])
        .plan()
        .unwrap();
        assert!(dev.registry.is_some() && !dev.anchors);
        let err = parse(&[
            "--data-dir",
            "/tmp/d",
            "--admin-token-sha256",
            &token,
            "--anchor-interval",
            "0s",
        ])
        .plan()
        .unwrap_err();
        assert!(err.to_string().contains("only dev mode"), "{err}");
    }
}
