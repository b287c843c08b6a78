//! How a Job treats failed pods (upstream `pod_failure_policy.go` and
//! `backoff_utils.go`): the pod failure policy's rules, and the
//! exponential delay before failed pods are replaced (10 s doubling up to
//! 10 min per consecutive failure since the last success).

use std::time::Duration;

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::controllers::typed::pod::finished_time;

/// upstream's `DefaultJobPodFailureBackOff`.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);
/// upstream's `MaxJobPodFailureBackOff`.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// What a pod failure policy says about one failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PolicyMatch {
    /// The Job's failure message, for a `FailJob` rule.
    pub(crate) fail_job_message: Option<String>,
    /// Whether the failure counts towards the backoff limits (not for
    /// `Ignore`).
    pub(crate) count_failed: bool,
    /// The matched rule's action.
    pub(crate) action: Option<String>,
}

impl PolicyMatch {
    fn none() -> Self {
        PolicyMatch {
            fail_job_message: None,
            count_failed: true,
            action: None,
        }
    }
}

/// upstream's `matchPodFailurePolicy`: the first rule whose exit codes or
/// pod conditions match the failed pod.
pub(crate) fn match_policy(policy: Option<&PodFailurePolicy>, pod: &Pod) -> PolicyMatch {
    let Some(policy) = policy else {
        return PolicyMatch::none();
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    for (index, rule) in policy.rules.iter().enumerate() {
        let message = if let Some(req) = &rule.on_exit_codes {
            match matching_container(pod, req) {
                Some((container, code)) => format!(
                    "Container {container} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                    rule.action
                ),
                None => continue,
            }
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conditions = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_deref())
                .unwrap_or_default();
            let hit = conditions.iter().find(|c| {
                patterns.iter().any(|p| {
                    p.type_ == c.type_
                        && (p.status == c.status || (p.status.is_empty() && c.status == "True"))
                })
            });
            match hit {
                Some(c) => format!(
                    "Pod {ns}/{name} has condition {} matching {} rule at index {index}",
                    c.type_, rule.action
                ),
                None => continue,
            }
        } else {
            continue;
        };
        let action = Some(rule.action.clone());
        return match rule.action.as_str() {
            "Ignore" => PolicyMatch {
                fail_job_message: None,
                count_failed: false,
                action,
            },
            "FailJob" => PolicyMatch {
                fail_job_message: Some(message),
                count_failed: true,
                action,
            },
            "FailIndex" | "Count" => PolicyMatch {
                fail_job_message: None,
                count_failed: true,
                action,
            },
            _ => continue,
        };
    }
    PolicyMatch::none()
}

/// upstream's `matchOnExitCodes`: the first terminated container (then
/// init container) with a non-zero exit code the requirement matches.
fn matching_container(
    pod: &Pod,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<(String, i32)> {
    let status = pod.status.as_ref()?;
    let lists: [&[ContainerStatus]; 2] = [
        status.container_statuses.as_deref().unwrap_or_default(),
        status
            .init_container_statuses
            .as_deref()
            .unwrap_or_default(),
    ];
    for list in lists {
        for c in list {
            let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
                continue;
            };
            if req.container_name.as_ref().is_some_and(|n| *n != c.name) || t.exit_code == 0 {
                continue;
            }
            let listed = req.values.contains(&t.exit_code);
            let hit = match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            if hit {
                return Some((c.name.clone(), t.exit_code));
            }
        }
    }
    None
}

/// upstream's `getRemainingTimeForFailuresCount`: how long to wait before
/// creating pods after `failures` consecutive failures, the last at
/// `last_failure`.
pub(crate) fn remaining_backoff(
    failures: i32,
    last_failure: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Duration {
    let Some(last) = last_failure else {
        return Duration::ZERO;
    };
    if failures <= 0 {
        return Duration::ZERO;
    }
    let mut backoff = DEFAULT_BACKOFF;
    for _ in 1..failures {
        backoff = backoff.saturating_mul(2);
        if backoff >= MAX_BACKOFF {
            backoff = MAX_BACKOFF;
            break;
        }
    }
    let elapsed = now
        .duration_since(last)
        .try_into()
        .unwrap_or(Duration::ZERO);
    backoff.saturating_sub(elapsed)
}

/// The job-wide backoff (upstream's `backoffRecord`): failures since the
/// last success and when the last of them happened. Upstream keeps the
/// record in memory and loses it on a restart; here it is read from the
/// finished pods themselves, so it survives one.
pub(crate) fn backoff_record<'a>(
    succeeded: impl IntoIterator<Item = &'a Pod>,
    failed: impl IntoIterator<Item = &'a Pod>,
) -> (i32, Option<jiff::Timestamp>) {
    let last_success = succeeded.into_iter().map(finished_time).max();
    let mut count = 0;
    let mut last = None;
    for t in failed.into_iter().map(finished_time) {
        if last_success.is_some_and(|s| t <= s) {
            continue;
        }
        count += 1;
        last = Some(last.map_or(t, |l: jiff::Timestamp| l.max(t)));
    }
    (count, last)
}

/// upstream's `getRemainingTimePerIndex`: the wait before replacing the
/// last failed pod of an index.
pub(crate) fn remaining_backoff_for_index(
    last_failed: Option<&Pod>,
    now: jiff::Timestamp,
) -> Duration {
    let Some(pod) = last_failed else {
        return Duration::ZERO;
    };
    let failures = super::indexes::index_absolute_failure_count(pod).saturating_add(1);
    remaining_backoff(failures, Some(finished_time(pod)), now)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
    };
    use serde_json::json;

    use super::*;

    fn failed_pod(exit: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": conditions, "containerStatuses": [
                {"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": exit}}}]},
        }))
        .unwrap()
    }

    fn rule(
        action: &str,
        codes: Option<(&str, Vec<i32>)>,
        cond: Option<&str>,
    ) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: codes.map(|(op, values)| PodFailurePolicyOnExitCodesRequirement {
                container_name: None,
                operator: op.into(),
                values,
            }),
            on_pod_conditions: cond.map(|t| {
                vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: t.into(),
                    status: "True".into(),
                }]
            }),
        }
    }

    #[test]
    fn rules_match_in_order_with_upstreams_messages() {
        let policy = PodFailurePolicy {
            rules: vec![
                rule("Ignore", None, Some("DisruptionTarget")),
                rule("FailJob", Some(("In", vec![42])), None),
                rule("Count", Some(("NotIn", vec![1])), None),
            ],
        };
        let m = match_policy(Some(&policy), &failed_pod(42, json!([])));
        assert_eq!(
            m.fail_job_message.as_deref(),
            Some(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
            )
        );
        let m = match_policy(
            Some(&policy),
            &failed_pod(42, json!([{"type": "DisruptionTarget", "status": "True"}])),
        );
        assert!(!m.count_failed);
        assert_eq!(m.action.as_deref(), Some("Ignore"));
        let m = match_policy(Some(&policy), &failed_pod(1, json!([])));
        assert_eq!(m, PolicyMatch::none());
        assert_eq!(
            match_policy(Some(&policy), &failed_pod(3, json!([])))
                .action
                .as_deref(),
            Some("Count")
        );
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_to_ten_minutes() {
        let t = |s| jiff::Timestamp::from_second(s).unwrap();
        assert_eq!(remaining_backoff(0, Some(t(0)), t(0)), Duration::ZERO);
        assert_eq!(
            remaining_backoff(1, Some(t(0)), t(4)),
            Duration::from_secs(6)
        );
        assert_eq!(
            remaining_backoff(3, Some(t(0)), t(0)),
            Duration::from_secs(40)
        );
        assert_eq!(remaining_backoff(20, Some(t(0)), t(0)), MAX_BACKOFF);
        assert_eq!(remaining_backoff(2, Some(t(0)), t(30)), Duration::ZERO);
    }
}
