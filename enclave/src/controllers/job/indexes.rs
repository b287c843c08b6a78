//! Completion indexes of Indexed Jobs (upstream `indexed_job_utils.go`
//! and `success_policy.go`): the compressed interval lists of
//! `status.completedIndexes` and `status.failedIndexes`, the pods'
//! completion index and per-index failure counts, the first pending
//! indexes, and the success policy's rules.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::SuccessPolicy;
use k8s_openapi::api::core::v1::Pod;

/// The annotation (and label) with a pod's completion index.
pub(crate) const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The annotation with the failures counted against a pod's index.
pub(crate) const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// The annotation with the failures a pod failure policy ignored in a
/// pod's index.
pub(crate) const INDEX_IGNORED_FAILURE_COUNT: &str =
    "batch.kubernetes.io/job-index-ignored-failure-count";

/// Ordered, disjoint, non-adjacent inclusive intervals of indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Intervals(pub(crate) Vec<(i32, i32)>);

impl Intervals {
    /// upstream's `parseIndexesFromString`: `1,3-5,7`; intervals at or
    /// beyond `completions` are cut; malformed parts are skipped.
    pub(crate) fn parse(s: &str, completions: i32) -> Self {
        let mut out: Vec<(i32, i32)> = Vec::new();
        if s.is_empty() {
            return Intervals(out);
        }
        for part in s.split(',') {
            let mut limits = part.split('-');
            let Some(Ok(first)) = limits.next().map(str::parse::<i32>) else {
                continue;
            };
            if first >= completions {
                break;
            }
            let last = match limits.next() {
                Some(l) => match l.parse::<i32>() {
                    Ok(l) => l.min(completions - 1),
                    Err(_) => continue,
                },
                None => first,
            };
            match out.last_mut() {
                Some(prev) if prev.1 == first - 1 => prev.1 = last,
                _ => out.push((first, last)),
            }
        }
        Intervals(out)
    }

    /// A new list with `indexes` (in increasing order) added.
    pub(crate) fn with_ordered_indexes(&self, indexes: &[i32]) -> Self {
        let extra = Intervals(indexes.iter().map(|i| (*i, *i)).collect());
        self.merge(&extra)
    }

    /// upstream's `merge`: the union, as intervals.
    pub(crate) fn merge(&self, other: &Intervals) -> Self {
        let mut all: Vec<(i32, i32)> = self.0.iter().chain(&other.0).copied().collect();
        all.sort_unstable();
        let mut out: Vec<(i32, i32)> = Vec::new();
        for iv in all {
            match out.last_mut() {
                Some(last) if iv.0 <= last.1.saturating_add(1) => last.1 = last.1.max(iv.1),
                _ => out.push(iv),
            }
        }
        Intervals(out)
    }

    /// How many indexes.
    pub(crate) fn total(&self) -> i32 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }

    /// Whether `ix` is in.
    pub(crate) fn has(&self, ix: i32) -> bool {
        self.0.iter().any(|(a, b)| *a <= ix && ix <= *b)
    }

    /// Whether empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Intervals {
    /// upstream's `String`: `1,3-5`, with a pair as `1,2`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, (a, b)) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
            if b > a {
                let sep = if *b == a + 1 { "," } else { "-" };
                write!(f, "{sep}{b}")?;
            }
        }
        Ok(())
    }
}

/// upstream's `getCompletionIndex`: the pod's index, `None` when absent,
/// malformed or negative.
pub(crate) fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX)?
        .parse::<i32>()
        .ok()
        .filter(|i| *i >= 0)
}

/// Whether `pod` has an index below `completions`.
pub(crate) fn valid_index(pod: &Pod, completions: i32) -> Option<i32> {
    completion_index(pod).filter(|i| *i < completions)
}

fn count_annotation(pod: &Pod, key: &str) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(|v| i32::try_from(v).ok())
        .filter(|v| *v >= 0)
        .unwrap_or(0)
}

/// upstream's `getIndexFailureCount`.
pub(crate) fn index_failure_count(pod: &Pod) -> i32 {
    count_annotation(pod, INDEX_FAILURE_COUNT)
}

/// upstream's `parseIndexFailureIgnoreCountAnnotation`.
pub(crate) fn index_ignored_failure_count(pod: &Pod) -> i32 {
    count_annotation(pod, INDEX_IGNORED_FAILURE_COUNT)
}

/// upstream's `getIndexAbsoluteFailureCount`.
pub(crate) fn index_absolute_failure_count(pod: &Pod) -> i32 {
    index_failure_count(pod).saturating_add(index_ignored_failure_count(pod))
}

/// The set of indexes `pods` carry.
pub(crate) fn indexes_of<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> BTreeSet<i32> {
    pods.into_iter().filter_map(completion_index).collect()
}

/// upstream's `firstPendingIndexes`: up to `count` indexes below
/// `completions` not in `non_pending`, lowest first.
pub(crate) fn first_pending(non_pending: &Intervals, count: usize, completions: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut candidate = 0;
    while candidate < completions && out.len() < count {
        if let Some((_, last)) = non_pending
            .0
            .iter()
            .find(|(a, b)| *a <= candidate && candidate <= *b)
        {
            candidate = last + 1;
            continue;
        }
        out.push(candidate);
        candidate += 1;
    }
    out
}

/// upstream's `podGenerateNameWithIndex`: `<job>-<index>-`, the job name
/// cut so the prefix fits the 58 characters of a generated name.
pub(crate) fn generate_name_with_index(job: &str, index: i32) -> String {
    const MAX_GENERATED_NAME_LENGTH: usize = 58;
    let suffix = format!("-{index}-");
    let prefix = format!("{job}{suffix}");
    if prefix.len() > MAX_GENERATED_NAME_LENGTH {
        let keep = MAX_GENERATED_NAME_LENGTH.saturating_sub(suffix.len());
        let cut: String = job.chars().take(keep).collect();
        format!("{cut}{suffix}")
    } else {
        prefix
    }
}

/// upstream's `matchSuccessPolicy`: the message of the first rule the
/// succeeded indexes satisfy.
pub(crate) fn match_success_policy(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &Intervals,
) -> Option<String> {
    let policy = policy?;
    if succeeded.is_empty() {
        return None;
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        if let Some(indexes) = &rule.succeeded_indexes {
            let required = Intervals::parse(indexes, completions);
            if required.is_empty() {
                continue;
            }
            if matches_indexes_rule(&required, succeeded, rule.succeeded_count) {
                return Some(format!("Matched rules at index {i}"));
            }
        } else if let Some(count) = rule.succeeded_count
            && succeeded.total() >= count
        {
            return Some(format!("Matched rules at index {i}"));
        }
    }
    None
}

/// upstream's `matchSucceededIndexesRule`: every required index
/// succeeded, or at least `count` of them.
fn matches_indexes_rule(required: &Intervals, succeeded: &Intervals, count: Option<i32>) -> bool {
    let mut contains = 0;
    for (ra, rb) in &required.0 {
        for (sa, sb) in &succeeded.0 {
            let overlap = rb.min(sb) - ra.max(sa) + 1;
            if overlap > 0 {
                contains += overlap;
            }
        }
    }
    contains == required.total() || count.is_some_and(|c| contains >= c)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::SuccessPolicyRule;

    use super::*;

    #[test]
    fn intervals_parse_merge_and_print_as_upstream() {
        let iv = Intervals::parse("0,2-4,6,7", 10);
        assert_eq!(iv.0, vec![(0, 0), (2, 4), (6, 7)]);
        assert_eq!(iv.to_string(), "0,2-4,6,7");
        assert_eq!(iv.total(), 6);
        assert_eq!(Intervals::parse("1-9", 5).0, vec![(1, 4)]);
        assert_eq!(Intervals::parse("3,x,7", 5).0, vec![(3, 3)]);
        let merged = iv.with_ordered_indexes(&[1, 5, 9]);
        assert_eq!(merged.to_string(), "0-7,9");
        assert!(merged.has(9) && !merged.has(8));
        assert_eq!(Intervals::parse("", 3), Intervals::default());
    }

    #[test]
    fn pending_indexes_skip_the_taken_ones() {
        let taken = Intervals::parse("0,2-3", 10);
        assert_eq!(first_pending(&taken, 3, 10), vec![1, 4, 5]);
        assert_eq!(first_pending(&taken, 5, 5), vec![1, 4]);
    }

    #[test]
    fn success_policy_rules() {
        let policy = SuccessPolicy {
            rules: vec![
                SuccessPolicyRule {
                    succeeded_indexes: Some("0-2".into()),
                    succeeded_count: Some(2),
                },
                SuccessPolicyRule {
                    succeeded_indexes: None,
                    succeeded_count: Some(3),
                },
            ],
        };
        let done = |s: &str| match_success_policy(Some(&policy), 10, &Intervals::parse(s, 10));
        assert_eq!(done("1"), None);
        assert_eq!(done("0,2").as_deref(), Some("Matched rules at index 0"));
        assert_eq!(done("5,7-8").as_deref(), Some("Matched rules at index 1"));
    }

    #[test]
    fn generate_names_keep_the_index() {
        assert_eq!(generate_name_with_index("job", 3), "job-3-");
        let long = "j".repeat(70);
        let n = generate_name_with_index(&long, 12);
        assert_eq!(n.len(), 58);
        assert!(n.ends_with("-12-"));
    }
}
