//! The service proxy: Services and EndpointSlices programmed into nftables on each worker, in the
//! structure of kube-proxy's nftables mode (see [`rules`]).
//!
//! - ClusterIP, NodePort (on every local address but loopback), external and load-balancer IPs.
//! - Only ready endpoints; serving-and-terminating ones only when none is ready ([`plan`]).
//! - `sessionAffinity: ClientIP`, `internalTrafficPolicy`/`externalTrafficPolicy: Local`.
//! - Hairpin: a pod reaching itself through its Service is masqueraded, so the reply comes back
//!   through the node.
//! - A Service without endpoints is rejected (connection refused at once), a ClusterIP on a port
//!   the Service does not have too.
//! - Every sync is one atomic `nft -f` transaction over the proxy's own table `ip daas-proxy`; the
//!   first sync of a process lists what the table holds, so rules of Services deleted while the
//!   proxy was down are flushed at once. Established connections keep their conntrack NAT entries
//!   through syncs and restarts; UDP entries to endpoints that went away are cleared.
//!
//! The proxy does not program a Service whose ClusterIP is the node's own cluster DNS address: the
//! worker answers DNS there itself ([`crate::dns`]).

pub mod plan;
pub mod rules;

mod conntrack;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::network::error::Result;
use crate::network::exec::Netns;
use crate::network::model::{ClusterModel, ClusterState, ObjectKind};
use plan::ServicePortPlan;

/// The proxy's table (`ip daas-proxy`).
pub const DEFAULT_TABLE: &str = "daas-proxy";

/// How long a flushed chain waits before it is deleted.
const STALE_CHAIN_GRACE: Duration = Duration::from_secs(1);

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where the rules go.
    pub netns: Netns,
    /// This node's name (which endpoints are local).
    pub node_name: String,
    /// The pods' CIDR: traffic from elsewhere to a ClusterIP is masqueraded.
    pub cluster_cidr: Ipv4Net,
    /// ClusterIPs not to program (the node-local DNS address).
    pub skip_cluster_ips: Vec<Ipv4Addr>,
    /// The nftables table (`daas-proxy`).
    pub table: String,
}

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    /// Service ports programmed.
    pub service_ports: usize,
    /// Endpoint chains programmed.
    pub endpoint_chains: usize,
    /// Lines in the transaction.
    pub statements: usize,
    /// Time to compute and render.
    pub render: Duration,
    /// Time `nft` took to apply it.
    pub apply: Duration,
}

/// The service proxy of one node.
#[derive(Debug)]
pub struct ServiceProxy {
    config: ProxyConfig,
    /// Service chains and affinity sets believed to exist in the table (`None`: list it first).
    known: Option<(BTreeSet<String>, BTreeSet<String>)>,
    /// Flushed chains waiting to be deleted, since when.
    stale: BTreeMap<String, Instant>,
    last_plans: Option<Vec<ServicePortPlan>>,
    last_udp: BTreeMap<String, conntrack::UdpTargets>,
}

#[derive(Debug, Deserialize)]
struct NftList {
    #[serde(default)]
    nftables: Vec<serde_json::Value>,
}

impl ServiceProxy {
    /// A proxy that has not synced yet.
    pub fn new(config: ProxyConfig) -> Self {
        Self {
            config,
            known: None,
            stale: BTreeMap::new(),
            last_plans: None,
            last_udp: BTreeMap::new(),
        }
    }

    /// The plans `state` gives this node.
    pub fn plans(&self, state: &ClusterState) -> Vec<ServicePortPlan> {
        plan::plans(state, &self.config.node_name, &self.config.skip_cluster_ips)
    }

    /// One full sync of `state` (whether it changed or not).
    ///
    /// # Errors
    /// When `nft` fails; the next sync lists the table again before it retries.
    pub async fn sync(&mut self, state: &ClusterState) -> Result<SyncStats> {
        let started = Instant::now();
        let plans = self.plans(state);
        self.apply(plans, started).await
    }

    async fn apply(&mut self, plans: Vec<ServicePortPlan>, started: Instant) -> Result<SyncStats> {
        let netns = self.config.netns.clone();
        let table = self.config.table.clone();
        self.delete_stale_chains(&netns, &table).await;
        let (known_chains, known_sets) = match self.known.take() {
            Some(k) => k,
            None => self.list_table().await,
        };
        let rendered = rules::render(
            &table,
            self.config.cluster_cidr,
            &plans,
            &known_chains,
            &known_sets,
        );
        let render = started.elapsed();
        let applying = Instant::now();
        let result = netns
            .run_with_stdin("nft", &["-f", "-"], Some(rendered.text.as_bytes()))
            .await;
        let apply = applying.elapsed();
        if let Err(e) = result {
            // Unknown state: list the table before the next attempt.
            self.known = None;
            return Err(e);
        }
        let now = Instant::now();
        for chain in known_chains.difference(&rendered.chains) {
            self.stale.entry(chain.clone()).or_insert(now);
        }
        for chain in &rendered.chains {
            self.stale.remove(chain);
        }
        let mut chains = rendered.chains.clone();
        chains.extend(self.stale.keys().cloned());
        self.known = Some((chains, rendered.sets.clone()));
        let udp = conntrack::udp_targets(&plans);
        conntrack::clear_stale(&netns, &self.last_udp, &udp).await;
        self.last_udp = udp;
        let stats = SyncStats {
            service_ports: plans.len(),
            endpoint_chains: rendered
                .chains
                .iter()
                .filter(|c| c.starts_with("endpoint-"))
                .count(),
            statements: rendered.text.lines().count(),
            render,
            apply,
        };
        self.last_plans = Some(plans);
        tracing::debug!(?stats, "service rules synced");
        Ok(stats)
    }

    /// Whether flushed chains are still waiting for deletion.
    pub fn has_stale_chains(&self) -> bool {
        !self.stale.is_empty()
    }

    async fn delete_stale_chains(&mut self, netns: &Netns, table: &str) {
        let due: BTreeSet<String> = self
            .stale
            .iter()
            .filter(|(_, since)| since.elapsed() >= STALE_CHAIN_GRACE)
            .map(|(c, _)| c.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let text = rules::render_chain_deletion(table, &due);
        match netns
            .run_with_stdin("nft", &["-f", "-"], Some(text.as_bytes()))
            .await
        {
            Ok(_) => {
                for c in &due {
                    self.stale.remove(c);
                    if let Some((chains, _)) = self.known.as_mut() {
                        chains.remove(c);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "deleting stale service chains failed; retrying later");
                self.known = None;
            }
        }
    }

    /// The service chains and affinity sets the table holds now (empty when it does not exist).
    async fn list_table(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let table = &self.config.table;
        let listing: Result<Option<NftList>> = self
            .config
            .netns
            .run_json("nft", &["-j", "-t", "list", "table", "ip", table])
            .await;
        let mut chains = BTreeSet::new();
        let mut sets = BTreeSet::new();
        for item in listing
            .ok()
            .flatten()
            .map(|l| l.nftables)
            .unwrap_or_default()
        {
            if let Some(name) = item.pointer("/chain/name").and_then(|n| n.as_str()) {
                if rules::is_service_chain(name) {
                    chains.insert(name.to_owned());
                }
            } else if let Some(name) = item.pointer("/set/name").and_then(|n| n.as_str())
                && rules::is_affinity_set(name)
            {
                sets.insert(name.to_owned());
            }
        }
        (chains, sets)
    }

    /// Keeps the rules in step with the model until `cancel`: a sync after each change that alters
    /// the plans (once Services and EndpointSlices are synced), a retry after `retry` on failure,
    /// one more sync when flushed chains are due for deletion, and a full sync every `resync`.
    pub async fn run(
        mut self,
        model: ClusterModel,
        resync: Duration,
        retry: Duration,
        cancel: CancellationToken,
    ) {
        let mut rx = model.subscribe();
        let mut last_full = Instant::now();
        loop {
            let state = rx.borrow_and_update().clone();
            let mut wait = resync;
            if state.is_synced(&[ObjectKind::Service, ObjectKind::EndpointSlice]) {
                let started = Instant::now();
                let plans = self.plans(&state);
                let due = last_full.elapsed() >= resync;
                if due || self.last_plans.as_ref() != Some(&plans) || self.has_stale_chains() {
                    match self.apply(plans, started).await {
                        Ok(stats) => {
                            if due {
                                last_full = Instant::now();
                            }
                            tracing::info!(
                                service_ports = stats.service_ports,
                                apply_ms = stats.apply.as_millis() as u64,
                                "service rules synced"
                            );
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "service rules: sync failed; retrying");
                            self.last_plans = None;
                            wait = retry;
                        }
                    }
                }
                if self.has_stale_chains() {
                    wait = wait.min(STALE_CHAIN_GRACE);
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Removes the proxy's table from `netns` (`daas-worker` uninstall, tests).
///
/// # Errors
/// When `nft` fails.
pub async fn remove_table(netns: &Netns, table: &str) -> Result<()> {
    let text = rules::render_table_deletion(table);
    netns
        .run_with_stdin("nft", &["-f", "-"], Some(text.as_bytes()))
        .await
        .map(drop)
}
