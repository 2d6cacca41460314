//! The chapters function: `/api/chapters*` of docs/api.md — the book's table of contents, each
//! chapter's source, and the caller's personalized chapter.
//!
//! Parsing and importing the book (`primer_shared::domain::book`), the personalization engines and
//! their cache (`primer_shared::domain::personalize`) and the blob store live in the core crate; this
//! crate maps HTTP onto them. Importing is the admin binary's job, clean-up the janitor's.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use primer_shared::domain::book::{self, ChapterId, ChapterSummary};
use primer_shared::domain::personalize::cache::{self, MARKDOWN};
use primer_shared::domain::personalize::{Engine, Fingerprint};
use primer_shared::http::extract::{AuthUser, QueryParams};
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Error, Result, http::app};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// How long a presigned URL for a personalized chapter stays valid.
pub const PRESIGNED_TTL: Duration = Duration::from_secs(15 * 60);

/// The chapters routes, for the Lambda and for the local runner.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/chapters", get(list))
        .route("/api/chapters/{id}", get(source))
        .route("/api/chapters/{id}/personalized", get(personalized))
        .route("/api/openapi.json", get(openapi))
}

/// The HTTP contract of the whole API, as the repository keeps it: served by this function (a
/// public, read-only document, like the book) so that a deployed API describes itself. The file
/// is generated from the handlers of every function (`local::openapi`, which depends on this
/// crate, so the file is read here rather than generated); local's `openapi` test keeps the
/// two equal.
const OPENAPI: &str = include_str!("../../../openapi.json");

#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    operation_id = "getOpenApi",
    summary = "This OpenAPI document",
    description = "Served by the chapters function (deployed) and by the local runner.",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object,
            example = json!({"openapi": "3.1.0", "info": {"title": "primer", "version": "0.1.0"}, "paths": {}})),
        api::ServerErrors,
    ),
)]
async fn openapi() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The function's whole service: its routes with the shared layers, on `state`.
pub fn router(state: AppState) -> Router {
    app::service(routes(), state)
}

#[derive(Serialize, ToSchema)]
struct ChapterList {
    chapters: Vec<ChapterSummary>,
}

#[utoipa::path(
    get,
    path = "/api/chapters",
    tag = "chapters",
    operation_id = "listChapters",
    summary = "The book's chapters",
    responses(
        (status = 200, description = "Chapter summaries.", body = inline(ChapterList)),
        api::ServerErrors,
    ),
)]
async fn list(State(state): State<AppState>) -> Result<Json<ChapterList>> {
    Ok(Json(ChapterList { chapters: book::list(&state.pool).await? }))
}

/// A chapter number in the path; anything else names no chapter.
fn chapter_id(raw: &str) -> Result<ChapterId> {
    ChapterId::parse(raw).ok_or(Error::NotFound)
}

fn markdown(body: String) -> Response {
    ([(header::CONTENT_TYPE, MARKDOWN)], body).into_response()
}

/// The beginning of a chapter, as the examples of the document show it.
const SOURCE_EXAMPLE: &str = "# ROS 2 Nodes and Topics\n\nA humanoid robot is not one program. It is dozens of small programs running side by side.\n\n:::only{level=\"beginner\"}\nA callback is a function you hand to someone else to call later.\n:::\n";

/// The same chapter personalized, as the examples of the document show it.
const PERSONALIZED_EXAMPLE: &str = "# ROS 2 Nodes and Topics\n\n> **Tailored for you.** Shaped by your Python level (Beginner): it includes 1 passage written for readers like you.\n\nA humanoid robot is not one program. It is dozens of small programs running side by side.\n\nA callback is a function you hand to someone else to call later.\n";

#[utoipa::path(
    get,
    path = "/api/chapters/{id}",
    tag = "chapters",
    operation_id = "getChapter",
    summary = "A chapter's source markdown",
    params(("id" = i32, Path, minimum = 1, description = "Chapter id.")),
    responses(
        (status = 200, description = "The source chapter.", body = String, content_type = "text/markdown",
            example = json!(SOURCE_EXAMPLE)),
        (status = 400, response = api::BadRequest),
        (status = 404, response = api::NotFound),
        api::ServerErrors,
    ),
)]
async fn source(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let chapter = book::by_id(&state.pool, chapter_id(&id)?).await?.ok_or(Error::NotFound)?;
    Ok(markdown(chapter.source_markdown))
}

/// `?format=markdown|json&delivery=inline|redirect`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PersonalizedQuery {
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
    #[schema(pattern = "^[0-9a-f]{64}$")]
    profile_hash: String,
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
async fn personalized(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<PersonalizedQuery>,
) -> Result<Response> {
    let id = chapter_id(&id)?;
    // A URL to the stored object, made (if need be) but not downloaded first; a chapter that
    // is not stored (the rules standing in for a spent model allowance) is served inline.
    if query.delivery == Delivery::Redirect && state.blobs.presigns() {
        let key = cache::personalized_key(&state.personalizer(), caller.user_id.as_str(), id).await?;
        if let Some(key) = key
            && let Some(url) = state.blobs.presign_get(&key, PRESIGNED_TTL).await?
        {
            return Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response());
        }
    }
    let chapter = cache::personalized_chapter(&state.personalizer(), caller.user_id.as_str(), id).await?;
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

/// This function's operations in the OpenAPI document (openapi.json), from the handlers above.
#[derive(OpenApi)]
#[openapi(paths(list, source, personalized, openapi))]
pub struct Api;
