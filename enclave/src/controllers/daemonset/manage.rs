//! Creating and deleting a DaemonSet's pods (upstream `manage`,
//! `podsShouldBeOnNode` and `syncNodes`): one pod per node that should
//! run it, failed and finished pods deleted (failed ones after a
//! backoff), surplus and misplaced pods deleted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;

use super::{
    BURST_REPLICAS, DaemonSetController, TEMPLATE_GENERATION_LABEL, View, by_creation_and_phase,
    nodes, template_generation, update,
};
use crate::controllers::Error;
use crate::controllers::events::EventType;
use crate::controllers::history::REVISION_LABEL;
use crate::controllers::typed::owner::controller_ref;
use crate::controllers::typed::pod::{from_template, is_terminating, phase};
use crate::controllers::typed::{name, namespace, record};
use crate::registry::generic::Propagation;

impl DaemonSetController {
    /// upstream's `syncNodes`: deletes `doomed` and creates a pod pinned
    /// to each node of `wanting`, at most [`BURST_REPLICAS`] of each.
    /// Returns whether anything was written.
    pub(super) async fn sync_nodes(
        &self,
        ds: &DaemonSet,
        doomed: &[String],
        wanting: &[String],
        hash: &str,
    ) -> Result<bool, Error> {
        let ns = namespace(ds).to_string();
        let doomed = &doomed[..doomed.len().min(BURST_REPLICAS)];
        let wanting = &wanting[..wanting.len().min(BURST_REPLICAS)];
        let mut template = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        if let Some(spec) = template.spec.as_mut() {
            nodes::add_daemon_tolerations(spec);
        }
        let labels = template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new);
        if let Some(g) = template_generation(ds) {
            labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
        }
        if !hash.is_empty() {
            labels.insert(REVISION_LABEL.into(), hash.to_string());
        }
        let mut first_err = None;
        // Slow start: 1, 2, 4, … creates; stop after a batch with a failure.
        let mut done = 0;
        let mut batch = 1usize;
        while done < wanting.len() && first_err.is_none() {
            let size = batch.min(wanting.len() - done);
            let pods: Vec<Pod> = wanting[done..done + size]
                .iter()
                .map(|node| {
                    let mut t = template.clone();
                    if let Some(spec) = t.spec.as_mut() {
                        spec.affinity = Some(nodes::pin_to_node(spec.affinity.take(), node));
                    }
                    from_template(&t, &ns, controller_ref(ds), "")
                })
                .collect();
            let results = join_all(pods.iter().map(|p| self.pods.create(&ns, p))).await;
            for r in results {
                match r {
                    Ok(p) => {
                        let message = format!("Created pod: {}", name(&p));
                        record(
                            &self.events,
                            ds,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &message,
                        )
                        .await;
                    }
                    Err(e) if e.is_namespace_terminating() => return Ok(true),
                    Err(e) => {
                        let message = format!("Error creating: {}", e.api_message());
                        record(
                            &self.events,
                            ds,
                            EventType::Warning,
                            "FailedCreate",
                            &message,
                        )
                        .await;
                        first_err.get_or_insert(e);
                    }
                }
            }
            done += size;
            batch = batch.saturating_mul(2);
        }
        let results = join_all(doomed.iter().map(|pod| {
            self.pods
                .delete_propagating(&ns, pod, None, Propagation::Background)
        }))
        .await;
        for (pod, r) in doomed.iter().zip(results) {
            match r {
                Ok(()) => {
                    let message = format!("Deleted pod: {pod}");
                    record(
                        &self.events,
                        ds,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &message,
                    )
                    .await;
                }
                Err(e) => {
                    let message = format!("Error deleting: {}", e.api_message());
                    record(
                        &self.events,
                        ds,
                        EventType::Warning,
                        "FailedDelete",
                        &message,
                    )
                    .await;
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(!doomed.is_empty() || !wanting.is_empty()),
        }
    }

    /// Whether a failed pod on `node` may be deleted now; if not, how long
    /// to wait (upstream's `failedPodsBackoff`).
    fn failed_pod_backoff(&mut self, ds: &DaemonSet, node: &str) -> Option<Duration> {
        const INITIAL: Duration = Duration::from_secs(1);
        const MAX: Duration = Duration::from_secs(900);
        let key = format!("{}/{}/{node}", namespace(ds), name(ds));
        let now = Instant::now();
        match self.failed_backoff.get(&key) {
            Some((at, wait)) if now.duration_since(*at) < *wait => {
                Some(*wait - now.duration_since(*at))
            }
            Some((at, wait)) if now.duration_since(*at) <= MAX * 2 => {
                let next = (*wait * 2).min(MAX);
                self.failed_backoff.insert(key, (now, next));
                None
            }
            _ => {
                self.failed_backoff.insert(key, (now, INITIAL));
                None
            }
        }
    }

    /// upstream's `manage` with `podsShouldBeOnNode`: creates missing pods,
    /// deletes failed, surplus and misplaced ones. Returns whether it wrote
    /// anything, and a wait for failed-pod backoff.
    pub(super) async fn manage(
        &mut self,
        view: &View,
        hash: &str,
    ) -> Result<(bool, Option<Duration>), Error> {
        let ds = &view.ds;
        let surge = update::allows_surge(ds);
        let mut wanting: Vec<String> = Vec::new();
        let mut doomed: Vec<String> = Vec::new();
        let mut wait: Option<Duration> = None;
        for node in &view.nodes {
            let node_name = name(node).to_string();
            let (run, keep) = nodes::should_run(node, ds);
            let pods = view.by_node.get(&node_name);
            match pods {
                None if run => wanting.push(node_name.clone()),
                Some(pods) if keep => {
                    let mut running: Vec<&Pod> = Vec::new();
                    for p in pods {
                        if is_terminating(p) {
                            continue;
                        }
                        match phase(p) {
                            "Failed" => {
                                if let Some(w) = self.failed_pod_backoff(ds, &node_name) {
                                    wait = Some(wait.map_or(w, |x| x.min(w)));
                                    continue;
                                }
                                let message = format!(
                                    "Found failed daemon pod {}/{} on node {node_name}, will try to kill it",
                                    namespace(p),
                                    name(p)
                                );
                                record(
                                    &self.events,
                                    ds,
                                    EventType::Warning,
                                    "FailedDaemonPod",
                                    &message,
                                )
                                .await;
                                doomed.push(name(p).to_string());
                            }
                            "Succeeded" => doomed.push(name(p).to_string()),
                            _ => running.push(p),
                        }
                    }
                    running.sort_by(|a, b| by_creation_and_phase(a, b));
                    if !surge {
                        doomed.extend(running.iter().skip(1).map(|p| name(*p).to_string()));
                        continue;
                    }
                    if running.len() <= 1 {
                        if running.is_empty() && run {
                            wanting.push(node_name.clone());
                        }
                        continue;
                    }
                    doomed.extend(update::surge_excess(ds, &running, hash));
                }
                None => {}
                Some(pods) => doomed.extend(
                    pods.iter()
                        .filter(|p| !is_terminating(p))
                        .map(|p| name(p).to_string()),
                ),
            }
        }
        // Unscheduled pods pinned to nodes that no longer exist.
        for (node, pods) in &view.by_node {
            if view.nodes.iter().any(|n| name(n) == node) {
                continue;
            }
            doomed.extend(
                pods.iter()
                    .filter(|p| crate::controllers::typed::pod::node_name(p).is_empty())
                    .map(|p| name(p).to_string()),
            );
        }
        let wrote = self.sync_nodes(ds, &doomed, &wanting, hash).await?;
        Ok((wrote, wait))
    }
}
