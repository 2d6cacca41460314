//! The floor under `GET /api/auth/me`: an axum server over a sqlx pool that answers
//! `GET /user/{id}` with one prepared `SELECT` of the user's row as JSON, and does nothing else
//! (no token, no middleware, no error shape). Built with the workspace's versions, features
//! and release profile, and run on the same pool size as the runner, it is what the stack
//! itself costs: `bench/run` measures `me` against it in the same run.
//!
//! `GET /session/{sid}/user/{id}` answers `me`'s own statement instead (the live session
//! joined with its user, ten columns), with `me`'s answer, and nothing else either: between
//! the two routes is what `me`'s query costs; between this one and `me` is what the rest of
//! the stack costs (the token, the hardened server, the request's layer, CORS).
//!
//! `DATABASE_URL`, `DB_MAX_CONNECTIONS` (10) and `PORT` (3001) configure it; it prints
//! `listening` when it accepts connections.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

#[tokio::main]
async fn main() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let connections = std::env::var("DB_MAX_CONNECTIONS").map_or(10, |n| n.parse().expect("a number"));
    let port: u16 = std::env::var("PORT").map_or(3001, |p| p.parse().expect("a port"));
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .test_before_acquire(false)
        .connect_lazy(&url)
        .expect("a valid DATABASE_URL");
    let app = Router::new()
        .route("/user/{id}", get(user))
        .route("/session/{sid}/user/{id}", get(session_user))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("the port is free");
    println!("listening");
    axum::serve(listener, app).await.expect("serving");
}

#[derive(serde::Serialize)]
struct User {
    id: String,
    email: String,
    name: String,
}

async fn user(State(pool): State<PgPool>, Path(id): Path<String>) -> Response {
    // Checked at compile time like the functions' statements; over the wire it is the same
    // prepared statement as a runtime-checked one.
    let row = sqlx::query_as!(User, r#"SELECT id, email, name FROM "user" WHERE id = $1"#, id)
        .fetch_optional(&pool)
        .await;
    match row {
        Ok(Some(user)) => axum::Json(user).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// `me`'s column types; the statement names the id's type as the functions do.
type UserId = String;

/// `me`'s answer: `{"user": {...}}`, the ten columns in the functions' order and format.
#[derive(serde::Serialize)]
struct UserBody {
    user: FullUser,
}

#[derive(serde::Serialize)]
struct FullUser {
    id: UserId,
    email: String,
    name: String,
    image: Option<String>,
    email_verified: bool,
    is_active: bool,
    preferences: serde_json::Value,
    last_login: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

async fn session_user(State(pool): State<PgPool>, Path((sid, id)): Path<(String, String)>) -> Response {
    // Byte for byte the statement `me` runs (shared/src/domain/user.rs, `by_live_session`).
    let row = sqlx::query_as!(
        FullUser,
        "SELECT "
            + r#"u.id AS "id: UserId", u.email, u.name, u.image, u."emailVerified" AS email_verified, u.is_active, u.preferences, u.last_login, u."createdAt" AS created_at, u."updatedAt" AS updated_at"#
            + r#" FROM "session" s JOIN "user" u ON u.id = s."userId"
           WHERE s.id = $1 AND s."userId" = $2 AND s."expiresAt" > now()"#,
        sid,
        id,
    )
    .fetch_optional(&pool)
    .await;
    match row {
        Ok(Some(user)) => axum::Json(UserBody { user }).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
