//! A caller's conversations: start one, list them, read, change and delete one. Guests cannot
//! set a system prompt.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use primer_shared::domain::conversations::{
    self, Conversation, ConversationChanges, ConversationQuery, Cursor, NewConversation, Owner, PageSize,
    SystemPrompt, Title,
};
use primer_shared::domain::ids::ConversationId;
use primer_shared::http::extract::{Caller, JsonBody, OptionalJsonBody, QueryParams, nullable, present};
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Error, FieldErrors, Result};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::models::catalog;

/// `/api/conversations` and `/api/conversations/{id}`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/conversations", post(create).get(list))
        .route("/api/conversations/{id}", get(show).patch(update).delete(remove))
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

/// An id in the path (a conversation's or a message's); one that is not a UUID names nothing,
/// so it is a 404 like a missing one.
pub(crate) fn resource_id<Id: std::str::FromStr>(raw: &str) -> Result<Id> {
    raw.parse().map_err(|_| Error::NotFound)
}

/// `{conversation}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConversationBody {
    conversation: Conversation,
}

#[derive(Deserialize, Default, ToSchema)]
#[schema(as = CreateConversationRequest, examples(json!({"title": "Learning ROS 2", "system_prompt": "Answer briefly: I know Python well."})))]
pub(crate) struct CreateRequest {
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
pub(crate) async fn create(
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
pub(crate) struct ListQuery {
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
pub(crate) struct ConversationList {
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
pub(crate) async fn list(
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
pub(crate) async fn show(
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
pub(crate) struct UpdateRequest {
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
pub(crate) async fn update(
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
pub(crate) async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    if conversations::delete(&state.pool, &Owner::from(caller), resource_id::<ConversationId>(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound)
    }
}

/// `POST /api/conversations` may come without a body ([`OptionalJsonBody`]).
pub(crate) static OPTIONAL_CREATE_BODY: api::OptionalPostBody = api::OptionalPostBody("/api/conversations");
