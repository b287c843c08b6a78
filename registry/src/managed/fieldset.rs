//! [`FieldSet`]: a set of field paths of an object, as structured-merge-diff
//! models them, with upstream's `FieldsV1` encoding (`f:`, `k:`, `v:`, `i:`
//! and `.`), and the walks that build sets from objects: the fields an
//! applied configuration sets, and what changed between two objects.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::shape::{ListShape, Node};

/// One step of a field path.
///
/// The derived order (field names, then keys, then values, then indexes)
/// is upstream's, so encodings and conflict lists come out in its order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathElement {
    /// A struct or map field: `f:name`.
    Field(String),
    /// An associative-list item by its key fields: `k:{"name":"c"}`, the
    /// JSON object of the key fields with its keys sorted.
    Key(String),
    /// A set member (a list of scalars merged as a set): `v:"x"`.
    Value(String),
    /// A list item by position: `i:3` (only for lists without keys, which
    /// the built-in kinds own atomically, so not produced here).
    Index(usize),
}

impl PathElement {
    /// The `FieldsV1` key of this element.
    fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Option<Self> {
        let (prefix, rest) = s.split_at_checked(2)?;
        match prefix {
            "f:" => Some(PathElement::Field(rest.to_string())),
            "k:" => {
                let Value::Object(m) = serde_json::from_str::<Value>(rest).ok()? else {
                    return None;
                };
                Some(PathElement::Key(key_string(&m)))
            }
            "v:" => {
                let v: Value = serde_json::from_str(rest).ok()?;
                Some(PathElement::Value(v.to_string()))
            }
            "i:" => rest.parse().ok().map(PathElement::Index),
            _ => None,
        }
    }

    /// Upstream's path notation: `.field`, `[k=v,…]`, `[=v]`, `[i]`.
    fn display(&self, out: &mut String) {
        match self {
            PathElement::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            PathElement::Key(k) => {
                out.push('[');
                if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(k) {
                    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    out.push_str(&parts.join(","));
                }
                out.push(']');
            }
            PathElement::Value(v) => {
                let _ = write!(out, "[={v}]");
            }
            PathElement::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
}

/// The JSON of a key-field object with its keys sorted.
pub(crate) fn key_string(m: &Map<String, Value>) -> String {
    let mut sorted: Vec<(&String, &Value)> = m.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::String((*k).clone())))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// A field path: the elements from the object's root.
pub type Path = Vec<PathElement>;

/// Renders a path as upstream prints it in conflicts: `.spec.replicas`.
pub fn path_string(path: &[PathElement]) -> String {
    let mut out = String::new();
    for pe in path {
        pe.display(&mut out);
    }
    out
}

/// A set of field paths, as a tree. A node is a *member* when the path to
/// it is in the set itself (encoded as `.` when it also has children).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the set has no member.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Adds `path`.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => self.member = true,
            Some((first, rest)) => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    #[must_use]
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((first, rest)) => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The subtree at one child element.
    pub fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    /// Whether this node is a member.
    pub fn is_member(&self) -> bool {
        self.member
    }

    /// The child elements and their subtrees.
    pub fn children(&self) -> impl Iterator<Item = (&PathElement, &FieldSet)> {
        self.children.iter()
    }

    /// Removes `path` and everything under it.
    pub fn remove_subtree(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => *self = FieldSet::new(),
            Some((first, rest)) => {
                if let Some(c) = self.children.get_mut(first) {
                    c.remove_subtree(rest);
                    if c.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// Makes the node at `path` a non-member (its children stay).
    pub fn unmark(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => self.member = false,
            Some((first, rest)) => {
                if let Some(c) = self.children.get_mut(first) {
                    c.unmark(rest);
                    if c.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// Every member of `self` or `other`.
    #[must_use]
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// Adds every member of `other`.
    pub fn union_with(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (pe, c) in &other.children {
            self.children.entry(pe.clone()).or_default().union_with(c);
        }
    }

    /// The members of `self` that are not members of `other`.
    #[must_use]
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (pe, c) in &self.children {
            let d = match other.children.get(pe) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    /// The members of both sets.
    #[must_use]
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (pe, c) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }

    /// Every member path, in upstream's order (a node before its children).
    #[must_use]
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        if self.member && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (pe, c) in &self.children {
            prefix.push(pe.clone());
            c.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `fieldsV1` encoding: `{"f:spec":{"f:replicas":{}}}`, with `"."`
    /// for a member that also has children.
    #[must_use]
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        let children: Vec<_> = self
            .children
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .collect();
        if self.member && !children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (pe, c) in children {
            m.insert(pe.encode(), c.to_fields_v1());
        }
        Value::Object(m)
    }

    /// Decodes a `fieldsV1` value (the root is never a member).
    ///
    /// # Errors
    /// A description of the first malformed entry.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let mut set = Self::decode_node(v)?;
        set.member = false;
        Ok(set)
    }

    fn decode_node(v: &Value) -> Result<FieldSet, String> {
        let Value::Object(m) = v else {
            return Err(format!("expected an object, got {v}"));
        };
        let mut set = FieldSet {
            // `{}` is a leaf member.
            member: m.is_empty(),
            children: BTreeMap::new(),
        };
        for (k, c) in m {
            if k == "." {
                set.member = true;
                continue;
            }
            let pe = PathElement::decode(k).ok_or_else(|| format!("invalid path element {k:?}"))?;
            set.children.insert(pe, Self::decode_node(c)?);
        }
        Ok(set)
    }
}

/// The path element of an item of the list at `node`, if the list is
/// associative or a set.
pub(crate) fn item_element(node: Node<'_>, item: &Value, shape: ListShape) -> Option<PathElement> {
    match shape {
        ListShape::Set => Some(PathElement::Value(item.to_string())),
        ListShape::Map => node
            .item_key(item)
            .map(|k| PathElement::Key(key_string(&k))),
        ListShape::Atomic => None,
    }
}

/// The fields an applied configuration sets (upstream's `ToFieldSet`):
/// every scalar, atomic value, associative-list item and set member in
/// `v` (whose walk starts at `root`). Empty maps set nothing.
#[must_use]
pub fn fields_of(v: &Value, root: Node<'_>) -> FieldSet {
    let mut set = FieldSet::new();
    walk_fields(v, root, &mut Vec::new(), &mut set);
    set
}

fn walk_fields(v: &Value, node: Node<'_>, path: &mut Path, set: &mut FieldSet) {
    match v {
        Value::Object(m) if !node.is_atomic() => {
            for (k, c) in m {
                path.push(PathElement::Field(k.clone()));
                walk_fields(c, node.child(k), path, set);
                path.pop();
            }
        }
        Value::Array(items) => {
            let shape = node.list_shape(items);
            if shape == ListShape::Atomic {
                set.insert(path);
                return;
            }
            for item in items {
                let Some(pe) = item_element(node, item, shape) else {
                    continue;
                };
                path.push(pe);
                set.insert(path);
                if shape == ListShape::Map {
                    walk_fields(item, node.item(), path, set);
                }
                path.pop();
            }
        }
        _ => set.insert(path),
    }
}
