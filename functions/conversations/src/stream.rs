//! A reply as Server-Sent Events, and what the OpenAPI document says of it.

use std::convert::Infallible;

use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use primer_shared::domain::conversations::Citation;
use primer_shared::domain::tutor::stream::{ReplyEvent, ReplyStream};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// The `data` of a `delta` event.
#[derive(Serialize, ToSchema)]
pub(crate) struct StreamDelta {
    /// The next fragment of the answer.
    #[schema(min_length = 1)]
    text: String,
}

/// The `data` of a `citations` event.
#[derive(Serialize, ToSchema)]
pub(crate) struct StreamCitations {
    citations: Vec<Citation>,
}

/// A streamed reply as Server-Sent Events: each a JSON `data:` with its `event:` name and a
/// running `id:`. 201, as the JSON route: the message is stored before the first event.
pub(crate) fn event_stream(replies: ReplyStream) -> Response {
    let events = replies.enumerate().map(|(n, event)| {
        let (name, data) = match event {
            ReplyEvent::UserMessage(message) => ("user_message", json!(message)),
            ReplyEvent::Delta(text) => ("delta", json!(StreamDelta { text })),
            ReplyEvent::Citations(citations) => ("citations", json!(StreamCitations { citations })),
            ReplyEvent::Done(message) => ("done", json!(message)),
            ReplyEvent::Error(message) => ("error", json!(message)),
            ReplyEvent::Failed(error, request_id) => ("error", error.to_json(request_id)),
        };
        Ok::<_, Infallible>(Event::default().event(name).id((n + 1).to_string()).data(data.to_string()))
    });
    // Comments while the model is silent keep idle proxies from closing the connection.
    (StatusCode::CREATED, Sse::new(events).keep_alive(KeepAlive::default())).into_response()
}

/// What `#[utoipa::path]` cannot say of the streamed replies of [`event_stream`], added to the
/// assembled document: the `ReplyEvent` schema (one event: its name, its running id, its JSON
/// data) and, on the two operations that stream, the event-stream body as a sequence of them
/// (`x-itemSchema`, as OpenAPI 3.2's `itemSchema`).
pub fn describe_event_streams(document: &mut serde_json::Value) {
    let event = |name: &str, description: &str, data: serde_json::Value| {
        json!({
            "type": "object",
            "description": description,
            "required": ["event", "id", "data"],
            "properties": {
                "event": {"const": name},
                "id": {"type": "string", "description": "The event's position in the stream: 1, 2, 3, ..."},
                "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
            },
        })
    };
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    document["components"]["schemas"]["ReplyEvent"] = json!({
        "description": "One Server-Sent Event of a streamed reply: `event:` names it, `id:` numbers it, `data:` is one line of JSON. In order: `user_message` once, `delta` zero or more times, then either `citations` and `done`, or `error`; the stream then ends. The `delta` texts joined are the `done` message's `content`. A duplicate post (same content within 30 s) replays the stored exchange: the stored answer comes as one `delta`. Comment lines (`:`) keep an idle connection open and carry nothing.",
        "oneOf": [
            event("user_message", "The stored user message, sent before the model is asked.", schema("Message")),
            event("delta", "A fragment of the answer's text, in order, as the model writes it.", schema("StreamDelta")),
            event("citations", "The passages of the book the answer rests on (possibly none), once the answer is complete.", schema("StreamCitations")),
            event("done", "The stored answer, as the JSON route returns it. The last event.", schema("Message")),
            event(
                "error",
                "The last event when no answer came. Usually the stored failure notice (`is_error: true`, `error_details.code` such as `model_timeout` or `model_interrupted`, `error_details.partial_content` with what had been streamed), which `.../retry` answers again. When nothing could be stored (the database went away, another request is still answering this message), the error body of every other failure instead, e.g. `{\"error\": {\"code\": \"unavailable\", ...}}`; the message stays unanswered and can be retried.",
                json!({"oneOf": [schema("Message"), schema("Error")]}),
            ),
        ],
    });
    for (path, first) in [
        ("/api/conversations/{id}/messages", "`user_message`"),
        ("/api/conversations/{id}/messages/{message_id}/retry", "`user_message` (the message retried)"),
    ] {
        let operation = &mut document["paths"][path]["post"];
        operation["responses"]["201"]["content"]["text/event-stream"] = json!({
            "schema": {
                "type": "string",
                "description": format!("Server-Sent Events: {first}, `delta`..., `citations`, `done` (or `error`). Each event is a `ReplyEvent` (`x-itemSchema`, as OpenAPI 3.2's `itemSchema`)."),
            },
            "x-itemSchema": schema("ReplyEvent"),
            "example": primer_shared::http::openapi::examples::event_stream(),
        });
        // Deployed, API Gateway's HTTP API cannot stream: the function URL does.
        operation["servers"] = serde_json::to_value(primer_shared::http::openapi::streaming_servers())
            .expect("servers serialize");
    }
}
