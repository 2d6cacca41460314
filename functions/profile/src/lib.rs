//! The profile function: `/api/profile*` of docs/api.md — the catalog of allowed values, and the
//! caller's own profile (read, create or replace, merge-patch).
//!
//! The catalog, the parsing, the onboarding rule and the hash live in the core crate
//! (`primer_shared::profile`), where the chapters function reads them too; this crate maps HTTP
//! onto them. It does not personalize chapters: the chapters function reads the stored profile
//! and keys each copy by the part of it that the copy depends on.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use primer_shared::extract::{AuthUser, JsonBody};
use primer_shared::profile::catalog::{self, ProfileOptions};
use primer_shared::profile::{self, Change, ProfileInput, Saved, UserProfile};
use primer_shared::{AppState, Error, Result, app};
use serde::Serialize;

/// The profile routes, for the Lambda and for the local runner.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/profile/options", get(options))
        .route("/api/profile", get(read).put(replace).patch(merge_patch))
}

/// The function's whole service: its routes with the shared layers, on `state`.
pub fn router(state: AppState) -> Router {
    app::service(routes(), state)
}

/// `{profile}`.
#[derive(Serialize)]
struct ProfileBody {
    profile: UserProfile,
}

async fn options() -> Json<ProfileOptions> {
    Json(catalog::options())
}

async fn read(State(state): State<AppState>, caller: AuthUser) -> Result<Json<ProfileBody>> {
    let profile = profile::find(&state.pool, &caller.user_id).await?.ok_or(Error::NotFound)?;
    Ok(Json(ProfileBody { profile }))
}

async fn replace(
    State(state): State<AppState>,
    caller: AuthUser,
    JsonBody(body): JsonBody<ProfileInput>,
) -> Result<(StatusCode, Json<ProfileBody>)> {
    let profile = body.parse()?;
    Ok(respond(profile::save(&state.pool, &caller.user_id, Change::Replace(Box::new(profile))).await?))
}

/// Takes `application/merge-patch+json` as well as `application/json`: `JsonBody` accepts
/// every `application/*+json` type.
async fn merge_patch(
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
