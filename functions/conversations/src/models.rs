//! The models a conversation may use: the configured model's allowed ids, or the offline tutor.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use primer_shared::AppState;
use primer_shared::domain::tutor::ModelCatalog;
use primer_shared::http::extract::Caller;
use primer_shared::http::openapi as api;
use serde::Serialize;
use utoipa::ToSchema;

/// `GET /api/models`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/models", get(models))
}

pub(crate) fn catalog(state: &AppState) -> ModelCatalog<'_> {
    ModelCatalog::new(state.model.as_deref())
}

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"models": [{"id": "gpt-4o-mini", "offline": false}, {"id": "offline-tutor", "offline": true}], "default": "gpt-4o-mini"})))]
pub(crate) struct ModelList {
    #[schema(inline)]
    models: Vec<ModelEntry>,
    /// The id of the default model.
    default: String,
}

#[derive(Serialize, ToSchema)]
struct ModelEntry {
    id: String,
    /// True for the built-in offline tutor, which quotes the book instead of writing.
    offline: bool,
}

#[utoipa::path(
    get,
    path = "/api/models",
    tag = "conversations",
    operation_id = "listModels",
    summary = "Models a conversation may use",
    description = "Accepts either a user's access token or a guest token from `POST /api/auth/guest` as the Bearer token; a guest's conversations are handed to the user who registers or logs in with that `guest_token`. Another owner's conversation is a 404.",
    responses(
        (status = 200, description = "The models, with the default.", body = ModelList),
        api::SignedInErrors,
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn models(State(state): State<AppState>, _caller: Caller) -> Json<ModelList> {
    let catalog = catalog(&state);
    let models = catalog
        .allowed()
        .into_iter()
        .map(|id| ModelEntry { id: id.to_owned(), offline: catalog.is_offline() })
        .collect();
    Json(ModelList { models, default: catalog.default_model().as_str().to_owned() })
}
