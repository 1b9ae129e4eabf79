//! The OpenAPI 3.1 document of the REST API, generated at start-up from the route table
//! ([`crate::rest::ROUTES`]) and the protobuf descriptors the bodies come from, so it can
//! only describe what the code serves. Bodies follow the proto3 JSON mapping: field
//! names in lowerCamelCase, 64-bit integers as strings, bytes as base64, enums by name.

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One documented route.
#[derive(Clone)]
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// `None`: public. `Some("")`: any valid token. Otherwise the scope needed.
    pub scope: Option<&'static str>,
    /// Query parameters: (name, description).
    pub query: &'static [(&'static str, &'static str)],
    /// Full protobuf name of the JSON body, if any.
    pub request: Option<&'static str>,
    /// Full protobuf name of the JSON answer; `None` for an event stream.
    pub response: Option<&'static str>,
}

pub fn document(routes: &[RouteDoc]) -> Value {
    let set = FileDescriptorSet::decode(icn_proto::FILE_DESCRIPTOR_SET).expect("the built-in descriptor set decodes");
    let mut messages: BTreeMap<String, &DescriptorProto> = BTreeMap::new();
    let mut enums: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &set.file {
        let package = file.package();
        for m in &file.message_type {
            collect(&format!(".{package}"), m, &mut messages, &mut enums);
        }
        for e in &file.enum_type {
            enums.insert(format!(".{package}.{}", e.name()), e.value.iter().map(|v| v.name().to_string()).collect());
        }
    }
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for r in routes {
        let mut op = Map::new();
        op.insert("summary".into(), json!(r.summary));
        let security = match r.scope {
            None => json!([]),
            Some(scope) => json!([{ "bearer": if scope.is_empty() { vec![] } else { vec![scope] } }]),
        };
        op.insert("security".into(), security);
        let mut parameters: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|p| p.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
            .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        parameters.extend(
            r.query
                .iter()
                .map(|(n, d)| json!({ "name": n, "in": "query", "description": d, "schema": { "type": "string" } })),
        );
        op.insert("parameters".into(), json!(parameters));
        if let Some(req) = r.request {
            wanted.insert(format!(".{req}"));
            op.insert(
                "requestBody".into(),
                json!({ "required": true, "content": { "application/json": { "schema": reference(req) } } }),
            );
        }
        let ok = match r.response {
            Some(resp) => {
                wanted.insert(format!(".{resp}"));
                json!({ "description": "OK", "content": { "application/json": { "schema": reference(resp) } } })
            }
            None => {
                json!({ "description": "Server-sent events: `id` the position, `event` the kind, `data` an icn.gateway.v1.Event", "content": { "text/event-stream": { "schema": reference("icn.gateway.v1.Event") } } })
            }
        };
        if r.response.is_none() {
            wanted.insert(".icn.gateway.v1.Event".into());
        }
        op.insert(
            "responses".into(),
            json!({ "200": ok, "default": { "description": "An error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } } }),
        );
        // axum's path syntax (`/coops/{coop}`) is OpenAPI's.
        paths.entry(r.path.to_string()).or_default().insert(r.method.to_lowercase(), Value::Object(op));
    }
    // Every message reachable from the routes.
    let mut schemas = Map::new();
    let mut queue: Vec<String> = wanted.into_iter().collect();
    let mut done = BTreeSet::new();
    while let Some(name) = queue.pop() {
        if !done.insert(name.clone()) {
            continue;
        }
        if let Some(values) = enums.get(&name) {
            schemas.insert(name[1..].to_string(), json!({ "type": "string", "enum": values }));
            continue;
        }
        let Some(m) = messages.get(&name) else { continue };
        let mut properties = Map::new();
        for f in &m.field {
            let map_entry = f
                .type_name
                .as_ref()
                .and_then(|t| messages.get(t))
                .filter(|m| m.options.as_ref().is_some_and(|o| o.map_entry()));
            let schema = if let Some(entry) = map_entry {
                let value = &entry.field[1];
                if let Some(t) = &value.type_name {
                    queue.push(t.clone());
                }
                json!({ "type": "object", "additionalProperties": scalar(value) })
            } else {
                if let Some(t) = &f.type_name {
                    queue.push(t.clone());
                }
                if f.label() == Label::Repeated {
                    json!({ "type": "array", "items": scalar(f) })
                } else {
                    scalar(f)
                }
            };
            properties.insert(f.json_name().to_string(), schema);
        }
        schemas.insert(name[1..].to_string(), json!({ "type": "object", "properties": properties }));
    }
    schemas.insert(
        "Error".into(),
        json!({ "type": "object", "properties": { "error": { "type": "object", "properties": {
            "code": { "type": "string", "description": "the gRPC code's name, such as NOT_FOUND" },
            "reason": { "type": "string", "description": "a finer reason, such as TOKEN_EXPIRED; may be empty" },
            "message": { "type": "string" } } } } }),
    );
    json!({
        "openapi": "3.1.0",
        "info": { "title": "ICN gateway", "version": env!("CARGO_PKG_VERSION"),
                  "description": "The public API of an ICN node. Log in with POST /v1/auth/challenge and /v1/auth/login; send the token as `Authorization: Bearer <token>`." },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } }
        }
    })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn collect<'a>(
    prefix: &str,
    m: &'a DescriptorProto,
    out: &mut BTreeMap<String, &'a DescriptorProto>,
    enums: &mut BTreeMap<String, Vec<String>>,
) {
    let name = format!("{prefix}.{}", m.name());
    for nested in &m.nested_type {
        collect(&name, nested, out, enums);
    }
    for e in &m.enum_type {
        enums.insert(format!("{name}.{}", e.name()), e.value.iter().map(|v| v.name().to_string()).collect());
    }
    out.insert(name, m);
}

/// The JSON schema of one field's value in the proto3 JSON mapping.
fn scalar(f: &prost_types::FieldDescriptorProto) -> Value {
    match f.r#type() {
        Type::Double | Type::Float => json!({ "type": "number" }),
        Type::Int32 | Type::Sint32 | Type::Sfixed32 | Type::Uint32 | Type::Fixed32 => json!({ "type": "integer" }),
        Type::Int64 | Type::Sint64 | Type::Sfixed64 | Type::Uint64 | Type::Fixed64 => {
            json!({ "type": "string", "format": "int64" })
        }
        Type::Bool => json!({ "type": "boolean" }),
        Type::String => json!({ "type": "string" }),
        Type::Bytes => json!({ "type": "string", "format": "byte" }),
        Type::Enum | Type::Message | Type::Group => reference(&f.type_name()[1..]),
    }
}
