//! `GET /api/usage` tells the caller what they have used of today's quotas and have left
//! (`primer_shared::domain::usage`); posting counts against them.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use primer_shared::domain::conversations::Owner;
use primer_shared::domain::usage::{self, UsageReport};
use primer_shared::http::extract::Caller;
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Result};
use serde::Serialize;
use utoipa::ToSchema;

/// `GET /api/usage`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/usage", get(usage_today))
}

/// `GET /api/usage`: the caller's day so far.
#[derive(Serialize, ToSchema)]
#[schema(as = Usage, examples(json!({
    "caller": "user",
    "model_configured": true,
    "day": "2026-11-29",
    "resets_at": "2026-11-30T00:00:00Z",
    "messages": {"used": 3, "limit": 200, "remaining": 197},
    "tokens": {"used": 5120, "limit": 400000, "remaining": 394880},
    "conversations": {"used": 1, "limit": 50, "remaining": 49},
    "model_budget_left": true,
})))]
pub(crate) struct UsageBody {
    /// Whose quotas apply: a guest's are far below a user's.
    #[schema(schema_with = api::one_of_strings::<CallerKinds>)]
    caller: &'static str,
    /// False when no model is configured: the offline tutor answers and spends no tokens.
    model_configured: bool,
    #[serde(flatten)]
    usage: UsageReport,
}

/// The values of [`UsageBody::caller`].
struct CallerKinds;
impl api::Strings for CallerKinds {
    const ALL: &[&str] = &["user", "guest"];
    const DESCRIPTION: Option<&str> = Some("Whose quotas apply: a guest's are far below a user's.");
}

#[utoipa::path(
    get,
    path = "/api/usage",
    tag = "conversations",
    operation_id = "getUsage",
    summary = "What the caller has used of today's quotas and has left",
    description = "Accepts a user's access token or a guest token. Counts the UTC day: messages posted to the tutor, model tokens (tutor and personalization) and conversations created. Posting past the message quota, or with no tokens left, is a 429 `quota_exceeded`; when a reply would not fit the tokens left, or the deployment's budget is spent, the offline tutor answers and its reply says so.",
    responses(
        (status = 200, description = "The caller's day so far.", body = UsageBody),
        api::SignedInErrors,
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn usage_today(State(state): State<AppState>, caller: Caller) -> Result<Json<UsageBody>> {
    let kind = if matches!(caller, Caller::Guest { .. }) { "guest" } else { "user" };
    let subject = Owner::from(caller);
    let usage = usage::report(&state.pool, &subject, &state.config.usage).await?;
    Ok(Json(UsageBody { caller: kind, model_configured: state.model.is_some(), usage }))
}
