//! `metadata.managedFields` entries: decoding what objects carry (or a
//! client sends), and encoding them back in upstream's order.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{FieldSet, Writer};

/// At most this many `Update` entries are kept (upstream's
/// `DefaultMaxUpdateManagers`); older ones are merged into
/// [`ANCIENT_CHANGES`] entries.
pub(super) const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager older `Update` entries are merged into, one per apiVersion
/// (upstream's name).
pub(super) const ANCIENT_CHANGES: &str = "ancient-changes";

/// A write's kind of ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, update or a non-apply patch.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) manager: String,
    pub(super) operation: Operation,
    pub(super) api_version: String,
    pub(super) subresource: Option<String>,
    pub(super) time: Option<String>,
    pub(super) set: FieldSet,
}

impl Entry {
    /// Upstream's manager identifier: appliers are one manager whatever
    /// apiVersion they used.
    fn same_manager(&self, manager: &str, op: Operation, sub: Option<&str>, av: &str) -> bool {
        self.manager == manager
            && self.operation == op
            && self.subresource.as_deref() == sub
            && (op == Operation::Apply || self.api_version == av)
    }

    /// How conflicts name this manager: `"m" with subresource "s" using v`.
    pub(super) fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn encode(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), self.operation.as_str().into());
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(t) = &self.time {
            m.insert("time".into(), Value::String(t.clone()));
        }
        m.insert("fieldsType".into(), "FieldsV1".into());
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), Value::String(s.clone()));
        }
        Value::Object(m)
    }

    fn decode(v: &Value) -> Result<Entry, String> {
        let Value::Object(m) = v else {
            return Err("an entry is not an object".into());
        };
        let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let operation = match text("operation").as_str() {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            // `[{}]` resets managedFields: an entry that owns nothing.
            "" if m.get("fieldsV1").is_none() => Operation::Update,
            other => return Err(format!("unsupported operation {other:?}")),
        };
        match m.get("fieldsType").and_then(Value::as_str) {
            None | Some("FieldsV1") => {}
            Some(other) => return Err(format!("unsupported fieldsType {other:?}")),
        }
        let set = match m.get("fieldsV1") {
            Some(f) => FieldSet::from_fields_v1(f)?,
            None => FieldSet::new(),
        };
        Ok(Entry {
            manager: text("manager"),
            operation,
            api_version: text("apiVersion"),
            subresource: Some(text("subresource")).filter(|s| !s.is_empty()),
            time: Some(text("time")).filter(|s| !s.is_empty()),
            set,
        })
    }
}

/// The `managedFields` of an object, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Managers(pub(super) Vec<Entry>);

impl Managers {
    /// Decodes `metadata.managedFields`; `Ok(None)` if there is none.
    pub(super) fn decode(obj: &Value) -> Result<Option<Managers>, String> {
        match obj.pointer("/metadata/managedFields") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(Entry::decode)
                .collect::<Result<Vec<_>, _>>()
                .map(|v| Some(Managers(v))),
            Some(_) => Err("managedFields is not a list".into()),
        }
    }

    /// Stores the entries in `obj` (dropping empty ones), sorted as upstream
    /// sorts them: appliers first, then by time, manager, apiVersion and
    /// subresource.
    pub(super) fn encode_into(mut self, obj: &mut Value) {
        self.0.retain(|e| !e.set.is_empty());
        self.0.sort_by(|a, b| {
            (
                a.operation,
                &a.time,
                &a.manager,
                &a.api_version,
                &a.subresource,
            )
                .cmp(&(
                    b.operation,
                    &b.time,
                    &b.manager,
                    &b.api_version,
                    &b.subresource,
                ))
        });
        let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        if self.0.is_empty() {
            m.remove("managedFields");
        } else {
            let list = self.0.iter().map(Entry::encode).collect();
            m.insert("managedFields".into(), Value::Array(list));
        }
    }

    /// Upstream's `capUpdateManagers`: with more than
    /// [`MAX_UPDATE_MANAGERS`] `Update` entries, walks them oldest first
    /// (by time, then manager) and merges each one whose apiVersion an
    /// older entry already has into that version's `ancient-changes`
    /// bucket (made from the oldest entry of the version when there is
    /// none yet), taking the newer time, until the cap holds. Appliers are
    /// never merged.
    pub(super) fn cap_updates(&mut self) {
        let updates = self
            .0
            .iter()
            .filter(|e| e.operation == Operation::Update)
            .count();
        if updates <= MAX_UPDATE_MANAGERS {
            return;
        }
        let (mut entries, appliers): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|e| e.operation == Operation::Update);
        entries.sort_by(|a, b| {
            (
                a.time.as_deref().unwrap_or(""),
                &a.manager,
                &a.api_version,
                &a.subresource,
            )
                .cmp(&(
                    b.time.as_deref().unwrap_or(""),
                    &b.manager,
                    &b.api_version,
                    &b.subresource,
                ))
        });
        let is_bucket = |e: &Entry, version: &str| {
            e.manager == ANCIENT_CHANGES && e.subresource.is_none() && e.api_version == version
        };
        let mut gone = vec![false; entries.len()];
        let mut first_of: HashMap<String, usize> = HashMap::new();
        let mut left = updates;
        for i in 0..entries.len() {
            if left <= MAX_UPDATE_MANAGERS {
                break;
            }
            let version = entries[i].api_version.clone();
            let Some(&first) = first_of.get(&version) else {
                first_of.insert(version, i);
                continue;
            };
            let existing =
                (0..entries.len()).find(|&j| !gone[j] && is_bucket(&entries[j], &version));
            let bucket = existing.unwrap_or(first);
            // The bucket is the newer of the two when an older apply of
            // this cap made it and it sorts after `first`: take `first`
            // into it (upstream would drop the bucket's fields here).
            let (into, from) = if bucket == i { (i, first) } else { (bucket, i) };
            let merged = entries[from].set.clone();
            let time = entries[i].time.clone();
            let target = &mut entries[into];
            target.manager = ANCIENT_CHANGES.to_string();
            target.subresource = None;
            target.set.union_with(&merged);
            target.time = time;
            gone[from] = true;
            left -= 1;
        }
        self.0 = appliers;
        self.0.extend(
            entries
                .into_iter()
                .zip(gone)
                .filter_map(|(e, gone)| (!gone).then_some(e)),
        );
    }

    pub(super) fn position(&self, w: &Writer, op: Operation, av: &str) -> Option<usize> {
        self.0
            .iter()
            .position(|e| e.same_manager(&w.manager, op, w.subresource.as_deref(), av))
    }
}
