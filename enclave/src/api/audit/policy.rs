//! Upstream's audit Policy file (`audit.k8s.io/v1 Policy`, YAML or JSON):
//! ordered rules, the first matching one decides the level (`None`,
//! `Metadata`, `Request`, `RequestResponse`); no match means `None`. Rules
//! match users, user groups, verbs, namespaces, resources (group,
//! resources with `*`, `*/sub` and `res/*`, resource names) and
//! non-resource URLs (exact or `prefix*`), as upstream's `policy/checker.go`.

use serde::{Deserialize, Serialize};

use crate::api::authz::Attributes;

/// How much of a request is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum Level {
    /// Nothing.
    None,
    /// Who, what, when, and the response code.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata, the request and the response bodies.
    RequestResponse,
}

/// The stages of a request that produce an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Stage {
    /// As soon as the request arrives, before it is handled.
    RequestReceived,
    /// Long-running requests (watches): when the response headers are sent.
    ResponseStarted,
    /// When the response is complete.
    ResponseComplete,
    /// When the handler failed.
    Panic,
}

impl Stage {
    /// The stage's name in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupResources {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

/// One rule of a policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    level: Level,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<Stage>,
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

/// An audit policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    omit_stages: Vec<Stage>,
    #[serde(default)]
    omit_managed_fields: bool,
}

/// What the policy says about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The level.
    pub level: Level,
    /// Stages not to record.
    pub omit_stages: Vec<Stage>,
    /// Whether `managedFields` are left out of recorded bodies.
    pub omit_managed_fields: bool,
}

fn path_matches(path: &str, spec: &str) -> bool {
    spec == "*"
        || spec == path
        || spec
            .strip_suffix('*')
            .is_some_and(|_| path.starts_with(spec.trim_end_matches('*')))
}

impl Rule {
    fn matches(&self, a: &Attributes) -> bool {
        if !self.users.is_empty() && !self.users.contains(&a.user.name) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !a.user.groups.iter().any(|g| self.user_groups.contains(g))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.contains(&a.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(a);
        }
        if !self.non_resource_urls.is_empty() {
            return !a.resource_request
                && self
                    .non_resource_urls
                    .iter()
                    .any(|s| path_matches(&a.path, s));
        }
        true
    }

    fn matches_resource(&self, a: &Attributes) -> bool {
        if !a.resource_request {
            return false;
        }
        if !self.namespaces.is_empty() && !self.namespaces.contains(&a.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = a.combined_resource();
        self.resources
            .iter()
            .filter(|gr| gr.group == a.api_group)
            .any(|gr| {
                if gr.resources.is_empty() {
                    return true;
                }
                gr.resources.iter().any(|res| {
                    if !gr.resource_names.is_empty() && !gr.resource_names.contains(&a.name) {
                        return false;
                    }
                    *res == combined
                        || res == "*"
                        || (!a.subresource.is_empty()
                            && res.strip_prefix("*/") == Some(a.subresource.as_str()))
                        || res.strip_suffix("/*") == Some(a.resource.as_str())
                })
            })
    }
}

impl Policy {
    /// Parses a policy file (YAML or JSON).
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let p: Policy = serde_norway::from_str(text).map_err(|e| format!("audit policy: {e}"))?;
        if !p.kind.is_empty() && p.kind != "Policy" {
            return Err(format!("audit policy: kind {:?} is not Policy", p.kind));
        }
        if !p.api_version.is_empty() && p.api_version != "audit.k8s.io/v1" {
            return Err(format!(
                "audit policy: apiVersion {:?} is not audit.k8s.io/v1",
                p.api_version
            ));
        }
        Ok(p)
    }

    /// Upstream's `LevelAndStages`.
    pub fn decide(&self, a: &Attributes) -> Decision {
        for r in &self.rules {
            if r.matches(a) {
                let mut omit = self.omit_stages.clone();
                omit.extend(r.omit_stages.iter().copied());
                return Decision {
                    level: r.level,
                    omit_stages: omit,
                    omit_managed_fields: r.omit_managed_fields.unwrap_or(self.omit_managed_fields),
                };
            }
        }
        Decision {
            level: Level::None,
            omit_stages: self.omit_stages.clone(),
            omit_managed_fields: self.omit_managed_fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::UserInfo;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    users: ["system:kube-proxy"]
    verbs: ["watch"]
  - level: None
    nonResourceURLs: ["/healthz*", "/version"]
  - level: RequestResponse
    resources:
    - group: ""
      resources: ["pods/log", "configmaps"]
  - level: Request
    namespaces: ["kube-system"]
  - level: Metadata
    resources:
    - group: "rbac.authorization.k8s.io"
      resources: ["*"]
    omitStages: ["ResponseStarted"]
"#;

    #[test]
    fn rules_match_as_upstream() {
        let p = Policy::parse(POLICY).unwrap();
        let u = UserInfo::new("alice", &["dev"]);
        let r = |ns: &str, g: &str, res: &str, sub: &str| {
            Attributes::resource(u.clone(), "get", ns, g, res, sub, "x")
        };
        assert_eq!(
            p.decide(&r("d", "", "configmaps", "")).level,
            Level::RequestResponse
        );
        assert_eq!(
            p.decide(&r("d", "", "pods", "log")).level,
            Level::RequestResponse
        );
        assert_eq!(p.decide(&r("d", "", "pods", "")).level, Level::None);
        assert_eq!(
            p.decide(&r("kube-system", "", "pods", "")).level,
            Level::Request
        );
        let rbac = p.decide(&r("", "rbac.authorization.k8s.io", "roles", ""));
        assert_eq!(rbac.level, Level::Metadata);
        assert_eq!(
            rbac.omit_stages,
            vec![Stage::RequestReceived, Stage::ResponseStarted]
        );
        assert_eq!(
            p.decide(&Attributes::non_resource(
                u.clone(),
                "get",
                "/healthz/ready"
            ))
            .level,
            Level::None
        );
        assert_eq!(
            p.decide(&Attributes::non_resource(u, "get", "/api")).level,
            Level::None
        );
        assert!(Policy::parse("kind: Other").is_err());
        assert!(Policy::parse("rules: [{level: Loud}]").is_err());
    }
}
