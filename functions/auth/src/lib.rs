//! The auth function: `/api/auth/*` of docs/api.md — registration, login, token refresh,
//! logout, the caller's account, their sessions, guest tokens, and account recovery by e-mail
//! (a forgotten password, a verified address).
//!
//! Passwords, tokens, sessions, the rate limits and the recovery flows live in the core crate
//! (`primer_shared::auth`); this crate maps HTTP onto them. Claiming a guest's conversations
//! happens here (at register and login), the conversations themselves belong to the
//! conversations function.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use primer_shared::auth::password::{self, Password, Verdict};
use primer_shared::auth::rate_limit::{self, AccountKey, EntryPoint};
use primer_shared::auth::recovery::{self, Purpose, Recovery};
use primer_shared::auth::sessions::{self, Rotated, Rotation, SessionInfo};
use primer_shared::auth::tokens::{self, RefreshToken};
use primer_shared::extract::{AuthUser, ClientMeta, JsonBody};
use primer_shared::openapi as api;
use primer_shared::user::{self, Email, SignInEmail, User, UserChanges, UserName};
use primer_shared::{AppState, Error, FieldErrors, Result, app, guests, personalize};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

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
struct SignedIn {
    user: User,
    session: SessionTokens,
}

/// A token pair; the refresh token is shown here and never again.
#[derive(Serialize, ToSchema)]
#[schema(as = Session)]
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

fn session_tokens(
    state: &AppState,
    user_id: &str,
    session_id: String,
    refresh: &RefreshToken,
) -> Result<SessionTokens> {
    let access = tokens::issue_access(&state.config.jwt, user_id, &session_id)?;
    Ok(SessionTokens {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        refresh_token: refresh.expose().to_owned(),
        session_id,
    })
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
struct RegisterRequest {
    /// Trimmed; compared case-insensitively.
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
    description = "Email is normalised (NFKC, trimmed, lower-cased); an address with invisible or text-direction characters, or mixing scripts in one part (Latin and Cyrillic, say), is a 422 on `email`. An email that is taken is a 409 `email_taken` (a uniform answer would need a sign-up that signs nobody in until its address is verified), so the route is throttled per client address (429 with `Retry-After`), probes included. With `guest_token`, the guest's conversations become the new user's. A link that verifies the address is e-mailed (see `POST /api/auth/email/verify`); a failed delivery does not fail the sign-up.",
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

    // Before the hash: every attempt, an address already taken included, spends the
    // address's share.
    rate_limit::admit(&state.pool, EntryPoint::Register, state.config.limits.register, client.ip.as_deref())
        .await?;
    let hash = password::hash(&password).await?;
    let refresh = RefreshToken::generate();
    let mut tx = state.pool.begin().await?;
    let user = user::create_with_password(&mut tx, &email, &name, &hash).await?;
    let session_id =
        sessions::create(&mut *tx, &user.id, &refresh, state.config.jwt.session_ttl, &client).await?;
    if let Some(guest_id) = guest {
        guests::claim_conversations(&mut *tx, guest_id, &user.id).await?;
    }
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "registered");
    recovery(&state).welcome(&user).await;
    let session = session_tokens(&state, &user.id, session_id, &refresh)?;
    Ok((StatusCode::CREATED, Json(SignedIn { user, session })))
}

/// The recovery flows over the function's pool, mail sender and configuration.
fn recovery(state: &AppState) -> Recovery<'_> {
    Recovery::new(&state.pool, state.mail.as_ref(), &state.config)
}

/// The guest id of an optional guest token; a bad token is a field error.
fn guest_of(state: &AppState, token: Option<&str>, errors: &mut FieldErrors) -> Option<Uuid> {
    let token = token?;
    let claims = tokens::verify_guest(&state.config.jwt, token);
    errors.check("guest_token", claims.map(|c| c.sub).map_err(|_| "is not a valid guest token".into()))
}

#[derive(Deserialize, ToSchema)]
struct LoginRequest {
    #[schema(value_type = String, required, format = Email)]
    email: Option<String>,
    #[schema(value_type = String, required, min_length = 1)]
    password: Option<String>,
    /// Hands the guest's conversations to the user.
    guest_token: Option<String>,
}

/// One answer for an unknown email and a wrong password, so neither can be told apart.
const BAD_CREDENTIALS: Error = Error::UnauthorizedWith("invalid email or password");

#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "auth",
    operation_id = "login",
    summary = "Sign in with email and password",
    description = "An unknown email and a wrong password get the same 401. At most 5 passwords per account are checked in 15 minutes, from any address, and at most 100 failed checks per client address (not counting the typos of accounts that then signed in there; accounts with a live session opened from the address are exempt): beyond that, 429 with `Retry-After`. The email is normalised like at registration; accounts stored before that still sign in with the address as stored. With `guest_token`, the guest's conversations become the user's.",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; a new session.", body = SignedIn),
        api::JsonBodyErrors,
        (status = 422, response = api::ValidationFailed),
        (status = 401, response = api::Unauthorized),
        (status = 403, response = api::AccountDisabled),
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

    let found = user::credentials_by_email(&state.pool, &email).await?;
    let account = found
        .as_ref()
        .map_or_else(|| AccountKey::unknown_email(email.as_str()), |c| AccountKey::user(&c.user.id));
    // Reserved before the password is looked at, so parallel guesses cannot outrun the limit;
    // an unknown address is limited like a known one, so a 429 says nothing about either.
    let check =
        rate_limit::reserve_check(&state.pool, state.config.limits.login, &account, client.ip.as_deref())
            .await?;
    let verdict = match found.as_ref().and_then(|c| c.password_hash.as_deref()) {
        Some(stored) => password::verify(&password, stored).await?,
        None => password::verify_dummy(&password).await?,
    };
    // A wrong password keeps the reserved check: it is the failure's record.
    let Some(found) = found.filter(|_| verdict.matched()) else { return Err(BAD_CREDENTIALS) };
    check.passed(&state.pool).await?;
    if !found.user.is_active {
        return Err(Error::AccountDisabled);
    }
    let stored = found.password_hash.as_deref().unwrap_or_default();
    let keep_better_auth = !state.config.upgrade_better_auth_hashes;
    let upgraded = match password::upgrade_of(&password, stored, verdict, keep_better_auth) {
        Some(canonical) => Some(password::hash(&canonical).await?),
        None => None,
    };

    let refresh = RefreshToken::generate();
    let mut tx = state.pool.begin().await?;
    // The hash just verified must still be the account's: a password change that won the race
    // wins, and an upgrade never writes an old password over a new one.
    if !user::confirm_password_hash(&mut tx, &found.user.id, stored, upgraded.as_deref()).await? {
        return Err(BAD_CREDENTIALS);
    }
    let user = user::record_login(&mut *tx, &found.user.id).await?;
    let session_id =
        sessions::create(&mut *tx, &user.id, &refresh, state.config.jwt.session_ttl, &client).await?;
    if let Some(guest_id) = guest {
        guests::claim_conversations(&mut *tx, guest_id, &user.id).await?;
    }
    tx.commit().await?;
    let session = session_tokens(&state, &user.id, session_id, &refresh)?;
    Ok(Json(SignedIn { user, session }))
}

#[derive(Deserialize, ToSchema)]
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
        (status = 401, response = api::Unauthorized),
        (status = 403, response = api::AccountDisabled),
        (status = 429, response = api::RateLimited),
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
    let (jwt, reuse) = (&state.config.jwt, state.config.limits.refresh_reuse);
    let mut tx = state.pool.begin().await?;
    let rotation = sessions::rotate(&mut tx, jwt, &presented, jwt.session_ttl, reuse).await?;
    match rotation {
        Rotation::Rotated(Rotated { is_active: false, .. })
        | Rotation::Reused(Rotated { is_active: false, .. }) => Err(Error::AccountDisabled),
        Rotation::Rotated(rotated) | Rotation::Reused(rotated) => {
            tx.commit().await?;
            Ok(Json(Refreshed { session: rotated_tokens(&state, rotated)? }))
        }
        Rotation::Replayed => {
            // Keep the revocation: a spent token came back, so it has leaked.
            tx.commit().await?;
            tracing::warn!("refresh token replayed; session revoked");
            Err(Error::Unauthorized)
        }
        Rotation::Unknown => Err(Error::Unauthorized),
    }
}

#[utoipa::path(
    post,
    path = "/api/auth/logout",
    tag = "auth",
    operation_id = "logout",
    summary = "Revoke the current session",
    responses(
        (status = 204, description = "This session is revoked; its access token stops working at once."),
        (status = 401, response = api::Unauthorized),
        (status = 403, response = api::AccountDisabled),
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
        (status = 401, response = api::Unauthorized),
        (status = 403, response = api::AccountDisabled),
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
        (status = 401, response = api::Unauthorized),
        (status = 403, response = api::AccountDisabled),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
async fn me(caller: AuthUser) -> Json<UserBody> {
    Json(UserBody { user: caller.user })
}

#[derive(Deserialize, ToSchema)]
struct UpdateMeRequest {
    #[schema(pattern = r"\S")]
    name: Option<String>,
    #[serde(default, deserialize_with = "primer_shared::extract::nullable")]
    #[schema(value_type = Option<String>, pattern = "^https?://", max_length = 2048)]
    image: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    preferences: Option<serde_json::Value>,
}

const MAX_IMAGE_URL: usize = 2048;
const MAX_PREFERENCES_BYTES: usize = 8 * 1024;

#[utoipa::path(
    patch,
    path = "/api/auth/me",
    tag = "auth",
    operation_id = "updateMe",
    summary = "Update name, image or preferences",
    request_body = UpdateMeRequest,
    responses(
        (status = 200, description = "The updated user.", body = inline(UserBody)),
        (status = 401, response = api::Unauthorized),
        (status = 403, response = api::AccountDisabled),
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
    let mut errors = FieldErrors::new();
    let name = body.name.and_then(|n| errors.check("name", UserName::parse(&n)));
    let image = body.image.map(|image| {
        image.map(|url| url.trim().to_owned()).filter(|url| {
            let ok = url.len() <= MAX_IMAGE_URL
                && (url.starts_with("https://") || url.starts_with("http://"))
                && !url.contains(char::is_control);
            if !ok {
                errors.add("image", format!("must be an http(s) URL of at most {MAX_IMAGE_URL} bytes"));
            }
            ok
        })
    });
    let preferences = match body.preferences {
        None => None,
        // jsonb cannot hold NUL characters (serde_json writes them as \u0000).
        Some(serde_json::Value::Object(map))
            if serde_json::to_string(&map).is_ok_and(|json| json.contains("\\u0000")) =>
        {
            errors.add("preferences", "must not contain NUL characters");
            None
        }
        Some(serde_json::Value::Object(map))
            if serde_json::to_vec(&map).map_or(0, |v| v.len()) <= MAX_PREFERENCES_BYTES =>
        {
            Some(map)
        }
        Some(serde_json::Value::Object(_)) => {
            errors.add("preferences", format!("must be at most {MAX_PREFERENCES_BYTES} bytes of JSON"));
            None
        }
        Some(_) => {
            errors.add("preferences", "must be an object");
            None
        }
    };
    errors.finish()?;
    let user = user::update(&state.pool, &caller.user_id, UserChanges { name, image, preferences }).await?;
    Ok(Json(UserBody { user }))
}

/// How recent a session must be to delete an account that has no password.
const FRESH_SESSION: std::time::Duration = std::time::Duration::from_secs(5 * 60);

#[derive(Deserialize, ToSchema)]
struct DeleteMeRequest {
    #[schema(value_type = String, required, pattern = r"\S")]
    password: Option<String>,
}

#[utoipa::path(
    delete,
    path = "/api/auth/me",
    tag = "auth",
    operation_id = "deleteMe",
    summary = "Delete the account",
    description = "Requires the current password; a wrong one is a 422 on `password`. Each check counts against the account's failed-login limit (429 with `Retry-After`).",
    request_body = DeleteMeRequest,
    responses(
        (status = 204, description = "The user and everything of theirs (rows and stored objects) are gone."),
        (status = 401, response = api::Unauthorized),
        (status = 403, response = api::AccountDisabled),
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
    let found = user::credentials_by_id(&state.pool, &caller.user_id).await?.ok_or(Error::Unauthorized)?;
    if found.password_hash.is_some() || body.password.is_some() {
        let password = Password::parse_presented(body.password.unwrap_or_default())
            .map_err(|m| Error::invalid("password", m))?;
        confirm_password(&state, &caller.user_id, &client, &password, "password").await?;
    } else if !sessions::is_fresh(&state.pool, &caller.session_id, FRESH_SESSION).await? {
        // No password to re-prove (an account of a social sign-in): a session opened in the
        // last few minutes proves the owner is at the keyboard.
        return Err(Error::invalid(
            "password",
            "this account has no password: sign in again, then delete it within 5 minutes",
        ));
    }
    // Objects first: if the store fails, the account stays and the request can be retried.
    let objects = personalize::cache::delete_user_objects(state.blobs.as_ref(), &caller.user_id).await?;
    primer_shared::auth::delete_account(&state.pool, &caller.user_id).await?;
    // A chapter request racing the delete may have stored one more object; the row is gone
    // with the user, so sweep again (best effort: the bucket's lifecycle rule is the backstop).
    if let Err(e) = personalize::cache::delete_user_objects(state.blobs.as_ref(), &caller.user_id).await {
        tracing::warn!(user_id = %caller.user_id, error = %primer_shared::error::ErrorChain(&e), "objects left after account deletion");
    }
    tracing::info!(user_id = %caller.user_id, objects, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A signed-in user re-proves their password before a sensitive change; a wrong one is a 422
/// on `field` (not a 401, which would read as "your token is bad"). Each re-check counts
/// against the account's failed-login limit exactly like a login, so a stolen access token
/// cannot be used to guess the password.
async fn confirm_password(
    state: &AppState,
    user_id: &str,
    client: &ClientMeta,
    password: &Password,
    field: &str,
) -> Result<()> {
    let found = user::credentials_by_id(&state.pool, user_id).await?.ok_or(Error::Unauthorized)?;
    let account = AccountKey::user(user_id);
    let check =
        rate_limit::reserve_check(&state.pool, state.config.limits.login, &account, client.ip.as_deref())
            .await?;
    let verdict = match found.password_hash.as_deref() {
        Some(stored) => password::verify(password, stored).await?,
        None => Verdict::Mismatch,
    };
    if !verdict.matched() {
        return Err(Error::invalid(field, "is incorrect"));
    }
    check.passed(&state.pool).await
}

#[derive(Deserialize, ToSchema)]
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
    description = "A wrong `current_password` is a 422 on that field. Each check counts against the account's failed-login limit (429 with `Retry-After`).",
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Password changed; every other session is revoked."),
        (status = 401, response = api::Unauthorized),
        (status = 403, response = api::AccountDisabled),
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

    confirm_password(&state, &caller.user_id, &client, &current, "current_password").await?;
    let hash = password::hash(&new).await?;
    let mut tx = state.pool.begin().await?;
    user::set_password_hash(&mut *tx, &caller.user_id, &hash).await?;
    sessions::revoke_all_but(&mut *tx, &caller.user_id, Some(&caller.session_id)).await?;
    tx.commit().await?;
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
        (status = 401, response = api::Unauthorized),
        (status = 403, response = api::AccountDisabled),
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
        (status = 401, response = api::Unauthorized),
        (status = 403, response = api::AccountDisabled),
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
struct Accepted {
    /// What happens next, for a person; the same text whatever the outcome.
    message: &'static str,
}

#[derive(Deserialize, ToSchema)]
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
    recovery(&state).forgot_password(&email, client.ip.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { message: RESET_LINK_SENT })))
}

#[derive(Deserialize, ToSchema)]
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

    let redeemable = recovery(&state).check(Purpose::PasswordReset, &token, client.ip.as_deref()).await?;
    if !redeemable.is_active {
        return Err(Error::AccountDisabled);
    }
    let hash = password::hash(&new).await?;
    let refresh = RefreshToken::generate();
    let mut tx = state.pool.begin().await?;
    if !recovery::complete_password_reset(&mut tx, &redeemable, &hash).await? {
        // Another request with the same token won the race.
        return Err(Error::InvalidToken);
    }
    let user = user::record_login(&mut *tx, &redeemable.user_id).await?;
    let session_id =
        sessions::create(&mut *tx, &user.id, &refresh, state.config.jwt.session_ttl, &client).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "password reset; every other session revoked");
    let session = session_tokens(&state, &user.id, session_id, &refresh)?;
    Ok(Json(SignedIn { user, session }))
}

/// A present, non-empty string field.
fn required(value: Option<String>) -> std::result::Result<String, String> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| "is required".to_owned())
}

#[derive(Deserialize, ToSchema)]
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
    let redeemable = recovery(&state).check(Purpose::VerifyEmail, &token, client.ip.as_deref()).await?;
    let mut tx = state.pool.begin().await?;
    if !recovery::complete_verification(&mut tx, &redeemable).await? {
        return Err(Error::InvalidToken);
    }
    tx.commit().await?;
    tracing::info!(user_id = %redeemable.user_id, "e-mail address verified");
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
        (status = 401, response = api::Unauthorized),
        (status = 403, response = api::AccountDisabled),
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
    recovery(&state).send_verification(&user).await?;
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
    guest
))]
pub struct Api;
