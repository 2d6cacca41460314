//! `GET /api/openapi.json`: the API's contract, served as the repository keeps it.

use axum::Router;
use axum::routing::get;
use primer_shared::AppState;
use primer_shared::http::openapi as api;

/// `/api/openapi.json`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(openapi))
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
pub(crate) async fn openapi() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}
