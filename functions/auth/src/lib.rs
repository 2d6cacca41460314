//! The auth function: `/api/auth/*` of docs/api.md — registration, login, token refresh,
//! logout, the caller's account, their sessions, guest tokens, and account recovery by e-mail
//! (a forgotten password, a verified address).
//!
//! The flows (`primer_shared::domain::auth::account`), passwords, tokens, sessions, the rate limits
//! and the recovery links live in the core crate; this crate maps HTTP onto them: it parses
//! bodies into domain values, calls one flow, and shapes its answer. Signing in with GitHub,
//! Google and OpenID Connect providers has its routes in [`oauth`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use primer_shared::domain::auth::account::{Accounts, NewAccount, SignedIn as Opened};
use primer_shared::domain::auth::password::Password;
use primer_shared::domain::auth::rate_limit::{self, EntryPoint};
use primer_shared::domain::auth::sessions::{self, Rotated, SessionInfo};
use primer_shared::domain::auth::tokens;
use primer_shared::domain::user::{self, Email, SignInEmail, User, UserChanges, UserName};
use primer_shared::http::extract::{AuthUser, ClientMeta, JsonBody};
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Error, FieldErrors, Result, http::app};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

mod oauth;

/// The auth routes, for the Lambda and for the local runner.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/logout-all", post(logout_all))
        .route("/api/auth/me", get(me).patch(update_me).delete(delete_me))
        .route("/api/auth/password", post(change_password))
        .route("/api/auth/password/forgot", post(forgot_password))
        .route("/api/auth/password/reset", post(reset_password))
        .route("/api/auth/email/verify", post(verify_email))
        .route("/api/auth/email/verify/send", post(send_verification))
        .route("/api/auth/sessions", get(list_sessions))
        .route("/api/auth/sessions/{id}", delete(revoke_session))
        .route("/api/auth/guest", post(guest))
        .merge(oauth::routes())
}

/// The function's whole service: its routes with the shared layers, on `state`.
pub fn router(state: AppState) -> Router {
    app::service(routes(), state)
}

/// `{user}`.
#[derive(Serialize, ToSchema)]
struct UserBody {
    user: User,
}

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
struct SessionTokens {
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
fn rotated_tokens(state: &AppState, rotated: Rotated) -> Result<SessionTokens> {
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

// Fields are optional here so that a missing one is a 422 naming it, like a bad one; the
// document still calls them required.
#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"email": "ada@example.com", "password": "Analytical Engine, 1843", "name": "Ada Lovelace"})))]
struct RegisterRequest {
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
async fn register(
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

/// The account flows over the function's pool, mail sender and configuration.
fn accounts(state: &AppState) -> Accounts<'_> {
    Accounts::new(&state.pool, state.mail.as_ref(), &state.config)
}

/// The guest id of an optional guest token; a bad token is a field error.
pub(crate) fn guest_of(state: &AppState, token: Option<&str>, errors: &mut FieldErrors) -> Option<Uuid> {
    let token = token?;
    let claims = tokens::verify_guest(&state.config.jwt, token);
    errors.check("guest_token", claims.map(|c| c.sub).map_err(|_| "is not a valid guest token".into()))
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"email": "ada@example.com", "password": "Analytical Engine, 1843"})))]
struct LoginRequest {
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
async fn login(
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
struct RefreshRequest {
    #[schema(value_type = String, required, min_length = 1)]
    refresh_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct Refreshed {
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
async fn refresh(
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
async fn logout(State(state): State<AppState>, caller: AuthUser) -> Result<StatusCode> {
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
async fn logout_all(State(state): State<AppState>, caller: AuthUser) -> Result<StatusCode> {
    sessions::revoke_all_but(&state.pool, &caller.user_id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/auth/me",
    tag = "auth",
    operation_id = "getMe",
    summary = "The signed-in user",
    responses(
        (status = 200, description = "The user.", body = inline(UserBody)),
        api::SignedInErrors,
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
async fn me(caller: AuthUser) -> Json<UserBody> {
    Json(UserBody { user: caller.user })
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"name": "Ada King", "preferences": {"theme": "dark"}})))]
struct UpdateMeRequest {
    #[schema(pattern = r"\S")]
    name: Option<String>,
    #[serde(default, deserialize_with = "primer_shared::http::extract::nullable")]
    #[schema(value_type = Option<String>, pattern = "^https?://", max_length = 2048)]
    image: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    preferences: Option<serde_json::Value>,
}

#[utoipa::path(
    patch,
    path = "/api/auth/me",
    tag = "auth",
    operation_id = "updateMe",
    summary = "Update name, image or preferences",
    request_body = UpdateMeRequest,
    responses(
        (status = 200, description = "The updated user.", body = inline(UserBody)),
        api::SignedInErrors,
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
async fn update_me(
    State(state): State<AppState>,
    caller: AuthUser,
    JsonBody(body): JsonBody<UpdateMeRequest>,
) -> Result<Json<UserBody>> {
    let changes = UserChanges::parse(body.name, body.image, body.preferences)?;
    let user = user::update(&state.pool, &caller.user_id, changes).await?;
    Ok(Json(UserBody { user }))
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"password": "Analytical Engine, 1843"})))]
struct DeleteMeRequest {
    /// The current password; an account without one leaves it out.
    #[schema(value_type = String, required = false, pattern = r"\S")]
    password: Option<String>,
}

#[utoipa::path(
    delete,
    path = "/api/auth/me",
    tag = "auth",
    operation_id = "deleteMe",
    summary = "Delete the account",
    description = "Requires the current password; a wrong one is a 422 on `password`. Each check counts like a login, against this session's own budget of failures (5 in 15 minutes; 429 with `Retry-After`): failures elsewhere do not block it. An account without a password (a social sign-in) leaves `password` out and is deleted only from a session opened in the last 5 minutes; from an older one, a 422 on `password`.",
    request_body = DeleteMeRequest,
    responses(
        (status = 204, description = "The user and everything of theirs (rows and stored objects) are gone."),
        api::SignedInErrors,
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        (status = 429, response = api::RateLimited),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
async fn delete_me(
    State(state): State<AppState>,
    caller: AuthUser,
    client: ClientMeta,
    JsonBody(body): JsonBody<DeleteMeRequest>,
) -> Result<StatusCode> {
    let blobs = state.blobs.as_ref();
    let (user_id, session_id) = (&caller.user_id, &caller.session_id);
    accounts(&state).delete(blobs, user_id, session_id, body.password, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"current_password": "Analytical Engine, 1843", "new_password": "Notes by the translator, G"})))]
struct ChangePasswordRequest {
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
async fn change_password(
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

#[derive(Serialize, ToSchema)]
struct SessionList {
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
async fn list_sessions(State(state): State<AppState>, caller: AuthUser) -> Result<Json<SessionList>> {
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
async fn revoke_session(
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

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({
    "guest_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0ZmIwMGZiZS0zY2I4LTQ5OTQtOGQwYy1mYzhkYjFiYTEwMmYiLCJpYXQiOjE3OTY1NDMwOTgsImV4cCI6MTc5NzE0Nzg5OCwiaXNzIjoicHJpbWVyIiwiYXVkIjoicHJpbWVyLWFwaSNndWVzdCJ9.j6fSy9Ypal2E2Uh1RNY399p6twhvll4y7rQdpWk4VF4",
    "expires_in": 604800,
})))]
struct GuestToken {
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
async fn guest(State(state): State<AppState>, client: ClientMeta) -> Result<(StatusCode, Json<GuestToken>)> {
    // Each guest token is a fresh daily model quota: minting them is throttled per address.
    rate_limit::admit(&state.pool, EntryPoint::Guest, state.config.limits.guest, client.ip.as_deref())
        .await?;
    let issued = tokens::issue_guest(&state.config.jwt)?;
    Ok((StatusCode::CREATED, Json(GuestToken { guest_token: issued.token, expires_in: issued.expires_in })))
}

/// `202 {message}`: what the recovery routes answer when an e-mail may be on its way.
#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"message": RESET_LINK_SENT})))]
struct Accepted {
    /// What happens next, for a person; the same text whatever the outcome.
    message: &'static str,
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"email": "ada@example.com"})))]
struct ForgotPasswordRequest {
    #[schema(value_type = String, required, format = Email)]
    email: Option<String>,
}

/// The one answer to a forgot-password request, whether or not the address has an account.
const RESET_LINK_SENT: &str = "if an account uses this address, a link to choose a new password is on its way; it works for a limited time";

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
async fn forgot_password(
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
struct ResetPasswordRequest {
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
async fn reset_password(
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

/// A present, non-empty string field.
fn required(value: Option<String>) -> std::result::Result<String, String> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| "is required".to_owned())
}

/// The `token` of an e-mailed link, as the examples of the document show it.
const TOKEN_EXAMPLE: &str =
    "0f6c1a2b-3d4e-4f50-8a1b-2c3d4e5f6a7b.rX0q3kV8yN2fJ7hT1cW5mZ9pL4sD6gB0aE8uQ2iO3nY";

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"token": TOKEN_EXAMPLE})))]
struct VerifyEmailRequest {
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
async fn verify_email(
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
async fn send_verification(
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

/// This function's operations in the OpenAPI document (openapi.json), from the handlers above.
#[derive(OpenApi)]
#[openapi(paths(
    register,
    login,
    refresh,
    logout,
    logout_all,
    me,
    update_me,
    delete_me,
    change_password,
    forgot_password,
    reset_password,
    send_verification,
    verify_email,
    list_sessions,
    revoke_session,
    guest,
    oauth::list_providers,
    oauth::start,
    oauth::callback,
    oauth::link,
    oauth::exchange,
    oauth::list_accounts,
    oauth::remove_account
), modifiers(&OPTIONAL_LINK_BODY))]
pub struct Api;

/// A link may be started with a bare POST (its `redirect_to` defaults to `FRONTEND_URL`).
static OPTIONAL_LINK_BODY: api::OptionalPostBody = api::OptionalPostBody("/api/auth/oauth/{provider}/link");
