//! [`Comparison`]: what changed between two objects, path by path, as
//! upstream's `Compare` reports it (added, modified and removed fields).

use std::collections::BTreeMap;

use serde_json::Value;

use super::fieldset::{FieldSet, Path, PathElement, item_element};
use super::shape::{ListShape, Node};

/// Every node of `v` at and under `path` (what a newly added subtree
/// contributes to a comparison).
fn all_nodes(
    v: &Value,
    node: Node<'_>,
    path: &mut Path,
    set: &mut FieldSet,
    skip: &dyn Fn(&[PathElement]) -> bool,
) {
    set.insert(path);
    match v {
        Value::Object(m) if !node.is_atomic() => {
            for (k, c) in m {
                path.push(PathElement::Field(k.clone()));
                if !skip(path) {
                    all_nodes(c, node.child(k), path, set, skip);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            let shape = node.list_shape(items);
            for item in items {
                let Some(pe) = item_element(node, item, shape) else {
                    continue;
                };
                path.push(pe);
                if shape == ListShape::Map {
                    all_nodes(item, node.item(), path, set, skip);
                } else {
                    set.insert(path);
                }
                path.pop();
            }
        }
        _ => {}
    }
}

/// A keyed list's items by their path element (the first of duplicates).
fn index<'v>(
    node: Node<'_>,
    items: &'v [Value],
    shape: ListShape,
) -> BTreeMap<PathElement, &'v Value> {
    let mut m = BTreeMap::new();
    for i in items {
        if let Some(pe) = item_element(node, i, shape) {
            m.entry(pe).or_insert(i);
        }
    }
    m
}

/// What changed from one object to another (upstream's `Compare`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Paths present only in the new object (with every node under them).
    pub added: FieldSet,
    /// Paths whose value changed.
    pub modified: FieldSet,
    /// Paths present only in the old object (with every node under them).
    pub removed: FieldSet,
}

impl Comparison {
    /// Compares `old` with `new`, objects whose walks start at `root`.
    #[must_use]
    pub fn of(old: &Value, new: &Value, root: Node<'_>) -> Comparison {
        Self::of_except(old, new, root, &|_| false)
    }

    /// As [`Comparison::of`], leaving out every field whose path `skip` names (and all under
    /// it), so callers need not copy the objects to strip them.
    #[must_use]
    pub fn of_except(
        old: &Value,
        new: &Value,
        root: Node<'_>,
        skip: &dyn Fn(&[PathElement]) -> bool,
    ) -> Comparison {
        let mut c = Comparison::default();
        c.walk(old, new, root, &mut Vec::new(), skip);
        c
    }

    /// Whether nothing changed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }

    /// Added and modified paths: what a writer takes ownership of.
    #[must_use]
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    fn walk(
        &mut self,
        old: &Value,
        new: &Value,
        node: Node<'_>,
        path: &mut Path,
        skip: &dyn Fn(&[PathElement]) -> bool,
    ) {
        match (old, new) {
            (Value::Object(a), Value::Object(b)) if !node.is_atomic() => {
                for (k, bv) in b {
                    path.push(PathElement::Field(k.clone()));
                    if !skip(path) {
                        match a.get(k) {
                            Some(av) => self.walk(av, bv, node.child(k), path, skip),
                            None => all_nodes(bv, node.child(k), path, &mut self.added, skip),
                        }
                    }
                    path.pop();
                }
                for (k, av) in a {
                    if !b.contains_key(k) {
                        path.push(PathElement::Field(k.clone()));
                        if !skip(path) {
                            all_nodes(av, node.child(k), path, &mut self.removed, skip);
                        }
                        path.pop();
                    }
                }
            }
            (Value::Array(a), Value::Array(b)) => {
                // A list's shape is its field's (or schema's), whatever its items.
                let shape = node.list_shape(a);
                if shape == ListShape::Atomic {
                    if a != b {
                        self.modified.insert(path);
                    }
                    return;
                }
                let (ia, ib) = (index(node, a, shape), index(node, b, shape));
                for (pe, bv) in &ib {
                    path.push(pe.clone());
                    match (ia.get(pe), shape) {
                        (Some(av), ListShape::Map) => {
                            self.walk(av, bv, node.item(), path, skip);
                        }
                        (Some(_), _) => {}
                        (None, ListShape::Map) => {
                            all_nodes(bv, node.item(), path, &mut self.added, skip);
                        }
                        (None, _) => self.added.insert(path),
                    }
                    path.pop();
                }
                for (pe, av) in &ia {
                    if !ib.contains_key(pe) {
                        path.push(pe.clone());
                        match shape {
                            ListShape::Map => {
                                all_nodes(av, node.item(), path, &mut self.removed, skip);
                            }
                            _ => self.removed.insert(path),
                        }
                        path.pop();
                    }
                }
            }
            (a, b) if a == b => {}
            (_, b) => {
                self.modified.insert(path);
                if b.is_object() || b.is_array() {
                    let mut under = FieldSet::new();
                    all_nodes(b, node, path, &mut under, skip);
                    self.added.union_with(&under.difference(&self.modified));
                }
            }
        }
    }
}
