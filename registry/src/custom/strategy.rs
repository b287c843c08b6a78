//! [`CustomResources`]: the [`Strategy`] of one served version of a custom
//! resource, built from its definition: pruning, defaulting and schema
//! validation; `status` kept apart when it is a subresource; generation
//! counting as upstream's customresource strategy; `/scale` paths; and
//! Tables from `additionalPrinterColumns`.

use serde_json::{Value, json};

use super::jsonpath::JsonPath;
use super::schema::validate_object;
use super::structural::{apply_defaults, prune_object};
use crate::Name;
use crate::kinds::keep_status;
use crate::table::{Column, age, human_duration, name_cell};
use crate::{Canonical, FieldError, ScalePaths, Strategy};

/// One `additionalPrinterColumns` entry, its path parsed.
#[derive(Debug, Clone)]
pub(crate) struct PrinterColumn {
    /// The Table column definition.
    pub column: Column,
    /// What the cells show.
    pub path: JsonPath,
}

/// The strategy of one version of a custom resource.
#[derive(Debug)]
pub(crate) struct CustomResources {
    /// The version's `openAPIV3Schema`.
    pub schema: Value,
    /// `subresources.status` is declared.
    pub status: bool,
    /// `subresources.scale`, as JSON pointers.
    pub scale: Option<ScalePaths>,
    /// Columns after `Name`.
    pub columns: Vec<PrinterColumn>,
    /// The OpenAPI definition name, e.g. `com.example.v1.Widget`.
    pub definition: String,
    /// The definition is being deleted: POSTs are refused.
    pub terminating: bool,
}

/// The `Age` column upstream shows for definitions without printer columns.
pub(crate) fn default_columns() -> Vec<PrinterColumn> {
    let age = JsonPath::parse(".metadata.creationTimestamp")
        .map(|path| PrinterColumn {
            column: Column {
                kind: Name::from_static("date"),
                ..Column::AGE
            },
            path,
        })
        .ok();
    age.into_iter().collect()
}

/// The printer columns of a definition's version (`None` when one does
/// not parse; such a definition is served without them).
pub(crate) fn printer_columns(version: &Value) -> Vec<PrinterColumn> {
    let Some(cols) = version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
    else {
        return default_columns();
    };
    cols.iter()
        .filter_map(|c| {
            let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
            let path = JsonPath::parse(text("jsonPath"))
                .map_err(|e| tracing::warn!(error = %e, "printer column skipped"))
                .ok()?;
            Some(PrinterColumn {
                column: Column {
                    name: Name::owned(text("name")),
                    kind: Name::owned(text("type")),
                    format: Name::owned(text("format")),
                    priority: c
                        .get("priority")
                        .and_then(Value::as_u64)
                        .and_then(|p| u8::try_from(p).ok())
                        .unwrap_or(0),
                    description: Name::owned(text("description")),
                },
                path,
            })
        })
        .collect()
}

/// A `.spec.x` JSONPath of the scale subresource as a JSON pointer.
pub(crate) fn pointer(json_path: &str) -> String {
    json_path
        .trim_start_matches('.')
        .split('.')
        .fold(String::new(), |acc, f| format!("{acc}/{f}"))
}

/// Upstream's `cellForJSONValue`: a cell of column type `ty`.
fn cell(ty: &str, v: &Value, now: jiff::Timestamp) -> Value {
    match (ty, v) {
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("integer", Value::String(s)) => s.parse::<i64>().map_or(Value::Null, Value::from),
        ("number", Value::Number(_)) => v.clone(),
        ("number", Value::String(s)) => s.parse::<f64>().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(_)) => v.clone(),
        ("boolean", Value::String(s)) => s.parse::<bool>().map_or(Value::Null, Value::from),
        ("date", Value::String(s)) => match s.parse::<jiff::Timestamp>() {
            Ok(t) => Value::String(human_duration(now.as_second() - t.as_second())),
            Err(_) => age(None, now),
        },
        ("string", Value::String(_)) => v.clone(),
        ("string", other) => Value::String(other.to_string()),
        _ => Value::Null,
    }
}

impl Strategy for CustomResources {
    fn apply_schema(&self) -> Option<&Value> {
        Some(&self.schema)
    }

    fn refuses_create(&self) -> Option<&'static str> {
        self.terminating
            .then_some("create not allowed while custom resource definition is terminating")
    }

    fn canonicalize(&self, obj: &Value) -> Result<Canonical, String> {
        let mut value = obj.clone();
        if value.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err("metadata: expected an object".into());
        }
        let unknown_fields = prune_object(&mut value, &self.schema);
        apply_defaults(&mut value, &self.schema);
        Ok(Canonical {
            value,
            unknown_fields,
        })
    }

    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> Option<schemars::Schema> {
        let meta =
            generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>();
        let mut def = self.schema.clone();
        if let Some(o) = def.as_object_mut() {
            let props = o.entry("properties").or_insert_with(|| json!({}));
            if let Some(p) = props.as_object_mut() {
                p.entry("apiVersion").or_insert_with(|| json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
                p.entry("kind").or_insert_with(|| json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
                p.insert("metadata".into(), Value::from(meta));
            }
        }
        generator
            .definitions_mut()
            .insert(self.definition.clone(), def);
        schemars::Schema::try_from(
            json!({"$ref": format!("#/components/schemas/{}", self.definition)}),
        )
        .ok()
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if self.status
            && let Some(o) = obj.as_object_mut()
        {
            o.remove("status");
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if self.status {
            keep_status(new, old);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_object(obj, &self.schema)
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn generation_changed(&self, new: &Value, old: &Value) -> bool {
        let content = |v: &Value| {
            let mut m = v.as_object().cloned().unwrap_or_default();
            m.remove("metadata");
            if self.status {
                m.remove("status");
            }
            m
        };
        content(new) != content(old)
    }

    fn accepts_strategic_merge(&self) -> bool {
        false
    }

    fn scale_paths(&self) -> ScalePaths {
        self.scale.clone().unwrap_or_default()
    }

    fn columns(&self) -> Vec<Column> {
        std::iter::once(Column::NAME)
            .chain(self.columns.iter().map(|c| c.column.clone()))
            .collect()
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        std::iter::once(name_cell(obj))
            .chain(self.columns.iter().map(|c| {
                c.path
                    .find(obj)
                    .first()
                    .map_or(Value::Null, |v| cell(&c.column.kind, v, now))
            }))
            .collect()
    }
}
