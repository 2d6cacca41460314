//! The account's e-mail address: verifying it with an e-mailed link, and sending that link again.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use primer_shared::domain::user;
use primer_shared::http::extract::{AuthUser, ClientMeta, JsonBody};
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Error, Result};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::accounts;
use crate::body::{Accepted, TOKEN_EXAMPLE, required};

/// Verify, and send the verification link.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/email/verify", post(verify_email))
        .route("/api/auth/email/verify/send", post(send_verification))
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"token": TOKEN_EXAMPLE})))]
pub(crate) struct VerifyEmailRequest {
    /// The `token` parameter of the e-mailed link.
    #[schema(value_type = String, required)]
    token: Option<String>,
}

/// Confirms the account's address with a token from a verification e-mail. No session is
/// needed: the link may be opened on another device than the one signed in.
#[utoipa::path(
    post,
    path = "/api/auth/email/verify",
    tag = "auth",
    operation_id = "verifyEmail",
    summary = "Verify the account's address with a verification link's token",
    description = "No session needed (the link may be opened on another device). Sets `email_verified` (shown by `GET /api/auth/me`) and retires the account's other verification links. A token works only while the account still has the address it was sent to. An unknown, expired, spent or forged token is one 400 `invalid_token`; token checks are limited like password resets.",
    request_body = VerifyEmailRequest,
    responses(
        (status = 204, description = "The address is verified."),
        (status = 400, response = api::InvalidToken),
        (status = 413, response = api::PayloadTooLarge),
        (status = 415, response = api::UnsupportedMediaType),
        (status = 422, response = api::ValidationFailed),
        (status = 429, response = api::RateLimited),
        api::ServerErrors,
    ),
)]
pub(crate) async fn verify_email(
    State(state): State<AppState>,
    client: ClientMeta,
    JsonBody(body): JsonBody<VerifyEmailRequest>,
) -> Result<StatusCode> {
    let token = required(body.token).map_err(|m| Error::invalid("token", m))?;
    accounts(&state).verify_email(&token, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/auth/email/verify/send",
    tag = "auth",
    operation_id = "sendEmailVerification",
    summary = "E-mail the caller a link that verifies their address",
    description = "A single-use link `FRONTEND_URL/verify-email?token=...` (valid `EMAIL_VERIFICATION_TTL_SECS`, default 1 day). Registration sends one too. At most `EMAILS_PER_ACCOUNT` (default 3, the sign-up's included) verification e-mails an hour per account: 429 with `Retry-After`. 503 when the e-mail could not be sent.",
    responses(
        (status = 202, description = "A link is on its way.", body = Accepted),
        api::SignedInErrors,
        (status = 409, response = api::EmailAlreadyVerified),
        (status = 429, response = api::RateLimited),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn send_verification(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<(StatusCode, Json<Accepted>)> {
    let user = user::by_id(&state.pool, &caller.user_id).await?.ok_or(Error::Unauthorized)?;
    accounts(&state).recovery().send_verification(&user).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted { message: "a link to verify your e-mail address is on its way" }),
    ))
}
