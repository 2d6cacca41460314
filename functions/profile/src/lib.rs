//! The profile function: `/api/profile*` of docs/api.md — the catalog of allowed values, and the
//! caller's own profile (read, create or replace, merge-patch).
//!
//! The catalog, the parsing, the onboarding rule and the hash live in the core crate
//! (`primer_shared::domain::profile`), where the chapters function reads them too; this crate maps HTTP
//! onto them. It does not personalize chapters: the chapters function reads the stored profile
//! and keys each copy by the part of it that the copy depends on.

use axum::Router;
use primer_shared::{AppState, http::app};
use utoipa::OpenApi;

mod options;
mod profile;

/// The profile routes, for the Lambda and for the local runner.
pub fn routes() -> Router<AppState> {
    Router::new().merge(options::routes()).merge(profile::routes())
}

/// The function's whole service: its routes with the shared layers, on `state`.
pub fn router(state: AppState) -> Router {
    app::service(routes(), state)
}

/// This function's operations in the OpenAPI document (openapi.json), in the document's order.
#[derive(OpenApi)]
#[openapi(paths(options::options, profile::read, profile::replace, profile::merge_patch))]
pub struct Api;
