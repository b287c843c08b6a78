//! The identity controllers: ClusterRole aggregation, legacy service-account
//! token Secrets and the `kubernetes.io/kube-apiserver-client` signer. (Every
//! namespace's `default` ServiceAccount and `kube-root-ca.crt` come from the
//! serviceaccount controller and the root CA publisher of [`super::cluster`].)

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Enabled, Error, clusterrole_aggregation, csr_signer, runtime, sa_tokens};
use crate::registry::{ObjectStore, ResourceInfo};

/// What the identity controllers need: the default service account and
/// root CA of every namespace, legacy token Secrets, the
/// `kube-apiserver-client` signer; the ClusterRole aggregation controller
/// runs with them.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// The CA that signs the API server's certificate (`kube-root-ca.crt`).
    pub root_ca_pem: String,
    /// Signs legacy token Secrets.
    pub tokens: std::sync::Arc<crate::auth::serviceaccount::ServiceAccountTokens>,
    /// Signs approved client certificate requests.
    pub client_ca: std::sync::Arc<crate::auth::client_ca::ClientCa>,
}

/// Starts the identity controllers `enabled` lets run (upstream's names:
/// `clusterrole-aggregation-controller`, `serviceaccount-token-controller`,
/// `certificatesigningrequest-signing-controller`).
///
/// # Errors
/// [`Error::MissingResource`] if the table lacks a resource they need.
pub(super) fn spawn(
    objects: &ObjectStore,
    id: &IdentityOptions,
    enabled: &Enabled,
    lookup: &dyn Fn(&'static str, &'static str) -> Result<Arc<ResourceInfo>, Error>,
    tasks: &mut JoinSet<()>,
    stop: &CancellationToken,
) -> Result<(), Error> {
    if enabled.is_enabled("clusterrole-aggregation-controller") {
        let clusterroles = lookup("rbac.authorization.k8s.io", "clusterroles")?;
        tasks.spawn(runtime::run(
            clusterrole_aggregation::ClusterRoleAggregation::new(
                objects.clone(),
                clusterroles.clone(),
            ),
            objects.clone(),
            vec![clusterroles],
            stop.child_token(),
        ));
    }
    if enabled.is_enabled("serviceaccount-token-controller") {
        let (accounts, secrets) = (lookup("", "serviceaccounts")?, lookup("", "secrets")?);
        tasks.spawn(runtime::run(
            sa_tokens::LegacyTokens::new(
                objects,
                secrets.clone(),
                accounts.clone(),
                id.tokens.clone(),
                id.root_ca_pem.clone(),
            ),
            objects.clone(),
            vec![secrets, accounts],
            stop.child_token(),
        ));
    }
    if enabled.is_enabled("certificatesigningrequest-signing-controller") {
        let csrs = lookup("certificates.k8s.io", "certificatesigningrequests")?;
        tasks.spawn(runtime::run(
            csr_signer::CsrSigner::new(objects, csrs.clone(), id.client_ca.clone()),
            objects.clone(),
            vec![csrs],
            stop.child_token(),
        ));
    }
    Ok(())
}
