//! The Pod Security Standards checks (upstream's
//! `pod-security-admission/policy`), over a pod's JSON metadata and spec.
//! Each returns `None` when the pod passes, or its forbidden reason and
//! detail, worded as upstream's. [`evaluate`] runs the checks of a level in
//! upstream's order: baseline checks alphabetically by id, then (restricted)
//! the restricted checks or (baseline) the baseline checks a restricted one
//! supersedes.

use std::collections::BTreeSet;

use serde_json::Value;

use super::Level;

/// A failed check: upstream's `ForbiddenReason` and `ForbiddenDetail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Short reason, e.g. `privileged`.
    pub reason: String,
    /// Detail, e.g. `container "c" must not set securityContext.privileged=true`.
    pub detail: String,
}

type Check = fn(&Value, &Value) -> Option<Violation>;

fn v(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail: detail.into(),
    })
}

fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let inner: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("\"{}\"", inner.join("\", \""))
}

fn pluralize<'a>(singular: &'a str, plural: &'a str, n: usize) -> &'a str {
    if n == 1 { singular } else { plural }
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// Every container (init, regular, ephemeral), as upstream's `visitContainers`.
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |k| {
            spec.get(k)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
        })
}

fn name(c: &Value) -> String {
    c.get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn sc<'a>(obj: &'a Value, ptr: &str) -> Option<&'a Value> {
    obj.pointer(&format!("/securityContext{ptr}"))
        .filter(|v| !v.is_null())
}

fn allow_privilege_escalation(_m: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = containers(spec)
        .filter(|c| sc(c, "/allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false))
        .map(name)
        .collect();
    if bad.is_empty() {
        None
    } else {
        {
            v(
                "allowPrivilegeEscalation != false",
                format!(
                    "{} must set securityContext.allowPrivilegeEscalation=false",
                    containers_phrase(&bad)
                ),
            )
        }
    }
}

fn app_armor_profile(meta: &Value, spec: &Value) -> Option<Violation> {
    const PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
    let mut bad = Vec::new();
    if let Some(a) = meta.get("annotations").and_then(Value::as_object) {
        for (k, val) in a {
            let p = val.as_str().unwrap_or("");
            let allowed = p.is_empty() || p == "runtime/default" || p.starts_with("localhost/");
            if k.starts_with(PREFIX) && !allowed {
                bad.push(format!("{k}={p:?}"));
            }
        }
    }
    let field_bad =
        |o: &Value| sc(o, "/appArmorProfile/type").and_then(Value::as_str) == Some("Unconfined");
    if field_bad(spec) {
        bad.push("pod=\"Unconfined\"".to_string());
    }
    for c in containers(spec) {
        if field_bad(c) {
            bad.push(format!("container {:?}=\"Unconfined\"", name(c)));
        }
    }
    if bad.is_empty() {
        return None;
    }
    bad.sort();
    v(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            bad.len(),
        ),
        bad.join(", "),
    )
}

const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_capabilities(c: &Value) -> Vec<String> {
    crate::registry::meta::string_list(sc(c, "/capabilities/add"))
}

fn capabilities_baseline(_m: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        let extra: Vec<String> = added_capabilities(c)
            .into_iter()
            .filter(|x| !BASELINE_CAPABILITIES.contains(&x.as_str()))
            .collect();
        if !extra.is_empty() {
            bad.push(name(c));
            caps.extend(extra);
        }
    }
    if bad.is_empty() {
        return None;
    }
    let caps: Vec<String> = caps.into_iter().collect();
    v(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(&caps)
        ),
    )
}

fn capabilities_restricted(_m: &Value, spec: &Value) -> Option<Violation> {
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        if sc(c, "/capabilities").is_none() {
            missing_drop.push(name(c));
            continue;
        }
        let drops_all = sc(c, "/capabilities/drop")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "ALL"));
        if !drops_all {
            missing_drop.push(name(c));
        }
        let extra: Vec<String> = added_capabilities(c)
            .into_iter()
            .filter(|x| x != "NET_BIND_SERVICE")
            .collect();
        if !extra.is_empty() {
            adding.push(name(c));
            caps.extend(extra);
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        let caps: Vec<String> = caps.into_iter().collect();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&caps)
        ));
    }
    if details.is_empty() {
        None
    } else {
        v("unrestricted capabilities", details.join("; "))
    }
}

fn host_namespaces(_m: &Value, spec: &Value) -> Option<Violation> {
    let mut set: Vec<&str> = ["hostIPC", "hostNetwork", "hostPID"]
        .into_iter()
        .filter(|k| spec.get(*k).and_then(Value::as_bool) == Some(true))
        .collect();
    set.sort_unstable();
    if set.is_empty() {
        None
    } else {
        v("host namespaces", set.join(", "))
    }
}

fn host_path_volumes(_m: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = volumes(spec)
        .filter(|vol| vol.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(name)
        .collect();
    if bad.is_empty() {
        None
    } else {
        {
            v(
                "hostPath volumes",
                format!(
                    "{} {}",
                    pluralize("volume", "volumes", bad.len()),
                    join_quote(&bad)
                ),
            )
        }
    }
}

fn host_ports(_m: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut ports = BTreeSet::new();
    for c in containers(spec) {
        let hp: Vec<String> = c
            .get("ports")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.get("hostPort").and_then(Value::as_i64))
                    .filter(|p| *p != 0)
                    .map(|p| p.to_string())
                    .collect()
            })
            .unwrap_or_default();
        if !hp.is_empty() {
            bad.push(name(c));
            ports.extend(hp);
        }
    }
    if bad.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    v(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

fn privileged(_m: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = containers(spec)
        .filter(|c| sc(c, "/privileged").and_then(Value::as_bool) == Some(true))
        .map(name)
        .collect();
    if bad.is_empty() {
        None
    } else {
        {
            v(
                "privileged",
                format!(
                    "{} must not set securityContext.privileged=true",
                    containers_phrase(&bad)
                ),
            )
        }
    }
}

fn proc_mount(_m: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in containers(spec) {
        if let Some(t) = sc(c, "/procMount").and_then(Value::as_str)
            && t != "Default"
        {
            bad.push(name(c));
            types.insert(t.to_string());
        }
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    v(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&types)
        ),
    )
}

fn volumes(spec: &Value) -> impl Iterator<Item = &Value> {
    spec.get("volumes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
}

/// The volume source field of a volume (`hostPath`, `nfs`, ...).
fn volume_type(vol: &Value) -> Option<&str> {
    vol.as_object()?
        .iter()
        .find(|(k, x)| *k != "name" && !x.is_null())
        .map(|(k, _)| k.as_str())
}

fn restricted_volumes(_m: &Value, spec: &Value) -> Option<Violation> {
    const ALLOWED: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for vol in volumes(spec) {
        let t = volume_type(vol).unwrap_or("");
        if !ALLOWED.contains(&t) {
            bad.push(name(vol));
            types.insert(t.to_string());
        }
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    v(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    )
}

/// Upstream's pattern of runAsNonRoot and seccompProfile: setters with a
/// bad value, and containers left unset without a good pod-level value.
fn setters(
    spec: &Value,
    ptr: &str,
    good: impl Fn(&Value) -> bool,
) -> (Vec<String>, Vec<String>, bool) {
    let mut bad_setters = Vec::new();
    let mut pod_good = false;
    if let Some(p) = sc(spec, ptr) {
        if good(p) {
            pod_good = true;
        } else {
            bad_setters.push("pod".to_string());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match sc(c, ptr) {
            Some(x) if !good(x) => explicit.push(name(c)),
            Some(_) => {}
            None if !pod_good => implicit.push(name(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        bad_setters.push(containers_phrase(&explicit));
    }
    (bad_setters, implicit, pod_good)
}

fn run_as_non_root(_m: &Value, spec: &Value) -> Option<Violation> {
    let (bad, implicit, _) = setters(spec, "/runAsNonRoot", |x| x.as_bool() == Some(true));
    if !bad.is_empty() {
        return v(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                bad.join(" and ")
            ),
        );
    }
    if implicit.is_empty() {
        None
    } else {
        {
            v(
                "runAsNonRoot != true",
                format!(
                    "pod or {} must set securityContext.runAsNonRoot=true",
                    containers_phrase(&implicit)
                ),
            )
        }
    }
}

fn run_as_user(_m: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    if sc(spec, "/runAsUser").and_then(Value::as_i64) == Some(0) {
        bad.push("pod".to_string());
    }
    let cs: Vec<String> = containers(spec)
        .filter(|c| sc(c, "/runAsUser").and_then(Value::as_i64) == Some(0))
        .map(name)
        .collect();
    if !cs.is_empty() {
        bad.push(containers_phrase(&cs));
    }
    if bad.is_empty() {
        None
    } else {
        v(
            "runAsUser=0",
            format!("{} must not set runAsUser=0", bad.join(" and ")),
        )
    }
}

fn se_linux_options(_m: &Value, spec: &Value) -> Option<Violation> {
    const TYPES: [&str; 5] = [
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ];
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut check = |o: &Value| {
        let mut ok = true;
        let t = o.get("type").and_then(Value::as_str).unwrap_or("");
        if !TYPES.contains(&t) {
            ok = false;
            bad_types.insert(t.to_string());
        }
        if o.get("user")
            .and_then(Value::as_str)
            .is_some_and(|u| !u.is_empty())
        {
            ok = false;
            set_user = true;
        }
        if o.get("role")
            .and_then(Value::as_str)
            .is_some_and(|r| !r.is_empty())
        {
            ok = false;
            set_role = true;
        }
        ok
    };
    let mut bad = Vec::new();
    if let Some(o) = sc(spec, "/seLinuxOptions")
        && !check(o)
    {
        bad.push("pod".to_string());
    }
    let mut cs = Vec::new();
    for c in containers(spec) {
        if let Some(o) = sc(c, "/seLinuxOptions")
            && !check(o)
        {
            cs.push(name(c));
        }
    }
    if !cs.is_empty() {
        bad.push(containers_phrase(&cs));
    }
    if bad.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        let t: Vec<String> = bad_types.into_iter().collect();
        data.push(format!(
            "{} {}",
            pluralize("type", "types", t.len()),
            join_quote(&t)
        ));
        if set_user {
            data.push("user may not be set".to_string());
        }
        if set_role {
            data.push("role may not be set".to_string());
        }
    }
    v(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            bad.join(" and "),
            data.join("; ")
        ),
    )
}

fn seccomp_type(x: &Value) -> &str {
    x.get("type").and_then(Value::as_str).unwrap_or("")
}

fn seccomp_profile(spec: &Value, good: fn(&str) -> bool, restricted: bool) -> Option<Violation> {
    let mut values = BTreeSet::new();
    let (bad, implicit, _) = setters(spec, "/seccompProfile", |x| good(seccomp_type(x)));
    if !bad.is_empty() {
        if let Some(p) = sc(spec, "/seccompProfile").filter(|x| !good(seccomp_type(x))) {
            values.insert(seccomp_type(p).to_string());
        }
        for c in containers(spec) {
            if let Some(x) = sc(c, "/seccompProfile").filter(|x| !good(seccomp_type(x))) {
                values.insert(seccomp_type(x).to_string());
            }
        }
        let values: Vec<String> = values.into_iter().collect();
        return v(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                bad.join(" and "),
                join_quote(&values)
            ),
        );
    }
    if restricted && !implicit.is_empty() {
        return v(
            "seccompProfile",
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

fn seccomp_baseline(_m: &Value, spec: &Value) -> Option<Violation> {
    seccomp_profile(spec, |t| t != "Unconfined", false)
}

fn seccomp_restricted(_m: &Value, spec: &Value) -> Option<Violation> {
    seccomp_profile(spec, |t| t == "RuntimeDefault" || t == "Localhost", true)
}

fn sysctls(_m: &Value, spec: &Value) -> Option<Violation> {
    const ALLOWED: [&str; 7] = [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
    ];
    let bad: Vec<String> = sc(spec, "/sysctls")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.get("name").and_then(Value::as_str))
                .filter(|n| !ALLOWED.contains(n))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if bad.is_empty() {
        None
    } else {
        v("forbidden sysctls", bad.join(", "))
    }
}

fn windows_host_process(_m: &Value, spec: &Value) -> Option<Violation> {
    let set =
        |o: &Value| sc(o, "/windowsOptions/hostProcess").and_then(Value::as_bool) == Some(true);
    let mut bad = Vec::new();
    if set(spec) {
        bad.push("pod".to_string());
    }
    let cs: Vec<String> = containers(spec).filter(|c| set(c)).map(name).collect();
    if !cs.is_empty() {
        bad.push(containers_phrase(&cs));
    }
    if bad.is_empty() {
        None
    } else {
        {
            v(
                "hostProcess",
                format!(
                    "{} must not set securityContext.windowsOptions.hostProcess=true",
                    bad.join(" and ")
                ),
            )
        }
    }
}

/// Baseline checks every non-privileged level runs, in upstream's order.
const BASELINE: [Check; 8] = [
    app_armor_profile,
    host_namespaces,
    host_ports,
    privileged,
    proc_mount,
    se_linux_options,
    sysctls,
    windows_host_process,
];

/// Baseline checks a restricted check supersedes (run for baseline only).
const BASELINE_ONLY: [Check; 3] = [capabilities_baseline, host_path_volumes, seccomp_baseline];

/// Restricted checks.
const RESTRICTED: [Check; 6] = [
    allow_privilege_escalation,
    capabilities_restricted,
    restricted_volumes,
    run_as_non_root,
    run_as_user,
    seccomp_restricted,
];

/// The violations of a pod (`meta`, `spec`) at `level`, in upstream's order.
pub fn evaluate(level: Level, meta: &Value, spec: &Value) -> Vec<Violation> {
    let more: &[Check] = match level {
        Level::Privileged => return Vec::new(),
        Level::Baseline => &BASELINE_ONLY,
        Level::Restricted => &RESTRICTED,
    };
    BASELINE
        .iter()
        .chain(more)
        .filter_map(|c| c(meta, spec))
        .collect()
}

/// Upstream's `ForbiddenDetail`: `reason (detail), reason (detail)`.
pub fn detail(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|x| {
            if x.detail.is_empty() {
                x.reason.clone()
            } else {
                format!("{} ({})", x.reason, x.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn restricted_messages_as_upstream() {
        let spec = json!({"containers": [{"name": "c", "image": "nginx"}]});
        let out = evaluate(Level::Restricted, &json!({}), &spec);
        assert_eq!(
            detail(&out),
            r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        );
        assert!(evaluate(Level::Baseline, &json!({}), &spec).is_empty());
        let good = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]});
        assert!(evaluate(Level::Restricted, &json!({}), &good).is_empty());
    }

    #[test]
    fn baseline_messages_as_upstream() {
        let spec = json!({"hostNetwork": true, "hostPID": true,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [
            {"name": "a", "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN", "CHOWN"]}}, "ports": [{"containerPort": 80, "hostPort": 8080}]},
            {"name": "b", "securityContext": {"privileged": true}},
        ]});
        assert_eq!(
            detail(&evaluate(Level::Baseline, &json!({}), &spec)),
            r#"host namespaces (hostNetwork, hostPID), hostPort (container "a" uses hostPort 8080), privileged (containers "a", "b" must not set securityContext.privileged=true), non-default capabilities (container "a" must not include "NET_ADMIN" in securityContext.capabilities.add), hostPath volumes (volume "h")"#
        );
        let restricted = detail(&evaluate(Level::Restricted, &json!({}), &spec));
        assert!(
            restricted.contains(
                r#"restricted volume types (volume "h" uses restricted volume type "hostPath")"#
            ),
            "{restricted}"
        );
        assert!(!restricted.contains("non-default capabilities"));
        assert!(restricted.contains(r#"containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; container "a" must not include "CHOWN", "NET_ADMIN" in securityContext.capabilities.add"#), "{restricted}");
    }
}
