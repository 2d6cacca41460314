//! The OpenAPI document of the whole API (openapi.json at the repository's root): the shared
//! frame (`primer_shared::http::openapi`) and every function's operations, derived from their
//! handlers (`#[utoipa::path]`) and types (`ToSchema`). The committed file is exactly
//! [`json`]'s output; the `openapi` test fails when they differ, and `admin openapi` (or
//! `PRIMER_WRITE_OPENAPI=1` on that test) writes it again.
//!
//! What utoipa 5 cannot say is added to the assembled document here: `Retry-After` and
//! `x-request-id` marked as sent, an example on every request body and success response (made
//! from its types' examples), and free-form objects said to be open, as generators need.

use serde_json::{Map, Value, json};
use utoipa::OpenApi;

/// The document.
pub fn document() -> Value {
    let api = primer_shared::http::openapi::Frame::openapi()
        .merge_from(auth::Api::openapi())
        .merge_from(profile::Api::openapi())
        .merge_from(conversations::Api::openapi())
        .merge_from(chapters::Api::openapi());
    let mut document = serde_json::to_value(api).expect("an OpenAPI document serializes");
    conversations::describe_event_streams(&mut document);
    require_retry_after(&mut document);
    document["paths"]["/api/chapters/{id}/personalized"]["get"]["responses"]["302"]["headers"]["Location"]
        ["schema"]["format"] = json!("uri");
    declare_request_id(&mut document);
    give_bodies_examples(&mut document);
    open_free_form_objects(&mut document);
    document
}

/// The document as committed: pretty JSON (keys sorted) and a final newline.
pub fn json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("a JSON value serializes");
    text.push('\n');
    text
}

/// Every 429 and 503 carries `Retry-After` (primer_shared::error), which utoipa 5's headers
/// cannot mark as required.
fn require_retry_after(document: &mut Value) {
    let responses =
        document["components"]["responses"].as_object_mut().expect("the frame declares responses");
    for response in responses.values_mut() {
        if let Some(header) = response.pointer_mut("/headers/Retry-After") {
            header["required"] = json!(true);
        }
    }
}

/// Every response carries `x-request-id` (`primer_shared::infra::telemetry`): the id in an error's
/// body and on every log line of its request, which a client quotes in a bug report.
fn declare_request_id(document: &mut Value) {
    document["components"]["headers"]["RequestId"] = json!({
        "description": "The request's id: the `request_id` of an error body, and the id on every log line of the request. Quote it in a bug report.",
        "required": true,
        "schema": {"type": "string"},
    });
    let header = json!({"$ref": "#/components/headers/RequestId"});
    let components =
        document["components"]["responses"].as_object_mut().expect("the frame declares responses");
    for response in components.values_mut() {
        response["headers"]["x-request-id"] = header.clone();
    }
    for item in document["paths"].as_object_mut().expect("paths").values_mut() {
        for operation in item.as_object_mut().expect("a path item").values_mut() {
            for response in operation["responses"].as_object_mut().expect("responses").values_mut() {
                // A named response (`$ref`) has it already, and may have nothing beside `$ref`.
                if response.get("$ref").is_none() {
                    response["headers"]["x-request-id"] = header.clone();
                }
            }
        }
    }
}

/// Gives every request body and every success response's content an `example`, made from the
/// examples of the types it is built of ([`example_of`]). Panics naming every body for which
/// none can be made, so that a type without an example cannot go unnoticed.
fn give_bodies_examples(document: &mut Value) {
    let schemas = document["components"]["schemas"].clone();
    let mut media_types = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let operation_pointer = format!("/paths/{}/{method}", pointer_token(path));
            let request =
                operation.pointer("/requestBody/content").map(|c| (String::from("/requestBody/content"), c));
            let successes = operation["responses"]
                .as_object()
                .expect("responses")
                .iter()
                .filter(|(status, _)| status.starts_with('2') || status.starts_with('3'))
                .filter_map(|(status, response)| {
                    Some((format!("/responses/{status}/content"), response.get("content")?))
                });
            for (content_pointer, content) in request.into_iter().chain(successes) {
                for media_type in content.as_object().expect("a content map").keys() {
                    media_types
                        .push(format!("{operation_pointer}{content_pointer}/{}", pointer_token(media_type)));
                }
            }
        }
    }
    let mut missing = Vec::new();
    for pointer in media_types {
        let media = document.pointer_mut(&pointer).expect("collected above");
        if media.get("example").is_some() {
            continue;
        }
        match example_of(&media["schema"], &schemas) {
            Some(example) => media["example"] = example,
            None => missing.push(pointer),
        }
    }
    assert!(
        missing.is_empty(),
        "no example can be made for these bodies; give their types one (#[schema(examples(...))]):\n  {}",
        missing.join("\n  ")
    );
}

/// An example of `schema`: its own (`examples`, `const`, the first of its `enum`), else one made
/// of its parts (an object's properties, an array's items, the first alternative that has one,
/// every part of an `allOf`); `null` for a nullable value that has none. `None` when a required
/// part has none.
fn example_of(schema: &Value, schemas: &Value) -> Option<Value> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.strip_prefix("#/components/schemas/")?;
        return example_of(schemas.get(name)?, schemas);
    }
    if let Some(example) =
        schema.pointer("/examples/0").or_else(|| schema.get("const")).or_else(|| schema.pointer("/enum/0"))
    {
        return Some(example.clone());
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for part in parts {
            merged.extend(example_of(part, schemas)?.as_object()?.clone());
        }
        return Some(Value::Object(merged));
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alternatives) = schema.get(key).and_then(Value::as_array) {
            return alternatives
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .find_map(|a| example_of(a, schemas))
                .or_else(|| nullable(schema).then_some(Value::Null));
        }
    }
    if let Some(items) = schema.get("items") {
        return Some(json!([example_of(items, schemas)?]));
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut object = Map::new();
        for (name, property) in properties {
            match example_of(property, schemas) {
                Some(example) => {
                    object.insert(name.clone(), example);
                }
                None if required.contains(&name.as_str()) => return None,
                None => {}
            }
        }
        return Some(Value::Object(object));
    }
    nullable(schema).then_some(Value::Null)
}

/// True when `schema` allows `null` (`"type": [..., "null"]`, or a `null` alternative).
fn nullable(schema: &Value) -> bool {
    let null = json!("null");
    schema.get("type").is_some_and(|t| t == &null || t.as_array().is_some_and(|types| types.contains(&null)))
        || ["oneOf", "anyOf"].iter().any(|key| {
            schema
                .get(*key)
                .and_then(Value::as_array)
                .is_some_and(|alternatives| alternatives.iter().any(nullable))
        })
}

/// Says `additionalProperties: true` of every object schema that names no property (preferences,
/// the nested objects of a merge patch, this document): JSON Schema reads a bare
/// `{"type": "object"}` as any object, but client generators read it as an empty one
/// (openapi-typescript 7 writes `Record<string, never>`, to which nothing can be assigned).
fn open_free_form_objects(value: &mut Value) {
    match value {
        Value::Object(node) => {
            let is_object = node.get("type").and_then(Value::as_str) == Some("object");
            if is_object && !node.contains_key("properties") && !node.contains_key("additionalProperties") {
                node.insert("additionalProperties".into(), Value::Bool(true));
            }
            // Examples are values, not schemas.
            node.iter_mut()
                .filter(|(key, _)| !key.starts_with("example"))
                .for_each(|(_, v)| open_free_form_objects(v));
        }
        Value::Array(items) => items.iter_mut().for_each(open_free_form_objects),
        _ => {}
    }
}

/// `text` as one token of a JSON pointer (RFC 6901: `~` is `~0`, `/` is `~1`).
fn pointer_token(text: &str) -> String {
    text.replace('~', "~0").replace('/', "~1")
}
