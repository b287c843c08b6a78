//! Field ownership (`metadata.managedFields`) and server-side apply, with
//! upstream's semantics (`apiserver/pkg/endpoints/handlers/fieldmanager`,
//! `structured-merge-diff`):
//!
//! - every create, update and patch records which fields its *manager*
//!   changed ([`record_update`]): an `Update` entry per manager and
//!   subresource, taking those fields from every other manager;
//! - an apply ([`apply_merge`], then [`record_apply`]) owns exactly the
//!   fields of its configuration, conflicts with other managers that own a
//!   field it would change (409 unless forced), and removes the fields it
//!   set last time but no longer does, unless someone else owns them.
//!
//! Sets are [`FieldSet`]s, encoded as `fieldsV1`. Server-set metadata,
//! `apiVersion` and `kind` are never owned; `status` is owned only through
//! `/status`, and `/status` writers own only `status`.

mod compare;
mod entries;
mod fieldset;
mod merge;
mod shape;
#[cfg(test)]
mod tests;

pub use compare::Comparison;
pub use fieldset::{FieldSet, Path, PathElement, fields_of, path_string};
pub use merge::{merge, prune};
pub use shape::Node;

use serde_json::{Map, Value};

use super::{Error, FieldError};
pub use entries::Operation;
use entries::{Entry, Managers};

/// The 422 upstream gives an apply patch without a field manager:
/// `PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: …`.
#[must_use]
pub fn manager_required() -> Error {
    Error::InvalidOptions {
        kind: "PatchOptions",
        causes: vec![FieldError::required(
            "fieldManager",
            "is required for apply patch",
        )],
    }
}

/// Who writes: the field manager and the subresource written through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    /// `?fieldManager=`, or the User-Agent up to its first `/`.
    pub manager: String,
    /// `status`, `scale`, or `None` for the object itself.
    pub subresource: Option<String>,
}

/// Which part of the object a write may own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The object itself; `status` is excluded when the kind has a status
    /// subresource.
    Main {
        /// Whether the kind serves `/status`.
        status_subresource: bool,
        /// A custom resource's `openAPIV3Schema`, whose list types decide
        /// how lists merge (`None`: a built-in kind, by field name).
        schema: Option<&'a Value>,
    },
    /// `/status`: only `status`.
    Status {
        /// As for [`Scope::Main`].
        schema: Option<&'a Value>,
    },
}

impl<'a> Scope<'a> {
    /// Where walks over an object of this scope start.
    fn root(self) -> Node<'a> {
        match self {
            Scope::Main { schema, .. } | Scope::Status { schema } => Node::root(schema),
        }
    }
}

/// Metadata only the server sets, never owned.
const SERVER_META: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "generation",
    "managedFields",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Whether the field at `path` is one `scope` never owns ([`ownable`] strips these).
fn never_owned(path: &[PathElement], scope: Scope) -> bool {
    let field = |i: usize| match path.get(i) {
        Some(PathElement::Field(f)) => Some(f.as_str()),
        _ => None,
    };
    match (path.len(), scope) {
        (
            1,
            Scope::Main {
                status_subresource, ..
            },
        ) => {
            matches!(field(0), Some("apiVersion" | "kind"))
                || (status_subresource && field(0) == Some("status"))
        }
        (2, Scope::Main { .. }) => {
            field(0) == Some("metadata") && field(1).is_some_and(|f| SERVER_META.contains(&f))
        }
        (1, Scope::Status { .. }) => field(0) != Some("status"),
        _ => false,
    }
}

/// `obj` without what `scope` never owns.
fn ownable(obj: &Value, scope: Scope) -> Value {
    let mut out = obj.clone();
    let Some(o) = out.as_object_mut() else {
        return out;
    };
    o.remove("apiVersion");
    o.remove("kind");
    match scope {
        Scope::Main {
            status_subresource, ..
        } => {
            if status_subresource {
                o.remove("status");
            }
            if let Some(Value::Object(m)) = o.get_mut("metadata") {
                for f in SERVER_META {
                    m.remove(*f);
                }
            }
        }
        Scope::Status { .. } => o.retain(|k, _| k == "status"),
    }
    out
}

/// Struct fields Go always serializes (non-pointer structs, lists without
/// `omitempty`): upstream compares against a zero-valued object in which
/// they exist, so a write never owns these nodes themselves (no `.`),
/// only what is under them, when reached from the root through such fields.
const ALWAYS_PRESENT: &[&str] = &[
    "metadata",
    "spec",
    "status",
    "template",
    "strategy",
    "updateStrategy",
    "jobTemplate",
    "containers",
];

fn unmark_always_present(set: &mut FieldSet) {
    let mut paths = Vec::new();
    collect_always_present(set, &mut Vec::new(), &mut paths);
    for p in paths {
        set.unmark(&p);
    }
}

fn collect_always_present(set: &FieldSet, prefix: &mut Path, out: &mut Vec<Path>) {
    for (pe, child) in set.children() {
        let PathElement::Field(f) = pe else { continue };
        if !ALWAYS_PRESENT.contains(&f.as_str()) {
            continue;
        }
        prefix.push(pe.clone());
        if child.is_member() {
            out.push(prefix.clone());
        }
        collect_always_present(child, prefix, out);
        prefix.pop();
    }
}

/// What changed from `old` to `new` in the part `scope` may own.
fn compare(old: &Value, new: &Value, scope: Scope) -> Comparison {
    let mut c = Comparison::of_except(old, new, scope.root(), &|path| never_owned(path, scope));
    unmark_always_present(&mut c.added);
    unmark_always_present(&mut c.removed);
    c
}

/// Records an `Update` by `writer` from `old` to `new` in
/// `new.metadata.managedFields` (`now` is the entry's time).
///
/// The starting entries are those `new` carries, when the write is to the
/// object itself (not a subresource) and they decode and are not empty (so a client may rewrite them, or reset them with `[{}]`);
/// otherwise `old`'s, so clients that drop them lose nothing.
pub fn record_update(
    old: &Value,
    new: &mut Value,
    writer: &Writer,
    api_version: &str,
    scope: Scope,
    now: &str,
) {
    let from_client = match (scope, Managers::decode(new)) {
        (Scope::Main { .. }, Ok(Some(m))) if !m.0.is_empty() && writer.subresource.is_none() => {
            Some(m)
        }
        _ => None,
    };
    let mut managers =
        from_client.unwrap_or_else(|| Managers::decode(old).ok().flatten().unwrap_or_default());
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    let c = compare(old, new, scope);
    let changed = c.changed();
    let lost = changed.union(&c.removed);
    for e in &mut managers.0 {
        e.set = e.set.difference(&lost);
    }
    if !changed.is_empty() {
        match managers.position(writer, Operation::Update, api_version) {
            Some(i) => {
                if let Some(e) = managers.0.get_mut(i) {
                    e.set.union_with(&changed);
                    e.time = Some(now.to_string());
                }
            }
            None => managers.0.push(Entry {
                manager: writer.manager.clone(),
                operation: Operation::Update,
                api_version: api_version.to_string(),
                subresource: writer.subresource.clone(),
                time: Some(now.to_string()),
                set: changed,
            }),
        }
    }
    managers.cap_updates();
    managers.encode_into(new);
}

/// Keeps `old`'s managedFields on `new` (a write with no field manager).
pub fn carry_over(old: &Value, new: &mut Value) {
    let entries = old.pointer("/metadata/managedFields").cloned();
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        match entries {
            Some(e) => m.insert("managedFields".into(), e),
            None => m.remove("managedFields"),
        };
    }
}

/// The fields an applied configuration sets that `scope` may own.
#[must_use]
pub fn applied_fields(config: &Value, scope: Scope) -> FieldSet {
    fields_of(&ownable(config, scope), scope.root())
}

/// The managers of `live` as an apply sees them: an object that has none
/// is first given to `before-first-apply`, as upstream does, so the first
/// applier does not silently take fields it never set.
fn managers_for_apply(live: &Value, api_version: &str, scope: Scope) -> Managers {
    match Managers::decode(live) {
        Ok(Some(m)) if !m.0.is_empty() => m,
        _ => {
            let set = compare(&Value::Object(Map::new()), live, scope).changed();
            Managers(vec![Entry {
                manager: "before-first-apply".into(),
                operation: Operation::Update,
                api_version: api_version.to_string(),
                subresource: None,
                time: None,
                set,
            }])
        }
    }
}

/// The object an apply of `config` by `writer` makes of `live`: merged,
/// then without the fields `writer` applied last time, dropped from
/// `config`, and owned by no one else.
#[must_use]
pub fn apply_merge(
    live: &Value,
    config: &Value,
    writer: &Writer,
    api_version: &str,
    scope: Scope,
) -> Value {
    let managers = managers_for_apply(live, api_version, scope);
    let mut merged = merge(live, config, scope.root());
    let mine = managers.position(writer, Operation::Apply, api_version);
    if let Some(last) = mine.and_then(|i| managers.0.get(i)) {
        let mut owned = applied_fields(config, scope);
        for (i, e) in managers.0.iter().enumerate() {
            if Some(i) != mine {
                owned.union_with(&e.set);
            }
        }
        prune(&mut merged, &last.set, &owned, scope.root());
    }
    merged
}

/// One apply conflict: another manager owns a field the apply changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The manager, as upstream prints it (`"kubectl" using apps/v1`).
    pub manager: String,
    /// The field, as upstream prints it (`.spec.replicas`).
    pub field: String,
}

/// What an apply sets, and whether it takes fields other managers own.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    /// The fields the applied configuration sets.
    pub fields: &'a FieldSet,
    /// `force=true`.
    pub force: bool,
}

/// Records an `Apply` by `writer` of `applied.fields` from `old` to `new`.
///
/// # Errors
/// The conflicts, unless `applied.force`: fields another manager owns that
/// the apply changes. With `force`, those move to `writer`.
pub fn record_apply(
    old: &Value,
    new: &mut Value,
    applied: Applied<'_>,
    writer: &Writer,
    api_version: &str,
    scope: Scope,
    now: &str,
) -> Result<(), Vec<Conflict>> {
    let Applied {
        fields: config_set,
        force,
    } = applied;
    let mut managers = managers_for_apply(old, api_version, scope);
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    let c = compare(old, new, scope);
    let changed = c.changed();
    let mine = managers.position(writer, Operation::Apply, api_version);
    let mut conflicts = Vec::new();
    for (i, e) in managers.0.iter_mut().enumerate() {
        if Some(i) == mine {
            continue;
        }
        let taken = e.set.intersection(&changed);
        conflicts.extend(taken.paths().iter().map(|p| Conflict {
            manager: e.describe(),
            field: path_string(p),
        }));
        e.set = e.set.difference(&taken).difference(&c.removed);
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|a, b| (&a.manager, &a.field).cmp(&(&b.manager, &b.field)));
        return Err(conflicts);
    }
    let now = Some(now.to_string());
    match mine.and_then(|i| managers.0.get_mut(i)) {
        Some(e) => {
            if !c.is_empty() || e.set != *config_set || e.api_version != api_version {
                e.time = now;
            }
            e.set = config_set.clone();
            e.api_version = api_version.to_string();
        }
        None => managers.0.push(Entry {
            manager: writer.manager.clone(),
            operation: Operation::Apply,
            api_version: api_version.to_string(),
            subresource: writer.subresource.clone(),
            time: now,
            set: config_set.clone(),
        }),
    }
    managers.encode_into(new);
    Ok(())
}

/// The annotation client-side `kubectl apply` keeps its configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The field manager whose applies upstream reconciles with
/// [`LAST_APPLIED`] (kubectl's server-side apply); others opt out.
pub const KUBECTL: &str = "kubectl";

fn last_applied_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// upstream's `lastAppliedManager`: the fields `live`'s [`LAST_APPLIED`]
/// configuration sets (it must be of `api_version`) that still hold the
/// values it set, which kubectl's server-side apply may take over without
/// a conflict. Empty when there is no such annotation or it does not
/// decode.
#[must_use]
pub fn last_applied_fields(live: &Value, api_version: &str, scope: Scope) -> FieldSet {
    let Some(last) = last_applied_of(live).and_then(|t| serde_json::from_str::<Value>(t).ok())
    else {
        return FieldSet::new();
    };
    if last.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return FieldSet::new();
    }
    let c = Comparison::of_except(&last, live, scope.root(), &|path| never_owned(path, scope));
    applied_fields(&last, scope)
        .difference(&c.modified)
        .difference(&c.added)
        .difference(&c.removed)
}

/// The conflicts not on a field of `allowed` (upstream's
/// `conflictsDifference`): when none are left, kubectl's apply proceeds
/// as if forced.
#[must_use]
pub fn conflicts_outside(conflicts: Vec<Conflict>, allowed: &FieldSet) -> Vec<Conflict> {
    let allowed: std::collections::HashSet<String> =
        allowed.paths().iter().map(|p| path_string(p)).collect();
    conflicts
        .into_iter()
        .filter(|c| !allowed.contains(&c.field))
        .collect()
}

/// upstream's `lastAppliedUpdater`: after kubectl's server-side apply of
/// `config` to an object whose `old` state carries [`LAST_APPLIED`], the
/// annotation on `new` becomes the applied configuration (without the
/// annotation itself), encoded as Go's JSON encoder writes it, so a later
/// client-side `kubectl apply` diffs against what was applied last.
pub fn sync_last_applied(old: &Value, new: &mut Value, config: &Value) {
    if last_applied_of(old).is_none() {
        return;
    }
    let mut applied = config.clone();
    if let Some(Value::Object(a)) = applied.pointer_mut("/metadata/annotations") {
        a.remove(LAST_APPLIED);
    }
    let value = go_json(&applied);
    let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = m
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(a) = annotations {
        a.insert(LAST_APPLIED.into(), Value::String(value));
    }
}

/// `v` as Go's `json.Encoder` writes it: keys sorted, `<`, `>`, `&`,
/// U+2028 and U+2029 escaped, and a newline at the end.
fn go_json(v: &Value) -> String {
    let mut out = String::new();
    for ch in v.to_string().chars() {
        match ch {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

/// The 409 for apply conflicts, worded as upstream words it.
#[must_use]
pub fn conflict_error(conflicts: Vec<Conflict>) -> Error {
    let message = match conflicts.as_slice() {
        [one] => format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager, one.field
        ),
        many => {
            let mut lines = Vec::new();
            let mut last: Option<&str> = None;
            for c in many {
                if last != Some(c.manager.as_str()) {
                    lines.push(format!("conflicts with {}:", c.manager));
                    last = Some(&c.manager);
                }
                lines.push(format!("- {}", c.field));
            }
            format!(
                "Apply failed with {} conflicts: {}",
                many.len(),
                lines.join("\n")
            )
        }
    };
    Error::ApplyConflict { message, conflicts }
}

/// A field manager from `?fieldManager=` or, failing that, the User-Agent
/// up to its first `/` (upstream's `prefixFromUserAgent`).
#[must_use]
pub fn manager_name(field_manager: Option<&str>, user_agent: &str) -> String {
    match field_manager {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => user_agent.split('/').next().unwrap_or("").to_string(),
    }
}
