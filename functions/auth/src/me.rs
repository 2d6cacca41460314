//! The signed-in user's own account: read it, change its name, image or preferences, delete it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use primer_shared::domain::user::{self, User, UserChanges};
use primer_shared::http::extract::{AuthUser, ClientMeta, JsonBody};
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Result};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts;

/// `/api/auth/me`: get, patch, delete.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/auth/me", get(me).patch(update_me).delete(delete_me))
}

/// `{user}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserBody {
    user: User,
}

#[utoipa::path(
    get,
    path = "/api/auth/me",
    tag = "auth",
    operation_id = "getMe",
    summary = "The signed-in user",
    responses(
        (status = 200, description = "The user.", body = inline(UserBody)),
        api::SignedInErrors,
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn me(caller: AuthUser) -> Json<UserBody> {
    Json(UserBody { user: caller.user })
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"name": "Ada King", "preferences": {"theme": "dark"}})))]
pub(crate) struct UpdateMeRequest {
    #[schema(pattern = r"\S")]
    name: Option<String>,
    #[serde(default, deserialize_with = "primer_shared::http::extract::nullable")]
    #[schema(value_type = Option<String>, pattern = "^https?://", max_length = 2048)]
    image: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    preferences: Option<serde_json::Value>,
}

#[utoipa::path(
    patch,
    path = "/api/auth/me",
    tag = "auth",
    operation_id = "updateMe",
    summary = "Update name, image or preferences",
    request_body = UpdateMeRequest,
    responses(
        (status = 200, description = "The updated user.", body = inline(UserBody)),
        api::SignedInErrors,
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn update_me(
    State(state): State<AppState>,
    caller: AuthUser,
    JsonBody(body): JsonBody<UpdateMeRequest>,
) -> Result<Json<UserBody>> {
    let changes = UserChanges::parse(body.name, body.image, body.preferences)?;
    let user = user::update(&state.pool, &caller.user_id, changes).await?;
    Ok(Json(UserBody { user }))
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"password": "Analytical Engine, 1843"})))]
pub(crate) struct DeleteMeRequest {
    /// The current password; an account without one leaves it out.
    #[schema(value_type = String, required = false, pattern = r"\S")]
    password: Option<String>,
}

#[utoipa::path(
    delete,
    path = "/api/auth/me",
    tag = "auth",
    operation_id = "deleteMe",
    summary = "Delete the account",
    description = "Requires the current password; a wrong one is a 422 on `password`. Each check counts like a login, against this session's own budget of failures (5 in 15 minutes; 429 with `Retry-After`): failures elsewhere do not block it. An account without a password (a social sign-in) leaves `password` out and is deleted only from a session opened in the last 5 minutes; from an older one, a 422 on `password`.",
    request_body = DeleteMeRequest,
    responses(
        (status = 204, description = "The user and everything of theirs (rows and stored objects) are gone."),
        api::SignedInErrors,
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        (status = 429, response = api::RateLimited),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn delete_me(
    State(state): State<AppState>,
    caller: AuthUser,
    client: ClientMeta,
    JsonBody(body): JsonBody<DeleteMeRequest>,
) -> Result<StatusCode> {
    let blobs = state.blobs.as_ref();
    let (user_id, session_id) = (&caller.user_id, &caller.session_id);
    accounts(&state).delete(blobs, user_id, session_id, body.password, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}
