//! The OpenAPI document of the whole API (openapi.json at the repository's root): the shared
//! frame (`primer_shared::openapi`) and every function's operations, derived from their
//! handlers (`#[utoipa::path]`) and types (`ToSchema`). The committed file is exactly
//! [`json`]'s output; the `openapi` test fails when they differ, and `admin openapi` (or
//! `PRIMER_WRITE_OPENAPI=1` on that test) writes it again.

use serde_json::{Value, json};
use utoipa::OpenApi;

/// The document.
pub fn document() -> Value {
    let api = primer_shared::openapi::Frame::openapi()
        .merge_from(auth::Api::openapi())
        .merge_from(profile::Api::openapi())
        .merge_from(conversations::Api::openapi())
        .merge_from(chapters::Api::openapi());
    let mut document = serde_json::to_value(api).expect("an OpenAPI document serializes");
    conversations::describe_event_streams(&mut document);
    require_retry_after(&mut document);
    document["paths"]["/api/chapters/{id}/personalized"]["get"]["responses"]["302"]["headers"]["Location"]
        ["schema"]["format"] = json!("uri");
    document
}

/// The document as committed: pretty JSON (keys sorted) and a final newline.
pub fn json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("a JSON value serializes");
    text.push('\n');
    text
}

/// Every 429 carries `Retry-After` (primer_shared::error), which utoipa 5's headers cannot mark
/// as required.
fn require_retry_after(document: &mut Value) {
    let responses =
        document["components"]["responses"].as_object_mut().expect("the frame declares responses");
    for response in responses.values_mut() {
        if let Some(header) = response.pointer_mut("/headers/Retry-After") {
            header["required"] = json!(true);
        }
    }
}
