//! The caller's own profile: read it, create or replace it, merge-patch it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use primer_shared::domain::profile::{self, Change, ProfileInput, ProfilePatch, Saved, UserProfile};
use primer_shared::http::extract::{AuthUser, JsonBody};
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Error, Result};
use serde::Serialize;
use utoipa::ToSchema;

/// `/api/profile`: get, put, patch.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/profile", get(read).put(replace).patch(merge_patch))
}

/// `{profile}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProfileBody {
    profile: UserProfile,
}

#[utoipa::path(
    get,
    path = "/api/profile",
    tag = "profile",
    operation_id = "getProfile",
    summary = "The user's profile",
    description = "404 `not_found` when the user has no profile yet.",
    responses(
        (status = 200, description = "The profile.", body = inline(ProfileBody)),
        api::SignedInErrors,
        (status = 404, response = api::NotFound),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn read(State(state): State<AppState>, caller: AuthUser) -> Result<Json<ProfileBody>> {
    let profile = profile::find(&state.pool, &caller.user_id).await?.ok_or(Error::NotFound)?;
    Ok(Json(ProfileBody { profile }))
}

#[utoipa::path(
    put,
    path = "/api/profile",
    tag = "profile",
    operation_id = "putProfile",
    summary = "Create or replace the profile",
    description = "Once onboarded, changing `python_proficiency` or `developer_role` is a 409 `immutable_field` (the same value is fine). An unknown catalog value is a 422 naming the field path. Any change recomputes `profile_hash`.",
    request_body = ProfileInput,
    responses(
        (status = 200, description = "Replaced.", body = inline(ProfileBody)),
        (status = 201, description = "Created.", body = inline(ProfileBody)),
        api::SignedInErrors,
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        (status = 409, response = api::Conflict),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn replace(
    State(state): State<AppState>,
    caller: AuthUser,
    JsonBody(body): JsonBody<ProfileInput>,
) -> Result<(StatusCode, Json<ProfileBody>)> {
    let profile = body.parse()?;
    Ok(respond(profile::save(&state.pool, &caller.user_id, Change::Replace(Box::new(profile))).await?))
}

/// Takes `application/merge-patch+json` as well as `application/json`: `JsonBody` accepts
/// every `application/*+json` type. The document declares the first only: one schema under two
/// content types makes client generators emit a body parameter of two identical types
/// (openapi-python-client 0.29 writes a module that cannot be imported).
#[utoipa::path(
    patch,
    path = "/api/profile",
    tag = "profile",
    operation_id = "patchProfile",
    summary = "Merge-patch the profile (RFC 7396)",
    description = "A JSON merge patch (RFC 7396): members present replace, `null` removes, nested objects merge, arrays are replaced. Sent as `application/merge-patch+json` (RFC 7396's type, declared here) or as `application/json`, which is accepted alike. Without a profile, the patch applies to an empty one and creates it when the result is valid (still 200). The same immutability and catalog rules as PUT apply.",
    request_body(content = ProfilePatch, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The patched profile.", body = inline(ProfileBody)),
        api::SignedInErrors,
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        (status = 409, response = api::Conflict),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn merge_patch(
    State(state): State<AppState>,
    caller: AuthUser,
    JsonBody(patch): JsonBody<serde_json::Value>,
) -> Result<(StatusCode, Json<ProfileBody>)> {
    // docs/api.md: a patch answers 200, even the one that creates the profile.
    let (_, profile) = respond(profile::save(&state.pool, &caller.user_id, Change::MergePatch(patch)).await?);
    Ok((StatusCode::OK, profile))
}

/// 201 for a new profile, 200 for a changed one.
fn respond(saved: Saved) -> (StatusCode, Json<ProfileBody>) {
    let (status, profile) = match saved {
        Saved::Created(profile) => (StatusCode::CREATED, profile),
        Saved::Replaced(profile) => (StatusCode::OK, profile),
    };
    (status, Json(ProfileBody { profile }))
}
