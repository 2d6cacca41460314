//! What several routes answer or read: the signed-in answer and its token pair, the `202` of
//! the e-mail routes, a guest token handed over at sign-in, the token of an e-mailed link.

use primer_shared::domain::auth::account::SignedIn as Opened;
use primer_shared::domain::auth::sessions::Rotated;
use primer_shared::domain::auth::tokens;
use primer_shared::domain::user::User;
use primer_shared::http::openapi as api;
use primer_shared::{AppState, FieldErrors, Result};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// `{user, session}`: what register and login answer.
#[derive(Serialize, ToSchema)]
#[schema(as = UserSession)]
pub(crate) struct SignedIn {
    user: User,
    session: SessionTokens,
}

/// A token pair; the refresh token is shown here and never again.
#[derive(Serialize, ToSchema)]
#[schema(as = Session, examples(json!({
    "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIzYzliMmYxZS01ZDRhLTRiOGUtOWYyMS03YTZkMGM1ZThiMTMiLCJzaWQiOiI5ZTFmNGI3YS0yYzNkLTRlNWYtOGE5Yi0wYzFkMmUzZjRhNWIiLCJpYXQiOjE3OTY1NDM4NDEsImV4cCI6MTc5NjU0NDc0MSwiaXNzIjoicHJpbWVyIiwiYXVkIjoicHJpbWVyLWFwaSJ9.w8M9vmogEle-TfiCETNlk9vTywUR6v1yl4vIg-86zwM",
    "token_type": "Bearer",
    "expires_in": 900,
    "refresh_token": "E7KA5XpJFcgWYQGRVX6ZdNW2n-mh5gAxX4S39deJ9qU",
    "session_id": api::examples::SESSION_ID,
})))]
pub(crate) struct SessionTokens {
    /// A short-lived JWT (HS256).
    access_token: String,
    #[schema(schema_with = api::one_of_strings::<Bearer>)]
    token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(minimum = 0)]
    expires_in: i64,
    refresh_token: String,
    session_id: String,
}

/// The one `token_type`.
struct Bearer;
impl api::Strings for Bearer {
    const ALL: &[&str] = &["Bearer"];
}

/// The answer of a flow that opened a session: the user and a fresh token pair.
pub(crate) fn signed_in(state: &AppState, opened: Opened) -> Result<SignedIn> {
    let Opened { user, session_id, refresh } = opened;
    let access = tokens::issue_access(&state.config.jwt, &user.id, &session_id)?;
    let session = SessionTokens {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        refresh_token: refresh.expose().to_owned(),
        session_id,
    };
    Ok(SignedIn { user, session })
}

/// The tokens of a refresh: the access token is issued as of the rotation, so a second tab
/// refreshing within the reuse interval gets exactly the same pair.
pub(crate) fn rotated_tokens(state: &AppState, rotated: Rotated) -> Result<SessionTokens> {
    let Rotated { session_id, user_id, next, issued_at, .. } = rotated;
    let access = tokens::issue_access_at(&state.config.jwt, &user_id, &session_id, issued_at)?;
    Ok(SessionTokens {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        refresh_token: next.expose().to_owned(),
        session_id,
    })
}

/// The guest id of an optional guest token; a bad token is a field error.
pub(crate) fn guest_of(state: &AppState, token: Option<&str>, errors: &mut FieldErrors) -> Option<Uuid> {
    let token = token?;
    let claims = tokens::verify_guest(&state.config.jwt, token);
    errors.check("guest_token", claims.map(|c| c.sub).map_err(|_| "is not a valid guest token".into()))
}

/// `202 {message}`: what the recovery routes answer when an e-mail may be on its way.
#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"message": RESET_LINK_SENT})))]
pub(crate) struct Accepted {
    /// What happens next, for a person; the same text whatever the outcome.
    pub(crate) message: &'static str,
}

/// The one answer to a forgot-password request, whether or not the address has an account.
pub(crate) const RESET_LINK_SENT: &str = "if an account uses this address, a link to choose a new password is on its way; it works for a limited time";

/// A present, non-empty string field.
pub(crate) fn required(value: Option<String>) -> std::result::Result<String, String> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| "is required".to_owned())
}

/// The `token` of an e-mailed link, as the examples of the document show it.
pub(crate) const TOKEN_EXAMPLE: &str =
    "0f6c1a2b-3d4e-4f50-8a1b-2c3d4e5f6a7b.rX0q3kV8yN2fJ7hT1cW5mZ9pL4sD6gB0aE8uQ2iO3nY";
