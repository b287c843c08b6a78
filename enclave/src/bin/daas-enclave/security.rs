//! Who may do what: the authorizer chain (upstream's order) and the admission chain, and the
//! audit log.

use std::sync::Arc;

use anyhow::{Context, Result};
use enclave::admission::webhook::{Phase as WebhookPhase, Webhooks};
use enclave::admission::{Chain as AdmissionChain, Slot};
use enclave::api::audit::webhook::{WebhookBackend, WebhookConfig};
use enclave::api::audit::{AuditLog, Auditor, Policy};
use enclave::api::authz::rbac::{PolicyCache, RbacAuthorizer};
use enclave::api::authz::{AuthorizerChain, NodeAuthorizer, PrivilegedGroup, SYSTEM_MASTERS};
use enclave::registry::ObjectStore;
use enclave::store::Store;

use crate::args::{Args, Plan};

/// The authorizer chain (system:masters, then the Node authorizer for nodes, then RBAC), the
/// RBAC authorizer itself, and the admission chain: the store's built-in plugins
/// (NamespaceLifecycle, LimitRanger, Priority, DefaultTolerationSeconds, ResourceQuota) plus
/// those that need the policy (RBAC escalation, ServiceAccount, NodeRestriction, PodSecurity,
/// certificates).
pub(crate) fn chains(
    base: &ObjectStore,
    plan: &Plan,
) -> (Arc<AuthorizerChain>, RbacAuthorizer, AdmissionChain) {
    let rbac = RbacAuthorizer::new(PolicyCache::new(base.clone()));
    let authorizer = Arc::new(
        AuthorizerChain::new()
            .with(Arc::new(PrivilegedGroup::new(SYSTEM_MASTERS)))
            .with(Arc::new(NodeAuthorizer::new(base.clone())))
            .with(Arc::new(rbac.clone())),
    );
    let admission = base
        .admission()
        .clone()
        .with(
            Slot::RbacEscalation,
            Arc::new(enclave::api::authz::escalation::Escalation::new(
                authorizer.clone(),
                rbac.clone(),
            )),
        )
        .with(
            Slot::ServiceAccount,
            Arc::new(enclave::admission::serviceaccount::ServiceAccountAdmission),
        )
        .with(
            Slot::NodeRestriction,
            Arc::new(enclave::api::authz::restriction::NodeRestriction),
        )
        .with(
            Slot::PodSecurity,
            Arc::new(enclave::admission::podsecurity::PodSecurity),
        )
        .with(
            Slot::Certificates,
            Arc::new(
                enclave::api::authz::certificates::CertificateAdmission::new(authorizer.clone()),
            ),
        )
        .with(
            Slot::MutatingAdmissionWebhook,
            Arc::new(Webhooks::new(
                WebhookPhase::Mutating,
                plan.admission_webhook_via.clone(),
            )),
        )
        .with(
            Slot::ValidatingAdmissionPolicy,
            Arc::new(enclave::admission::policy::ValidatingAdmissionPolicies::new()),
        )
        .with(
            Slot::ValidatingAdmissionWebhook,
            Arc::new(Webhooks::new(
                WebhookPhase::Validating,
                plan.admission_webhook_via.clone(),
            )),
        );
    (authorizer, rbac, admission)
}

/// The auditor of `--audit-policy-file` (none without one, as kube-apiserver), logging into
/// the sealed store.
/// With `--audit-webhook-config-file`, its events also go to the webhook through the
/// plan's outbound route.
pub(crate) fn audit(args: &Args, plan: &Plan, store: &Store) -> Result<Option<Arc<Auditor>>> {
    let Some(path) = &args.audit_policy_file else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let policy = Policy::parse(&text).map_err(anyhow::Error::msg)?;
    let log = Arc::new(
        AuditLog::open(store.clone(), args.audit_retention).context("opening the audit log")?,
    );
    tracing::info!(policy = %path.display(), "audit logging enabled");
    let mut auditor = Auditor::new(policy, log.clone());
    if let (Some(config), Some(via)) = (&args.audit_webhook_config_file, &plan.audit_webhook_via) {
        let text = std::fs::read_to_string(config)
            .with_context(|| format!("reading {}", config.display()))?;
        let dir = config.parent().unwrap_or(std::path::Path::new("."));
        let webhook = WebhookConfig::from_kubeconfig(&text, dir)
            .with_context(|| format!("{}", config.display()))?;
        auditor = auditor.with_webhook(WebhookBackend::new(
            webhook,
            via.clone(),
            log,
            store.clone(),
            args.audit_webhook_batch_max_size,
            args.audit_webhook_initial_backoff,
        ));
    }
    Ok(Some(Arc::new(auditor)))
}
