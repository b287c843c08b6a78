//! The JSONPath subset `additionalPrinterColumns` use (upstream evaluates
//! them with client-go's `jsonpath`): dotted fields (`.spec.replicas`),
//! indexes (`[0]`, `[-1]`), the wildcard `[*]`, and equality filters
//! (`[?(@.type=="Ready")]`). An optional `{…}` wrapper is accepted.

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `.name` (or `['name']`).
    Field(String),
    /// `[i]`; negative counts from the end.
    Index(i64),
    /// `[*]`: every element.
    All,
    /// `[?(@.a.b == value)]`.
    Filter(Vec<String>, Value),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

/// Why a path did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported JSONPath {path:?}: {why}")]
pub struct JsonPathError {
    /// The path as written.
    pub path: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl JsonPath {
    /// Parses `path`.
    ///
    /// # Errors
    /// A path outside the supported subset.
    pub fn parse(path: &str) -> Result<Self, JsonPathError> {
        let err = |why| JsonPathError {
            path: path.to_string(),
            why,
        };
        let mut rest = path.trim();
        if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            rest = inner.trim();
        }
        let rest = rest.strip_prefix('$').unwrap_or(rest);
        let mut steps = Vec::new();
        let mut chars = rest;
        while !chars.is_empty() {
            if let Some(r) = chars.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let (name, tail) = r.split_at(end);
                if !name.is_empty() {
                    steps.push(Step::Field(name.to_string()));
                }
                chars = tail;
            } else if let Some(r) = chars.strip_prefix('[') {
                let end = r.find(']').ok_or_else(|| err("unterminated ["))?;
                let (inner, tail) = r.split_at(end);
                chars = tail.strip_prefix(']').unwrap_or(tail);
                steps.push(parse_bracket(inner.trim()).ok_or_else(|| err("unsupported [...]"))?);
            } else {
                return Err(err("expected '.' or '['"));
            }
        }
        Ok(JsonPath { steps })
    }

    /// Every value the path selects in `obj`, in order.
    pub fn find<'a>(&self, obj: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![obj];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in cur {
                match (step, v) {
                    (Step::Field(f), Value::Object(m)) => next.extend(m.get(f)),
                    (Step::Index(i), Value::Array(a)) => {
                        let idx = if *i < 0 {
                            usize::try_from(i.unsigned_abs())
                                .ok()
                                .and_then(|n| a.len().checked_sub(n))
                        } else {
                            usize::try_from(*i).ok()
                        };
                        next.extend(idx.and_then(|n| a.get(n)));
                    }
                    (Step::All, Value::Array(a)) => next.extend(a.iter()),
                    (Step::All, Value::Object(m)) => next.extend(m.values()),
                    (Step::Filter(path, want), Value::Array(a)) => {
                        next.extend(a.iter().filter(|x| lookup(x, path) == Some(want)));
                    }
                    _ => {}
                }
            }
            cur = next;
        }
        cur
    }
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, f| cur.get(f))
}

fn parse_bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Ok(i) = inner.parse::<i64>() {
        return Some(Step::Index(i));
    }
    if let Some(q) = inner
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| inner.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
    {
        return Some(Step::Field(q.to_string()));
    }
    let expr = inner.strip_prefix("?(")?.strip_suffix(')')?;
    let (lhs, rhs) = expr.split_once("==")?;
    let path: Vec<String> = lhs
        .trim()
        .strip_prefix("@.")?
        .split('.')
        .map(str::to_string)
        .collect();
    let rhs = rhs.trim();
    let value = if let Some(s) = rhs
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| rhs.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
    {
        Value::String(s.to_string())
    } else {
        serde_json::from_str(rhs).ok()?
    };
    Some(Step::Filter(path, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_forms_printer_columns_use() {
        let obj = json!({"spec": {"replicas": 3, "items": [{"n": "a"}, {"n": "b"}]},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let one = |p: &str| {
            JsonPath::parse(p)
                .unwrap()
                .find(&obj)
                .first()
                .map(|v| (*v).clone())
        };
        assert_eq!(one(".spec.replicas"), Some(json!(3)));
        assert_eq!(one("{.spec.items[0].n}"), Some(json!("a")));
        assert_eq!(one(".spec.items[-1].n"), Some(json!("b")));
        assert_eq!(
            one(".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("True"))
        );
        assert_eq!(
            one(".status.conditions[?(@.type=='Synced')].status"),
            Some(json!("False"))
        );
        assert_eq!(one(".spec.missing"), None);
        assert!(JsonPath::parse(".spec[").is_err());
    }
}
