//! The catalog of allowed profile values, which a profile form offers.

use axum::routing::get;
use axum::{Json, Router};
use primer_shared::AppState;
use primer_shared::domain::profile::catalog::{self, ProfileOptions};
use primer_shared::http::openapi as api;

/// `GET /api/profile/options`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/profile/options", get(options))
}

#[utoipa::path(
    get,
    path = "/api/profile/options",
    tag = "profile",
    operation_id = "getProfileOptions",
    summary = "Catalog of allowed profile values",
    responses(
        (status = 200, description = "The allowed values of every enumerated profile field.", body = ProfileOptions),
        api::ServerErrors,
    ),
)]
pub(crate) async fn options() -> Json<ProfileOptions> {
    Json(catalog::options())
}
