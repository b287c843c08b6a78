//! The object side of server-side apply: merging an applied configuration
//! into the live object, and removing the fields an applier dropped.

use serde_json::Value;

use super::fieldset::{FieldSet, PathElement, item_element, key_string};
use super::shape::{ListShape, Node};

/// The live object with the applied configuration merged in: maps merge
/// field by field, associative lists item by item (live items keep their
/// place, new ones are appended in the configuration's order), sets gain
/// the new members, and everything else is replaced by the configuration.
#[must_use]
pub fn merge(live: &Value, config: &Value, root: Node<'_>) -> Value {
    merge_value(live, config, root)
}

fn merge_value(live: &Value, config: &Value, node: Node<'_>) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !node.is_atomic() => {
            let mut out = l.clone();
            for (k, cv) in c {
                let merged = match l.get(k) {
                    Some(lv) => merge_value(lv, cv, node.child(k)),
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) => {
            // A list's shape is its field's (or schema's), whatever its items.
            let shape = node.list_shape(l);
            if shape == ListShape::Atomic {
                return config.clone();
            }
            let id = |v: &Value| item_element(node, v, shape);
            let mut out: Vec<Value> = l
                .iter()
                .map(|lv| {
                    let found = id(lv).and_then(|k| c.iter().find(|cv| id(cv) == Some(k.clone())));
                    match (found, shape) {
                        (Some(cv), ListShape::Map) => merge_value(lv, cv, node.item()),
                        _ => lv.clone(),
                    }
                })
                .collect();
            for cv in c {
                let k = id(cv);
                if k.is_none() || !l.iter().any(|lv| id(lv) == k) {
                    out.push(cv.clone());
                }
            }
            Value::Array(out)
        }
        _ => config.clone(),
    }
}

/// Removes from `obj` every member of `last` (what the applier set in its
/// previous apply) that no manager owns any more: neither the node itself
/// nor anything under it is in `owned` (every manager's set, the applier's
/// new one included).
pub fn prune(obj: &mut Value, last: &FieldSet, owned: &FieldSet, root: Node<'_>) {
    prune_node(obj, last, Some(owned), root);
}

fn prune_node(obj: &mut Value, last: &FieldSet, owned: Option<&FieldSet>, node: Node<'_>) {
    for (pe, last_child) in last.children() {
        let owned_child = owned.and_then(|o| o.child(pe));
        let still_owned = owned_child.is_some_and(|o| !o.is_empty());
        if last_child.is_member() && !still_owned {
            remove(obj, pe, node);
            continue;
        }
        if let Some((child, child_node)) = locate(obj, pe, node) {
            prune_node(child, last_child, owned_child, child_node);
        }
    }
}

/// The value at one path element under `obj`, and where it stands.
fn locate<'a, 'p>(
    obj: &'a mut Value,
    pe: &'p PathElement,
    node: Node<'p>,
) -> Option<(&'a mut Value, Node<'p>)> {
    match (pe, obj) {
        (PathElement::Field(f), Value::Object(m)) => m.get_mut(f).map(|v| (v, node.child(f))),
        (PathElement::Index(i), Value::Array(a)) => a.get_mut(*i).map(|v| (v, node.item())),
        (_, Value::Array(a)) => a
            .iter_mut()
            .find(|item| matches_item(node, item, pe))
            .map(|v| (v, node.item())),
        _ => None,
    }
}

fn matches_item(node: Node<'_>, item: &Value, pe: &PathElement) -> bool {
    match pe {
        PathElement::Key(k) => node.item_key(item).is_some_and(|m| key_string(&m) == *k),
        PathElement::Value(v) => serde_json::from_str::<Value>(v).is_ok_and(|want| *item == want),
        _ => false,
    }
}

fn remove(obj: &mut Value, pe: &PathElement, node: Node<'_>) {
    match (pe, obj) {
        (PathElement::Field(f), Value::Object(m)) => {
            m.remove(f);
        }
        (PathElement::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
        }
        (_, Value::Array(a)) => {
            a.retain(|item| !matches_item(node, item, pe));
        }
        _ => {}
    }
}
