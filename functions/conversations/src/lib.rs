//! The conversations function: `/api/models` and `/api/conversations*` of docs/api.md — a
//! caller's conversations with the tutor and their messages. The caller is a signed-in user
//! or a guest (`Bearer <guest_token>`); another owner's conversation is a 404 on every route.
//!
//! Conversations and messages are stored by `primer_shared::conversations`; answering a
//! message (retrieval from the book, the model or the offline tutor, duplicates, retries) is
//! `primer_shared::tutor`. Handing a guest's conversations to a user happens in the auth
//! function, at register and login.
//!
//! Messages are paged from the newest: a page holds the `limit` messages before `before` (or
//! the newest ones), oldest first, and `next_cursor` leads to older ones.
//!
//! `GET /api/usage` tells the caller what they have used of today's quotas and have left
//! (`primer_shared::usage`); posting counts against them. Guests cannot set a system prompt.
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
use primer_shared::conversations::{
    self, Conversation, ConversationChanges, ConversationQuery, Cursor, Message, MessageContent,
    NewConversation, Owner, PageSize, SystemPrompt, Title,
};
use primer_shared::extract::{
    Caller, JsonBody, OptionalJsonBody, QueryParams, WantsEventStream, nullable, present,
};
use primer_shared::tutor::stream::{ReplyEvent, ReplyStream};
use primer_shared::tutor::{Exchange, ModelCatalog, Tutor};
use primer_shared::usage::{self, UsageReport};
use primer_shared::{AppState, Error, FieldErrors, Result, app};
use serde::{Deserialize, Serialize};
use serde_json::json;
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
    Tutor::new(&state.pool, state.model.as_deref(), &state.config.usage)
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

/// An id in the path; one that is not a UUID names nothing, so it is a 404 like a missing one.
fn resource_id(raw: &str) -> Result<Uuid> {
    raw.parse().map_err(|_| Error::NotFound)
}

#[derive(Serialize)]
struct ModelList {
    models: Vec<ModelEntry>,
    default: String,
}

#[derive(Serialize)]
struct ModelEntry {
    id: String,
    /// True for the built-in offline tutor, which quotes the book instead of writing.
    offline: bool,
}

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
#[derive(Serialize)]
struct ConversationBody {
    conversation: Conversation,
}

#[derive(Deserialize, Default)]
struct CreateRequest {
    #[serde(default, deserialize_with = "present")]
    title: Option<String>,
    ai_model: Option<String>,
    #[serde(default, deserialize_with = "present")]
    system_prompt: Option<String>,
}

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
    let conversation =
        conversations::create(&mut *state.pool.acquire().await?, &Owner::from(caller), new).await?;
    Ok((StatusCode::CREATED, Json(ConversationBody { conversation })))
}

#[derive(Deserialize)]
struct ListQuery {
    archived: Option<bool>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct ConversationList {
    conversations: Vec<Conversation>,
    next_cursor: Option<String>,
}

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

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ConversationBody>> {
    let conversation = conversations::get(&state.pool, &Owner::from(caller), resource_id(&id)?)
        .await?
        .ok_or(Error::NotFound)?;
    Ok(Json(ConversationBody { conversation }))
}

#[derive(Deserialize)]
struct UpdateRequest {
    #[serde(default, deserialize_with = "present")]
    title: Option<String>,
    ai_model: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    system_prompt: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    is_archived: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    is_pinned: Option<bool>,
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateRequest>,
) -> Result<Json<ConversationBody>> {
    let id = resource_id(&id)?;
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

async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    if conversations::delete(&state.pool, &Owner::from(caller), resource_id(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound)
    }
}

#[derive(Deserialize)]
struct MessagesQuery {
    limit: Option<u32>,
    before: Option<String>,
}

#[derive(Serialize)]
struct MessageList {
    messages: Vec<Message>,
    next_cursor: Option<String>,
}

async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<MessagesQuery>,
) -> Result<Json<MessageList>> {
    let id = resource_id(&id)?;
    let limit = PageSize::parse(query.limit, 50)?;
    // An empty `?before=` is no cursor, as a client that builds its query from a null gets.
    let before = query.before.as_deref().filter(|c| !c.is_empty()).map(Cursor::parse).transpose()?;
    let owner = Owner::from(caller);
    // Asked first, so an empty page of someone else's conversation is a 404, not `[]`.
    conversations::get(&state.pool, &owner, id).await?.ok_or(Error::NotFound)?;
    let page = conversations::list_messages(&state.pool, &owner, id, limit, before).await?;
    Ok(Json(MessageList { messages: page.items, next_cursor: page.next_cursor }))
}

#[derive(Deserialize)]
struct PostMessageRequest {
    content: Option<String>,
}

async fn post_message(
    State(state): State<AppState>,
    caller: Caller,
    WantsEventStream(streamed): WantsEventStream,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PostMessageRequest>,
) -> Result<Response> {
    let id = resource_id(&id)?;
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

#[derive(Serialize)]
struct ReplyBody {
    reply: Message,
}

async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    WantsEventStream(streamed): WantsEventStream,
    Path((id, message_id)): Path<(String, String)>,
) -> Result<Response> {
    let (id, message_id) = (resource_id(&id)?, resource_id(&message_id)?);
    let tutor = tutor(&state);
    let owner = Owner::from(caller);
    if streamed {
        return Ok(event_stream(tutor.retry_streaming(&owner, id, message_id).await?));
    }
    let reply = tutor.retry(&owner, id, message_id).await?;
    Ok((StatusCode::CREATED, Json(ReplyBody { reply })).into_response())
}

/// A streamed reply as Server-Sent Events: each a JSON `data:` with its `event:` name and a
/// running `id:`. 201, as the JSON route: the message is stored before the first event.
fn event_stream(replies: ReplyStream) -> Response {
    let events = replies.enumerate().map(|(n, event)| {
        let (name, data) = match event {
            ReplyEvent::UserMessage(message) => ("user_message", json!(message)),
            ReplyEvent::Delta(text) => ("delta", json!({ "text": text })),
            ReplyEvent::Citations(citations) => ("citations", json!({ "citations": citations })),
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
#[derive(Serialize)]
struct UsageBody {
    /// `user` or `guest`: whose quotas apply.
    caller: &'static str,
    /// False when no model is configured: the offline tutor answers and spends no tokens.
    model_configured: bool,
    #[serde(flatten)]
    usage: UsageReport,
}

async fn usage_today(State(state): State<AppState>, caller: Caller) -> Result<Json<UsageBody>> {
    let kind = if matches!(caller, Caller::Guest { .. }) { "guest" } else { "user" };
    let subject = Owner::from(caller);
    let usage = usage::report(&state.pool, &subject, &state.config.usage).await?;
    Ok(Json(UsageBody { caller: kind, model_configured: state.model.is_some(), usage }))
}
