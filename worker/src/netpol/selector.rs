//! Label selectors (`metav1.LabelSelector`) as the API defines them: `matchLabels` and
//! `matchExpressions` (In, NotIn, Exists, DoesNotExist) all hold; an empty selector selects all.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `selector` selects an object with `labels`. An unknown operator selects nothing.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn empty_selects_everything_and_all_terms_must_hold() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(matches(&LabelSelector::default(), &l));
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![expr("tier", "In", &["front", "mid"])]),
        };
        assert!(matches(&sel, &l));
        assert!(!matches(&sel, &labels(&[("app", "web"), ("tier", "back")])));
    }

    #[test]
    fn not_in_and_does_not_exist_hold_for_missing_keys() {
        let l = labels(&[("app", "web")]);
        let sel = |e| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![e]),
        };
        assert!(matches(&sel(expr("env", "NotIn", &["prod"])), &l));
        assert!(matches(&sel(expr("env", "DoesNotExist", &[])), &l));
        assert!(!matches(&sel(expr("env", "Exists", &[])), &l));
        assert!(!matches(&sel(expr("app", "Bogus", &[])), &l));
    }
}
