//! The chapters function: `/api/chapters*` of docs/api.md — the book's table of contents, each
//! chapter's source, and the caller's personalized chapter.
//!
//! Parsing and importing the book (`primer_shared::domain::book`), the personalization engines and
//! their cache (`primer_shared::domain::personalize`) and the blob store live in the core crate; this
//! crate maps HTTP onto them. Importing is the admin binary's job, clean-up the janitor's.
//! It also serves the API's contract, `/api/openapi.json` ([`contract`]).

use axum::Router;
use primer_shared::{AppState, http::app};
use utoipa::OpenApi;

pub use crate::personalized::PRESIGNED_TTL;

mod book;
mod contract;
mod personalized;

/// The chapters routes, for the Lambda and for the local runner.
pub fn routes() -> Router<AppState> {
    Router::new().merge(book::routes()).merge(personalized::routes()).merge(contract::routes())
}

/// The function's whole service: its routes with the shared layers, on `state`.
pub fn router(state: AppState) -> Router {
    app::service(routes(), state)
}

/// This function's operations in the OpenAPI document (openapi.json), in the document's order.
#[derive(OpenApi)]
#[openapi(paths(book::list, book::source, personalized::personalized, contract::openapi))]
pub struct Api;
