//! One worker per pod UID, as the kubelet's pod workers: syncing (make the runtime match the
//! spec) until the pod is deleted or done, then terminating (preStop, SIGTERM, SIGKILL after
//! the grace period), then terminated (final status written; for a deleted pod the containers,
//! sandbox and files removed and the API object deleted).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::Ctx;
use super::api::PodRef;
use super::observed::{ObservedPod, observe};
use super::probes::PodProbes;
use super::sandbox::log_directory;
use super::start::termination_message;
use super::status::{StatusInput, TerminalVerdict, WaitReason, generate};
use super::stop::{kill_pod, pod_grace, remove_pod};
use super::volumes::TokenCache;
use crate::runtime::{Error, Result};

/// What the API says about a pod.
#[derive(Debug, Clone)]
pub(crate) enum Desired {
    /// The pod as last seen (with `deletionTimestamp` once it is being deleted).
    Present(Arc<Pod>),
    /// The object is gone from the API (force-deleted, or never there: an orphan); the last
    /// known object, for its grace period.
    Gone(Arc<Pod>),
}

/// What a sync concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncOutcome {
    /// Keep syncing.
    Continue,
    /// The pod is done (Succeeded/Failed, deadline): terminate it.
    Terminal,
}

/// The per-pod state between syncs.
#[derive(Debug)]
pub(crate) struct PodWorker {
    pub(crate) ctx: Arc<Ctx>,
    pub(crate) uid: String,
    pub(crate) pod: Arc<Pod>,
    pub(crate) start_time: Option<jiff::Timestamp>,
    pub(crate) reasons: HashMap<String, WaitReason>,
    pub(crate) tokens: TokenCache,
    pub(crate) probes: PodProbes,
    pub(crate) verdict: Option<TerminalVerdict>,
    pub(crate) last_status: Option<PodStatus>,
    pub(crate) wake: Arc<Notify>,
    /// The earliest back-off expiry or retry the last sync asked for.
    pub(crate) next_wake: Option<tokio::time::Instant>,
}

impl PodWorker {
    pub(crate) fn new(ctx: Arc<Ctx>, pod: Arc<Pod>, wake: Arc<Notify>) -> Self {
        Self {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            ctx,
            pod,
            start_time: None,
            reasons: HashMap::new(),
            tokens: TokenCache::default(),
            probes: PodProbes::default(),
            verdict: None,
            last_status: None,
            wake,
            next_wake: None,
        }
    }

    pub(crate) fn pod_ref(&self) -> PodRef {
        PodRef {
            namespace: self.pod.metadata.namespace.clone().unwrap_or_default(),
            name: self.pod.metadata.name.clone().unwrap_or_default(),
            uid: self.uid.clone(),
        }
    }

    pub(crate) fn wake_at(&mut self, at: tokio::time::Instant) {
        self.next_wake = Some(self.next_wake.map_or(at, |w| w.min(at)));
    }

    /// Runs the pod until it is gone. Returns when its containers are removed (deleted pod),
    /// or when `cancel` fires (the agent stops; the pod keeps running).
    pub(crate) async fn run(
        mut self,
        mut desired: watch::Receiver<Desired>,
        cancel: CancellationToken,
    ) {
        // Syncing.
        let gone = loop {
            let d = desired.borrow_and_update().clone();
            match d {
                Desired::Gone(pod) => {
                    self.pod = pod;
                    break true;
                }
                Desired::Present(pod) => {
                    self.pod = pod;
                    if self.pod.metadata.deletion_timestamp.is_some() {
                        break false;
                    }
                }
            }
            self.next_wake = None;
            match Box::pin(self.sync()).await {
                Ok(SyncOutcome::Continue) => {}
                Ok(SyncOutcome::Terminal) => {
                    if self.terminate(false).await.is_ok() {
                        // Done: wait for the deletion.
                        loop {
                            tokio::select! {
                                changed = desired.changed() => if changed.is_err() { return },
                                () = cancel.cancelled() => return,
                            }
                            let d = desired.borrow_and_update().clone();
                            match d {
                                Desired::Gone(pod) => {
                                    self.pod = pod;
                                    break;
                                }
                                Desired::Present(pod)
                                    if pod.metadata.deletion_timestamp.is_some() =>
                                {
                                    self.pod = pod;
                                    break;
                                }
                                Desired::Present(pod) => self.pod = pod,
                            }
                        }
                        let gone = matches!(*desired.borrow(), Desired::Gone(_));
                        self.finish(gone, &cancel).await;
                        return;
                    }
                    self.wake_at(tokio::time::Instant::now() + Duration::from_secs(1));
                }
                Err(e) => {
                    tracing::warn!(uid = %self.uid, error = %e, "pod sync failed; retrying");
                    self.wake_at(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            }
            let resync = tokio::time::Instant::now() + self.ctx.config.resync;
            let until = self.next_wake.map_or(resync, |w| w.min(resync));
            tokio::select! {
                changed = desired.changed() => if changed.is_err() { return },
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(until) => {}
                () = cancel.cancelled() => return,
            }
        };
        // Terminating, then terminated.
        loop {
            match self.terminate(gone).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(uid = %self.uid, error = %e, "stopping the pod failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = cancel.cancelled() => return,
                    }
                }
            }
        }
        self.finish(gone, &cancel).await;
    }

    /// Kills the pod's containers with its grace period and writes the final status.
    async fn terminate(&mut self, gone: bool) -> Result<()> {
        self.probes = PodProbes::default();
        let observed = observe(&self.ctx.cri, &self.uid, &self.ctx.config.node_name).await?;
        let grace = pod_grace(&self.pod);
        kill_pod(&self.ctx, &self.pod, &observed, grace).await?;
        if !gone {
            let observed = observe(&self.ctx.cri, &self.uid, &self.ctx.config.node_name).await?;
            self.reasons.clear();
            self.publish(&observed, true).await?;
        }
        Ok(())
    }

    /// Removes what a deleted pod had, then (unless the object is already gone) deletes the
    /// API object, retrying until both succeed.
    async fn finish(&mut self, gone: bool, cancel: &CancellationToken) {
        loop {
            match self.remove(gone).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(uid = %self.uid, error = %e, "removing the pod failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = cancel.cancelled() => return,
                    }
                }
            }
        }
    }

    async fn remove(&mut self, gone: bool) -> Result<()> {
        let observed = observe(&self.ctx.cri, &self.uid, &self.ctx.config.node_name).await?;
        // Whatever still runs (a deletion that arrived after the pod finished) stops first.
        kill_pod(&self.ctx, &self.pod, &observed, pod_grace(&self.pod)).await?;
        let observed = observe(&self.ctx.cri, &self.uid, &self.ctx.config.node_name).await?;
        remove_pod(&self.ctx, &observed, &self.uid).await?;
        self.ctx.forget_backoff(&self.uid);
        if !gone {
            let pod = self.pod_ref();
            self.ctx.sink.delete_pod(&pod).await.map_err(Error::Api)?;
        }
        tracing::info!(uid = %self.uid, "pod removed");
        Ok(())
    }

    /// Generates the status from `observed` and writes it when it changed.
    pub(crate) async fn publish(&mut self, observed: &ObservedPod, terminal: bool) -> Result<()> {
        let status = {
            let log_dir = log_directory(&self.ctx.config, &self.pod);
            let probes = &self.probes;
            let probe_state = |id: &str| probes.state(id);
            let messages =
                |c: &super::observed::ObservedContainer| termination_message(c, &log_dir);
            let host_ips = self.ctx.config.host_ip_strings();
            let input = StatusInput {
                pod: &self.pod,
                observed,
                reasons: &self.reasons,
                probes: &probe_state,
                messages: &messages,
                host_ips: &host_ips,
                start_time: self.start_time,
                verdict: self.verdict.as_ref(),
                terminal,
                previous: self.last_status.as_ref().or(self.pod.status.as_ref()),
            };
            generate(&input)
        };
        if self.last_status.as_ref() != Some(&status) {
            let pod = self.pod_ref();
            self.ctx
                .sink
                .update_status(&pod, &status)
                .await
                .map_err(Error::Api)?;
            self.last_status = Some(status);
        }
        Ok(())
    }
}
