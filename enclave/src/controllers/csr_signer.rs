//! The `kubernetes.io/kube-apiserver-client` signer (upstream's csrsigning
//! controller for that signer): an approved, not denied or failed
//! CertificateSigningRequest of this signer gets a client certificate from
//! the cluster's client CA, valid for its `expirationSeconds` (one year at
//! most); a request with usages other than `digital signature`, `key
//! encipherment` and `client auth`, or without `client auth`, gets a
//! `Failed` condition instead.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};

use super::Error;
use super::client::{Api, text};
use super::runtime::{Action, Reconciler};
use crate::auth::client_ca::{ClientCa, parse_csr};
use crate::registry::kinds::csr_condition;
use crate::registry::{ObjectStore, ResourceInfo, WatchEvent, meta};

/// The signer this controller serves.
pub(crate) const SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// A year: upstream's default `--cluster-signing-duration`.
const MAX_SECONDS: i64 = 365 * 24 * 3600;

/// The signer controller.
#[derive(Debug)]
pub(crate) struct CsrSigner {
    csrs: Api,
    ca: Arc<ClientCa>,
}

fn is_true(c: Option<&Value>) -> bool {
    c.is_some_and(|c| c.get("status").and_then(Value::as_str).unwrap_or("True") == "True")
}

/// Upstream's `validAPIServerClientUsages`.
fn check_usages(csr: &Value) -> Result<(), String> {
    let mut client_auth = false;
    for u in csr
        .pointer("/spec/usages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        match u.as_str().unwrap_or("") {
            "digital signature" | "key encipherment" => {}
            "client auth" => client_auth = true,
            other => return Err(format!("invalid usage for client certificate: {other}")),
        }
    }
    if !client_auth {
        return Err("missing required usage for client certificate: client auth".into());
    }
    Ok(())
}

impl CsrSigner {
    /// Signs with `ca`.
    pub(crate) fn new(objects: &ObjectStore, csrs: Arc<ResourceInfo>, ca: Arc<ClientCa>) -> Self {
        CsrSigner {
            csrs: Api::new(objects.clone(), csrs),
            ca,
        }
    }

    fn sign(&self, csr: &Value) -> Result<String, String> {
        check_usages(csr)?;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(text(csr, "/spec/request"))
            .map_err(|e| e.to_string())?;
        let parsed = parse_csr(&pem).map_err(|e| e.to_string())?;
        let seconds = csr
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(MAX_SECONDS)
            .min(MAX_SECONDS);
        self.ca
            .sign_client(&parsed, seconds)
            .map_err(|e| e.to_string())
    }
}

impl Reconciler for CsrSigner {
    type Key = String;

    const NAME: &'static str = "csr-signer";

    async fn keys_for(&mut self, _kind: usize, event: &WatchEvent) -> Vec<String> {
        match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o)
                if text(o, "/spec/signerName") == SIGNER =>
            {
                vec![meta::name(o).to_string()]
            }
            _ => Vec::new(),
        }
    }

    async fn reconcile(&mut self, name: &String) -> Result<Action, Error> {
        let Some(csr) = self.csrs.get("", name).await? else {
            return Ok(Action::await_change());
        };
        let pending = text(&csr, "/spec/signerName") == SIGNER
            && is_true(csr_condition(&csr, "Approved"))
            && csr_condition(&csr, "Denied").is_none()
            && csr_condition(&csr, "Failed").is_none()
            && text(&csr, "/status/certificate").is_empty();
        if !pending {
            return Ok(Action::await_change());
        }
        let mut out = csr.clone();
        match self.sign(&csr) {
            Ok(cert) => {
                out["status"]["certificate"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(cert));
                tracing::info!(csr = %name, "client certificate issued");
            }
            Err(why) => {
                let now = meta::format_time(meta::now());
                let failed = json!({
                    "type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                    "message": why, "lastUpdateTime": now, "lastTransitionTime": now,
                });
                match out
                    .pointer_mut("/status/conditions")
                    .and_then(Value::as_array_mut)
                {
                    Some(cs) => cs.push(failed),
                    None => out["status"]["conditions"] = json!([failed]),
                }
                tracing::info!(csr = %name, reason = %why, "certificate request failed");
            }
        }
        match self.csrs.replace_status(out).await {
            Ok(_) => Ok(Action::await_change()),
            Err(e) if e.is_not_found() => Ok(Action::await_change()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usages_as_upstream() {
        assert!(
            check_usages(&json!({"spec": {"usages": ["client auth", "digital signature"]}}))
                .is_ok()
        );
        assert_eq!(
            check_usages(&json!({"spec": {"usages": ["server auth", "client auth"]}})),
            Err("invalid usage for client certificate: server auth".into())
        );
        assert_eq!(
            check_usages(&json!({"spec": {"usages": ["digital signature"]}})),
            Err("missing required usage for client certificate: client auth".into())
        );
    }
}
