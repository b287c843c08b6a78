//! The Service kind's store hooks: ClusterIP and NodePort allocation, as
//! upstream's Service REST wraps the generic store with its allocators. Each
//! allocated address is claimed by creating the store key
//! `/registry/core/serviceips/<ip>`, each node port by creating
//! `/registry/core/servicenodeports/<port>`, so two concurrent creates can
//! never get the same one; deleting the Service releases them.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::generic::{Claims, HookFuture, ObjectStore, StoreHooks};
use super::{Error, FieldError, Result, meta};

/// The Service kind's allocators (see the module documentation).
#[derive(Debug)]
pub(crate) struct ServiceAllocators;

impl StoreHooks for ServiceAllocators {
    fn before_create<'a>(
        &'a self,
        objects: &'a ObjectStore,
        obj: &'a mut Value,
    ) -> HookFuture<'a, Result<Claims>> {
        Box::pin(async move {
            let mut claims = Claims::default();
            let result = allocate(objects, obj, &mut claims).await;
            settle_on_error(objects, claims, result).await
        })
    }

    fn before_update<'a>(
        &'a self,
        objects: &'a ObjectStore,
        old: &'a Value,
        new: &'a mut Value,
    ) -> HookFuture<'a, Result<Claims>> {
        Box::pin(async move {
            let mut claims = Claims::default();
            let result = reallocate_node_ports(objects, old, new, &mut claims).await;
            settle_on_error(objects, claims, result).await
        })
    }

    fn held(&self, obj: &Value) -> Vec<Vec<u8>> {
        let ip = obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
            .map(ip_key);
        ip.into_iter()
            .chain(node_ports(obj).into_iter().map(node_port_key))
            .collect()
    }
}

/// `claims` when `result` is fine; else releases what was claimed and returns the error.
async fn settle_on_error(
    objects: &ObjectStore,
    claims: Claims,
    result: Result<()>,
) -> Result<Claims> {
    match result {
        Ok(()) => Ok(claims),
        Err(e) => {
            objects.release_claims(claims.claimed).await;
            Err(e)
        }
    }
}

/// A new Service's ClusterIP and node ports.
async fn allocate(objects: &ObjectStore, obj: &mut Value, claims: &mut Claims) -> Result<()> {
    allocate_cluster_ip(objects, obj, claims).await?;
    if !wants_node_ports(obj) {
        return Ok(());
    }
    let owner = owner(obj);
    for i in 0..port_count(obj) {
        assign_node_port(objects, obj, i, &owner, claims).await?;
    }
    Ok(())
}

/// The node port port `index` of `obj` asks for (0: any).
fn requested_node_port(obj: &Value, index: usize) -> i64 {
    obj.pointer(&format!("/spec/ports/{index}/nodePort"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Claims the node port port `index` of `obj` asks for (any free one if none) for `owner`,
/// records the claim and writes the port into the object.
async fn assign_node_port(
    objects: &ObjectStore,
    obj: &mut Value,
    index: usize,
    owner: &str,
    claims: &mut Claims,
) -> Result<()> {
    let requested = requested_node_port(obj, index);
    let port = if requested == 0 {
        claim_free_node_port(objects, owner).await?
    } else {
        claim_node_port(objects, requested, owner, index).await?
    };
    claims.claimed.push(node_port_key(port));
    if let Some(slot) = obj
        .pointer_mut(&format!("/spec/ports/{index}"))
        .and_then(Value::as_object_mut)
    {
        slot.insert("nodePort".into(), json!(port));
    }
    Ok(())
}

fn owner(obj: &Value) -> String {
    format!("{}/{}", meta::namespace(obj), meta::name(obj))
}

fn port_count(obj: &Value) -> usize {
    obj.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

fn ip_key(ip: Ipv4Addr) -> Vec<u8> {
    format!("/registry/core/serviceips/{ip}").into_bytes()
}

fn alloc_error(ip: &str, why: &str) -> Error {
    Error::Invalid {
        kind: "Service".into(),
        group: String::new(),
        name: String::new(),
        causes: vec![FieldError {
            reason: "FieldValueInvalid",
            field: "spec.clusterIPs".into(),
            message: format!(
                "spec.clusterIPs: Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: {why}"
            ),
        }],
    }
}

/// Claims a ClusterIP unless the Service is `ExternalName` or headless.
async fn allocate_cluster_ip(
    objects: &ObjectStore,
    obj: &mut Value,
    claims: &mut Claims,
) -> Result<()> {
    if obj.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
        return Ok(());
    }
    let requested = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if requested == "None" {
        obj["spec"]["clusterIPs"] = json!(["None"]);
        return Ok(());
    }
    let owner = owner(obj);
    let cidr = objects.service_cidr();
    if !requested.is_empty() {
        let ip: Ipv4Addr = requested
            .parse()
            .map_err(|_| alloc_error(&requested, "not a valid IPv4 address"))?;
        if !cidr.contains(ip) {
            return Err(alloc_error(
                &requested,
                "provided IP is not in the valid range",
            ));
        }
        if !objects.claim(&ip_key(ip), &owner).await? {
            return Err(alloc_error(&requested, "provided IP is already allocated"));
        }
        claims.claimed.push(ip_key(ip));
        obj["spec"]["clusterIPs"] = json!([requested]);
        return Ok(());
    }
    let start = u32::from_be_bytes(rand4());
    for i in 0..cidr.size().min(4096) {
        let ip = cidr.nth(start.wrapping_add(i));
        if objects.claim(&ip_key(ip), &owner).await? {
            claims.claimed.push(ip_key(ip));
            obj["spec"]["clusterIP"] = json!(ip.to_string());
            obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
            return Ok(());
        }
    }
    Err(Error::Invalid {
        kind: "Service".into(),
        group: String::new(),
        name: meta::name(obj).to_string(),
        causes: vec![FieldError {
            reason: "FieldValueInvalid",
            field: "spec.clusterIPs".into(),
            message:
                "spec.clusterIPs: Internal error: failed to allocate a serviceIP: range is full"
                    .into(),
        }],
    })
}

/// Claims node port `requested` for port `index` of the Service `owner`.
async fn claim_node_port(
    objects: &ObjectStore,
    requested: i64,
    owner: &str,
    index: usize,
) -> Result<u16> {
    let field = format!("spec.ports[{index}].nodePort");
    let refused = |why: String| Error::Invalid {
        kind: "Service".into(),
        group: String::new(),
        name: owner.rsplit('/').next().unwrap_or_default().to_string(),
        causes: vec![FieldError {
            reason: "FieldValueInvalid",
            message: format!("{field}: Invalid value: {requested}: {why}"),
            field: field.clone(),
        }],
    };
    let port = u16::try_from(requested)
        .ok()
        .filter(|p| NODE_PORTS.contains(p))
        .ok_or_else(|| {
            refused(format!(
                "provided port is not in the valid range. The range of valid ports is {}-{}",
                NODE_PORTS.start(),
                NODE_PORTS.end()
            ))
        })?;
    if objects.claim(&node_port_key(port), owner).await? {
        Ok(port)
    } else {
        Err(refused("provided port is already allocated".into()))
    }
}

/// Claims any free node port for the Service `owner`.
async fn claim_free_node_port(objects: &ObjectStore, owner: &str) -> Result<u16> {
    let span = u32::from(NODE_PORTS.end() - NODE_PORTS.start()) + 1;
    let start = u32::from_be_bytes(rand4());
    for i in 0..span {
        let offset = start.wrapping_add(i) % span;
        let port = NODE_PORTS.start() + u16::try_from(offset).unwrap_or(0);
        if objects.claim(&node_port_key(port), owner).await? {
            return Ok(port);
        }
    }
    Err(Error::Invalid {
        kind: "Service".into(),
        group: String::new(),
        name: owner.rsplit('/').next().unwrap_or_default().to_string(),
        causes: vec![FieldError {
            reason: "FieldValueInvalid",
            field: "spec.ports".into(),
            message: "spec.ports: Internal error: failed to allocate a nodePort: range is full"
                .into(),
        }],
    })
}

/// The node ports of a Service being updated (`old` as stored, `new` as it
/// will be): a port `new` names that `old` did not hold is claimed (refused if
/// taken), a port that names none gets a free one, and a Service that no
/// longer wants node ports (type `ClusterIP` again) drops them, as upstream's
/// Service REST `Update`. What `old` held and `new` does not is released only
/// once the update is stored.
async fn reallocate_node_ports(
    objects: &ObjectStore,
    old: &Value,
    new: &mut Value,
    claims: &mut Claims,
) -> Result<()> {
    let held = node_ports(old);
    if !wants_node_ports(new) {
        if let Some(Value::Array(ports)) = new.pointer_mut("/spec/ports") {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.remove("nodePort");
            }
        }
        claims.released = held.into_iter().map(node_port_key).collect();
        return Ok(());
    }
    let owner = owner(new);
    let mut kept = Vec::new();
    for i in 0..port_count(new) {
        let requested = requested_node_port(new, i);
        match u16::try_from(requested)
            .ok()
            .filter(|p| held.contains(p) && !kept.contains(p))
        {
            Some(port) => kept.push(port),
            None => assign_node_port(objects, new, i, &owner, claims).await?,
        }
    }
    claims.released = held
        .into_iter()
        .filter(|p| !kept.contains(p))
        .map(node_port_key)
        .collect();
    Ok(())
}

/// The node port range, kube-apiserver's default `--service-node-port-range`.
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

fn node_port_key(port: u16) -> Vec<u8> {
    format!("/registry/core/servicenodeports/{port}").into_bytes()
}

/// Whether a Service of this type gets node ports.
fn wants_node_ports(obj: &Value) -> bool {
    match obj.pointer("/spec/type").and_then(Value::as_str) {
        Some("NodePort") => true,
        Some("LoadBalancer") => obj
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

/// The node ports a stored Service holds.
fn node_ports(obj: &Value) -> Vec<u16> {
    if !wants_node_ports(obj) {
        return Vec::new();
    }
    obj.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
                .filter_map(|p| u16::try_from(p).ok())
                .filter(|p| NODE_PORTS.contains(p))
                .collect()
        })
        .unwrap_or_default()
}

fn rand4() -> [u8; 4] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_holds_its_address_and_node_ports() {
        let svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.43.0.7",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 81, "nodePort": 99}]}});
        let held: Vec<String> = ServiceAllocators
            .held(&svc)
            .into_iter()
            .map(|k| String::from_utf8(k).unwrap())
            .collect();
        assert_eq!(
            held,
            [
                "/registry/core/serviceips/10.43.0.7",
                "/registry/core/servicenodeports/30080"
            ]
        );
        let headless =
            json!({"spec": {"clusterIP": "None", "ports": [{"port": 80, "nodePort": 30080}]}});
        assert!(ServiceAllocators.held(&headless).is_empty());
    }
}
