//! `pods/binding`: upstream's `BindingREST`. A Binding sets a pod's
//! `spec.nodeName` once (409 Conflict if it is already set, the pod is
//! being deleted or still has scheduling gates), merges the Binding's
//! annotations into the pod's, and sets the `PodScheduled=True`
//! condition. Like upstream it writes the storage directly, past the pod
//! strategy's update rules (which forbid changing `spec.nodeName`).

use k8s_openapi::api::core::v1::Binding;
use serde_json::{Value, json};

use super::{CasRetries, ObjectStore, write::parse_rv};
use crate::registry::kinds::update_pod_condition;
use crate::registry::{Error, FieldError, ResourceInfo, Result, meta};
use crate::store::TxnOutcome;

impl ObjectStore {
    /// POST a `v1.Binding` to pod `name` in `ns` (`pods` is the pods
    /// resource). Returns the pod as written (`dry_run`: as it would be).
    ///
    /// # Errors
    /// 400 for a body that is not a Binding of this pod, 422 for a target
    /// that is not a named Node, 404 if the pod is missing, 409 Conflict
    /// when its UID or resourceVersion precondition fails or it cannot be
    /// bound (already bound, being deleted, gated).
    pub async fn bind(
        &self,
        pods: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        body: Value,
        dry_run: bool,
    ) -> Result<Value> {
        let binding: Binding = serde_json::from_value(body).map_err(|e| {
            Error::BadRequest(format!(
                "Binding in version \"v1\" cannot be handled as a Binding: {e}"
            ))
        })?;
        if binding.metadata.name.as_deref().unwrap_or("") != name {
            return Err(Error::BadRequest(
                "name in URL does not match name in Binding object".into(),
            ));
        }
        if let (Some(want), Some(got)) = (ns, binding.metadata.namespace.as_deref())
            && !got.is_empty()
            && got != want
        {
            return Err(Error::BadRequest(format!(
                "the namespace of the object ({got}) does not match the namespace on the request ({want})"
            )));
        }
        let target = &binding.target;
        let mut causes = Vec::new();
        let kind = target.kind.as_deref().unwrap_or("");
        if !kind.is_empty() && kind != "Node" {
            causes.push(FieldError {
                reason: "FieldValueNotSupported",
                field: "target.kind".into(),
                message: format!(
                    "target.kind: Unsupported value: {kind:?}: supported values: \"Node\", \"<empty>\""
                ),
            });
        }
        let node = target.name.as_deref().unwrap_or("");
        if node.is_empty() {
            causes.push(FieldError::required("target.name", ""));
        }
        if !causes.is_empty() {
            return Err(Error::Invalid {
                kind: "Binding".into(),
                group: String::new(),
                name: name.to_string(),
                causes,
            });
        }
        let want_uid = binding.metadata.uid.as_deref().filter(|u| !u.is_empty());
        let want_rv = parse_rv(binding.metadata.resource_version.as_deref())?;
        let annotations = binding.metadata.annotations.unwrap_or_default();
        let conflict = |message: String| Error::Conflict {
            group: String::new(),
            resource: "pods/binding".into(),
            name: name.to_string(),
            message: format!("Operation cannot be fulfilled on pods/binding {name:?}: {message}"),
        };
        let key = pods.key(ns, name);
        let mut retries = CasRetries::new();
        loop {
            let Some(kv) = self.get_kv(pods, ns, name).await? else {
                return Err(Self::not_found(pods, name));
            };
            let mut pod = Self::decode(&kv)?;
            let uid = meta::meta_str(&pod, "uid").unwrap_or("").to_string();
            if let Some(want) = want_uid.filter(|w| *w != uid) {
                return Err(Error::Conflict {
                    group: String::new(),
                    resource: "pods".into(),
                    name: name.to_string(),
                    message: format!(
                        "Operation cannot be fulfilled on pods {name:?}: Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                    ),
                });
            }
            if let Some(want) = want_rv.filter(|r| *r != kv.mod_revision) {
                return Err(Error::Conflict {
                    group: String::new(),
                    resource: "pods".into(),
                    name: name.to_string(),
                    message: format!(
                        "Operation cannot be fulfilled on pods {name:?}: Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    ),
                });
            }
            if meta::meta_str(&pod, "deletionTimestamp").is_some() {
                return Err(conflict(format!(
                    "pod {name} is being deleted, cannot be assigned to a host"
                )));
            }
            let bound = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !bound.is_empty() {
                return Err(conflict(format!(
                    "pod {name} is already assigned to node {bound:?}"
                )));
            }
            let gated = pod
                .pointer("/spec/schedulingGates")
                .and_then(Value::as_array)
                .is_some_and(|g| !g.is_empty());
            if gated {
                return Err(conflict(format!(
                    "pod {name} has non-empty .spec.schedulingGates"
                )));
            }
            pod["spec"]["nodeName"] = Value::String(node.to_string());
            if !annotations.is_empty()
                && let Some(m) = meta::metadata_mut(&mut pod)
            {
                let a = m.entry("annotations").or_insert_with(|| json!({}));
                if !a.is_object() {
                    *a = json!({});
                }
                if let Some(a) = a.as_object_mut() {
                    for (k, v) in &annotations {
                        a.insert(k.clone(), Value::String(v.clone()));
                    }
                }
            }
            update_pod_condition(&mut pod, "PodScheduled", "True", None, None);
            if dry_run {
                return Ok(pod);
            }
            let stored = Self::encode_stored(&pod)?;
            match self
                .store
                .update(&key, &stored.bytes, kv.mod_revision)
                .await?
            {
                TxnOutcome::Committed { revision, .. } => {
                    meta::set_resource_version(&mut pod, revision);
                    self.keep_served_splice(&key, revision, &stored);
                    return Ok(pod);
                }
                TxnOutcome::Failed { current } => {
                    let won = current.map(|c| c.mod_revision);
                    if !retries.lost(pods, name, kv.mod_revision, won).await {
                        return Err(conflict("the pod changed too often; try again".into()));
                    }
                }
            }
        }
    }
}
