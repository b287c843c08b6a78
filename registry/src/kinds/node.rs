//! node.k8s.io/v1 `runtimeclasses`: the handler is required and immutable; upstream's columns.

use k8s_openapi::api::node::v1::RuntimeClass;
use serde_json::{Value, json};

use super::{immutable, s, typed};
use crate::table::{Column, age_cell, name_cell};
use crate::{FieldError, Strategy};

/// `runtimeclasses`.
#[derive(Debug)]
pub(crate) struct RuntimeClasses;

impl Strategy for RuntimeClasses {
    typed!(RuntimeClass);
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        if s(obj, "/handler").is_empty() {
            return vec![FieldError::required("handler", "")];
        }
        Vec::new()
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        out.extend(immutable(new, old, "/handler"));
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Handler", "The CRI handler pods of the class run with"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(s(obj, "/handler")),
            age_cell(obj, now),
        ]
    }
}
