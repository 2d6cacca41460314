//! The book as written: its table of contents, and each chapter's source markdown.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use primer_shared::domain::book::{self, ChapterId, ChapterSummary};
use primer_shared::domain::personalize::cache::MARKDOWN;
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Error, Result};
use serde::Serialize;
use utoipa::ToSchema;

/// `/api/chapters` and `/api/chapters/{id}`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/chapters", get(list)).route("/api/chapters/{id}", get(source))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ChapterList {
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
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<ChapterList>> {
    Ok(Json(ChapterList { chapters: book::list(&state.pool).await? }))
}

/// A chapter number in the path; anything else names no chapter.
pub(crate) fn chapter_id(raw: &str) -> Result<ChapterId> {
    ChapterId::parse(raw).ok_or(Error::NotFound)
}

pub(crate) fn markdown(body: String) -> Response {
    ([(header::CONTENT_TYPE, MARKDOWN)], body).into_response()
}

/// The beginning of a chapter, as the examples of the document show it.
const SOURCE_EXAMPLE: &str = "# ROS 2 Nodes and Topics\n\nA humanoid robot is not one program. It is dozens of small programs running side by side.\n\n:::only{level=\"beginner\"}\nA callback is a function you hand to someone else to call later.\n:::\n";

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
pub(crate) async fn source(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let chapter = book::by_id(&state.pool, chapter_id(&id)?).await?.ok_or(Error::NotFound)?;
    Ok(markdown(chapter.source_markdown))
}
