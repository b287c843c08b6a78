//! VolumeBinding, as far as this control plane has volumes: a pod's
//! PersistentVolumeClaims must exist, not be terminating, and be bound.
//! While PersistentVolumeClaims are not served at all the plugin skips,
//! so pods with claims schedule as if they had none. Waiting for
//! first-consumer binding, dynamic provisioning and the volume's node
//! affinity need PersistentVolumes and StorageClasses, which are not
//! served yet.

use crate::scheduler::framework::{Ctx, CycleState, Plugin, PreFilter, Status, events};

/// The plugin.
#[derive(Debug)]
pub(crate) struct VolumeBinding;

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }
    fn events(&self) -> u32 {
        events::CLAIM | events::NODE_ADD | events::NODE_LABEL
    }
    fn pre_filter(&self, cx: &Ctx<'_>, _state: &mut CycleState) -> PreFilter {
        let pod = cx.pod;
        if pod.claims.is_empty() {
            return PreFilter::Skip;
        }
        let mut unbound = false;
        for name in &pod.claims {
            match cx.listers.claim(&pod.namespace, name) {
                Err(()) => return PreFilter::Skip,
                Ok(None) => {
                    return PreFilter::Reject(Status::unresolvable(format!(
                        "persistentvolumeclaim \"{name}\" not found"
                    )));
                }
                Ok(Some(c)) if c.deleting => {
                    return PreFilter::Reject(Status::unresolvable(format!(
                        "persistentvolumeclaim \"{name}\" is being deleted"
                    )));
                }
                Ok(Some(c)) => unbound |= !c.bound,
            }
        }
        if unbound {
            return PreFilter::Reject(Status::unresolvable(
                "pod has unbound immediate PersistentVolumeClaims",
            ));
        }
        PreFilter::Skip
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::listers::{ListerKind, Listers};
    use crate::scheduler::node_info::test_nodes::sized;
    use crate::scheduler::plugins::testing::{cache_of, filter_all};
    use crate::scheduler::pod_info::test_pods::pod;
    use serde_json::json;

    #[test]
    fn claims_must_exist_and_be_bound_when_served() {
        let cache = cache_of(&[sized("a", "1", "1Gi")]);
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"volumes": [
            {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}));
        let mut listers = Listers::default();
        assert!(
            filter_all(&VolumeBinding, &p, &cache, &listers)[0].is_ok(),
            "not served: skipped"
        );
        listers.serve_claims();
        let r = filter_all(&VolumeBinding, &p, &cache, &listers);
        assert_eq!(
            r[0].as_ref().unwrap_err().message(),
            "persistentvolumeclaim \"data\" not found"
        );
        let claim = ListerKind::Claims.decode(&json!({"metadata": {"name": "data"}}));
        listers.apply(ListerKind::Claims, "default", "data", claim);
        let r = filter_all(&VolumeBinding, &p, &cache, &listers);
        assert_eq!(
            r[0].as_ref().unwrap_err().message(),
            "pod has unbound immediate PersistentVolumeClaims"
        );
        let bound = ListerKind::Claims
            .decode(&json!({"metadata": {"name": "data"}, "status": {"phase": "Bound"}}));
        listers.apply(ListerKind::Claims, "default", "data", bound);
        assert!(filter_all(&VolumeBinding, &p, &cache, &listers)[0].is_ok());
    }
}
