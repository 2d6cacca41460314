//! Deleting an account (the flow behind `DELETE /api/auth/me`) takes the user's stored
//! chapters with it.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::{copies, files_under, import_fixture, python_reader};
use primer_shared::AppState;
use primer_shared::test_util::{CountingStore, TestApp, TestUser, UnreachableStore, test_config};
use sqlx::PgPool;

/// Deletes `user`'s account as `DELETE /api/auth/me` does; the status it would answer.
async fn delete_account(app: &TestApp, user: &TestUser) -> StatusCode {
    let blobs = app.state.blobs.as_ref();
    let password = Some(user.password.clone());
    match app.accounts().delete(blobs, &user.id, &user.session_id, password, &app.client()).await {
        Ok(_) => StatusCode::NO_CONTENT,
        Err(e) => e.status(),
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn deleting_an_account_removes_its_objects_and_only_its_own(pool: PgPool) {
    let app = TestApp::new(pool, chapters::router);
    import_fixture(app.pool()).await;
    let (leaving, _) = python_reader(&app, "leaving@example.com").await;
    let (staying, _) = python_reader(&app, "staying@example.com").await;
    for user in [&leaving, &staying] {
        let response = app.get("/api/chapters/1/personalized", Some(&user.access_token)).await;
        assert_eq!(response.status, StatusCode::OK);
    }
    let blobs = &app.state.config.blob.dir;
    let folder = |user: &TestUser| blobs.join("personalized").join(user.id.as_str());
    assert_eq!((files_under(&folder(&leaving)), files_under(&folder(&staying))), (1, 1));

    assert_eq!(delete_account(&app, &leaving).await, StatusCode::NO_CONTENT);
    assert_eq!(files_under(&folder(&leaving)), 0);
    assert_eq!(files_under(&folder(&staying)), 1);
    assert_eq!(copies(app.pool()).await, 1, "the row went with the user");
    let again = app.get("/api/chapters/1/personalized?format=json", Some(&staying.access_token)).await;
    assert_eq!(again.json()["cached"], true);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn an_unreachable_store_keeps_the_account_for_a_retry(pool: PgPool) {
    let healthy = TestApp::new(pool, chapters::router);
    import_fixture(healthy.pool()).await;
    let (user, _) = python_reader(&healthy, "reader@example.com").await;
    healthy.get("/api/chapters/1/personalized", Some(&user.access_token)).await;

    let state = AppState::new(test_config(), healthy.pool().clone()).with_blobs(Arc::new(UnreachableStore));
    let broken = TestApp::with_state(state, chapters::router);
    assert_eq!(delete_account(&broken, &user).await, StatusCode::SERVICE_UNAVAILABLE);
    let account = primer_shared::domain::user::by_id(healthy.pool(), &user.id).await.unwrap();
    assert!(account.is_some(), "the account is still there");
    assert_eq!(delete_account(&healthy, &user).await, StatusCode::NO_CONTENT);
    assert_eq!(copies(healthy.pool()).await, 0);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn misses_in_flight_while_the_account_goes_are_never_a_500(pool: PgPool) {
    let plain = TestApp::new(pool, chapters::router);
    let slow = Arc::new(CountingStore::new(plain.state.blobs.clone(), Duration::from_millis(400)));
    let app = TestApp::with_state(plain.state.clone().with_blobs(slow), chapters::router);
    import_fixture(app.pool()).await;
    let (user, _) = python_reader(&app, "leaving@example.com").await;

    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (app, token) = (app.clone(), user.access_token.clone());
            tokio::spawn(async move { app.get("/api/chapters/1/personalized", Some(&token)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(delete_account(&app, &user).await, StatusCode::NO_CONTENT);
    for reader in readers {
        let response = reader.await.unwrap();
        // A 503 (the documented shape, with Retry-After) was seen once on a loaded machine, its
        // cause not found yet; anything else, a 500 above all, fails.
        if response.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(response.error_code(), "unavailable", "{}", response.text());
            assert!(response.headers.contains_key("retry-after"), "{}", response.text());
            continue;
        }
        assert!(
            [StatusCode::OK, StatusCode::UNAUTHORIZED, StatusCode::NOT_FOUND].contains(&response.status),
            "{}: {}",
            response.status,
            response.text()
        );
    }
    assert_eq!(copies(app.pool()).await, 0, "no row outlives its user");
}
