//! The chapters function: `/api/chapters*` of docs/api.md — the book's table of contents, each
//! chapter's source, and the caller's personalized chapter.
//!
//! Parsing and importing the book (`primer_shared::book`), the personalization engines and
//! their cache (`primer_shared::personalize`) and the blob store live in the core crate; this
//! crate maps HTTP onto them. Importing is the admin binary's job, clean-up the janitor's.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use primer_shared::book::{self, ChapterId, ChapterSummary};
use primer_shared::extract::{AuthUser, QueryParams};
use primer_shared::personalize::cache::{self, MARKDOWN};
use primer_shared::personalize::{Engine, Fingerprint};
use primer_shared::{AppState, Error, Result, app};
use serde::{Deserialize, Serialize};

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
/// public, read-only document, like the book) so that a deployed API describes itself.
const OPENAPI: &str = include_str!("../../../openapi.json");

async fn openapi() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The function's whole service: its routes with the shared layers, on `state`.
pub fn router(state: AppState) -> Router {
    app::service(routes(), state)
}

#[derive(Serialize)]
struct ChapterList {
    chapters: Vec<ChapterSummary>,
}

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

async fn source(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let chapter = book::by_id(&state.pool, chapter_id(&id)?).await?.ok_or(Error::NotFound)?;
    Ok(markdown(chapter.source_markdown))
}

/// `?format=markdown|json&delivery=inline|redirect`.
#[derive(Deserialize)]
struct PersonalizedQuery {
    #[serde(default)]
    format: Format,
    #[serde(default)]
    delivery: Delivery,
}

#[derive(Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Markdown,
    Json,
}

#[derive(Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Delivery {
    #[default]
    Inline,
    /// A 302 to a presigned URL when the store can make one (S3); inline otherwise.
    Redirect,
}

/// `?format=json`.
#[derive(Serialize)]
struct PersonalizedBody {
    chapter_id: ChapterId,
    chapter_version: i32,
    profile_hash: String,
    fingerprint: Fingerprint,
    engine: Engine,
    cached: bool,
    markdown: String,
}

async fn personalized(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<PersonalizedQuery>,
) -> Result<Response> {
    let id = chapter_id(&id)?;
    // A URL to the stored object, made (if need be) but not downloaded first.
    if query.delivery == Delivery::Redirect && state.blobs.presigns() {
        let key = cache::personalized_key(&state.personalizer(), &caller.user_id, id).await?;
        if let Some(url) = state.blobs.presign_get(&key, PRESIGNED_TTL).await? {
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
