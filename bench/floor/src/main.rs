//! The floor under `GET /api/auth/me`: an axum server over a sqlx pool that answers
//! `GET /user/{id}` with one prepared `SELECT` of the user's row as JSON, and does nothing else
//! (no token, no middleware, no error shape). Built with the workspace's versions, features
//! and release profile, and run on the same pool size as the runner, it is what the stack
//! itself costs: `bench/run` measures `me` against it in the same run.
//!
//! `DATABASE_URL`, `DB_MAX_CONNECTIONS` (10) and `PORT` (3001) configure it; it prints
//! `listening` when it accepts connections.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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
    let app = Router::new().route("/user/{id}", get(user)).with_state(pool);
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
