//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as Go
//! clients send them: kubectl 1.32+ for typed creates (`create deployment`,
//! `debug`, `create token`, `auth can-i`, ...), and controllers built on
//! client-go with the protobuf content type, for every built-in kind.
//!
//! A body is the `k8s\0` prefix and a `runtime.Unknown` envelope naming the
//! kind; the kind's message is then walked with the schema generated from
//! k8s-pb and k8s-openapi (`schema`) into the object's JSON form, so every
//! kind the API serves is decoded without code of its own. Kinds outside the
//! schema (custom resources, which upstream serves as JSON only) get 415.

mod schema;
mod schema_table;

use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{Map, Value};

use crate::registry::Error;

/// The protobuf media type.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

fn bad(e: impl std::fmt::Display) -> Error {
    Error::BadRequest(format!("the protobuf body could not be decoded: {e}"))
}

/// Decodes a protobuf request body into the object's JSON form.
///
/// # Errors
/// 400 BadRequest for malformed bytes; 415 UnsupportedMediaType for kinds
/// that have no protobuf form.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| bad("missing the k8s\\0 prefix"))?;
    let unknown = Unknown::decode(rest).map_err(bad)?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let message = schema::kind_message(&api_version, &kind).ok_or_else(|| {
        Error::UnsupportedMediaType(format!(
            "protobuf bodies of {api_version}/{kind} are not supported; send application/json"
        ))
    })?;
    let raw = unknown.raw.unwrap_or_default();
    let Value::Object(fields) = schema::decode(message, &raw)? else {
        return Err(bad(format!("{api_version}/{kind} is not an object")));
    };
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    object.extend(fields);
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests;
