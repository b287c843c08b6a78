//! `/openapi/v2`: the Swagger 2.0 document of every served group-version, derived from their v3 documents
//! (same operations, same schemas), served as JSON and in gnostic's protobuf form
//! (`openapi.v2.Document`), which kubectl's `explain --output=plaintext-openapiv2` and older clients read.
//!
//! From v3 to v2: `#/components/schemas/` references become `#/definitions/`, a request body becomes an
//! `in: body` parameter, response and parameter schemas move up a level, and a described reference
//! (`allOf: [$ref]`, which v3 needs for a description beside a reference) becomes the reference itself with
//! its description, as upstream's v2 documents have it and as kube-openapi's v2 reader expects.

use serde_json::{Map, Value, json};

/// The Swagger 2.0 document of the given v3 documents.
pub(super) fn document<'a>(v3_documents: impl IntoIterator<Item = &'a Value>) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for v3 in v3_documents {
        if let Some(Value::Object(schemas)) = v3.pointer("/components/schemas") {
            for (name, schema) in schemas {
                definitions
                    .entry(name.clone())
                    .or_insert_with(|| schema_v2(schema));
            }
        }
        if let Some(Value::Object(v3_paths)) = v3.get("paths") {
            for (path, item) in v3_paths {
                paths.insert(path.clone(), path_item(item));
            }
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "definitions": definitions,
    })
}

/// A v3 schema in v2 form.
fn schema_v2(schema: &Value) -> Value {
    match schema {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                match k.as_str() {
                    "$ref" => {
                        let target = v.as_str().unwrap_or_default();
                        let name = target.trim_start_matches("#/components/schemas/");
                        out.insert(k.clone(), Value::String(format!("#/definitions/{name}")));
                    }
                    // v2 has no `nullable`, and no `oneOf`/`anyOf`: such a value (the CRD schema
                    // unions) is any value there, as upstream's v2 document leaves it.
                    "nullable" | "oneOf" | "anyOf" => {}
                    "allOf" if v.as_array().is_some_and(|a| a.len() == 1) => {
                        if let Value::Object(only) = schema_v2(&v[0]) {
                            for (ik, iv) in only {
                                out.entry(ik).or_insert(iv);
                            }
                        }
                    }
                    "properties" | "definitions" => {
                        let props = v
                            .as_object()
                            .map(|m| {
                                m.iter()
                                    .map(|(pk, pv)| (pk.clone(), schema_v2(pv)))
                                    .collect()
                            })
                            .unwrap_or_default();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    "items" | "additionalProperties" | "not" => {
                        out.insert(k.clone(), schema_v2(v));
                    }
                    "allOf" => {
                        let all = v
                            .as_array()
                            .map(|a| a.iter().map(schema_v2).collect())
                            .unwrap_or_default();
                        out.insert(k.clone(), Value::Array(all));
                    }
                    _ => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            // A reference stands alone in kube-openapi's reader: only its description stays beside it.
            if out.contains_key("$ref") {
                out.retain(|k, _| k == "$ref" || k == "description");
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn path_item(item: &Value) -> Value {
    let mut out = Map::new();
    if let Some(Value::Array(params)) = item.get("parameters") {
        out.insert(
            "parameters".into(),
            Value::Array(params.iter().map(parameter).collect()),
        );
    }
    for method in METHODS {
        if let Some(op) = item.get(method) {
            out.insert(method.into(), operation(op));
        }
    }
    Value::Object(out)
}

/// A v3 query or path parameter (`schema: {type}`) in v2 form (`type` beside the name).
fn parameter(p: &Value) -> Value {
    let mut out = Map::new();
    for key in ["name", "in", "description", "required"] {
        if let Some(v) = p.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(Value::Object(schema)) = p.get("schema") {
        for (k, v) in schema {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn operation(op: &Value) -> Value {
    let mut out = Map::new();
    for key in ["operationId", "description", "tags"] {
        if let Some(v) = op.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    let mut parameters: Vec<Value> = op
        .get("parameters")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().map(parameter).collect())
        .unwrap_or_default();
    if let Some(Value::Object(content)) = op.pointer("/requestBody/content") {
        let schema = content
            .values()
            .next()
            .and_then(|c| c.get("schema"))
            .map(schema_v2);
        parameters.push(json!({
            "name": "body", "in": "body",
            "required": op.pointer("/requestBody/required").and_then(Value::as_bool).unwrap_or(false),
            "schema": schema.unwrap_or_else(|| json!({"type": "object"})),
        }));
        out.insert("consumes".into(), json!(content.keys().collect::<Vec<_>>()));
    }
    out.insert("parameters".into(), Value::Array(parameters));
    let mut produces: Vec<String> = Vec::new();
    let mut responses = Map::new();
    if let Some(Value::Object(v3_responses)) = op.get("responses") {
        for (code, r) in v3_responses {
            let mut response = Map::new();
            response.insert(
                "description".into(),
                r.get("description").cloned().unwrap_or_else(|| json!("")),
            );
            if let Some(Value::Object(content)) = r.get("content") {
                for ct in content.keys() {
                    if !produces.contains(ct) {
                        produces.push(ct.clone());
                    }
                }
                if let Some(schema) = content.values().next().and_then(|c| c.get("schema")) {
                    response.insert("schema".into(), schema_v2(schema));
                }
            }
            responses.insert(code.clone(), Value::Object(response));
        }
    }
    if !produces.is_empty() {
        out.insert("produces".into(), json!(produces));
    }
    out.insert("responses".into(), Value::Object(responses));
    for (k, v) in op.as_object().into_iter().flatten() {
        if k.starts_with("x-") {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// The elements of the array at `key` of `v`; none when it is absent.
fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// The entries of the object at `key` of `v`; none when it is absent.
fn entries<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = (&'a String, &'a Value)> {
    v.get(key).and_then(Value::as_object).into_iter().flatten()
}

/// A protobuf writer of proto3 fields: zero scalars are left out, messages always written.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn key(&mut self, tag: u32, wire: prost::encoding::WireType) {
        prost::encoding::encode_key(tag, wire, &mut self.0);
    }

    fn bytes(&mut self, tag: u32, b: &[u8]) {
        self.key(tag, prost::encoding::WireType::LengthDelimited);
        prost::encoding::encode_varint(b.len() as u64, &mut self.0);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, tag: u32, s: Option<&Value>) {
        if let Some(s) = s.and_then(Value::as_str).filter(|s| !s.is_empty()) {
            self.bytes(tag, s.as_bytes());
        }
    }

    fn strings(&mut self, tag: u32, v: Option<&Value>) {
        for s in v.and_then(Value::as_array).into_iter().flatten() {
            if let Some(s) = s.as_str() {
                self.bytes(tag, s.as_bytes());
            }
        }
    }

    fn boolean(&mut self, tag: u32, v: Option<&Value>) {
        if v.and_then(Value::as_bool) == Some(true) {
            self.key(tag, prost::encoding::WireType::Varint);
            self.0.push(1);
        }
    }

    fn int64(&mut self, tag: u32, v: Option<&Value>) {
        if let Some(n) = v.and_then(Value::as_i64).filter(|n| *n != 0) {
            self.key(tag, prost::encoding::WireType::Varint);
            prost::encoding::encode_varint(n as u64, &mut self.0);
        }
    }

    fn double(&mut self, tag: u32, v: Option<&Value>) {
        if let Some(n) = v.and_then(Value::as_f64).filter(|n| *n != 0.0) {
            self.key(tag, prost::encoding::WireType::SixtyFourBit);
            self.0.extend_from_slice(&n.to_le_bytes());
        }
    }

    fn message(&mut self, tag: u32, build: impl FnOnce(&mut Pb)) {
        let mut inner = Pb::default();
        build(&mut inner);
        self.bytes(tag, &inner.0);
    }

    /// `openapi.v2.Any`: the value as YAML (JSON is YAML).
    fn any(&mut self, tag: u32, v: &Value) {
        self.message(tag, |a| a.bytes(2, v.to_string().as_bytes()));
    }

    /// `repeated NamedAny vendor_extension`: every `x-` key.
    fn extensions(&mut self, tag: u32, o: &Map<String, Value>) {
        for (k, v) in o.iter().filter(|(k, _)| k.starts_with("x-")) {
            self.message(tag, |named| {
                named.bytes(1, k.as_bytes());
                named.any(2, v);
            });
        }
    }
}

/// The document in gnostic's protobuf form (`openapi.v2.Document`).
pub(super) fn protobuf(doc: &Value) -> Vec<u8> {
    let mut pb = Pb::default();
    pb.string(1, doc.get("swagger"));
    pb.message(2, |info| {
        info.string(1, doc.pointer("/info/title"));
        info.string(2, doc.pointer("/info/version"));
    });
    pb.message(8, |paths| {
        for (path, item) in entries(doc, "paths") {
            paths.message(2, |named| {
                named.bytes(1, path.as_bytes());
                named.message(2, |p| path_item_pb(p, item));
            });
        }
    });
    pb.message(9, |definitions| {
        for (name, schema) in entries(doc, "definitions") {
            definitions.message(1, |named| {
                named.bytes(1, name.as_bytes());
                named.message(2, |s| schema_pb(s, schema));
            });
        }
    });
    pb.0
}

fn path_item_pb(pb: &mut Pb, item: &Value) {
    for (tag, method) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (8, "patch"),
    ] {
        if let Some(op) = item.get(method) {
            pb.message(tag, |o| operation_pb(o, op));
        }
    }
    for p in items(item, "parameters") {
        pb.message(9, |i| parameter_pb(i, p));
    }
}

fn operation_pb(pb: &mut Pb, op: &Value) {
    pb.strings(1, op.get("tags"));
    pb.string(3, op.get("description"));
    pb.string(5, op.get("operationId"));
    pb.strings(6, op.get("produces"));
    pb.strings(7, op.get("consumes"));
    for p in items(op, "parameters") {
        pb.message(8, |i| parameter_pb(i, p));
    }
    pb.message(9, |responses| {
        for (code, r) in entries(op, "responses") {
            responses.message(1, |named| {
                named.bytes(1, code.as_bytes());
                named.message(2, |value| {
                    value.message(1, |response| {
                        response.string(1, r.get("description"));
                        if let Some(schema) = r.get("schema") {
                            response.message(2, |item| item.message(1, |s| schema_pb(s, schema)));
                        }
                    });
                });
            });
        }
    });
    if let Some(o) = op.as_object() {
        pb.extensions(13, o);
    }
}

/// `ParametersItem { Parameter { BodyParameter | NonBodyParameter { Query | Path } } }`.
fn parameter_pb(pb: &mut Pb, p: &Value) {
    pb.message(1, |parameter| {
        if p.get("in").and_then(Value::as_str) == Some("body") {
            parameter.message(1, |body| {
                body.string(1, p.get("description"));
                body.string(2, p.get("name"));
                body.string(3, p.get("in"));
                body.boolean(4, p.get("required"));
                if let Some(schema) = p.get("schema") {
                    body.message(5, |s| schema_pb(s, schema));
                }
            });
            return;
        }
        let in_path = p.get("in").and_then(Value::as_str) == Some("path");
        parameter.message(2, |non_body| {
            non_body.message(if in_path { 4 } else { 3 }, |sub| {
                sub.boolean(1, p.get("required"));
                sub.string(2, p.get("in"));
                sub.string(3, p.get("description"));
                sub.string(4, p.get("name"));
                // Path parameters have no allow_empty_value, so their later fields sit one lower.
                let shift = u32::from(!in_path);
                sub.string(5 + shift, p.get("type"));
                sub.boolean(19 + shift, p.get("uniqueItems"));
            });
        });
    });
}

fn schema_pb(pb: &mut Pb, s: &Value) {
    let Some(o) = s.as_object() else {
        return;
    };
    pb.string(1, o.get("$ref"));
    pb.string(2, o.get("format"));
    pb.string(3, o.get("title"));
    pb.string(4, o.get("description"));
    if let Some(d) = o.get("default") {
        pb.any(5, d);
    }
    pb.double(6, o.get("multipleOf"));
    pb.double(7, o.get("maximum"));
    pb.boolean(8, o.get("exclusiveMaximum"));
    pb.double(9, o.get("minimum"));
    pb.boolean(10, o.get("exclusiveMinimum"));
    pb.int64(11, o.get("maxLength"));
    pb.int64(12, o.get("minLength"));
    pb.string(13, o.get("pattern"));
    pb.int64(14, o.get("maxItems"));
    pb.int64(15, o.get("minItems"));
    pb.boolean(16, o.get("uniqueItems"));
    pb.int64(17, o.get("maxProperties"));
    pb.int64(18, o.get("minProperties"));
    pb.strings(19, o.get("required"));
    for e in items(s, "enum") {
        pb.any(20, e);
    }
    match o.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let b = *b;
            pb.message(21, |a| a.boolean(2, Some(&Value::Bool(b))));
        }
        Some(schema @ Value::Object(_)) => {
            pb.message(21, |a| a.message(1, |s| schema_pb(s, schema)))
        }
        _ => {}
    }
    match o.get("type") {
        Some(Value::String(t)) => pb.message(22, |ty| ty.bytes(1, t.as_bytes())),
        Some(types @ Value::Array(_)) => pb.message(22, |ty| ty.strings(1, Some(types))),
        _ => {}
    }
    match o.get("items") {
        Some(Value::Array(items)) => pb.message(23, |i| {
            for item in items {
                i.message(1, |s| schema_pb(s, item));
            }
        }),
        Some(item @ Value::Object(_)) => pb.message(23, |i| i.message(1, |s| schema_pb(s, item))),
        _ => {}
    }
    for a in items(s, "allOf") {
        pb.message(24, |s| schema_pb(s, a));
    }
    if let Some(Value::Object(props)) = o.get("properties") {
        pb.message(25, |p| {
            for (name, schema) in props {
                p.message(1, |named| {
                    named.bytes(1, name.as_bytes());
                    named.message(2, |s| schema_pb(s, schema));
                });
            }
        });
    }
    pb.boolean(27, o.get("readOnly"));
    if let Some(e) = o.get("example") {
        pb.any(30, e);
    }
    pb.extensions(31, o);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_references_become_plain_references() {
        let v3 = json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}],
                        "description": "spec", "default": {}});
        assert_eq!(
            schema_v2(&v3),
            json!({"$ref": "#/definitions/io.k8s.api.core.v1.PodSpec", "description": "spec"})
        );
        let nested =
            json!({"type": "array", "nullable": true, "items": {"$ref": "#/components/schemas/X"}});
        assert_eq!(
            schema_v2(&nested),
            json!({"type": "array", "items": {"$ref": "#/definitions/X"}})
        );
    }

    #[test]
    fn operations_take_their_body_as_a_parameter() {
        let op = json!({
            "operationId": "createCoreV1NamespacedPod",
            "x-kubernetes-action": "post",
            "parameters": [{"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/P"}}}},
            "responses": {"201": {"description": "Created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/P"}}}}},
        });
        assert_eq!(
            operation(&op),
            json!({
                "operationId": "createCoreV1NamespacedPod",
                "x-kubernetes-action": "post",
                "consumes": ["application/json"],
                "produces": ["application/json"],
                "parameters": [
                    {"name": "dryRun", "in": "query", "type": "string", "uniqueItems": true},
                    {"name": "body", "in": "body", "required": true, "schema": {"$ref": "#/definitions/P"}},
                ],
                "responses": {"201": {"description": "Created", "schema": {"$ref": "#/definitions/P"}}},
            })
        );
    }

    /// The protobuf form read back with prost's field decoding: the fields kubectl's reader looks at
    /// (definition names, types, properties, references, the GVK extension) are where gnostic's
    /// `OpenAPIv2.proto` numbers them.
    #[test]
    fn protobuf_fields_are_numbered_as_gnostics() {
        let doc = json!({"swagger": "2.0", "info": {"title": "T", "version": "v"}, "paths": {},
            "definitions": {"io.k8s.api.core.v1.Pod": {"type": "object", "description": "d",
                "properties": {"spec": {"$ref": "#/definitions/S"}},
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}]}}});
        let bytes = protobuf(&doc);
        let fields = |b: &[u8]| -> Vec<(u32, Vec<u8>)> {
            let mut buf = b;
            let mut out = Vec::new();
            while !buf.is_empty() {
                let (tag, wire) = prost::encoding::decode_key(&mut buf).unwrap();
                assert_eq!(
                    wire,
                    prost::encoding::WireType::LengthDelimited,
                    "tag {tag}"
                );
                let len = prost::encoding::decode_varint(&mut buf).unwrap() as usize;
                out.push((tag, buf[..len].to_vec()));
                buf = &buf[len..];
            }
            out
        };
        let top = fields(&bytes);
        assert_eq!(top[0], (1, b"2.0".to_vec()));
        let definitions = &top.iter().find(|(t, _)| *t == 9).unwrap().1;
        let named = fields(&fields(definitions)[0].1);
        assert_eq!(named[0], (1, b"io.k8s.api.core.v1.Pod".to_vec()));
        let schema = fields(&named[1].1);
        let by_tag = |t: u32| {
            schema
                .iter()
                .find(|(tag, _)| *tag == t)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(by_tag(4), Some(b"d".to_vec()));
        assert_eq!(fields(&by_tag(22).unwrap()), [(1, b"object".to_vec())]);
        let property = fields(&fields(&by_tag(25).unwrap())[0].1);
        assert_eq!(property[0], (1, b"spec".to_vec()));
        assert_eq!(fields(&property[1].1), [(1, b"#/definitions/S".to_vec())]);
        let extension = fields(&by_tag(31).unwrap());
        assert_eq!(
            extension[0],
            (1, b"x-kubernetes-group-version-kind".to_vec())
        );
        let yaml = &fields(&extension[1].1)[0];
        assert_eq!(yaml.0, 2);
        let parsed: Value = serde_json::from_slice(&yaml.1).unwrap();
        assert_eq!(parsed[0]["kind"], "Pod");
    }
}
