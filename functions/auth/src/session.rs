//! Sessions: registering and logging in open one, a refresh turns it, logging out closes it
//! (or all of them), and the signed-in user lists and revokes theirs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use primer_shared::domain::auth::account::NewAccount;
use primer_shared::domain::auth::password::Password;
use primer_shared::domain::auth::sessions::{self, SessionInfo};
use primer_shared::domain::user::{Email, SignInEmail, UserName};
use primer_shared::http::extract::{AuthUser, ClientMeta, JsonBody};
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Error, FieldErrors, Result};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts;
use crate::body::{SessionTokens, SignedIn, guest_of, rotated_tokens, signed_in};

/// Register, login, refresh, logout and the sessions of the signed-in user.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/logout-all", post(logout_all))
        .route("/api/auth/sessions", get(list_sessions))
        .route("/api/auth/sessions/{id}", delete(revoke_session))
}

// Fields are optional here so that a missing one is a 422 naming it, like a bad one; the
// document still calls them required.
#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"email": "ada@example.com", "password": "Analytical Engine, 1843", "name": "Ada Lovelace"})))]
pub(crate) struct RegisterRequest {
    /// Normalised: NFKC, trimmed, lower-cased.
    #[schema(value_type = String, required, format = Email)]
    email: Option<String>,
    #[schema(value_type = String, required, min_length = 8, max_length = 128)]
    password: Option<String>,
    /// Not blank.
    #[schema(value_type = String, required, pattern = r"\S")]
    name: Option<String>,
    /// Hands the guest's conversations to the new user.
    guest_token: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/auth/register",
    tag = "auth",
    operation_id = "register",
    summary = "Create an account and sign in",
    description = "Email is normalised (NFKC, trimmed, lower-cased); an address with invisible or text-direction characters, mixing scripts in one part (Latin and Cyrillic, say), or that the mail sender would not send to (its own address parsing), is a 422 on `email`. An email that is taken is a 409 `email_taken` (a uniform answer would need a sign-up that signs nobody in until its address is verified), so the route is throttled per client address (429 with `Retry-After`), probes included. With `guest_token`, the guest's conversations become the new user's. A link that verifies the address is e-mailed (see `POST /api/auth/email/verify`); a failed delivery does not fail the sign-up.",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created; a new session.", body = SignedIn),
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        (status = 409, response = api::Conflict),
        (status = 429, response = api::RateLimited),
        api::ServerErrors,
    ),
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    client: ClientMeta,
    JsonBody(body): JsonBody<RegisterRequest>,
) -> Result<(StatusCode, Json<SignedIn>)> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(body.email.as_deref().unwrap_or_default()));
    let password = errors.check("password", Password::parse_new(body.password.unwrap_or_default()));
    let name = errors.check("name", UserName::parse(body.name.as_deref().unwrap_or_default()));
    let guest = guest_of(&state, body.guest_token.as_deref(), &mut errors);
    errors.finish()?;
    let (email, password, name) = (email.unwrap(), password.unwrap(), name.unwrap());

    let opened = accounts(&state).register(NewAccount { email, password, name, guest }, &client).await?;
    Ok((StatusCode::CREATED, Json(signed_in(&state, opened)?)))
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"email": "ada@example.com", "password": "Analytical Engine, 1843"})))]
pub(crate) struct LoginRequest {
    #[schema(value_type = String, required, format = Email)]
    email: Option<String>,
    #[schema(value_type = String, required, min_length = 1)]
    password: Option<String>,
    /// Hands the guest's conversations to the user.
    guest_token: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "auth",
    operation_id = "login",
    summary = "Sign in with email and password",
    description = "An unknown email and a wrong password get the same 401. Failed password checks are counted per account and source: from each address the account signed in from before (in 90 days) at most 5 in 15 minutes, and from every other address together 5 more, so failures elsewhere never block a reader where they signed in before; and at most 100 failed checks per client address among accounts strangers to it (not counting the typos of accounts that then signed in there). Beyond that, 429 with `Retry-After`. Correct logins at once wait for each other rather than being refused. The email is normalised like at registration; accounts stored before that still sign in with the address as stored. With `guest_token`, the guest's conversations become the user's.",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; a new session.", body = SignedIn),
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        api::SignedInErrors,
        (status = 429, response = api::RateLimited),
        api::ServerErrors,
    ),
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    client: ClientMeta,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<Json<SignedIn>> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", SignInEmail::parse(body.email.as_deref().unwrap_or_default()));
    let password = errors.check("password", Password::parse_presented(body.password.unwrap_or_default()));
    let guest = guest_of(&state, body.guest_token.as_deref(), &mut errors);
    errors.finish()?;
    let (email, password) = (email.unwrap(), password.unwrap());

    let opened = accounts(&state).login(&email, &password, guest, &client).await?;
    Ok(Json(signed_in(&state, opened)?))
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"refresh_token": "E7KA5XpJFcgWYQGRVX6ZdNW2n-mh5gAxX4S39deJ9qU"})))]
pub(crate) struct RefreshRequest {
    #[schema(value_type = String, required, min_length = 1)]
    refresh_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Refreshed {
    session: SessionTokens,
}

#[utoipa::path(
    post,
    path = "/api/auth/refresh",
    tag = "auth",
    operation_id = "refreshSession",
    summary = "Rotate a refresh token",
    description = "A refresh token rotated less than 10 seconds ago (`REFRESH_REUSE_SECS`) whose successor is still current gets that same successor and the same access token (two tabs refreshing at once both stay signed in). Presenting it later, or after its successor was rotated too, revokes the session (reuse detection) and answers 401.",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair; the presented refresh token is spent.", body = inline(Refreshed)),
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        api::SignedInErrors,
        api::ServerErrors,
    ),
)]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<Json<Refreshed>> {
    let presented = body
        .refresh_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::invalid("refresh_token", "is required"))?;
    let rotated = accounts(&state).refresh(&presented).await?;
    Ok(Json(Refreshed { session: rotated_tokens(&state, rotated)? }))
}

#[utoipa::path(
    post,
    path = "/api/auth/logout",
    tag = "auth",
    operation_id = "logout",
    summary = "Revoke the current session",
    responses(
        (status = 204, description = "This session is revoked; its access token stops working at once."),
        api::SignedInErrors,
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn logout(State(state): State<AppState>, caller: AuthUser) -> Result<StatusCode> {
    sessions::revoke(&state.pool, &caller.user_id, &caller.session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/auth/logout-all",
    tag = "auth",
    operation_id = "logoutAll",
    summary = "Revoke every session of the user",
    responses(
        (status = 204, description = "Every session of the user is revoked."),
        api::SignedInErrors,
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn logout_all(State(state): State<AppState>, caller: AuthUser) -> Result<StatusCode> {
    sessions::revoke_all_but(&state.pool, &caller.user_id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionList {
    sessions: Vec<SessionInfo>,
}

#[utoipa::path(
    get,
    path = "/api/auth/sessions",
    tag = "auth",
    operation_id = "listSessions",
    summary = "The user's active sessions",
    responses(
        (status = 200, description = "Active sessions; `current` marks the caller's.", body = inline(SessionList)),
        api::SignedInErrors,
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<Json<SessionList>> {
    let sessions = sessions::list(&state.pool, &caller.user_id, &caller.session_id).await?;
    Ok(Json(SessionList { sessions }))
}

#[utoipa::path(
    delete,
    path = "/api/auth/sessions/{id}",
    tag = "auth",
    operation_id = "revokeSession",
    summary = "Revoke one session",
    params(("id" = String, Path, description = "Session id.")),
    responses(
        (status = 204, description = "The session is revoked."),
        api::SignedInErrors,
        (status = 404, response = api::NotFound),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn revoke_session(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    if sessions::revoke(&state.pool, &caller.user_id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound)
    }
}
