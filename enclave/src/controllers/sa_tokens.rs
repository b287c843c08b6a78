//! Legacy service-account token Secrets, only when asked for (upstream's
//! tokens controller since 1.24): a Secret of type
//! `kubernetes.io/service-account-token` annotated
//! `kubernetes.io/service-account.name` gets a token (`data.token`, a JWT
//! with the legacy issuer that lives as long as the Secret), the cluster CA
//! (`data.ca.crt`) and its namespace, and the account's uid as an
//! annotation. A token Secret whose account is gone (or was recreated) is
//! deleted, which revokes its token.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};

use super::Error;
use super::client::{Api, annotation, is_deleting, text, uid};
use super::runtime::{Action, ObjectKey, Reconciler};
use crate::auth::serviceaccount::ServiceAccountTokens;
use crate::registry::generic::Propagation;
use crate::registry::{ObjectStore, ResourceInfo, WatchEvent, meta};

/// The Secret type of legacy tokens.
pub(crate) const TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
/// The account a token Secret is for.
const NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// That account's uid.
const UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

/// The legacy token controller.
#[derive(Debug)]
pub(crate) struct LegacyTokens {
    secrets: Api,
    accounts: Api,
    tokens: Arc<ServiceAccountTokens>,
    ca_pem: String,
}

fn is_token_secret(o: &Value) -> bool {
    text(o, "/type") == TOKEN_SECRET_TYPE
}

impl LegacyTokens {
    /// Fills token Secrets with tokens of `tokens` and `ca_pem`.
    pub(crate) fn new(
        objects: &ObjectStore,
        secrets: Arc<ResourceInfo>,
        accounts: Arc<ResourceInfo>,
        tokens: Arc<ServiceAccountTokens>,
        ca_pem: String,
    ) -> Self {
        LegacyTokens {
            secrets: Api::new(objects.clone(), secrets),
            accounts: Api::new(objects.clone(), accounts),
            tokens,
            ca_pem,
        }
    }
}

impl Reconciler for LegacyTokens {
    type Key = ObjectKey;

    const NAME: &'static str = "serviceaccount-tokens";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<ObjectKey> {
        let (WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o)) = event
        else {
            return Vec::new();
        };
        match kind {
            0 if is_token_secret(o) && !matches!(event, WatchEvent::Deleted(_)) => {
                vec![ObjectKey::of(o)]
            }
            // An account changed or went: its token Secrets may have to go.
            1 => {
                let ns = meta::namespace(o);
                let name = meta::name(o);
                self.secrets
                    .list(ns)
                    .await
                    .unwrap_or_default()
                    .iter()
                    .filter(|s| is_token_secret(s) && annotation(s, NAME_ANNOTATION) == Some(name))
                    .map(ObjectKey::of)
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    async fn reconcile(&mut self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(secret) = self.secrets.get(&key.namespace, &key.name).await? else {
            return Ok(Action::await_change());
        };
        if !is_token_secret(&secret) || is_deleting(&secret) {
            return Ok(Action::await_change());
        }
        let name = annotation(&secret, NAME_ANNOTATION)
            .unwrap_or("")
            .to_string();
        let account = match name.as_str() {
            "" => None,
            n => self.accounts.get(&key.namespace, n).await?,
        };
        let want_uid = annotation(&secret, UID_ANNOTATION).unwrap_or("");
        let Some(account) = account.filter(|a| want_uid.is_empty() || uid(a) == want_uid) else {
            // No such account (any more): the Secret and its token go.
            self.secrets
                .delete(
                    &key.namespace,
                    &key.name,
                    Some(uid(&secret)),
                    Propagation::Background,
                )
                .await?;
            return Ok(Action::await_change());
        };
        let account_uid = uid(&account).to_string();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let current = text(&secret, "/data/token");
        if !current.is_empty()
            && !text(&secret, "/data/ca.crt").is_empty()
            && want_uid == account_uid
        {
            return Ok(Action::await_change());
        }
        let token = if current.is_empty() {
            self.tokens
                .issue_legacy(&key.namespace, &name, &account_uid, &key.name)
                .map_err(|e| Error::Api {
                    verb: "sign",
                    resource: "secrets".into(),
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    source: Box::new(crate::registry::Error::BadRequest(e.to_string())),
                })
                .map(|t| b64(&t))?
        } else {
            current.to_string()
        };
        let (ca, ns) = (b64(&self.ca_pem), b64(&key.namespace));
        self.secrets
            .edit(&key.namespace, &key.name, |cur| {
                let mut out = cur.clone();
                let data = out
                    .as_object_mut()?
                    .entry("data")
                    .or_insert_with(|| json!({}));
                let data = data.as_object_mut()?;
                data.insert("token".into(), json!(token));
                data.insert("ca.crt".into(), json!(ca));
                data.insert("namespace".into(), json!(ns));
                super::client::set_annotation(&mut out, UID_ANNOTATION, &account_uid);
                Some(out)
            })
            .await?;
        Ok(Action::await_change())
    }
}
