//! Label and node selectors, compiled once per pod or object and matched
//! many times, with upstream's semantics (`labels.Selector`,
//! `metav1.LabelSelectorAsSelector`, `nodeaffinity.NodeSelector`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels as the scheduler keeps them (sorted, so lookups are cheap).
pub(crate) type Labels = BTreeMap<String, String>;

/// A selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    /// The key has one of the values.
    In,
    /// The key is absent or has none of the values.
    NotIn,
    /// The key is present.
    Exists,
    /// The key is absent.
    DoesNotExist,
    /// The key's value, as an integer, is greater (node selectors only).
    Gt,
    /// The key's value, as an integer, is less (node selectors only).
    Lt,
}

impl Op {
    fn parse(s: &str, numeric: bool) -> Option<Op> {
        Some(match s {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" if numeric => Op::Gt,
            "Lt" if numeric => Op::Lt,
            _ => return None,
        })
    }
}

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    /// `key op values`; `None` when the operator or values are invalid.
    fn new(key: &str, op: Op, values: Vec<String>) -> Option<Self> {
        let ok = match op {
            Op::In | Op::NotIn => !values.is_empty(),
            Op::Exists | Op::DoesNotExist => values.is_empty(),
            Op::Gt | Op::Lt => values.len() == 1 && values[0].parse::<i64>().is_ok(),
        };
        ok.then(|| Requirement {
            key: key.to_string(),
            op,
            values,
        })
    }

    /// `key In (value)`.
    pub(crate) fn equals(key: &str, value: &str) -> Self {
        Requirement {
            key: key.to_string(),
            op: Op::In,
            values: vec![value.to_string()],
        }
    }

    /// `key NotIn (value)`.
    pub(crate) fn not_equals(key: &str, value: &str) -> Self {
        Requirement {
            key: key.to_string(),
            op: Op::NotIn,
            values: vec![value.to_string()],
        }
    }

    fn matches_value(&self, v: Option<&str>) -> bool {
        match (self.op, v) {
            (Op::In, Some(v)) => self.values.iter().any(|x| x == v),
            (Op::In, None) => false,
            (Op::NotIn, Some(v)) => !self.values.iter().any(|x| x == v),
            (Op::NotIn, None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt | Op::Lt, None) => false,
            (op, Some(v)) => {
                let (Ok(have), Some(Ok(want))) = (
                    v.parse::<i64>(),
                    self.values.first().map(|w| w.parse::<i64>()),
                ) else {
                    return false;
                };
                if op == Op::Gt {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }

    fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.key).map(String::as_str))
    }
}

/// A label selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Selector {
    /// Selects nothing (a nil or invalid `metav1.LabelSelector`).
    Nothing,
    /// Selects what satisfies every requirement; none selects everything.
    All(Vec<Requirement>),
}

impl Selector {
    /// `metav1.LabelSelectorAsSelector`: nil selects nothing, `{}`
    /// everything; an invalid selector selects nothing.
    pub(crate) fn from_label_selector(sel: Option<&LabelSelector>) -> Self {
        let Some(sel) = sel else {
            return Selector::Nothing;
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement::equals(k, v));
        }
        for e in sel.match_expressions.iter().flatten() {
            let Some(op) = Op::parse(&e.operator, false) else {
                return Selector::Nothing;
            };
            match Requirement::new(&e.key, op, e.values.clone().unwrap_or_default()) {
                Some(r) => reqs.push(r),
                None => return Selector::Nothing,
            }
        }
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Selector::All(reqs)
    }

    /// A selector of exactly these labels (`labels.SelectorFromSet`):
    /// an empty set selects everything.
    pub(crate) fn from_set(set: &Labels) -> Self {
        Selector::All(set.iter().map(|(k, v)| Requirement::equals(k, v)).collect())
    }

    /// Whether it selects everything (`Selector.Empty()`).
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Selector::All(r) if r.is_empty())
    }

    /// Adds a requirement (as `Selector.Add`); nothing stays nothing.
    pub(crate) fn add(&mut self, r: Requirement) {
        if let Selector::All(reqs) = self {
            reqs.push(r);
        }
    }

    /// Whether `labels` are selected.
    pub(crate) fn matches(&self, labels: &Labels) -> bool {
        match self {
            Selector::Nothing => false,
            Selector::All(reqs) => reqs.iter().all(|r| r.matches(labels)),
        }
    }
}

/// One compiled `NodeSelectorTerm`: expressions on labels and fields
/// (`metadata.name` only). A term without either matches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeTerm {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
    /// A term that failed to parse (upstream's lazy error): matches nothing.
    valid: bool,
}

fn node_requirements(reqs: &[NodeSelectorRequirement], fields: bool) -> Option<Vec<Requirement>> {
    reqs.iter()
        .map(|r| {
            let op = Op::parse(&r.operator, !fields)?;
            if fields && (r.key != "metadata.name" || !matches!(op, Op::In | Op::NotIn)) {
                return None;
            }
            if fields && r.values.as_ref().is_none_or(|v| v.len() != 1) {
                return None;
            }
            Requirement::new(&r.key, op, r.values.clone().unwrap_or_default())
        })
        .collect()
}

impl NodeTerm {
    /// Compiles one term.
    pub(crate) fn new(term: &NodeSelectorTerm) -> Self {
        let labels = node_requirements(term.match_expressions.as_deref().unwrap_or(&[]), false);
        let fields = node_requirements(term.match_fields.as_deref().unwrap_or(&[]), true);
        match (labels, fields) {
            (Some(labels), Some(fields)) => NodeTerm {
                labels,
                fields,
                valid: true,
            },
            _ => NodeTerm {
                labels: Vec::new(),
                fields: Vec::new(),
                valid: false,
            },
        }
    }

    /// Whether the node named `name` with `labels` matches.
    pub(crate) fn matches(&self, name: &str, labels: &Labels) -> bool {
        if !self.valid || (self.labels.is_empty() && self.fields.is_empty()) {
            return false;
        }
        self.labels.iter().all(|r| r.matches(labels))
            && self.fields.iter().all(|r| r.matches_value(Some(name)))
    }

    /// The node names a `metadata.name In` field requirement allows, if any.
    pub(crate) fn named_nodes(&self) -> Option<&[String]> {
        self.fields
            .iter()
            .find(|r| r.op == Op::In)
            .map(|r| r.values.as_slice())
    }
}

/// A `NodeSelector`: its terms are ORed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct NodeSelector {
    /// The compiled terms.
    pub(crate) terms: Vec<NodeTerm>,
}

impl NodeSelector {
    /// Compiles `terms`.
    pub(crate) fn new(terms: &[NodeSelectorTerm]) -> Self {
        NodeSelector {
            terms: terms.iter().map(NodeTerm::new).collect(),
        }
    }

    /// Whether any term matches.
    pub(crate) fn matches(&self, name: &str, labels: &Labels) -> bool {
        self.terms.iter().any(|t| t.matches(name, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_follow_upstream() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(!Selector::from_label_selector(None).matches(&l));
        assert!(Selector::from_label_selector(Some(&LabelSelector::default())).matches(&l));
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "NotIn".into(),
                values: Some(vec!["prod".into()]),
            }]),
        };
        let s = Selector::from_label_selector(Some(&sel));
        assert!(s.matches(&l), "NotIn matches an absent key");
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod")])));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "x".into(),
                operator: "Gt".into(),
                values: Some(vec!["1".into()]),
            }]),
            ..Default::default()
        };
        assert_eq!(Selector::from_label_selector(Some(&bad)), Selector::Nothing);
        assert!(Selector::from_set(&Labels::new()).is_empty());
    }

    #[test]
    fn node_terms() {
        let term = |exprs: Vec<(&str, &str, Vec<&str>)>, fields: Vec<(&str, &str, Vec<&str>)>| {
            let conv = |v: Vec<(&str, &str, Vec<&str>)>| {
                v.into_iter()
                    .map(|(k, op, vals)| NodeSelectorRequirement {
                        key: k.into(),
                        operator: op.into(),
                        values: Some(vals.into_iter().map(String::from).collect()),
                    })
                    .collect::<Vec<_>>()
            };
            NodeTerm::new(&NodeSelectorTerm {
                match_expressions: Some(conv(exprs)),
                match_fields: Some(conv(fields)),
            })
        };
        let l = labels(&[("cores", "8"), ("zone", "a")]);
        assert!(term(vec![("cores", "Gt", vec!["4"])], vec![]).matches("n1", &l));
        assert!(!term(vec![("cores", "Lt", vec!["4"])], vec![]).matches("n1", &l));
        assert!(
            !term(vec![], vec![]).matches("n1", &l),
            "an empty term matches nothing"
        );
        let named = term(vec![], vec![("metadata.name", "In", vec!["n1"])]);
        assert!(named.matches("n1", &l) && !named.matches("n2", &l));
        assert_eq!(named.named_nodes(), Some(&["n1".to_string()][..]));
        let invalid = term(vec![("zone", "Bogus", vec!["a"])], vec![]);
        assert!(!invalid.matches("n1", &l));
        let sel = NodeSelector {
            terms: vec![invalid, term(vec![("zone", "In", vec!["a", "b"])], vec![])],
        };
        assert!(
            sel.matches("n1", &l),
            "terms are ORed; an invalid one is skipped"
        );
    }
}
