//! Running a CNI configuration list the way a runtime does (libcni's `AddNetworkList` /
//! `DelNetworkList`): each plugin of the list in turn, with `CNI_*` in its environment, its
//! configuration on stdin (`name`, `cniVersion`, the previous plugin's result as `prevResult`,
//! `runtimeConfig` for the capabilities it declares), its result on stdout.

use std::path::Path;

use serde_json::{Value, json};

use crate::network::error::{Error, Result};
use crate::network::exec::Netns;

/// Where Debian's `containernetworking-plugins` puts the plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// One attachment: which container, which network namespace, which interface.
#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_NETNS`: the pod's namespace path (`/run/netns/NAME`).
    pub netns_path: &'a Path,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
    /// Capability arguments (`{"portMappings": [...]}`).
    pub runtime_config: Option<&'a Value>,
}

fn plugin_conf(list: &Value, plugin: &Value, prev: Option<&Value>, att: &Attachment<'_>) -> Value {
    let mut conf = plugin.clone();
    if let Some(obj) = conf.as_object_mut() {
        obj.insert("name".into(), list["name"].clone());
        obj.insert("cniVersion".into(), list["cniVersion"].clone());
        if let Some(prev) = prev {
            obj.insert("prevResult".into(), prev.clone());
        }
        let caps = plugin["capabilities"].as_object();
        if let (Some(caps), Some(rc)) = (caps, att.runtime_config.and_then(Value::as_object)) {
            let picked: serde_json::Map<String, Value> = rc
                .iter()
                .filter(|(k, _)| caps.get(*k).and_then(Value::as_bool) == Some(true))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !picked.is_empty() {
                obj.insert("runtimeConfig".into(), Value::Object(picked));
            }
        }
    }
    conf
}

async fn exec_plugin(
    node: &Netns,
    command: &str,
    conf: &Value,
    att: &Attachment<'_>,
) -> Result<String> {
    let plugin = conf["type"].as_str().unwrap_or_default().to_owned();
    let program = Path::new(CNI_BIN_DIR).join(&plugin);
    let program = program.to_string_lossy().into_owned();
    let mut cmd = node.command(&program);
    cmd.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", att.container_id)
        .env("CNI_NETNS", att.netns_path)
        .env("CNI_IFNAME", att.ifname)
        .env("CNI_PATH", CNI_BIN_DIR)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        program: program.clone(),
        source,
    })?;
    let input = serde_json::to_vec(conf).map_err(|e| Error::Config(format!("CNI config: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&input).await;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| Error::Spawn {
            program: program.clone(),
            source,
        })?;
    if !out.status.success() {
        // CNI errors are JSON on stdout.
        let mut msg = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        msg.push_str(String::from_utf8_lossy(&out.stderr).trim());
        return Err(Error::Command {
            command: format!("CNI {command} {plugin}"),
            status: out.status,
            stderr: msg,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ADD` of each plugin of `list` in `node`'s namespace; returns the last result.
///
/// # Errors
/// When a plugin fails or prints no JSON result.
pub async fn add(node: &Netns, list: &Value, att: &Attachment<'_>) -> Result<Value> {
    let mut prev: Option<Value> = None;
    for plugin in list["plugins"].as_array().into_iter().flatten() {
        let conf = plugin_conf(list, plugin, prev.as_ref(), att);
        let out = exec_plugin(node, "ADD", &conf, att).await?;
        let result: Value = serde_json::from_str(&out).map_err(|source| Error::Output {
            command: format!("CNI ADD {}", plugin["type"]),
            source,
        })?;
        prev = Some(result);
    }
    prev.ok_or_else(|| Error::Config("CNI list without plugins".into()))
}

/// Runs `DEL` of each plugin of `list` in reverse order (with the `ADD` result as `prevResult`).
///
/// # Errors
/// When a plugin fails.
pub async fn del(node: &Netns, list: &Value, att: &Attachment<'_>, result: &Value) -> Result<()> {
    let plugins: Vec<&Value> = list["plugins"].as_array().into_iter().flatten().collect();
    for plugin in plugins.into_iter().rev() {
        let conf = plugin_conf(list, plugin, Some(result), att);
        exec_plugin(node, "DEL", &conf, att).await?;
    }
    Ok(())
}

/// A single plugin's configuration as a one-plugin list (for `loopback`).
pub fn single(conf: &Value) -> Value {
    json!({ "cniVersion": conf["cniVersion"], "name": conf["name"], "plugins": [conf] })
}

/// The first IPv4 address of a CNI result (`ips[0].address`, without its prefix length).
pub fn result_ipv4(result: &Value) -> Option<std::net::Ipv4Addr> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .find_map(|a| a.split('/').next()?.parse().ok())
}
