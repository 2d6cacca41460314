//! The password: changing it while signed in, and recovering a forgotten one by an e-mailed link.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use primer_shared::domain::auth::password::Password;
use primer_shared::domain::user::SignInEmail;
use primer_shared::http::extract::{AuthUser, ClientMeta, JsonBody};
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Error, FieldErrors, Result};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::accounts;
use crate::body::{Accepted, RESET_LINK_SENT, SignedIn, TOKEN_EXAMPLE, required, signed_in};

/// Change, forgot and reset.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/password", post(change_password))
        .route("/api/auth/password/forgot", post(forgot_password))
        .route("/api/auth/password/reset", post(reset_password))
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"current_password": "Analytical Engine, 1843", "new_password": "Notes by the translator, G"})))]
pub(crate) struct ChangePasswordRequest {
    #[schema(value_type = String, required, pattern = r"\S")]
    current_password: Option<String>,
    #[schema(value_type = String, required, min_length = 8, max_length = 128)]
    new_password: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/auth/password",
    tag = "auth",
    operation_id = "changePassword",
    summary = "Change the password",
    description = "A wrong `current_password` is a 422 on that field. Each check counts like a login, against this session's own budget of failures (5 in 15 minutes; 429 with `Retry-After`): failures elsewhere do not block it.",
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Password changed; every other session is revoked."),
        api::SignedInErrors,
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        (status = 429, response = api::RateLimited),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    caller: AuthUser,
    client: ClientMeta,
    JsonBody(body): JsonBody<ChangePasswordRequest>,
) -> Result<StatusCode> {
    let mut errors = FieldErrors::new();
    let current = errors
        .check("current_password", Password::parse_presented(body.current_password.unwrap_or_default()));
    let new = errors.check("new_password", Password::parse_new(body.new_password.unwrap_or_default()));
    errors.finish()?;
    let (current, new) = (current.unwrap(), new.unwrap());

    let (user_id, session_id) = (&caller.user_id, &caller.session_id);
    accounts(&state).change_password(user_id, session_id, &current, &new, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"email": "ada@example.com"})))]
pub(crate) struct ForgotPasswordRequest {
    #[schema(value_type = String, required, format = Email)]
    email: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/auth/password/forgot",
    tag = "auth",
    operation_id = "forgotPassword",
    summary = "Ask for a password-reset link by e-mail",
    description = "Always 202 with the same body, whether or not the address has an account, and never sooner than `PASSWORD_FORGOT_MIN_MS` (default 1 s) after the request, so neither the answer nor its time tells. For an active account, a single-use link `FRONTEND_URL/reset-password?token=...` is e-mailed (valid `PASSWORD_RESET_TTL_SECS`, default 1 hour); the token is stored only as a hash. Throttled per client address (`PASSWORD_FORGOT_MAX_PER_ADDRESS`, default 30 an hour) and per account (`EMAILS_PER_ACCOUNT`, default 3 reset e-mails an hour; an address without an account is counted alike): 429 with `Retry-After`. A failed delivery is logged, not told.",
    request_body = ForgotPasswordRequest,
    responses(
        (status = 202, description = "Accepted; if the address has an account, a link is on its way.", body = Accepted),
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        (status = 429, response = api::RateLimited),
        api::ServerErrors,
    ),
)]
pub(crate) async fn forgot_password(
    State(state): State<AppState>,
    client: ClientMeta,
    JsonBody(body): JsonBody<ForgotPasswordRequest>,
) -> Result<(StatusCode, Json<Accepted>)> {
    let email = SignInEmail::parse(body.email.as_deref().unwrap_or_default())
        .map_err(|m| Error::invalid("email", m))?;
    accounts(&state).recovery().forgot_password(&email, client.ip.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { message: RESET_LINK_SENT })))
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"token": TOKEN_EXAMPLE, "new_password": "Notes by the translator, G"})))]
pub(crate) struct ResetPasswordRequest {
    /// The `token` parameter of the e-mailed link: `<selector>.<secret>`.
    #[schema(value_type = String, required)]
    token: Option<String>,
    #[schema(value_type = String, required, min_length = 8, max_length = 128)]
    new_password: Option<String>,
}

/// Sets a new password with a token from a reset e-mail and answers like a login: every other
/// session of the account is revoked, and the reader is signed in with a fresh one.
#[utoipa::path(
    post,
    path = "/api/auth/password/reset",
    tag = "auth",
    operation_id = "resetPassword",
    summary = "Set a new password with a reset link's token",
    description = "Answers like a login: the token is consumed (with every other reset link of the account), the password is set (argon2id; a password account is created for a user who had none), every session of the account is revoked (a Better-Auth frontend's too), the address counts as verified, and the reader is signed in with a fresh session. An unknown, expired, spent or forged token is one 400 `invalid_token` and changes nothing. Token checks count like password checks: per account (5 failed in 15 minutes, apart from its failed logins) and per client address (with failed logins, 100 in 15 minutes); 429 with `Retry-After`.",
    request_body = ResetPasswordRequest,
    responses(
        (status = 200, description = "Password set; signed in with a new session, the only one of the account.", body = SignedIn),
        (status = 400, response = api::InvalidToken),
        (status = 403, response = api::AccountDisabled),
        (status = 413, response = api::PayloadTooLarge),
        (status = 415, response = api::UnsupportedMediaType),
        (status = 422, response = api::ValidationFailed),
        (status = 429, response = api::RateLimited),
        api::ServerErrors,
    ),
)]
pub(crate) async fn reset_password(
    State(state): State<AppState>,
    client: ClientMeta,
    JsonBody(body): JsonBody<ResetPasswordRequest>,
) -> Result<Json<SignedIn>> {
    let mut errors = FieldErrors::new();
    let token = errors.check("token", required(body.token));
    let new = errors.check("new_password", Password::parse_new(body.new_password.unwrap_or_default()));
    errors.finish()?;
    let (token, new) = (token.unwrap(), new.unwrap());

    let opened = accounts(&state).reset_password(&token, &new, &client).await?;
    Ok(Json(signed_in(&state, opened)?))
}
