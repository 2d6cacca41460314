//! The conversations function: `/api/models` and `/api/conversations*` of docs/api.md — a
//! caller's conversations with the tutor and their messages. The caller is a signed-in user
//! or a guest (`Bearer <guest_token>`); another owner's conversation is a 404 on every route.
//!
//! Conversations and messages are stored by `primer_shared::domain::conversations`; answering a
//! message (retrieval from the book, the model or the offline tutor, duplicates, retries) is
//! `primer_shared::domain::tutor`. Handing a guest's conversations to a user happens in the auth
//! function, at register and login.
//!
//! Messages are paged from the newest: a page holds the `limit` messages before `before` (or
//! the newest ones), oldest first, and `next_cursor` leads to older ones.
//!
//! `GET /api/usage` tells the caller what they have used of today's quotas and have left
//! (`primer_shared::domain::usage`); posting counts against them. Guests cannot set a system prompt.
//!
//! Posting a message and retrying one answer with Server-Sent Events instead of JSON when the
//! caller sends `Accept: text/event-stream`. On Lambda those two routes are also served by a
//! second binary, `conversations-stream`, behind a function URL that can stream
//! ([`stream_router`]); API Gateway's HTTP API buffers whole responses.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt as _;
use primer_shared::domain::conversations::{
    self, Citation, Conversation, ConversationChanges, ConversationQuery, Cursor, Message, MessageContent,
    NewConversation, Owner, PageSize, SystemPrompt, Title,
};
use primer_shared::domain::ids::{ConversationId, MessageId};
use primer_shared::domain::tutor::stream::{ReplyEvent, ReplyStream};
use primer_shared::domain::tutor::{Exchange, ModelCatalog, Tutor};
use primer_shared::domain::usage::{self, UsageReport};
use primer_shared::http::extract::{
    Caller, JsonBody, OptionalJsonBody, QueryParams, WantsEventStream, nullable, present,
};
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Error, FieldErrors, Result, http::app};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

/// The conversations routes, for the Lambda and for the local runner.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/models", get(models))
        .route("/api/conversations", post(create).get(list))
        .route("/api/conversations/{id}", get(show).patch(update).delete(remove))
        .route("/api/conversations/{id}/messages", get(list_messages).post(post_message))
        .route("/api/conversations/{id}/messages/{message_id}/retry", post(retry))
        .route("/api/usage", get(usage_today))
}

/// The function's whole service: its routes with the shared layers, on `state`.
pub fn router(state: AppState) -> Router {
    app::service(routes(), state)
}

/// The routes whose replies can stream: posting a message and retrying one.
pub fn stream_routes() -> Router<AppState> {
    Router::new()
        .route("/api/conversations/{id}/messages", post(post_message))
        .route("/api/conversations/{id}/messages/{message_id}/retry", post(retry))
}

/// The service of the streaming entry (`conversations-stream`, behind a Lambda function URL).
pub fn stream_router(state: AppState) -> Router {
    app::service(stream_routes(), state)
}

fn catalog(state: &AppState) -> ModelCatalog<'_> {
    ModelCatalog::new(state.model.as_deref())
}

fn tutor(state: &AppState) -> Tutor<'_> {
    Tutor::new(&state.pool, state.model.as_deref(), &state.config)
}

/// A system prompt is a signed-in user's: a guest who gives one gets a 422 naming the field.
fn system_prompt_of(caller: &Caller, raw: &str, errors: &mut FieldErrors) -> Option<Option<SystemPrompt>> {
    if matches!(caller, Caller::Guest { .. }) && !raw.trim().is_empty() {
        errors.add(
            "system_prompt",
            "guests cannot set a system prompt; sign up to give the tutor instructions",
        );
        return None;
    }
    errors.check("system_prompt", SystemPrompt::parse(raw))
}

/// An id in the path ([`ConversationId`], [`MessageId`]); one that is not a UUID names nothing,
/// so it is a 404 like a missing one.
fn resource_id<Id: From<Uuid>>(raw: &str) -> Result<Id> {
    raw.parse().map(Id::from).map_err(|_| Error::NotFound)
}

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"models": [{"id": "gpt-4o-mini", "offline": false}, {"id": "offline-tutor", "offline": true}], "default": "gpt-4o-mini"})))]
struct ModelList {
    #[schema(inline)]
    models: Vec<ModelEntry>,
    /// The id of the default model.
    default: String,
}

#[derive(Serialize, ToSchema)]
struct ModelEntry {
    id: String,
    /// True for the built-in offline tutor, which quotes the book instead of writing.
    offline: bool,
}

#[utoipa::path(
    get,
    path = "/api/models",
    tag = "conversations",
    operation_id = "listModels",
    summary = "Models a conversation may use",
    description = "Accepts either a user's access token or a guest token from `POST /api/auth/guest` as the Bearer token; a guest's conversations are handed to the user who registers or logs in with that `guest_token`. Another owner's conversation is a 404.",
    responses(
        (status = 200, description = "The models, with the default.", body = ModelList),
        api::SignedInErrors,
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
async fn models(State(state): State<AppState>, _caller: Caller) -> Json<ModelList> {
    let catalog = catalog(&state);
    let models = catalog
        .allowed()
        .into_iter()
        .map(|id| ModelEntry { id: id.to_owned(), offline: catalog.is_offline() })
        .collect();
    Json(ModelList { models, default: catalog.default_model().as_str().to_owned() })
}

/// `{conversation}`.
#[derive(Serialize, ToSchema)]
struct ConversationBody {
    conversation: Conversation,
}

#[derive(Deserialize, Default, ToSchema)]
#[schema(as = CreateConversationRequest, examples(json!({"title": "Learning ROS 2", "system_prompt": "Answer briefly: I know Python well."})))]
struct CreateRequest {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, pattern = r"\S")]
    title: Option<String>,
    ai_model: Option<String>,
    /// The user's instructions for the model, at most 2,000 characters. Guests cannot set one (422).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, max_length = 2000)]
    system_prompt: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/conversations",
    tag = "conversations",
    operation_id = "createConversation",
    summary = "Start a conversation",
    description = "Accepts either a user's access token or a guest token from `POST /api/auth/guest` as the Bearer token; a guest's conversations are handed to the user who registers or logs in with that `guest_token`. Another owner's conversation is a 404. Each new conversation counts against the caller's daily conversation quota (`QUOTA_USER_CONVERSATIONS_PER_DAY`, 50; a guest's `QUOTA_GUEST_CONVERSATIONS_PER_DAY`, 10): past it, 429 `quota_exceeded` and nothing is created.",
    request_body = CreateRequest,
    responses(
        (status = 201, description = "Created; `title` is `Untitled N` when absent.", body = inline(ConversationBody)),
        api::SignedInErrors,
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        (status = 429, response = api::QuotaExceeded),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    OptionalJsonBody(body): OptionalJsonBody<CreateRequest>,
) -> Result<(StatusCode, Json<ConversationBody>)> {
    let catalog = catalog(&state);
    let mut errors = FieldErrors::new();
    let title = body.title.and_then(|t| errors.check("title", Title::parse(&t)));
    let ai_model = match body.ai_model {
        Some(model) => errors.check("ai_model", catalog.parse(&model)),
        None => Some(catalog.default_model()),
    };
    let system_prompt = body.system_prompt.and_then(|p| system_prompt_of(&caller, &p, &mut errors));
    errors.finish()?;
    let new = NewConversation { title, ai_model: ai_model.unwrap(), system_prompt: system_prompt.flatten() };
    let owner = Owner::from(caller);
    let conversation =
        conversations::create(&mut *state.pool.acquire().await?, &owner, &state.config.usage, new).await?;
    Ok((StatusCode::CREATED, Json(ConversationBody { conversation })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// List archived conversations instead of active ones.
    #[param(value_type = bool, required = false, default = false)]
    archived: Option<bool>,
    /// Page size.
    #[param(value_type = u32, required = false, default = 20, minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(value_type = String, required = false)]
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ConversationPage)]
struct ConversationList {
    conversations: Vec<Conversation>,
    /// Pass as `cursor` for the next page; null at the end.
    #[schema(required)]
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/conversations",
    tag = "conversations",
    operation_id = "listConversations",
    summary = "List conversations",
    description = "Accepts either a user's access token or a guest token from `POST /api/auth/guest` as the Bearer token; a guest's conversations are handed to the user who registers or logs in with that `guest_token`. Another owner's conversation is a 404.",
    params(ListQuery),
    responses(
        (status = 200, description = "Pinned first, then latest activity.", body = ConversationList),
        api::SignedInErrors,
        (status = 400, response = api::BadRequest),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<ConversationList>> {
    let query = ConversationQuery {
        archived: query.archived.unwrap_or(false),
        limit: PageSize::parse(query.limit, 20)?,
        after: query.cursor.as_deref().filter(|c| !c.is_empty()).map(Cursor::parse).transpose()?,
    };
    let page = conversations::list(&state.pool, &Owner::from(caller), query).await?;
    Ok(Json(ConversationList { conversations: page.items, next_cursor: page.next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/conversations/{id}",
    tag = "conversations",
    operation_id = "getConversation",
    summary = "One conversation",
    description = "Accepts either a user's access token or a guest token from `POST /api/auth/guest` as the Bearer token; a guest's conversations are handed to the user who registers or logs in with that `guest_token`. Another owner's conversation is a 404.",
    params(("id" = Uuid, Path, description = "Conversation id.")),
    responses(
        (status = 200, description = "The conversation.", body = inline(ConversationBody)),
        api::SignedInErrors,
        (status = 404, response = api::NotFound),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ConversationBody>> {
    let conversation =
        conversations::get(&state.pool, &Owner::from(caller), resource_id::<ConversationId>(&id)?)
            .await?
            .ok_or(Error::NotFound)?;
    Ok(Json(ConversationBody { conversation }))
}

#[derive(Deserialize, ToSchema)]
#[schema(as = UpdateConversationRequest, examples(json!({"title": "ROS 2 topics", "is_pinned": true})))]
struct UpdateRequest {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, pattern = r"\S")]
    title: Option<String>,
    ai_model: Option<String>,
    /// The user's instructions for the model, at most 2,000 characters. Guests cannot set one (422).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 2000)]
    system_prompt: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool)]
    is_archived: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool)]
    is_pinned: Option<bool>,
}

#[utoipa::path(
    patch,
    path = "/api/conversations/{id}",
    tag = "conversations",
    operation_id = "updateConversation",
    summary = "Rename, archive, pin, re-model",
    description = "Accepts either a user's access token or a guest token from `POST /api/auth/guest` as the Bearer token; a guest's conversations are handed to the user who registers or logs in with that `guest_token`. Another owner's conversation is a 404.",
    params(("id" = Uuid, Path, description = "Conversation id.")),
    request_body = UpdateRequest,
    responses(
        (status = 200, description = "The updated conversation.", body = inline(ConversationBody)),
        api::SignedInErrors,
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        (status = 404, response = api::NotFound),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateRequest>,
) -> Result<Json<ConversationBody>> {
    let id: ConversationId = resource_id(&id)?;
    let catalog = catalog(&state);
    let mut errors = FieldErrors::new();
    let changes = ConversationChanges {
        title: body.title.and_then(|t| errors.check("title", Title::parse(&t))),
        ai_model: body.ai_model.and_then(|m| errors.check("ai_model", catalog.parse(&m))),
        system_prompt: body.system_prompt.and_then(|prompt| match prompt {
            None => Some(None),
            Some(p) => system_prompt_of(&caller, &p, &mut errors),
        }),
        is_archived: body.is_archived,
        is_pinned: body.is_pinned,
    };
    errors.finish()?;
    let conversation = conversations::update(&state.pool, &Owner::from(caller), id, changes)
        .await?
        .ok_or(Error::NotFound)?;
    Ok(Json(ConversationBody { conversation }))
}

#[utoipa::path(
    delete,
    path = "/api/conversations/{id}",
    tag = "conversations",
    operation_id = "deleteConversation",
    summary = "Delete a conversation",
    description = "Accepts either a user's access token or a guest token from `POST /api/auth/guest` as the Bearer token; a guest's conversations are handed to the user who registers or logs in with that `guest_token`. Another owner's conversation is a 404.",
    params(("id" = Uuid, Path, description = "Conversation id.")),
    responses(
        (status = 204, description = "The conversation and its messages are gone."),
        api::SignedInErrors,
        (status = 404, response = api::NotFound),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    if conversations::delete(&state.pool, &Owner::from(caller), resource_id::<ConversationId>(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound)
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct MessagesQuery {
    /// Page size.
    #[param(value_type = u32, required = false, default = 50, minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page: messages older than it.
    #[param(value_type = String, required = false)]
    before: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = MessagePage)]
struct MessageList {
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
async fn list_messages(
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
struct PostMessageRequest {
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
async fn post_message(
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
async fn retry(
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

/// The `data` of a `delta` event.
#[derive(Serialize, ToSchema)]
struct StreamDelta {
    /// The next fragment of the answer.
    #[schema(min_length = 1)]
    text: String,
}

/// The `data` of a `citations` event.
#[derive(Serialize, ToSchema)]
struct StreamCitations {
    citations: Vec<Citation>,
}

/// A streamed reply as Server-Sent Events: each a JSON `data:` with its `event:` name and a
/// running `id:`. 201, as the JSON route: the message is stored before the first event.
fn event_stream(replies: ReplyStream) -> Response {
    let events = replies.enumerate().map(|(n, event)| {
        let (name, data) = match event {
            ReplyEvent::UserMessage(message) => ("user_message", json!(message)),
            ReplyEvent::Delta(text) => ("delta", json!(StreamDelta { text })),
            ReplyEvent::Citations(citations) => ("citations", json!(StreamCitations { citations })),
            ReplyEvent::Done(message) => ("done", json!(message)),
            ReplyEvent::Error(message) => ("error", json!(message)),
            ReplyEvent::Failed(body) => ("error", body),
        };
        Ok::<_, Infallible>(Event::default().event(name).id((n + 1).to_string()).data(data.to_string()))
    });
    // Comments while the model is silent keep idle proxies from closing the connection.
    (StatusCode::CREATED, Sse::new(events).keep_alive(KeepAlive::default())).into_response()
}

/// `GET /api/usage`: the caller's day so far.
#[derive(Serialize, ToSchema)]
#[schema(as = Usage, examples(json!({
    "caller": "user",
    "model_configured": true,
    "day": "2026-11-29",
    "resets_at": "2026-11-30T00:00:00Z",
    "messages": {"used": 3, "limit": 200, "remaining": 197},
    "tokens": {"used": 5120, "limit": 400000, "remaining": 394880},
    "conversations": {"used": 1, "limit": 50, "remaining": 49},
    "model_budget_left": true,
})))]
struct UsageBody {
    /// Whose quotas apply: a guest's are far below a user's.
    #[schema(schema_with = api::one_of_strings::<CallerKinds>)]
    caller: &'static str,
    /// False when no model is configured: the offline tutor answers and spends no tokens.
    model_configured: bool,
    #[serde(flatten)]
    usage: UsageReport,
}

/// The values of [`UsageBody::caller`].
struct CallerKinds;
impl api::Strings for CallerKinds {
    const ALL: &[&str] = &["user", "guest"];
    const DESCRIPTION: Option<&str> = Some("Whose quotas apply: a guest's are far below a user's.");
}

#[utoipa::path(
    get,
    path = "/api/usage",
    tag = "conversations",
    operation_id = "getUsage",
    summary = "What the caller has used of today's quotas and has left",
    description = "Accepts a user's access token or a guest token. Counts the UTC day: messages posted to the tutor, model tokens (tutor and personalization) and conversations created. Posting past the message quota, or with no tokens left, is a 429 `quota_exceeded`; when a reply would not fit the tokens left, or the deployment's budget is spent, the offline tutor answers and its reply says so.",
    responses(
        (status = 200, description = "The caller's day so far.", body = UsageBody),
        api::SignedInErrors,
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
async fn usage_today(State(state): State<AppState>, caller: Caller) -> Result<Json<UsageBody>> {
    let kind = if matches!(caller, Caller::Guest { .. }) { "guest" } else { "user" };
    let subject = Owner::from(caller);
    let usage = usage::report(&state.pool, &subject, &state.config.usage).await?;
    Ok(Json(UsageBody { caller: kind, model_configured: state.model.is_some(), usage }))
}

/// This function's operations in the OpenAPI document (openapi.json), from the handlers above.
#[derive(OpenApi)]
#[openapi(
    paths(models, create, list, show, update, remove, list_messages, post_message, retry, usage_today),
    components(schemas(StreamDelta, StreamCitations)),
    modifiers(&OPTIONAL_CREATE_BODY)
)]
pub struct Api;

/// `POST /api/conversations` may come without a body ([`OptionalJsonBody`]).
static OPTIONAL_CREATE_BODY: api::OptionalPostBody = api::OptionalPostBody("/api/conversations");

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
