//! The object side of server-side apply: merging an applied configuration
//! into the live object, and removing the fields an applier dropped.

use serde_json::Value;

use super::fieldset::{FieldSet, PathElement, item_element, key_string};
use super::shape::{self, ListShape};

/// The live object with the applied configuration merged in: maps merge
/// field by field, associative lists item by item (live items keep their
/// place, new ones are appended in the configuration's order), sets gain
/// the new members, and everything else is replaced by the configuration.
#[must_use]
pub fn merge(live: &Value, config: &Value) -> Value {
    merge_value(live, config, None)
}

fn merge_value(live: &Value, config: &Value, field: Option<&str>) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !field.is_some_and(shape::is_atomic) => {
            let mut out = l.clone();
            for (k, cv) in c {
                let merged = match l.get(k) {
                    Some(lv) => merge_value(lv, cv, Some(k)),
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) => {
            let name = field.unwrap_or("");
            let all: Vec<Value> = l.iter().chain(c).cloned().collect();
            let shape = shape::list_shape(name, &all);
            if shape == ListShape::Atomic {
                return config.clone();
            }
            let id = |v: &Value| item_element(name, v, shape);
            let mut out: Vec<Value> = l
                .iter()
                .map(|lv| {
                    let found = id(lv).and_then(|k| c.iter().find(|cv| id(cv) == Some(k.clone())));
                    match (found, shape) {
                        (Some(cv), ListShape::Map) => merge_value(lv, cv, None),
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
pub fn prune(obj: &mut Value, last: &FieldSet, owned: &FieldSet) {
    prune_node(obj, last, Some(owned), None);
}

fn prune_node(obj: &mut Value, last: &FieldSet, owned: Option<&FieldSet>, field: Option<&str>) {
    for (pe, last_child) in last.children() {
        let owned_child = owned.and_then(|o| o.child(pe));
        let still_owned = owned_child.is_some_and(|o| !o.is_empty());
        if last_child.is_member() && !still_owned {
            remove(obj, pe, field);
            continue;
        }
        if let Some((child, child_field)) = locate(obj, pe, field) {
            prune_node(child, last_child, owned_child, child_field.as_deref());
        }
    }
}

/// The value at one path element under `obj`, and its field name.
fn locate<'a>(
    obj: &'a mut Value,
    pe: &PathElement,
    field: Option<&str>,
) -> Option<(&'a mut Value, Option<String>)> {
    match (pe, obj) {
        (PathElement::Field(f), Value::Object(m)) => m.get_mut(f).map(|v| (v, Some(f.clone()))),
        (PathElement::Index(i), Value::Array(a)) => a.get_mut(*i).map(|v| (v, None)),
        (_, Value::Array(a)) => {
            let name = field.unwrap_or("");
            a.iter_mut()
                .find(|item| matches_item(name, item, pe))
                .map(|v| (v, None))
        }
        _ => None,
    }
}

fn matches_item(field: &str, item: &Value, pe: &PathElement) -> bool {
    match pe {
        PathElement::Key(k) => shape::item_key(field, item).is_some_and(|m| key_string(&m) == *k),
        PathElement::Value(v) => serde_json::from_str::<Value>(v).is_ok_and(|want| *item == want),
        _ => false,
    }
}

fn remove(obj: &mut Value, pe: &PathElement, field: Option<&str>) {
    match (pe, obj) {
        (PathElement::Field(f), Value::Object(m)) => {
            m.remove(f);
        }
        (PathElement::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
        }
        (_, Value::Array(a)) => {
            let name = field.unwrap_or("");
            a.retain(|item| !matches_item(name, item, pe));
        }
        _ => {}
    }
}
