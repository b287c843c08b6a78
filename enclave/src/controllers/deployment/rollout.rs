//! Rolling out (upstream `deployment/rolling.go`, `recreate.go` and
//! `sync.go`): scaling ReplicaSets for the strategy, proportional scaling,
//! pruning old ReplicaSets and writing status.

use serde_json::{Value, json};

use super::revision::{
    DESIRED_REPLICAS, replicas_annotations_need_update, revision, set_replicas_annotations,
};
use super::status::{self, PAUSED, RESUMED, TIMED_OUT, has_progress_deadline, new_condition};
use super::strategy::{is_rolling, max_surge, max_unavailable, proportion, replicas};
use super::{Rollout, SCALING_REPLICA_SET};
use crate::controllers::Error;
use crate::controllers::client::{annotation, by_creation, int, is_deleting, text, uid};
use crate::controllers::events::EventType;
use crate::controllers::owner::is_controlled_by;
use crate::controllers::runtime::Action;
use crate::registry::generic::Propagation;
use crate::registry::meta;

impl Rollout<'_> {
    /// Indexes of ReplicaSets with replicas (upstream's `FilterActiveReplicaSets`).
    fn active(&self, indexes: &[usize]) -> Vec<usize> {
        indexes
            .iter()
            .copied()
            .filter(|i| replicas(&self.sets[*i]) > 0)
            .collect()
    }

    /// upstream's `scaleReplicaSet`: sets the size and the replica
    /// annotations. Returns whether the size changed.
    async fn scale_rs(&mut self, i: usize, size: i64) -> Result<bool, Error> {
        let desired = replicas(&self.d);
        let max = desired + max_surge(&self.d);
        let rs = &self.sets[i];
        let resize = replicas(rs) != size;
        if !resize && !replicas_annotations_need_update(rs, desired, max) {
            return Ok(false);
        }
        let mut next = rs.clone();
        next["spec"]["replicas"] = json!(size);
        set_replicas_annotations(&mut next, desired, max);
        tracing::info!(
            deployment = meta::name(&self.d),
            replicaset = meta::name(rs),
            from = replicas(rs),
            to = size,
            "scaling replica set"
        );
        let from = replicas(rs);
        self.sets[i] = self.c.replicasets.replace(next).await?;
        if resize {
            let direction = if from < size { "up" } else { "down" };
            let message = format!(
                "Scaled {direction} replica set {} from {from} to {size}",
                meta::name(&self.sets[i])
            );
            self.c
                .events
                .record(&self.d, EventType::Normal, SCALING_REPLICA_SET, &message)
                .await;
        }
        Ok(resize)
    }

    /// upstream's `scaleReplicaSetAndRecordEvent`: only when the size changes.
    async fn scale_if_needed(&mut self, i: usize, size: i64) -> Result<bool, Error> {
        if replicas(&self.sets[i]) == size {
            return Ok(false);
        }
        self.scale_rs(i, size).await
    }

    /// upstream's `isScalingEvent`: an active ReplicaSet was sized for
    /// another `spec.replicas`.
    pub(super) async fn is_scaling_event(&mut self) -> Result<bool, Error> {
        let new = self.sync_new(false).await?;
        let mut all = self.old_indexes(new);
        all.extend(new);
        let want = replicas(&self.d).to_string();
        Ok(self
            .active(&all)
            .iter()
            .any(|i| annotation(&self.sets[*i], DESIRED_REPLICAS).is_some_and(|d| d != want)))
    }

    /// upstream's `sync`: scale (proportionally while rolling), prune old
    /// ReplicaSets when paused, write status.
    pub(super) async fn sync_scale(&mut self) -> Result<Action, Error> {
        let new = self.sync_new(false).await?;
        let old = self.old_indexes(new);
        self.scale(new, &old).await?;
        if self.d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
            self.cleanup(&old).await?;
        }
        self.sync_status(new).await?;
        Ok(Action::await_change())
    }

    /// upstream's `scale`.
    async fn scale(&mut self, new: Option<usize>, old: &[usize]) -> Result<(), Error> {
        let want = replicas(&self.d);
        // One active (or, with none, the newest) ReplicaSet takes it all.
        let mut all = old.to_vec();
        all.extend(new);
        let active = self.active(&all);
        let only = match active.len() {
            0 => new.or_else(|| {
                old.iter()
                    .copied()
                    .max_by(|a, b| by_creation(&self.sets[*a], &self.sets[*b]))
            }),
            1 => active.first().copied(),
            _ => None,
        };
        if let Some(i) = only {
            self.scale_if_needed(i, want).await?;
            return Ok(());
        }
        if new.is_some_and(|n| self.is_saturated(n)) {
            for i in self.active(old) {
                self.scale_if_needed(i, 0).await?;
            }
            return Ok(());
        }
        if !is_rolling(&self.d) {
            return Ok(());
        }
        let current: i64 = active.iter().map(|i| replicas(&self.sets[*i])).sum();
        let allowed = if want > 0 {
            want + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - current;
        let mut order = active.clone();
        if to_add > 0 {
            // Largest first, newer first among equals.
            order.sort_by(|a, b| {
                let (ra, rb) = (&self.sets[*a], &self.sets[*b]);
                replicas(rb)
                    .cmp(&replicas(ra))
                    .then_with(|| by_creation(rb, ra))
            });
        } else {
            // Largest first, older first among equals.
            order.sort_by(|a, b| {
                let (ra, rb) = (&self.sets[*a], &self.sets[*b]);
                replicas(rb)
                    .cmp(&replicas(ra))
                    .then_with(|| by_creation(ra, rb))
            });
        }
        let mut added = 0;
        let mut sizes: Vec<(usize, i64)> = Vec::with_capacity(order.len());
        for i in &order {
            let rs = &self.sets[*i];
            let p = if to_add != 0 {
                proportion(rs, &self.d, to_add, added)
            } else {
                0
            };
            added += p;
            sizes.push((*i, replicas(rs) + p));
        }
        // What rounding left over goes to the largest.
        if to_add != 0
            && let Some(first) = sizes.first_mut()
        {
            first.1 = (first.1 + to_add - added).max(0);
        }
        for (i, size) in sizes {
            self.scale_rs(i, size).await?;
        }
        Ok(())
    }

    /// upstream's `IsSaturated`: the new ReplicaSet has all replicas, available.
    fn is_saturated(&self, i: usize) -> bool {
        let rs = &self.sets[i];
        let want = replicas(&self.d);
        annotation(rs, DESIRED_REPLICAS) == Some(want.to_string().as_str())
            && replicas(rs) == want
            && int(rs, "/status/availableReplicas") == want
    }

    /// upstream's `rolloutRecreate`: old ReplicaSets to 0, wait until
    /// their pods are gone, then the new one to `spec.replicas`.
    pub(super) async fn rollout_recreate(&mut self) -> Result<Action, Error> {
        let new = self.sync_new(false).await?;
        let old = self.old_indexes(new);
        let mut scaled = false;
        for i in self.active(&old) {
            scaled |= self.scale_if_needed(i, 0).await?;
        }
        if scaled {
            return self.sync_rollout_status(new).await;
        }
        if self.old_pods_running(&old).await? {
            return self.sync_rollout_status(new).await;
        }
        let new = match new {
            Some(n) => n,
            None => match self.sync_new(true).await? {
                Some(n) => n,
                None => return self.sync_rollout_status(None).await,
            },
        };
        let want = replicas(&self.d);
        self.scale_if_needed(new, want).await?;
        let old = self.old_indexes(Some(new));
        if status::is_complete(&self.d, self.d.get("status").unwrap_or(&Value::Null)) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(Some(new)).await
    }

    /// upstream's `oldPodsRunning`: an old ReplicaSet still reports pods,
    /// or one of its pods has not finished.
    async fn old_pods_running(&self, old: &[usize]) -> Result<bool, Error> {
        if old
            .iter()
            .any(|i| int(&self.sets[*i], "/status/replicas") > 0)
        {
            return Ok(true);
        }
        let pods = self.c.pods.list(meta::namespace(&self.d)).await?;
        Ok(pods.iter().any(|p| {
            let phase = text(p, "/status/phase");
            phase != "Failed"
                && phase != "Succeeded"
                && old.iter().any(|i| is_controlled_by(p, uid(&self.sets[*i])))
        }))
    }

    /// upstream's `rolloutRolling`.
    pub(super) async fn rollout_rolling(&mut self) -> Result<Action, Error> {
        let Some(new) = self.sync_new(true).await? else {
            return self.sync_rollout_status(None).await;
        };
        if self.reconcile_new(new).await? {
            return self.sync_rollout_status(Some(new)).await;
        }
        if self.reconcile_old(new).await? {
            return self.sync_rollout_status(Some(new)).await;
        }
        if status::is_complete(&self.d, self.d.get("status").unwrap_or(&Value::Null)) {
            let old = self.old_indexes(Some(new));
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(Some(new)).await
    }

    /// upstream's `reconcileNewReplicaSet`.
    async fn reconcile_new(&mut self, new: usize) -> Result<bool, Error> {
        let want = replicas(&self.d);
        let have = replicas(&self.sets[new]);
        if have == want {
            return Ok(false);
        }
        if have > want {
            return self.scale_if_needed(new, want).await;
        }
        let size = {
            let all: Vec<&Value> = self.sets.iter().collect();
            super::strategy::new_rs_new_replicas(&self.d, &all, &self.sets[new])
        };
        self.scale_if_needed(new, size).await
    }

    /// upstream's `reconcileOldReplicaSets`: scale old ReplicaSets down as
    /// far as maxUnavailable allows, unhealthy replicas first.
    async fn reconcile_old(&mut self, new: usize) -> Result<bool, Error> {
        let old = self.active(&self.old_indexes(Some(new)));
        let old_pods: i64 = old.iter().map(|i| replicas(&self.sets[*i])).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods: i64 = self.sets.iter().map(replicas).sum();
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let new_rs = &self.sets[new];
        let new_unavailable = replicas(new_rs) - int(new_rs, "/status/availableReplicas");
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // Unhealthy replicas first: they do not count as available anyway.
        let mut by_age = old.clone();
        by_age.sort_by(|a, b| by_creation(&self.sets[*a], &self.sets[*b]));
        let mut cleaned = 0;
        for i in &by_age {
            if cleaned >= max_scaled_down {
                break;
            }
            let rs = &self.sets[*i];
            let (size, available) = (replicas(rs), int(rs, "/status/availableReplicas"));
            if size == 0 || available == size {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(size - available);
            if down <= 0 {
                continue;
            }
            self.scale_if_needed(*i, size - down).await?;
            cleaned += down;
        }
        // Then healthy ones, as far as availability allows.
        let available: i64 = self
            .sets
            .iter()
            .map(|rs| int(rs, "/status/availableReplicas"))
            .sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for i in &by_age {
                if scaled >= total {
                    break;
                }
                let size = replicas(&self.sets[*i]);
                if size == 0 {
                    continue;
                }
                let down = size.min(total - scaled);
                self.scale_if_needed(*i, size - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    /// upstream's `cleanupDeployment`: deletes the oldest ReplicaSets
    /// beyond `revisionHistoryLimit` that are scaled to 0 and settled.
    async fn cleanup(&mut self, old: &[usize]) -> Result<(), Error> {
        let Some(limit) = self
            .d
            .pointer("/spec/revisionHistoryLimit")
            .and_then(Value::as_i64)
        else {
            return Ok(());
        };
        let mut cleanable: Vec<usize> = old
            .iter()
            .copied()
            .filter(|i| !is_deleting(&self.sets[*i]))
            .collect();
        let surplus = i64::try_from(cleanable.len()).unwrap_or(i64::MAX) - limit;
        if surplus <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| {
            let (ra, rb) = (&self.sets[*a], &self.sets[*b]);
            revision(ra)
                .cmp(&revision(rb))
                .then_with(|| by_creation(ra, rb))
        });
        let mut gone = Vec::new();
        for i in cleanable
            .into_iter()
            .take(usize::try_from(surplus).unwrap_or(0))
        {
            let rs = &self.sets[i];
            if int(rs, "/status/replicas") != 0
                || replicas(rs) != 0
                || int(rs, "/metadata/generation") > int(rs, "/status/observedGeneration")
            {
                continue;
            }
            tracing::info!(
                deployment = meta::name(&self.d),
                replicaset = meta::name(rs),
                "deleting old replica set"
            );
            self.c
                .replicasets
                .delete(
                    meta::namespace(rs),
                    meta::name(rs),
                    Some(uid(rs)),
                    Propagation::Background,
                )
                .await?;
            gone.push(i);
        }
        // Indexes shift once removed; the callers are done with them.
        gone.sort_unstable();
        for i in gone.into_iter().rev() {
            self.sets.remove(i);
        }
        Ok(())
    }

    /// upstream's `syncDeploymentStatus`: counts and Available only.
    async fn sync_status(&mut self, new: Option<usize>) -> Result<(), Error> {
        let new_rs = new.and_then(|i| self.sets.get(i));
        let all: Vec<&Value> = self.sets.iter().collect();
        let status = status::calculate(&self.d, &all, new_rs);
        self.write_status(status).await
    }

    /// upstream's `syncRolloutStatus`: counts, Available and Progressing,
    /// and a requeue for the progress deadline.
    async fn sync_rollout_status(&mut self, new: Option<usize>) -> Result<Action, Error> {
        let new_rs = new.and_then(|i| self.sets.get(i));
        let all: Vec<&Value> = self.sets.iter().collect();
        let (status, requeue) = status::rollout_status(&self.d, &all, new_rs);
        self.write_status(status).await?;
        Ok(requeue.map_or_else(Action::await_change, Action::requeue))
    }

    /// upstream's `syncStatusOnly` (a deployment being deleted).
    pub(super) async fn sync_status_only(&mut self) -> Result<Action, Error> {
        let new = self.sync_new(false).await?;
        self.sync_status(new).await?;
        Ok(Action::await_change())
    }

    /// upstream's `checkPausedConditions`: Progressing becomes Unknown
    /// with `DeploymentPaused` while paused and `DeploymentResumed` after.
    pub(super) async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if !has_progress_deadline(&self.d) {
            return Ok(());
        }
        let mut st = self.d.get("status").cloned().unwrap_or_else(|| json!({}));
        let reason = status::condition(&st, "Progressing").map(|c| text(c, "/reason").to_string());
        if reason.as_deref() == Some(TIMED_OUT) {
            return Ok(());
        }
        let paused = self.d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
        let paused_cond = reason.as_deref() == Some(PAUSED);
        let cond = if paused && !paused_cond {
            new_condition("Progressing", "Unknown", PAUSED, "Deployment is paused")
        } else if !paused && paused_cond {
            new_condition("Progressing", "Unknown", RESUMED, "Deployment is resumed")
        } else {
            return Ok(());
        };
        status::set_condition(&mut st, cond);
        self.write_status(st).await
    }
}
