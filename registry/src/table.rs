//! Server-side Tables (`meta.k8s.io/v1 Table`), as kubectl `get` asks for
//! them: columns from the kind's strategy, cells already formatted.

use serde_json::{Value, json};

use super::{Name, ResourceInfo, meta};

/// One Table column definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Header, e.g. `Name`.
    pub name: Name,
    /// OpenAPI type: `string`, `integer`, `date`, ...
    pub kind: Name,
    /// OpenAPI format, e.g. `name`.
    pub format: Name,
    /// Shown with `-o wide` only when 1.
    pub priority: u8,
    /// Description of the column.
    pub description: Name,
}

impl Column {
    /// A string column with priority 0.
    pub const fn text(name: &'static str, description: &'static str) -> Self {
        Column {
            name: Name::from_static(name),
            kind: Name::from_static("string"),
            format: Name::from_static(""),
            priority: 0,
            description: Name::from_static(description),
        }
    }

    /// The same column with priority 1 (`-o wide`).
    pub const fn wide(mut self) -> Self {
        self.priority = 1;
        self
    }

    /// A boolean column.
    pub const fn boolean(name: &'static str, description: &'static str) -> Self {
        Column {
            name: Name::from_static(name),
            kind: Name::from_static("boolean"),
            format: Name::from_static(""),
            priority: 0,
            description: Name::from_static(description),
        }
    }

    /// An integer column.
    pub const fn integer(name: &'static str, description: &'static str) -> Self {
        Column {
            name: Name::from_static(name),
            kind: Name::from_static("integer"),
            format: Name::from_static(""),
            priority: 0,
            description: Name::from_static(description),
        }
    }

    /// The `Name` column.
    pub const NAME: Column = Column {
        name: Name::from_static("Name"),
        kind: Name::from_static("string"),
        format: Name::from_static("name"),
        priority: 0,
        description: Name::from_static(
            "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        ),
    };

    /// The `Age` column.
    pub const AGE: Column = Column {
        name: Name::from_static("Age"),
        kind: Name::from_static("string"),
        format: Name::from_static(""),
        priority: 0,
        description: Name::from_static(AGE_DESCRIPTION),
    };
}

/// The description of upstream's `Age` column.
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

impl Column {
    /// The `Created At` column of upstream's default table convertor, for
    /// kinds without a printer (roles, limitranges, ...).
    pub const CREATED_AT: Column = Column {
        name: Name::from_static("Created At"),
        kind: Name::from_static("date"),
        format: Name::from_static(""),
        priority: 0,
        description: Name::from_static(AGE_DESCRIPTION),
    };
}

/// What each row's `object` holds (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
    /// Nothing.
    None,
}

/// Upstream's `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The age of the timestamp at `field` of `obj` (e.g. `metadata.creationTimestamp`), or `<unknown>`.
pub fn age(ts: Option<&str>, now: jiff::Timestamp) -> Value {
    let Some(t) = ts.and_then(|s| s.parse::<jiff::Timestamp>().ok()) else {
        return Value::String("<unknown>".into());
    };
    Value::String(human_duration(now.as_second() - t.as_second()))
}

/// The `Age` cell of `obj`.
pub fn age_cell(obj: &Value, now: jiff::Timestamp) -> Value {
    age(meta::meta_str(obj, "creationTimestamp"), now)
}

/// The `Created At` cell of `obj`: its creationTimestamp in RFC 3339.
pub fn created_at_cell(obj: &Value) -> Value {
    Value::String(
        meta::meta_str(obj, "creationTimestamp")
            .unwrap_or("")
            .to_string(),
    )
}

/// The `Name` cell of `obj`.
pub fn name_cell(obj: &Value) -> Value {
    Value::String(meta::name(obj).to_string())
}

/// `<none>` for absent or empty strings.
pub fn or_none(s: Option<&str>) -> Value {
    match s {
        Some(s) if !s.is_empty() => Value::String(s.to_string()),
        _ => Value::String("<none>".into()),
    }
}

/// The column definitions in Table JSON form.
pub fn column_definitions(info: &ResourceInfo) -> Value {
    Value::Array(
        info.strategy
            .columns()
            .iter()
            .map(|c| {
                json!({"name": c.name, "type": c.kind, "format": c.format,
                       "description": c.description, "priority": c.priority})
            })
            .collect(),
    )
}

/// One row of `obj`.
pub fn row(
    info: &ResourceInfo,
    obj: &Value,
    include: IncludeObject,
    now: jiff::Timestamp,
) -> Value {
    let cells = info.strategy.cells(obj, now);
    let object = match include {
        IncludeObject::Object => obj.clone(),
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(Value::Null),
        }),
    };
    let mut r = json!({"cells": cells});
    if !object.is_null() {
        r["object"] = object;
    }
    r
}

/// A Table of `items` with the list metadata `list_meta`.
pub fn table(
    info: &ResourceInfo,
    items: &[Value],
    list_meta: Value,
    include: IncludeObject,
    with_columns: bool,
) -> Value {
    let now = meta::now();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "rows": items.iter().map(|o| row(info, o, include, now)).collect::<Vec<_>>(),
    });
    if with_columns {
        t["columnDefinitions"] = column_definitions(info);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn human_durations_match_upstream() {
        for (s, want) in [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (30 * 3600, "30h"),
            (50 * 3600, "2d2h"),
            (20 * 86400, "20d"),
            (3 * 365 * 86400, "3y"),
        ] {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }
}
