//! Guest identities: a token that lets a reader talk to the tutor before signing up.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use primer_shared::domain::auth::rate_limit::{self, EntryPoint};
use primer_shared::domain::auth::tokens;
use primer_shared::http::extract::ClientMeta;
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Result};
use serde::Serialize;
use utoipa::ToSchema;

/// `POST /api/auth/guest`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/auth/guest", post(guest))
}

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({
    "guest_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0ZmIwMGZiZS0zY2I4LTQ5OTQtOGQwYy1mYzhkYjFiYTEwMmYiLCJpYXQiOjE3OTY1NDMwOTgsImV4cCI6MTc5NzE0Nzg5OCwiaXNzIjoicHJpbWVyIiwiYXVkIjoicHJpbWVyLWFwaSNndWVzdCJ9.j6fSy9Ypal2E2Uh1RNY399p6twhvll4y7rQdpWk4VF4",
    "expires_in": 604800,
})))]
pub(crate) struct GuestToken {
    guest_token: String,
    /// Seconds.
    #[schema(minimum = 0)]
    expires_in: i64,
}

#[utoipa::path(
    post,
    path = "/api/auth/guest",
    tag = "auth",
    operation_id = "createGuest",
    summary = "Start a guest identity",
    description = "Throttled per client address (default 20 an hour; 429 with `Retry-After`). A guest's daily quotas are far below a user's, and a guest cannot set a system prompt.",
    responses(
        (status = 201, description = "A guest token, usable as a Bearer token on the conversation routes.", body = GuestToken),
        (status = 429, response = api::RateLimited),
        api::ServerErrors,
    ),
)]
pub(crate) async fn guest(
    State(state): State<AppState>,
    client: ClientMeta,
) -> Result<(StatusCode, Json<GuestToken>)> {
    // Each guest token is a fresh daily model quota: minting them is throttled per address.
    rate_limit::admit(&state.pool, EntryPoint::Guest, state.config.limits.guest, client.ip.as_deref())
        .await?;
    let issued = tokens::issue_guest(&state.config.jwt)?;
    Ok((StatusCode::CREATED, Json(GuestToken { guest_token: issued.token, expires_in: issued.expires_in })))
}
