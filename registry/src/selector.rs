//! Label and field selectors, with upstream's syntax and error messages.

use serde_json::Value;

use super::{Error, Result, Strategy, meta};

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelOp {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

/// A parsed `labelSelector`: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<(String, LabelOp)>,
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn bad(sel: &str, why: &str) -> Error {
    Error::BadRequest(format!("unable to parse requirement: {why} in {sel:?}"))
}

fn check_key(sel: &str, key: &str) -> Result<String> {
    if meta::is_qualified_name(key) {
        Ok(key.to_string())
    } else {
        Err(bad(sel, &format!("invalid label key {key:?}")))
    }
}

fn check_value(sel: &str, v: &str) -> Result<String> {
    let v = v.trim();
    if meta::is_label_value(v) {
        Ok(v.to_string())
    } else {
        Err(bad(sel, &format!("invalid label value: {v:?}")))
    }
}

fn parse_set(sel: &str, rest: &str) -> Result<Vec<String>> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad(sel, "expected '(' and ')' around values"))?;
    inner.split(',').map(|v| check_value(sel, v)).collect()
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (f,g),h notin (i),j,!k`.
    ///
    /// # Errors
    /// 400 BadRequest for syntax errors or invalid keys and values.
    pub fn parse(sel: &str) -> Result<Self> {
        let mut reqs = Vec::new();
        if sel.trim().is_empty() {
            return Ok(LabelSelector { reqs });
        }
        for part in split_top(sel) {
            let p = part.trim();
            if p.is_empty() {
                return Err(bad(sel, "empty requirement"));
            }
            let req = if let Some(k) = p.strip_prefix('!') {
                (check_key(sel, k.trim())?, LabelOp::NotExists)
            } else if let Some((k, v)) = p.split_once("!=") {
                (
                    check_key(sel, k.trim())?,
                    LabelOp::NotEq(check_value(sel, v)?),
                )
            } else if let Some((k, v)) = p.split_once("==") {
                (check_key(sel, k.trim())?, LabelOp::Eq(check_value(sel, v)?))
            } else if let Some((k, v)) = p.split_once('=') {
                (check_key(sel, k.trim())?, LabelOp::Eq(check_value(sel, v)?))
            } else if let Some((k, v)) = p.split_once(" notin ") {
                (
                    check_key(sel, k.trim())?,
                    LabelOp::NotIn(parse_set(sel, v)?),
                )
            } else if let Some((k, v)) = p.split_once(" in ") {
                (check_key(sel, k.trim())?, LabelOp::In(parse_set(sel, v)?))
            } else if p.contains([' ', '(', ')', '<', '>']) {
                return Err(bad(sel, "unknown operator"));
            } else {
                (check_key(sel, p)?, LabelOp::Exists)
            };
            reqs.push(req);
        }
        Ok(LabelSelector { reqs })
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether `obj`'s labels satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = meta::labels(obj);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|(k, op)| match op {
            LabelOp::Eq(v) => get(k) == Some(v.as_str()),
            LabelOp::NotEq(v) => get(k) != Some(v.as_str()),
            LabelOp::In(vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelOp::NotIn(vs) => !get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelOp::Exists => get(k).is_some(),
            LabelOp::NotExists => get(k).is_none(),
        })
    }
}

/// A parsed `fieldSelector`: `field=value`, `field==value`, `field!=value`, comma-joined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses and checks every field against what `strategy` supports.
    ///
    /// # Errors
    /// 400 BadRequest: `field label not supported: X`, or a syntax error.
    pub fn parse(sel: &str, strategy: &dyn Strategy) -> Result<Self> {
        let mut reqs = Vec::new();
        if sel.trim().is_empty() {
            return Ok(FieldSelector { reqs });
        }
        for part in sel.split(',') {
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(Error::BadRequest(format!(
                    "invalid selector: '{sel}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            let supported = matches!(field, "metadata.name" | "metadata.namespace")
                || strategy.selectable_fields().contains(&field);
            if !supported {
                return Err(Error::BadRequest(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector { reqs })
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The name this selector pins with `metadata.name=X`, if any.
    pub fn exact_name(&self) -> Option<&str> {
        self.reqs
            .iter()
            .find(|(f, eq, _)| *eq && f == "metadata.name")
            .map(|(_, _, v)| v.as_str())
    }

    /// Whether `obj` satisfies every requirement.
    pub fn matches(&self, obj: &Value, strategy: &dyn Strategy) -> bool {
        self.reqs.iter().all(|(field, eq, want)| {
            let have = match field.as_str() {
                "metadata.name" => meta::name(obj).to_string(),
                "metadata.namespace" => meta::namespace(obj).to_string(),
                f => strategy.field_value(obj, f).unwrap_or_default(),
            };
            (have == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "x", "labels": labels}})
    }

    #[test]
    fn label_operators() {
        let o = obj(json!({"app": "web", "tier": "fe"}));
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier=be", false),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&o),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn bad_label_selectors_are_400() {
        for sel in ["app in web", "a b c", "=x", "app=-bad-", ","] {
            let e = LabelSelector::parse(sel).unwrap_err();
            assert_eq!(e.code(), 400, "{sel}");
        }
    }
}
