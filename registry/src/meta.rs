//! `metadata` helpers: server-set fields, name rules and accessors on
//! objects held as JSON.

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value};

use super::{FieldError, NameRule};

/// Now, truncated to whole seconds, as Kubernetes `metav1.Time` carries it.
pub fn now() -> jiff::Timestamp {
    let t = jiff::Timestamp::now();
    jiff::Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// RFC 3339 with second precision, e.g. `2026-11-21T07:15:25Z`.
pub fn format_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // SystemRandom only fails if the OS has no randomness at all; a zero
    // buffer would then still give syntactically valid (if predictable) ids.
    let _ = SystemRandom::new().fill(&mut b);
    b
}

/// A random RFC 4122 version-4 UUID.
pub fn new_uid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Five random characters from upstream's alphabet (no vowels, no
/// look-alikes), appended to `generateName`.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes::<5>()
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// `obj.metadata`, created if missing.
pub fn metadata_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let o = obj.as_object_mut()?;
    let m = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if m.is_null() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut()
}

/// A string field of `obj.metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.name` or "".
pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// `metadata.namespace` or "".
pub fn namespace(obj: &Value) -> &str {
    meta_str(obj, "namespace").unwrap_or("")
}

/// `metadata.labels` as pairs.
pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.get("labels")?.as_object()
}

/// The strings of a JSON array (`rules[].verbs`, a review's `groups`); non-strings and a
/// missing or non-array value give none.
pub fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, rv: u64) {
    if let Some(m) = metadata_mut(obj) {
        m.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

fn is_label_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
}

/// RFC 1123 label: lowercase alphanumerics and '-', at most 63, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| is_label_char(*c))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// RFC 1123 subdomain: dot-separated labels, at most 253.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Checks a name against `rule`, as upstream's `ValidateObjectMeta` does.
pub fn validate_name(name: &str, rule: NameRule) -> Option<FieldError> {
    let (ok, detail) = match rule {
        NameRule::Label => (
            is_dns_label(name),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ),
        NameRule::Subdomain => (
            is_dns_subdomain(name),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
        NameRule::PathSegment => (
            !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%']),
            "may not be '.' or '..' and may not contain '/' or '%'",
        ),
    };
    (!ok).then(|| FieldError::invalid("metadata.name", name, detail))
}

/// Checks label keys and values (`metadata.labels`).
pub fn validate_labels(obj: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    let Some(labels) = labels(obj) else {
        return out;
    };
    for (k, v) in labels {
        if !is_qualified_name(k) {
            out.push(FieldError::invalid(
                "metadata.labels",
                k,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ));
        }
        match v.as_str() {
            Some(s) if is_label_value(s) => {}
            Some(s) => out.push(FieldError::invalid(
                "metadata.labels",
                s,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            )),
            None => out.push(FieldError::invalid(
                "metadata.labels",
                &v.to_string(),
                "must be a string",
            )),
        }
    }
    out
}

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// `[prefix/]name`, as label and annotation keys.
pub fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name_part(name),
        None => is_name_part(s),
    }
}

/// A label value: empty or a name part.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_name_part(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_v4() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.as_bytes()[14], b'4');
        assert_ne!(new_uid(), u);
    }

    #[test]
    fn names() {
        assert!(is_dns_label("a-b1"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("A"));
        assert!(is_dns_subdomain("a.b-c"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(validate_name("Bad_Name", NameRule::Subdomain).is_some());
        assert!(is_qualified_name("app.kubernetes.io/name"));
        assert!(!is_qualified_name("a/b/c"));
        assert_eq!(random_suffix().len(), 5);
    }

    #[test]
    fn time_format() {
        let t = jiff::Timestamp::from_second(0).unwrap();
        assert_eq!(format_time(t), "1970-01-01T00:00:00Z");
    }
}
