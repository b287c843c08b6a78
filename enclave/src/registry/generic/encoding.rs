//! An object's stored bytes, and its served bytes once a write's revision is known, from one
//! serialization. The stored value is the object without `metadata.resourceVersion` and
//! `metadata.selfLink`; the served value is the object with the revision as its
//! resourceVersion. JSON objects keep their keys sorted, so the served bytes are the stored
//! bytes with `"resourceVersion":"N"` spliced in where that key sorts among metadata's keys:
//! a copy instead of a second serialization, and no deep clone to remove the two keys. The
//! resident copy keeps only where the splice goes ([`VersionSlot`]), not a second copy of
//! every object.

use std::io::Write;

use serde_json::Value;

const RESOURCE_VERSION: &str = "resourceVersion";

/// Where `"resourceVersion":"N"` goes in the stored bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct VersionSlot {
    offset: usize,
    /// A comma before it (it follows another metadata key).
    comma_before: bool,
    /// A comma after it (another metadata key follows).
    comma_after: bool,
}

/// The stored bytes of an object.
#[derive(Debug)]
pub(super) struct Stored {
    /// What the store keeps.
    pub(super) bytes: Vec<u8>,
    /// `None` when the served bytes cannot be spliced (no metadata object, or a selfLink the
    /// stored form drops but the served one keeps).
    version_at: Option<VersionSlot>,
}

impl Stored {
    /// Serializes `obj` without its resourceVersion and selfLink.
    ///
    /// # Errors
    /// A value serde_json cannot write (not for values it parsed).
    pub(super) fn encode(obj: &Value) -> serde_json::Result<Stored> {
        let Some((top, meta)) = obj
            .as_object()
            .and_then(|top| Some((top, top.get("metadata")?.as_object()?)))
        else {
            return Ok(Stored {
                bytes: serde_json::to_vec(obj)?,
                version_at: None,
            });
        };
        let mut out = Vec::with_capacity(1024);
        let mut version_at = None;
        out.push(b'{');
        for (i, (key, value)) in top.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, key)?;
            out.push(b':');
            if key != "metadata" {
                serde_json::to_writer(&mut out, value)?;
                continue;
            }
            out.push(b'{');
            let mut written = 0;
            for (k, v) in meta {
                if k == RESOURCE_VERSION || k == "selfLink" {
                    continue;
                }
                if version_at.is_none() && k.as_str() > RESOURCE_VERSION {
                    version_at = Some(VersionSlot {
                        offset: out.len() + usize::from(written > 0),
                        comma_before: false,
                        comma_after: true,
                    });
                }
                if written > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut out, k)?;
                out.push(b':');
                serde_json::to_writer(&mut out, v)?;
                written += 1;
            }
            if version_at.is_none() {
                version_at = Some(VersionSlot {
                    offset: out.len(),
                    comma_before: written > 0,
                    comma_after: false,
                });
            }
            out.push(b'}');
        }
        out.push(b'}');
        if meta.contains_key("selfLink") {
            version_at = None;
        }
        Ok(Stored {
            bytes: out,
            version_at,
        })
    }

    /// Where the served bytes take the resourceVersion; `None` when they cannot be spliced.
    pub(super) fn version_slot(&self) -> Option<VersionSlot> {
        self.version_at
    }
}

impl VersionSlot {
    /// Appends the served bytes of `stored` (bytes this slot was made with) at `revision`
    /// to `out`.
    pub(super) fn write_spliced(self, stored: &[u8], revision: u64, out: &mut Vec<u8>) {
        let (head, tail) = stored.split_at(self.offset.min(stored.len()));
        out.extend_from_slice(head);
        if self.comma_before {
            out.push(b',');
        }
        // Infallible: writing to a Vec.
        let _ = write!(out, "\"{RESOURCE_VERSION}\":\"{revision}\"");
        if self.comma_after {
            out.push(b',');
        }
        out.extend_from_slice(tail);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(obj: Value) {
        let stored = Stored::encode(&obj).unwrap();
        let mut plain = obj.clone();
        if let Some(m) = plain.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("selfLink");
        }
        assert_eq!(
            String::from_utf8_lossy(&stored.bytes),
            serde_json::to_string(&plain).unwrap(),
            "stored form of {obj}"
        );
        let has_self_link = obj.pointer("/metadata/selfLink").is_some();
        match stored.version_slot() {
            Some(at) => {
                let mut served = Vec::new();
                at.write_spliced(&stored.bytes, 42, &mut served);
                assert!(!has_self_link);
                let mut versioned = obj.clone();
                versioned["metadata"]["resourceVersion"] = json!("42");
                assert_eq!(
                    String::from_utf8_lossy(&served),
                    serde_json::to_string(&versioned).unwrap(),
                    "served form of {obj}"
                );
            }
            None => assert!(has_self_link || !obj["metadata"].is_object(), "{obj}"),
        }
    }

    #[test]
    fn both_forms_equal_serde_jsons() {
        check(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u", "resourceVersion": "7",
                         "labels": {"a": "b\"q"}},
            "spec": {"containers": [{"name": "c"}]}, "status": {}}));
        // resourceVersion sorts first, last, alone, or among nothing.
        check(json!({"metadata": {"uid": "u"}}));
        check(json!({"metadata": {"name": "n"}}));
        check(json!({"metadata": {}}));
        check(json!({"metadata": {"resourceVersion": "1"}}));
        check(json!({"a": 1, "metadata": {"annotations": {}, "zzz": 1}, "zz": [1, 2]}));
        check(json!({"metadata": {"name": "n", "selfLink": "/x", "uid": "u"}}));
        check(json!({"metadata": "not an object"}));
        check(json!({"kind": "NoMetadata"}));
        check(json!([1, 2]));
        check(json!({"metadata": {"name": "ünïcode\u{1}", "résumé": "\n"}}));
    }
}
