//! A conversation's messages: reading them, and posting one (or retrying a failed reply) for the
//! tutor to answer, as JSON or streamed ([`crate::stream`]).
//!
//! Messages are paged from the newest: a page holds the `limit` messages before `before` (or
//! the newest ones), oldest first, and `next_cursor` leads to older ones.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use primer_shared::domain::conversations::{self, Cursor, Message, MessageContent, Owner, PageSize};
use primer_shared::domain::ids::{ConversationId, MessageId};
use primer_shared::domain::tutor::{Exchange, Tutor};
use primer_shared::http::extract::{Caller, JsonBody, QueryParams, WantsEventStream};
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Error, Result};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::conversation::resource_id;
use crate::stream::event_stream;

/// Read, post and retry.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/conversations/{id}/messages", get(list_messages).post(post_message))
        .route("/api/conversations/{id}/messages/{message_id}/retry", post(retry))
}

/// Posting a message and retrying one: the routes whose replies can stream.
pub(crate) fn stream_routes() -> Router<AppState> {
    Router::new()
        .route("/api/conversations/{id}/messages", post(post_message))
        .route("/api/conversations/{id}/messages/{message_id}/retry", post(retry))
}

fn tutor(state: &AppState) -> Tutor<'_> {
    Tutor::new(&state.pool, state.model.as_deref(), &state.config)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MessagesQuery {
    /// Page size.
    #[param(value_type = u32, required = false, default = 50, minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page: messages older than it.
    #[param(value_type = String, required = false)]
    before: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = MessagePage)]
pub(crate) struct MessageList {
    /// Oldest first.
    messages: Vec<Message>,
    /// Pass as `before` for older messages; null at the start.
    #[schema(required)]
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/conversations/{id}/messages",
    tag = "conversations",
    operation_id = "listMessages",
    summary = "Messages of a conversation",
    description = "Accepts either a user's access token or a guest token from `POST /api/auth/guest` as the Bearer token; a guest's conversations are handed to the user who registers or logs in with that `guest_token`. Another owner's conversation is a 404.",
    params(("id" = Uuid, Path, description = "Conversation id."), MessagesQuery),
    responses(
        (status = 200, description = "Messages, oldest first.", body = MessageList),
        api::SignedInErrors,
        (status = 400, response = api::BadRequest),
        (status = 404, response = api::NotFound),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<MessagesQuery>,
) -> Result<Json<MessageList>> {
    let id: ConversationId = resource_id(&id)?;
    let limit = PageSize::parse(query.limit, 50)?;
    // An empty `?before=` is no cursor, as a client that builds its query from a null gets.
    let before = query.before.as_deref().filter(|c| !c.is_empty()).map(Cursor::parse).transpose()?;
    let owner = Owner::from(caller);
    // Asked first, so an empty page of someone else's conversation is a 404, not `[]`.
    conversations::get(&state.pool, &owner, id).await?.ok_or(Error::NotFound)?;
    let page = conversations::list_messages(&state.pool, &owner, id, limit, before).await?;
    Ok(Json(MessageList { messages: page.items, next_cursor: page.next_cursor }))
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"content": "What is a ROS 2 topic?"})))]
pub(crate) struct PostMessageRequest {
    #[schema(value_type = String, required, min_length = 1, max_length = 32768, pattern = r"\S")]
    content: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/conversations/{id}/messages",
    tag = "conversations",
    operation_id = "postMessage",
    summary = "Send a message to the tutor",
    description = "Accepts either a user's access token or a guest token from `POST /api/auth/guest` as the Bearer token; a guest's conversations are handed to the user who registers or logs in with that `guest_token`. Another owner's conversation is a 404. The same content sent twice within 30 seconds is stored once and answered once. Content is at most 32 KiB (413 above that). With `Accept: text/event-stream` the answer streams as Server-Sent Events (see `ReplyEvent`); everything that fails before the message is stored (auth, validation, size, an unknown conversation) is still a JSON error with its status. Once the message is stored the answer is written and stored to its end even if the reader disconnects. Deployed, the HTTP API buffers whole responses: stream through the function URL (stack output `StreamUrl`), same path, same token. Each new message counts against the caller's daily message quota (429 `quota_exceeded` once used up; a duplicate costs nothing). When the caller's model tokens or the deployment's daily budget have no room for a reply, the offline tutor answers (`ai_model: offline-tutor`) and the reply says so first.",
    params(("id" = Uuid, Path, description = "Conversation id.")),
    request_body = PostMessageRequest,
    responses(
        (status = 201, description = "The stored user message and the tutor's reply. A model failure still answers 201, with `reply.is_error = true`. With `Accept: text/event-stream`, the same exchange as Server-Sent Events.", content((Exchange = "application/json"), (String = "text/event-stream"))),
        (status = 401, response = api::Unauthorized),
        (status = 403, response = api::AccountDisabledOrEmailUnverified),
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        (status = 404, response = api::NotFound),
        (status = 429, response = api::QuotaExceeded),
        (status = 502, response = api::ModelUnavailable),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn post_message(
    State(state): State<AppState>,
    caller: Caller,
    WantsEventStream(streamed): WantsEventStream,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PostMessageRequest>,
) -> Result<Response> {
    let id: ConversationId = resource_id(&id)?;
    let content = body.content.ok_or_else(|| Error::invalid("content", "is required"))?;
    let content = MessageContent::parse(content)?;
    let tutor = tutor(&state);
    let owner = Owner::from(caller);
    if streamed {
        return Ok(event_stream(tutor.post_streaming(&owner, id, content).await?));
    }
    let exchange: Exchange = tutor.post(&owner, id, content).await?;
    Ok((StatusCode::CREATED, Json(exchange)).into_response())
}

#[derive(Serialize, ToSchema)]
struct ReplyBody {
    reply: Message,
}

#[utoipa::path(
    post,
    path = "/api/conversations/{id}/messages/{message_id}/retry",
    tag = "conversations",
    operation_id = "retryMessage",
    summary = "Retry a failed reply",
    description = "Accepts either a user's access token or a guest token from `POST /api/auth/guest` as the Bearer token; a guest's conversations are handed to the user who registers or logs in with that `guest_token`. Another owner's conversation is a 404. `message_id` is a user message whose reply failed (`is_error`); otherwise 409 `already_answered`. With `Accept: text/event-stream` the answer streams as Server-Sent Events (see `ReplyEvent`); everything that fails before the message is stored (auth, an unknown message, an answered one) is still a JSON error with its status. Once the stream has started the answer is written and stored to its end even if the reader disconnects. Deployed, the HTTP API buffers whole responses: stream through the function URL (stack output `StreamUrl`), same path, same token. Each retry stores a reply, so it counts against the caller's daily message quota (429 `quota_exceeded` once used up). While another request holds the message's claim and would outlast this one (a streamed answer, seen from a JSON retry), a 503 at once whose `Retry-After` says when the claim lapses.",
    params(
        ("id" = Uuid, Path, description = "Conversation id."),
        ("message_id" = Uuid, Path, description = "Id of a user message whose reply failed."),
    ),
    responses(
        (status = 201, description = "A new reply to the user message. With `Accept: text/event-stream`, as Server-Sent Events.", content((inline(ReplyBody) = "application/json"), (String = "text/event-stream"))),
        (status = 401, response = api::Unauthorized),
        (status = 403, response = api::AccountDisabledOrEmailUnverified),
        (status = 404, response = api::NotFound),
        (status = 409, response = api::Conflict),
        (status = 429, response = api::QuotaExceeded),
        (status = 502, response = api::ModelUnavailable),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    WantsEventStream(streamed): WantsEventStream,
    Path((id, message_id)): Path<(String, String)>,
) -> Result<Response> {
    let (id, message_id): (ConversationId, MessageId) = (resource_id(&id)?, resource_id(&message_id)?);
    let tutor = tutor(&state);
    let owner = Owner::from(caller);
    if streamed {
        return Ok(event_stream(tutor.retry_streaming(&owner, id, message_id).await?));
    }
    let reply = tutor.retry(&owner, id, message_id).await?;
    Ok((StatusCode::CREATED, Json(ReplyBody { reply })).into_response())
}
