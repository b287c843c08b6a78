//! What server-side apply needs to know about the shape of an object:
//! which lists are associative (and by which key), which are sets, and
//! which values are owned atomically. For built-in kinds list keys come
//! from the strategic merge patch's table (`registry::patch`), so SMP and
//! apply always agree; custom resources take them from their schema
//! ([`Node`]).

use serde_json::{Map, Value};

use crate::patch;

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListShape {
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

/// Where a walk over an object stands, and so how its maps and lists
/// merge: built-in kinds go by field name; custom resources by their
/// CRD's structural schema (`x-kubernetes-list-type`,
/// `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`), except under
/// `metadata`, which is ObjectMeta and goes by name.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    /// A built-in kind: the field holding this value (`None` at the root
    /// and for list items).
    Named(Option<&'a str>),
    /// A custom resource's root, with its `openAPIV3Schema`.
    SchemaRoot(&'a Value),
    /// Under a custom resource's root: the schema of this value (`None`
    /// where the schema says nothing, e.g. preserved unknown fields).
    Schema(Option<&'a Value>),
}

impl<'a> Node<'a> {
    /// The root of an object whose schema is `schema` (`None`: a
    /// built-in kind).
    #[must_use]
    pub fn root(schema: Option<&'a Value>) -> Self {
        schema.map_or(Node::Named(None), Node::SchemaRoot)
    }

    fn schema(self) -> Option<&'a Value> {
        match self {
            Node::Named(_) => None,
            Node::SchemaRoot(s) => Some(s),
            Node::Schema(s) => s,
        }
    }

    fn extension(self, name: &str) -> Option<&'a str> {
        self.schema()?.get(name)?.as_str()
    }

    /// The value of the object field `key` under this one.
    #[must_use]
    pub fn child(self, key: &'a str) -> Node<'a> {
        match self {
            Node::Named(_) => Node::Named(Some(key)),
            Node::SchemaRoot(_) if key == "metadata" => Node::Named(Some(key)),
            Node::SchemaRoot(s) | Node::Schema(Some(s)) => Node::Schema(
                s.get("properties")
                    .and_then(|p| p.get(key))
                    .or_else(|| s.get("additionalProperties").filter(|a| a.is_object())),
            ),
            Node::Schema(None) => Node::Schema(None),
        }
    }

    /// An item of the list this node holds.
    #[must_use]
    pub fn item(self) -> Node<'a> {
        match self {
            Node::Named(_) => Node::Named(None),
            Node::SchemaRoot(s) | Node::Schema(Some(s)) => Node::Schema(s.get("items")),
            Node::Schema(None) => Node::Schema(None),
        }
    }

    /// Whether this object value is owned as a whole.
    pub fn is_atomic(self) -> bool {
        match self {
            Node::Named(field) => field.is_some_and(is_atomic),
            _ => self.extension("x-kubernetes-map-type") == Some("atomic"),
        }
    }

    /// How the list this node holds (`items`) merges. Custom resources'
    /// lists are atomic unless their schema says `map` or `set`, as
    /// upstream's default for CRDs.
    pub fn list_shape(self, items: &[Value]) -> ListShape {
        match self {
            Node::Named(field) => list_shape(field.unwrap_or(""), items),
            _ => match self.extension("x-kubernetes-list-type") {
                Some("map") if !self.map_keys().is_empty() => ListShape::Map,
                Some("set") => ListShape::Set,
                _ => ListShape::Atomic,
            },
        }
    }

    fn map_keys(self) -> Vec<&'a str> {
        self.schema()
            .and_then(|s| s.get("x-kubernetes-list-map-keys"))
            .and_then(Value::as_array)
            .map(|ks| ks.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// The key fields of an item of the associative list this node
    /// holds; a key field the item lacks takes the default its schema
    /// declares. `None` if the item has no key.
    pub fn item_key(self, item: &Value) -> Option<Map<String, Value>> {
        match self {
            Node::Named(field) => item_key(field.unwrap_or(""), item),
            _ => {
                let item_schema = self.item().schema();
                let mut m = Map::new();
                for k in self.map_keys() {
                    let v = item
                        .get(k)
                        .filter(|v| !v.is_null())
                        .or_else(|| item_schema?.get("properties")?.get(k)?.get("default"))?;
                    m.insert(k.to_string(), v.clone());
                }
                (!m.is_empty()).then_some(m)
            }
        }
    }
}
