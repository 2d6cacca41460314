//! A chapter personalized for the caller: from the cache, or made now, inline or as a redirect
//! to the stored copy.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use primer_shared::domain::book::ChapterId;
use primer_shared::domain::personalize::{Engine, Fingerprint, cache};
use primer_shared::domain::profile::ProfileHash;
use primer_shared::http::extract::{AuthUser, QueryParams};
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Result};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::book::{chapter_id, markdown};

/// `/api/chapters/{id}/personalized`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/chapters/{id}/personalized", get(personalized))
}

/// How long a presigned URL for a personalized chapter stays valid.
pub const PRESIGNED_TTL: Duration = Duration::from_secs(15 * 60);

/// The same chapter personalized, as the examples of the document show it.
const PERSONALIZED_EXAMPLE: &str = "# ROS 2 Nodes and Topics\n\n> **Tailored for you.** Shaped by your Python level (Beginner): it includes 1 passage written for readers like you.\n\nA humanoid robot is not one program. It is dozens of small programs running side by side.\n\nA callback is a function you hand to someone else to call later.\n";

/// `?format=markdown|json&delivery=inline|redirect`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PersonalizedQuery {
    /// `json` answers `application/json` (PersonalizedChapter).
    #[serde(default)]
    #[param(inline, default = "markdown")]
    format: Format,
    /// `redirect` answers 302 to a presigned URL when the store is S3.
    #[serde(default)]
    #[param(inline, default = "inline")]
    delivery: Delivery,
}

#[derive(Deserialize, Default, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Markdown,
    Json,
}

#[derive(Deserialize, Default, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Delivery {
    #[default]
    Inline,
    /// A 302 to a presigned URL when the store can make one (S3); inline otherwise.
    Redirect,
}

/// A chapter personalized for the caller, as `?format=json` answers it.
#[derive(Serialize, ToSchema)]
#[schema(as = PersonalizedChapter, examples(json!({
    "chapter_id": 1,
    "chapter_version": 1,
    "profile_hash": "8f14e45fceea167a5a36dedd4bea2543b6c1f8c2d9e0a7b3c4d5e6f708192a3b",
    "fingerprint": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    "engine": "rule",
    "cached": true,
    "markdown": PERSONALIZED_EXAMPLE,
})))]
struct PersonalizedBody {
    #[schema(value_type = i32, minimum = 1)]
    chapter_id: ChapterId,
    chapter_version: i32,
    /// The caller's current profile hash.
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    profile_hash: ProfileHash,
    /// SHA-256 of what this copy was made from: the chapter version and what decides the engine's text (the rules' decisions for the reader, or the whole profile for a model). It names the stored object.
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    fingerprint: Fingerprint,
    #[schema(inline)]
    engine: Engine,
    /// True when served from the store, false when generated for this request.
    cached: bool,
    markdown: String,
}

#[utoipa::path(
    get,
    path = "/api/chapters/{id}/personalized",
    tag = "chapters",
    operation_id = "getPersonalizedChapter",
    summary = "A chapter rewritten for the caller",
    description = "Looked up by (user, chapter, chapter_version, fingerprint): the fingerprint hashes what decides the text of the engine tried first (for the rule-based engine, its decisions for the reader: which of the chapter's passages it keeps, and the reader's values of what the kept ones read; with a model, the whole profile), so a profile edit that changes none of those is still a hit. On a miss it is generated (language model if configured, else the rule-based engine) and cached. 409 `profile_incomplete` without an onboarded profile.",
    params(("id" = i32, Path, minimum = 1, description = "Chapter id."), PersonalizedQuery),
    responses(
        (status = 200, description = "The chapter personalized for the caller's profile: `text/markdown` by default, JSON with `?format=json`.", content((String = "text/markdown", example = json!(PERSONALIZED_EXAMPLE)), (PersonalizedBody = "application/json"))),
        (status = 302, description = "With `?delivery=redirect` and an S3 store: a redirect to a short-lived presigned URL of the markdown.",
            headers(("Location" = String, description = "The presigned URL."))),
        (status = 409, response = api::ProfileIncomplete),
        (status = 401, response = api::Unauthorized),
        (status = 403, response = api::AccountDisabledOrEmailUnverified),
        (status = 400, response = api::BadRequest),
        (status = 404, response = api::NotFound),
        (status = 429, response = api::RateLimited),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn personalized(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<PersonalizedQuery>,
) -> Result<Response> {
    let id = chapter_id(&id)?;
    // A URL to the stored object, made (if need be) but not downloaded first; a chapter that
    // is not stored (the rules standing in for a spent model allowance) is served inline.
    if query.delivery == Delivery::Redirect && state.blobs.presigns() {
        let key = cache::personalized_key(&state.personalizer(), &caller.user_id, id).await?;
        if let Some(key) = key
            && let Some(url) = state.blobs.presign_get(&key, PRESIGNED_TTL).await?
        {
            return Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response());
        }
    }
    let chapter = cache::personalized_chapter(&state.personalizer(), &caller.user_id, id).await?;
    Ok(match query.format {
        Format::Markdown => markdown(chapter.markdown),
        Format::Json => Json(PersonalizedBody {
            chapter_id: chapter.chapter_id,
            chapter_version: chapter.chapter_version,
            profile_hash: chapter.profile_hash,
            fingerprint: chapter.fingerprint,
            engine: chapter.engine,
            cached: chapter.cached,
            markdown: chapter.markdown,
        })
        .into_response(),
    })
}
