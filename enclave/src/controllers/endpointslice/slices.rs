//! Writing a set of EndpointSlices for one owner (a Service, or mirrored
//! Endpoints), shared by the endpointslice and mirroring controllers, in
//! the spirit of upstream's reconciler: endpoints stay in the slice they
//! are in, new ones fill the existing slices of their ports and address
//! type up to the per-slice maximum before new slices are made, emptied
//! slices go, and an owner with no endpoints keeps one placeholder slice.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::controllers::Error;
use crate::controllers::typed::Typed;
use crate::registry::generic::DeleteOptions;

/// What the owner's slices carry.
#[derive(Debug, Clone)]
pub(crate) struct SliceOwner {
    /// `generateName` of new slices (`<owner>-`).
    pub(crate) generate_name: String,
    /// Every label of the owner's slices (service name and managed-by included).
    pub(crate) labels: BTreeMap<String, String>,
    /// The controller reference to the owner.
    pub(crate) owner: OwnerReference,
    /// The address type of the placeholder slice an owner without
    /// endpoints keeps; `None`: no placeholder (mirrored Endpoints).
    pub(crate) placeholder_type: Option<String>,
}

/// Endpoints sharing ports and address type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Group {
    /// `IPv4` or `IPv6`.
    pub(crate) address_type: String,
    /// The ports, in the owner's order.
    pub(crate) ports: Vec<EndpointPort>,
    /// The endpoints (non-empty).
    pub(crate) endpoints: Vec<Endpoint>,
}

/// A port as a comparable tuple: name, number, protocol, appProtocol.
type PortKey = (Option<String>, Option<i32>, Option<String>, Option<String>);

fn port_set(ports: &[EndpointPort]) -> BTreeSet<PortKey> {
    ports
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.port,
                p.protocol.clone(),
                p.app_protocol.clone(),
            )
        })
        .collect()
}

fn address(e: &Endpoint) -> String {
    e.addresses.first().cloned().unwrap_or_default()
}

/// Adds `e` to `groups`, in the group of its ports and address type.
pub(crate) fn add_to_group(
    groups: &mut Vec<Group>,
    address_type: &str,
    ports: Vec<EndpointPort>,
    e: Endpoint,
) {
    let key = port_set(&ports);
    match groups
        .iter_mut()
        .find(|g| g.address_type == address_type && port_set(&g.ports) == key)
    {
        Some(g) => g.endpoints.push(e),
        None => groups.push(Group {
            address_type: address_type.to_string(),
            ports,
            endpoints: vec![e],
        }),
    }
}

/// Brings `existing` (the owner's slices) in line with `desired`, at most
/// `max` endpoints per slice.
///
/// # Errors
/// The first failed write.
pub(crate) async fn reconcile(
    slices: &Typed<EndpointSlice>,
    ns: &str,
    existing: Vec<EndpointSlice>,
    desired: Vec<Group>,
    owner: &SliceOwner,
    max: usize,
) -> Result<(), Error> {
    let max = max.max(1);
    let existing_count = existing.len();
    let mut unused = existing;
    let mut updates: Vec<EndpointSlice> = Vec::new();
    let mut creates: Vec<EndpointSlice> = Vec::new();
    let mut deletes: Vec<EndpointSlice> = Vec::new();
    let owners = Some(vec![owner.owner.clone()]);
    for group in desired {
        let mut want: BTreeMap<String, Endpoint> = group
            .endpoints
            .into_iter()
            .map(|e| (address(&e), e))
            .collect();
        let key = port_set(&group.ports);
        let (mine, rest): (Vec<_>, Vec<_>) = unused.into_iter().partition(|s| {
            s.address_type == group.address_type
                && port_set(s.ports.as_deref().unwrap_or_default()) == key
        });
        unused = rest;
        let mut kept: Vec<(EndpointSlice, bool)> = Vec::new();
        for mut s in mine {
            let before = s.endpoints.clone();
            s.endpoints = before
                .iter()
                .filter_map(|e| want.remove(&address(e)))
                .collect();
            let mut changed = s.endpoints != before;
            if s.metadata.labels.as_ref() != Some(&owner.labels)
                || s.metadata.owner_references != owners
            {
                s.metadata.labels = Some(owner.labels.clone());
                s.metadata.owner_references = owners.clone();
                changed = true;
            }
            if s.ports.as_deref() != Some(group.ports.as_slice()) {
                s.ports = Some(group.ports.clone());
                changed = true;
            }
            kept.push((s, changed));
        }
        let mut remaining: Vec<Endpoint> = want.into_values().collect();
        // Fill the fullest slices first, as upstream packs them.
        kept.sort_by_key(|(s, _)| std::cmp::Reverse(s.endpoints.len()));
        for (s, changed) in &mut kept {
            while s.endpoints.len() < max && !remaining.is_empty() {
                s.endpoints.push(remaining.remove(0));
                *changed = true;
            }
        }
        for chunk in remaining.chunks(max) {
            creates.push(EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(owner.generate_name.clone()),
                    namespace: Some(ns.to_string()),
                    labels: Some(owner.labels.clone()),
                    owner_references: owners.clone(),
                    ..Default::default()
                },
                address_type: group.address_type.clone(),
                endpoints: chunk.to_vec(),
                ports: Some(group.ports.clone()),
            });
        }
        for (s, changed) in kept {
            if s.endpoints.is_empty() {
                deletes.push(s);
            } else if changed {
                updates.push(s);
            }
        }
    }
    deletes.extend(unused);
    if let Some(placeholder_type) = owner
        .placeholder_type
        .as_ref()
        .filter(|_| existing_count == deletes.len() && creates.is_empty())
    {
        // No endpoints at all: one empty placeholder slice stays.
        let is_placeholder = |s: &EndpointSlice| {
            s.endpoints.is_empty()
                && s.ports.as_ref().is_none_or(Vec::is_empty)
                && s.address_type == *placeholder_type
        };
        match deletes.iter().position(is_placeholder) {
            Some(i) => {
                let mut s = deletes.swap_remove(i);
                if s.metadata.labels.as_ref() != Some(&owner.labels)
                    || s.metadata.owner_references != owners
                {
                    s.metadata.labels = Some(owner.labels.clone());
                    s.metadata.owner_references = owners.clone();
                    updates.push(s);
                }
            }
            None => creates.push(EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(owner.generate_name.clone()),
                    namespace: Some(ns.to_string()),
                    labels: Some(owner.labels.clone()),
                    owner_references: owners.clone(),
                    ..Default::default()
                },
                address_type: placeholder_type.clone(),
                endpoints: Vec::new(),
                ports: Some(Vec::new()),
            }),
        }
    }
    for s in creates {
        slices.create(ns, &s).await?;
    }
    for s in updates {
        slices.replace(&s).await?;
    }
    for s in deletes {
        let opts = DeleteOptions {
            uid: s.metadata.uid.clone(),
            ..Default::default()
        };
        slices
            .delete(ns, s.metadata.name.as_deref().unwrap_or(""), &opts)
            .await?;
    }
    Ok(())
}
