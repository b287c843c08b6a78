//! The `ResourceQuota` admission plugin: a create is refused when it would
//! take a namespace's usage of a quota over `status.hard`, with upstream's
//! messages, and otherwise charged to `status.used` before the object is
//! stored. The charge is a compare-and-swap write of the quota's status,
//! retried on conflict, so two concurrent creates cannot both take the
//! last unit; the resource quota controller later recounts from the
//! objects themselves (releasing what deletions and failed creates left).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use serde_json::{Value, json};

use super::usage::{self, compute_usage, pod_tracks, quota_applies};
use super::{forbidden, is_core, typed};
use crate::registry::generic::Endpoint;
use crate::registry::quantity::{self, Quantity, ResourceList};
use crate::registry::{Error, ListOptions, ObjectStore, ResourceInfo, Result, WriteOptions, meta};

/// Rounds of re-reading the quotas after a conflicting status write.
const MAX_TRIES: usize = 10;

/// The names whose absence from a container upstream still refuses when a
/// quota limits them (its "backward compatibility requirement").
const MUST_SPECIFY: [&str; 6] = [
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// upstream's pod evaluator `Constraints`: every container must request
/// (or limit) what a matching quota limits among cpu and memory.
fn missing_requests(pod: &Pod, tracked: &[String]) -> Option<String> {
    let required: BTreeSet<&str> = tracked
        .iter()
        .map(String::as_str)
        .filter(|k| MUST_SPECIFY.contains(k))
        .collect();
    if required.is_empty() {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let mut missing: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let res = c.resources.as_ref();
        let requests = quantity::from_openapi(res.and_then(|r| r.requests.as_ref()));
        let limits = quantity::from_openapi(res.and_then(|r| r.limits.as_ref()));
        let has = compute_usage(&requests, &limits);
        for r in &required {
            if !has.contains_key(*r) {
                missing.entry(r).or_default().insert(c.name.as_str());
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().copied().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

/// Keeps the entries of `list` named in `names`.
fn mask(list: &ResourceList, names: &[String]) -> ResourceList {
    list.iter()
        .filter(|(k, _)| names.contains(k))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// A quota to charge: its current object and the usage to write.
struct Charge {
    object: Value,
    used: ResourceList,
}

/// Checks `obj` against every quota of `ns` and charges them (not when `dry_run`).
///
/// # Errors
/// 403 Forbidden `exceeded quota: …`, `failed quota: …` or `status unknown
/// for quota: …` as upstream words them; store errors.
pub(crate) async fn admit(
    objects: &ObjectStore,
    info: &ResourceInfo,
    ns: &str,
    obj: &Value,
    request_name: &str,
    dry_run: bool,
) -> Result<()> {
    let Some(quotas) = objects.table().lookup("", "v1", "resourcequotas") else {
        return Ok(());
    };
    let mut listed = objects
        .list(&quotas, Some(ns), &ListOptions::default())
        .await?
        .items;
    // Most namespaces have no quota: nothing to decode or count then.
    if listed.is_empty() {
        return Ok(());
    }
    let Some(delta) = usage::usage(info, obj, meta::now()) else {
        return Ok(());
    };
    let pod: Option<Pod> = if is_core(info, "pods") {
        Some(typed(obj)?)
    } else {
        None
    };
    let mut charged: BTreeSet<String> = BTreeSet::new();
    for attempt in 0..MAX_TRIES {
        let list = if attempt == 0 {
            std::mem::take(&mut listed)
        } else {
            objects
                .list(&quotas, Some(ns), &ListOptions::default())
                .await?
                .items
        };
        let mut charges = Vec::new();
        for q in list {
            let name = meta::name(&q).to_string();
            if charged.contains(&name) {
                continue;
            }
            let rq: ResourceQuota = typed(&q)?;
            if !quota_applies(&rq.spec.clone().unwrap_or_default(), info, obj) {
                continue;
            }
            let status = rq.status.unwrap_or_default();
            let hard = quantity::from_openapi(status.hard.as_ref());
            let used = quantity::from_openapi(status.used.as_ref());
            let tracked: Vec<String> = hard
                .keys()
                .filter(|k| match pod {
                    Some(_) => pod_tracks(k),
                    None => delta.contains_key(*k),
                })
                .cloned()
                .collect();
            if tracked.is_empty() {
                continue;
            }
            if let Some(why) = pod.as_ref().and_then(|p| missing_requests(p, &tracked)) {
                return Err(forbidden(
                    info,
                    request_name,
                    format!("failed quota: {name}: {why}"),
                ));
            }
            if tracked.iter().any(|k| !used.contains_key(k)) {
                return Err(forbidden(
                    info,
                    request_name,
                    format!(
                        "status unknown for quota: {name}, resources: {}",
                        tracked.join(",")
                    ),
                ));
            }
            let mut new_used = used.clone();
            let mut exceeded = Vec::new();
            for k in &tracked {
                let want = delta.get(k).copied().unwrap_or(Quantity::ZERO);
                let now = used.get(k).copied().unwrap_or(Quantity::ZERO) + want;
                if hard.get(k).is_some_and(|h| now > *h) {
                    exceeded.push(k.clone());
                }
                new_used.insert(k.clone(), now);
            }
            if !exceeded.is_empty() {
                return Err(forbidden(
                    info,
                    request_name,
                    format!(
                        "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                        quantity::pretty(&mask(&delta, &exceeded)),
                        quantity::pretty(&mask(&used, &exceeded)),
                        quantity::pretty(&mask(&hard, &exceeded)),
                    ),
                ));
            }
            charges.push(Charge {
                object: q,
                used: new_used,
            });
        }
        if dry_run || charges.is_empty() {
            return Ok(());
        }
        let mut conflicted = false;
        for c in charges {
            let name = meta::name(&c.object).to_string();
            let mut next = c.object;
            let used: serde_json::Map<String, Value> = c
                .used
                .iter()
                .map(|(k, v)| (k.clone(), json!(v.to_string())))
                .collect();
            next["status"]["used"] = Value::Object(used);
            match objects
                .update_at(
                    Endpoint::Status,
                    &quotas,
                    Some(ns),
                    &name,
                    next,
                    &WriteOptions::default(),
                )
                .await
            {
                Ok(_) => {
                    charged.insert(name);
                }
                Err(Error::Conflict { .. }) => conflicted = true,
                // Deleted meanwhile: it limits nothing any more.
                Err(Error::NotFound { .. }) => {
                    charged.insert(name);
                }
                Err(e) => return Err(e),
            }
        }
        if !conflicted {
            return Ok(());
        }
    }
    Err(forbidden(
        info,
        request_name,
        "failed quota: the quota status kept changing; try again".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_must_ask_for_what_is_limited() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {}, "spec": {"containers": [
            {"name": "b", "resources": {"requests": {"cpu": "1"}}},
            {"name": "a"},
        ]}}))
        .unwrap();
        let tracked = vec![
            "limits.cpu".to_string(),
            "requests.cpu".into(),
            "pods".into(),
        ];
        assert_eq!(
            missing_requests(&pod, &tracked).unwrap(),
            "must specify limits.cpu for: a,b; requests.cpu for: a"
        );
        assert_eq!(missing_requests(&pod, &["pods".into()]), None);
    }
}
