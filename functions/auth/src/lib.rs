//! The auth function: `/api/auth/*` of docs/api.md — registration, login, token refresh,
//! logout, the caller's account, their sessions, guest tokens, and account recovery by e-mail
//! (a forgotten password, a verified address).
//!
//! The flows (`primer_shared::domain::auth::account`), passwords, tokens, sessions, the rate limits
//! and the recovery links live in the core crate; this crate maps HTTP onto them: it parses
//! bodies into domain values, calls one flow, and shapes its answer. The routes are grouped by
//! what they act on: [`session`], [`password`], [`email`], [`me`], [`guest`], and signing in
//! with GitHub, Google and OpenID Connect providers in [`oauth`].

use axum::Router;
use primer_shared::domain::auth::account::Accounts;
use primer_shared::{AppState, http::app};
use utoipa::OpenApi;

use crate::oauth::OPTIONAL_LINK_BODY;

mod body;
mod email;
mod guest;
mod me;
mod oauth;
mod password;
mod session;

/// The auth routes, for the Lambda and for the local runner.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(session::routes())
        .merge(me::routes())
        .merge(password::routes())
        .merge(email::routes())
        .merge(guest::routes())
        .merge(oauth::routes())
}

/// The function's whole service: its routes with the shared layers, on `state`.
pub fn router(state: AppState) -> Router {
    app::service(routes(), state)
}

/// The account flows over the function's pool, mail sender and configuration.
fn accounts(state: &AppState) -> Accounts<'_> {
    Accounts::new(&state.pool, state.mail.as_ref(), &state.config)
}

/// This function's operations in the OpenAPI document (openapi.json), in the document's order.
#[derive(OpenApi)]
#[openapi(paths(
    session::register, session::login, session::refresh, session::logout, session::logout_all,
    me::me, me::update_me, me::delete_me,
    password::change_password, password::forgot_password, password::reset_password,
    email::send_verification, email::verify_email,
    session::list_sessions, session::revoke_session,
    guest::guest,
    oauth::list_providers, oauth::start, oauth::callback, oauth::link, oauth::exchange,
    oauth::list_accounts, oauth::remove_account
), modifiers(&OPTIONAL_LINK_BODY))]
pub struct Api;
