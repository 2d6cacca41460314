//! The conversations function: `/api/models`, `/api/conversations*` and `/api/usage` of
//! docs/api.md — a caller's conversations with the tutor, their messages, and the caller's
//! quotas. The caller is a signed-in user or a guest (`Bearer <guest_token>`); another owner's
//! conversation is a 404 on every route.
//!
//! Conversations and messages are stored by `primer_shared::domain::conversations`; answering a
//! message (retrieval from the book, the model or the offline tutor, duplicates, retries) is
//! `primer_shared::domain::tutor`. Handing a guest's conversations to a user happens in the auth
//! function, at register and login.
//!
//! Posting a message and retrying one answer with Server-Sent Events instead of JSON when the
//! caller sends `Accept: text/event-stream` ([`stream`]). On Lambda those two routes are also
//! served by a second binary, `conversations-stream`, behind a function URL that can stream
//! ([`stream_router`]); API Gateway's HTTP API buffers whole responses.

use axum::Router;
use primer_shared::{AppState, http::app};
use utoipa::OpenApi;

use crate::conversation::OPTIONAL_CREATE_BODY;
pub use crate::stream::describe_event_streams;

mod conversation;
mod messages;
mod models;
mod stream;
mod usage;

/// The conversations routes, for the Lambda and for the local runner.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(models::routes())
        .merge(conversation::routes())
        .merge(messages::routes())
        .merge(usage::routes())
}

/// The function's whole service: its routes with the shared layers, on `state`.
pub fn router(state: AppState) -> Router {
    app::service(routes(), state)
}

/// The routes whose replies can stream: posting a message and retrying one.
pub fn stream_routes() -> Router<AppState> {
    messages::stream_routes()
}

/// The service of the streaming entry (`conversations-stream`, behind a Lambda function URL).
pub fn stream_router(state: AppState) -> Router {
    app::service(stream_routes(), state)
}

/// This function's operations in the OpenAPI document (openapi.json), in the document's order.
#[derive(OpenApi)]
#[openapi(paths(
    models::models, conversation::create, conversation::list, conversation::show, conversation::update,
    conversation::remove, messages::list_messages, messages::post_message, messages::retry,
    usage::usage_today,
), components(schemas(stream::StreamDelta, stream::StreamCitations)), modifiers(&OPTIONAL_CREATE_BODY))]
pub struct Api;
