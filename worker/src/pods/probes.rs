//! Probe workers: one task per probe of a running container, with the kubelet's timing
//! (`initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`, thresholds). Startup gates
//! liveness and readiness; results go to the pod worker, which acts on them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::handlers::{Action, Outcome, Target, run};
use crate::runtime::Cri;

/// The probe results of one container instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProbeState {
    /// The startup probe succeeded (or there is none).
    pub(crate) started: bool,
    /// The readiness probe's verdict (true when there is none and the container started).
    pub(crate) ready: bool,
    /// The liveness (or startup) probe failed past its threshold: restart the container.
    pub(crate) failed: Option<String>,
}

/// Probe results of a pod's containers, by container id.
pub(crate) type ProbeResults = Arc<Mutex<HashMap<String, ProbeState>>>;

/// The probe tasks of one pod.
#[derive(Debug, Default)]
pub(crate) struct PodProbes {
    pub(crate) results: ProbeResults,
    tasks: HashMap<String, JoinHandle<()>>,
}

impl Drop for PodProbes {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default).max(0)).unwrap_or(0))
}

impl PodProbes {
    /// The state of a container instance (default: not started, not ready).
    pub(crate) fn state(&self, container_id: &str) -> Option<ProbeState> {
        self.results
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(container_id)
            .cloned()
    }

    /// Starts the probe task of a running container if it has none; stops tasks of
    /// containers not in `running`.
    pub(crate) fn ensure(
        &mut self,
        cri: &Cri,
        running: &[(String, Container)],
        pod_ip: Option<String>,
        wake: &Arc<Notify>,
    ) {
        let keep: Vec<&String> = running.iter().map(|(id, _)| id).collect();
        self.tasks.retain(|id, task| {
            let alive = keep.contains(&id);
            if !alive {
                task.abort();
            }
            alive
        });
        self.results
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| keep.contains(&id));
        for (id, container) in running {
            if self.tasks.contains_key(id) {
                continue;
            }
            let has_startup = container.startup_probe.is_some();
            let has_readiness = container.readiness_probe.is_some();
            self.results
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    id.clone(),
                    ProbeState {
                        started: !has_startup,
                        ready: !has_startup && !has_readiness,
                        failed: None,
                    },
                );
            if container.startup_probe.is_none()
                && container.liveness_probe.is_none()
                && !has_readiness
            {
                continue;
            }
            let task = tokio::spawn(probe_loop(
                cri.clone(),
                id.clone(),
                container.clone(),
                pod_ip.clone(),
                Arc::clone(&self.results),
                Arc::clone(wake),
            ));
            self.tasks.insert(id.clone(), task);
        }
    }
}

struct Counter {
    successes: i32,
    failures: i32,
}

async fn probe_loop(
    cri: Cri,
    id: String,
    container: Container,
    pod_ip: Option<String>,
    results: ProbeResults,
    wake: Arc<Notify>,
) {
    let update = |f: &dyn Fn(&mut ProbeState) -> bool| {
        let changed = results
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&id)
            .is_some_and(f);
        if changed {
            wake.notify_one();
        }
    };
    let target = Target {
        cri: &cri,
        container_id: &id,
        container: &container,
        pod_ip: pod_ip.as_deref(),
    };
    // Startup first: liveness and readiness wait for it.
    if let Some(probe) = &container.startup_probe {
        let passed = run_probe(
            probe,
            &target,
            |ok, msg| {
                if ok {
                    update(&|s| {
                        s.started = true;
                        s.ready = container.readiness_probe.is_none();
                        true
                    });
                } else if let Some(msg) = msg {
                    update(&|s| {
                        s.failed = Some(format!("Startup probe failed: {msg}"));
                        true
                    });
                }
            },
            true,
        )
        .await;
        if !passed {
            return;
        }
    }
    let liveness = container.liveness_probe.clone().map(|p| {
        let target = target.clone();
        let update = &update;
        async move {
            run_probe(
                &p,
                &target,
                |ok, msg| {
                    if !ok && let Some(msg) = msg {
                        update(&|s| {
                            s.failed = Some(format!("Liveness probe failed: {msg}"));
                            true
                        });
                    }
                },
                false,
            )
            .await;
        }
    });
    let readiness = container.readiness_probe.clone().map(|p| {
        let target = target.clone();
        let update = &update;
        async move {
            run_probe(
                &p,
                &target,
                |ok, _| {
                    update(&|s| {
                        let changed = s.ready != ok;
                        s.ready = ok;
                        changed
                    });
                },
                false,
            )
            .await;
        }
    });
    match (liveness, readiness) {
        (Some(l), Some(r)) => {
            tokio::join!(l, r);
        }
        (Some(l), None) => l.await,
        (None, Some(r)) => r.await,
        (None, None) => {}
    }
}

/// Runs one probe forever (or, with `until_success`, until it passes: returns true then, false
/// after the failure threshold). `report(ok, failure_message)` is called when the verdict
/// flips per the thresholds; the message is set when the failure threshold is reached.
async fn run_probe(
    probe: &Probe,
    target: &Target<'_>,
    report: impl Fn(bool, Option<String>),
    until_success: bool,
) -> bool {
    let Some(action) = Action::from_probe(probe) else {
        return true;
    };
    let period = secs(probe.period_seconds, 10).max(Duration::from_secs(1));
    let timeout = secs(probe.timeout_seconds, 1).max(Duration::from_secs(1));
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    tokio::time::sleep(secs(probe.initial_delay_seconds, 0)).await;
    let mut counter = Counter {
        successes: 0,
        failures: 0,
    };
    loop {
        match run(&action, target, timeout).await {
            Outcome::Success => {
                counter.failures = 0;
                counter.successes += 1;
                if counter.successes >= success_threshold {
                    report(true, None);
                    if until_success {
                        return true;
                    }
                }
            }
            Outcome::Failure(message) => {
                counter.successes = 0;
                counter.failures += 1;
                if counter.failures >= failure_threshold {
                    report(false, Some(message));
                    if until_success {
                        return false;
                    }
                    // After a liveness kill the container restarts with a new id and task.
                    counter.failures = 0;
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}
