//! What server-side apply needs to know about the shape of the built-in
//! kinds: which lists are associative (and by which key), which are sets,
//! and which values are owned atomically. List keys come from the strategic
//! merge patch's table (`registry::patch`), so SMP and apply always agree.

use serde_json::{Map, Value};

use crate::registry::patch;

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListShape {
    /// Items are identified by key fields (`k:{…}`).
    Map,
    /// Scalar items merged as a set (`v:…`).
    Set,
    /// Replaced and owned as a whole.
    Atomic,
}

/// Struct and map fields upstream marks atomic (`+structType=atomic`,
/// `+mapType=atomic`): label selectors and node selectors.
const ATOMIC_FIELDS: &[&str] = &[
    "selector",
    "podSelector",
    "namespaceSelector",
    "labelSelector",
    "nodeSelector",
];

/// Whether the object-valued field `field` is owned as a whole.
pub(crate) fn is_atomic(field: &str) -> bool {
    ATOMIC_FIELDS.contains(&field)
}

/// How the list field `field` (holding `items`) merges.
pub(crate) fn list_shape(field: &str, items: &[Value]) -> ListShape {
    if patch::is_primitive_set(field) {
        ListShape::Set
    } else if patch::merge_key(field, items).is_some() {
        ListShape::Map
    } else {
        ListShape::Atomic
    }
}

/// The key fields of an item of the associative list `field`: its merge
/// key, plus `protocol` (defaulted to `TCP`) for ports, as upstream's
/// `x-kubernetes-list-map-keys` have it. `None` if the item has no key.
pub(crate) fn item_key(field: &str, item: &Value) -> Option<Map<String, Value>> {
    let key = patch::merge_key(field, std::slice::from_ref(item))?;
    let mut m = Map::new();
    m.insert(
        key.to_string(),
        item.get(key).filter(|v| !v.is_null())?.clone(),
    );
    if field == "ports" {
        let protocol = item
            .get("protocol")
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or_else(|| Value::String("TCP".into()));
        m.insert("protocol".into(), protocol);
    }
    Some(m)
}
