//! `DefaultTolerationSeconds`: a pod created without a toleration for the
//! `node.kubernetes.io/not-ready` or `node.kubernetes.io/unreachable`
//! NoExecute taint gets one for `--default-not-ready-toleration-seconds`
//! (`--default-unreachable-toleration-seconds`), 300 s by default, so that
//! its pods leave a dead node five minutes after the node lifecycle
//! controller taints it.

use k8s_openapi::api::core::v1::Toleration;
use serde_json::Value;

use super::{AdmissionOptions, typed};
use crate::registry::{Error, Result};

/// The taint the node lifecycle controller puts on a node whose Ready condition is False.
pub(crate) const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint the node lifecycle controller puts on a node whose Ready condition is Unknown.
pub(crate) const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Whether `t` tolerates the NoExecute taint `key` (upstream's check: the
/// key matches or is empty, the effect is NoExecute or empty).
fn covers(t: &Toleration, key: &str) -> bool {
    let k = t.key.as_deref().unwrap_or("");
    let effect = t.effect.as_deref().unwrap_or("");
    (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
}

/// Adds the default tolerations to a pod's `spec.tolerations`, decoding and writing back that
/// list alone (a pod without `spec` is left as it is).
///
/// # Errors
/// 400 on tolerations that do not decode.
pub(crate) fn admit_pod(options: AdmissionOptions, pod: &mut Value) -> Result<()> {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let mut tolerations: Vec<Toleration> = match spec.get("tolerations") {
        Some(list) if !list.is_null() => typed(list)?,
        _ => Vec::new(),
    };
    if default_toleration_seconds(options, &mut tolerations) {
        let list = serde_json::to_value(&tolerations)
            .map_err(|e| Error::BadRequest(format!("encoding the admitted tolerations: {e}")))?;
        spec.insert("tolerations".into(), list);
    }
    Ok(())
}

/// Adds the default tolerations `tolerations` lack; whether it added any.
fn default_toleration_seconds(opts: AdmissionOptions, tolerations: &mut Vec<Toleration>) -> bool {
    let before = tolerations.len();
    for (key, seconds) in [
        (TAINT_NOT_READY, opts.not_ready_toleration_seconds),
        (TAINT_UNREACHABLE, opts.unreachable_toleration_seconds),
    ] {
        if !tolerations.iter().any(|t| covers(t, key)) {
            tolerations.push(Toleration {
                key: Some(key.to_string()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(seconds),
                value: None,
            });
        }
    }
    tolerations.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn admit(mut pod: Value) -> Value {
        admit_pod(AdmissionOptions::default(), &mut pod).unwrap();
        pod
    }

    #[test]
    fn adds_both_unless_tolerated() {
        let pod = admit(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        );
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        let own = admit(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": [
            {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}}),
        );
        let t = own["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["tolerationSeconds"], 5);
        let all = admit(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}}),
        );
        assert_eq!(all["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }
}
