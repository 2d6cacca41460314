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
use primer_shared::user::{self, Email, SignInEmail, User, UserChanges, UserName};
use primer_shared::{AppState, Error, FieldErrors, Result, app, guests, personalize};
use serde::{Deserialize, Serialize};
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
#[derive(Serialize)]
struct UserBody {
    user: User,
}

/// `{user, session}`: what register and login answer.
#[derive(Serialize)]
struct SignedIn {
    user: User,
    session: SessionTokens,
}

/// A token pair; the refresh token is shown here and never again.
#[derive(Serialize)]
struct SessionTokens {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
    session_id: String,
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

/// Fields are optional here so that a missing one is a 422 naming it, like a bad one.
#[derive(Deserialize)]
struct RegisterRequest {
    email: Option<String>,
    password: Option<String>,
    name: Option<String>,
    guest_token: Option<String>,
}

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

#[derive(Deserialize)]
struct LoginRequest {
    email: Option<String>,
    password: Option<String>,
    guest_token: Option<String>,
}

/// One answer for an unknown email and a wrong password, so neither can be told apart.
const BAD_CREDENTIALS: Error = Error::UnauthorizedWith("invalid email or password");

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

#[derive(Deserialize)]
struct RefreshRequest {
    refresh_token: Option<String>,
}

#[derive(Serialize)]
struct Refreshed {
    session: SessionTokens,
}

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

async fn logout(State(state): State<AppState>, caller: AuthUser) -> Result<StatusCode> {
    sessions::revoke(&state.pool, &caller.user_id, &caller.session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn logout_all(State(state): State<AppState>, caller: AuthUser) -> Result<StatusCode> {
    sessions::revoke_all_but(&state.pool, &caller.user_id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(caller: AuthUser) -> Json<UserBody> {
    Json(UserBody { user: caller.user })
}

#[derive(Deserialize)]
struct UpdateMeRequest {
    name: Option<String>,
    #[serde(default, deserialize_with = "primer_shared::extract::nullable")]
    image: Option<Option<String>>,
    preferences: Option<serde_json::Value>,
}

const MAX_IMAGE_URL: usize = 2048;
const MAX_PREFERENCES_BYTES: usize = 8 * 1024;

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

#[derive(Deserialize)]
struct DeleteMeRequest {
    password: Option<String>,
}

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

#[derive(Deserialize)]
struct ChangePasswordRequest {
    current_password: Option<String>,
    new_password: Option<String>,
}

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

#[derive(Serialize)]
struct SessionList {
    sessions: Vec<SessionInfo>,
}

async fn list_sessions(State(state): State<AppState>, caller: AuthUser) -> Result<Json<SessionList>> {
    let sessions = sessions::list(&state.pool, &caller.user_id, &caller.session_id).await?;
    Ok(Json(SessionList { sessions }))
}

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

#[derive(Serialize)]
struct GuestToken {
    guest_token: String,
    expires_in: i64,
}

async fn guest(State(state): State<AppState>, client: ClientMeta) -> Result<(StatusCode, Json<GuestToken>)> {
    // Each guest token is a fresh daily model quota: minting them is throttled per address.
    rate_limit::admit(&state.pool, EntryPoint::Guest, state.config.limits.guest, client.ip.as_deref())
        .await?;
    let issued = tokens::issue_guest(&state.config.jwt)?;
    Ok((StatusCode::CREATED, Json(GuestToken { guest_token: issued.token, expires_in: issued.expires_in })))
}

/// `202 {message}`: what the recovery routes answer when an e-mail may be on its way.
#[derive(Serialize)]
struct Accepted {
    message: &'static str,
}

#[derive(Deserialize)]
struct ForgotPasswordRequest {
    email: Option<String>,
}

/// The one answer to a forgot-password request, whether or not the address has an account.
const RESET_LINK_SENT: &str = "if an account uses this address, a link to choose a new password is on its way; it works for a limited time";

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

#[derive(Deserialize)]
struct ResetPasswordRequest {
    token: Option<String>,
    new_password: Option<String>,
}

/// Sets a new password with a token from a reset e-mail and answers like a login: every other
/// session of the account is revoked, and the reader is signed in with a fresh one.
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

#[derive(Deserialize)]
struct VerifyEmailRequest {
    token: Option<String>,
}

/// Confirms the account's address with a token from a verification e-mail. No session is
/// needed: the link may be opened on another device than the one signed in.
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
