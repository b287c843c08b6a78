//! The certificate admission plugins (upstream's CertificateApproval,
//! CertificateSigning and CertificateSubjectRestriction): approving a
//! CertificateSigningRequest needs `approve` on its signer
//! (`certificates.k8s.io` `signers`, named after the signer or its domain
//! with `/*`), setting its certificate needs `sign`, and a request for the
//! `kubernetes.io/kube-apiserver-client` signer may not ask for the
//! `system:masters` group. The control plane's own signer is exempt.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use super::{Attributes, AuthorizerChain, SYSTEM_MASTERS};
use crate::admission::{Operation, Outcome, Plugin, Request};
use crate::registry::{Error, ObjectStore, Result, UserInfo};

const GROUP: &str = "certificates.k8s.io";
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// The certificate admission plugins.
#[derive(Debug, Clone)]
pub struct CertificateAdmission {
    chain: Arc<AuthorizerChain>,
}

impl CertificateAdmission {
    /// Checks `approve` and `sign` with `chain`.
    pub fn new(chain: Arc<AuthorizerChain>) -> Self {
        CertificateAdmission { chain }
    }

    /// Upstream's `IsAuthorizedForSignerName`: the signer by name, or its domain's `/*`.
    async fn may(&self, user: &UserInfo, verb: &str, signer: &str) -> bool {
        let mut a = Attributes::resource(user.clone(), verb, "", GROUP, "signers", "", signer);
        a.api_version = "*".into();
        if self.chain.authorize(&a).await.allowed() {
            return true;
        }
        let Some((domain, _)) = signer.split_once('/') else {
            return false;
        };
        a.name = format!("{domain}/*");
        self.chain.authorize(&a).await.allowed()
    }
}

fn signer(o: &Value) -> &str {
    o.pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl Plugin for CertificateAdmission {
    fn validate<'a>(
        &'a self,
        _objects: &'a ObjectStore,
        req: &'a Request<'a>,
        obj: &'a Value,
        _out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if req.info.group != GROUP || req.info.resource != "certificatesigningrequests" {
                return Ok(());
            }
            let forbidden =
                |why: String| Error::forbidden(GROUP, "certificatesigningrequests", req.name, &why);
            match (req.operation, req.subresource) {
                (Operation::Create, None) => {
                    let masters = obj
                        .pointer("/spec/request")
                        .and_then(Value::as_str)
                        .and_then(|b| {
                            use base64::Engine;
                            base64::engine::general_purpose::STANDARD.decode(b).ok()
                        })
                        .and_then(|pem| crate::auth::client_ca::parse_csr(&pem).ok())
                        .is_some_and(|c| c.organizations.iter().any(|o| o == SYSTEM_MASTERS));
                    if signer(obj) == CLIENT_SIGNER && masters {
                        return Err(forbidden(format!(
                            "use of {CLIENT_SIGNER} signer with {SYSTEM_MASTERS} group is not allowed"
                        )));
                    }
                    Ok(())
                }
                (Operation::Update, Some("approval")) => {
                    let Some(user) = req.user else { return Ok(()) };
                    let old = req.old.map(signer).unwrap_or("");
                    if !self.may(user, "approve", old).await {
                        return Err(forbidden(format!(
                            "user not permitted to approve requests with signerName {old:?}"
                        )));
                    }
                    Ok(())
                }
                (Operation::Update, Some("status")) => {
                    let Some(user) = req.user else { return Ok(()) };
                    let cert = |o: &Value| o.pointer("/status/certificate").cloned();
                    if req.old.map(cert) == Some(cert(obj)) {
                        return Ok(());
                    }
                    let old = req.old.map(signer).unwrap_or("");
                    if !self.may(user, "sign", old).await {
                        return Err(forbidden(format!(
                            "user not permitted to sign requests with signerName {old:?}"
                        )));
                    }
                    Ok(())
                }
                _ => Ok(()),
            }
        })
    }
}
