//! Round trips on the hot paths, counted by PostgreSQL itself: the liveness check of every
//! authenticated request reads the caller in the same query, so `GET /api/auth/me` is one.

use axum::http::StatusCode;
use primer_shared::test_util::{TestApp, skipped, statements_during};
use sqlx::PgPool;

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn me_is_one_round_trip(pool: PgPool) {
    if skipped("pg_stat_statements") {
        return;
    }
    let app = TestApp::new(pool.clone(), auth::router);
    let user = app.signed_up("ada@example.com").await;
    app.me(&user.access_token).await; // connections made, statements prepared

    let (response, statements) = statements_during(&pool, app.me(&user.access_token)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.json()["user"]["email"], "ada@example.com");
    assert_eq!(statements, 1, "GET /api/auth/me is one statement");
}
