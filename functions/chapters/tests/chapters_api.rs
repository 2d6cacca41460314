//! `/api/chapters*`: the table of contents, sources, and the personalization cache's rules.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use common::{copies, files_under, import_fixture, python_reader, rule_key};
use primer_shared::AppState;
use primer_shared::domain::book::{self, ChapterSource};
use primer_shared::infra::blob::DirStore;
use primer_shared::test_util::{
    CountingStore, TestApp, UnreachableStore, set_reader_profile, skipped, statements_during, test_config,
};
use serde_json::{Value, json};
use sqlx::PgPool;

const PERSONALIZED_JSON: &str = "/api/chapters/1/personalized?format=json";

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn the_table_of_contents_and_sources_need_no_sign_in(pool: PgPool) {
    let app = TestApp::new(pool, chapters::router);
    import_fixture(app.pool()).await;

    let toc = app.get("/api/chapters", None).await;
    assert_eq!(toc.status, StatusCode::OK);
    assert_eq!(
        toc.json(),
        json!({"chapters": [{"id": 1, "slug": "first-steps", "title": "First Steps", "version": 1}]})
    );

    let source = app.get("/api/chapters/1", None).await;
    assert_eq!(source.status, StatusCode::OK);
    assert!(source.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/markdown"));
    let fixture = std::fs::read_to_string(common::fixtures().join("01-first-steps.md")).unwrap();
    assert_eq!(source.text(), fixture);

    for missing in
        ["/api/chapters/2", "/api/chapters/0", "/api/chapters/first-steps", "/api/chapters/2/personalized"]
    {
        let response = app.get(missing, None).await;
        let expected = if missing.ends_with("personalized") { "unauthorized" } else { "not_found" };
        assert_eq!(response.error_code(), expected, "{missing}");
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn personalization_needs_a_signed_in_onboarded_reader(pool: PgPool) {
    let app = TestApp::new(pool, chapters::router);
    import_fixture(app.pool()).await;
    assert_eq!(app.get(PERSONALIZED_JSON, None).await.status, StatusCode::UNAUTHORIZED);

    let user = app.signed_up("reader@example.com").await;
    let response = app.get(PERSONALIZED_JSON, Some(&user.access_token)).await;
    assert_eq!(response.status, StatusCode::CONFLICT);
    assert_eq!(response.error_code(), "profile_incomplete");

    // A profile that has not been through onboarding is not enough either.
    sqlx::query!(
        "INSERT INTO user_profiles (user_id, software_context, hardware_context, profile_hash)
         VALUES ($1, '{\"languages\": [\"Python\"]}', '{}', $2)",
        user.id.as_str(),
        "a".repeat(64)
    )
    .execute(app.pool())
    .await
    .unwrap();
    let response = app.get(PERSONALIZED_JSON, Some(&user.access_token)).await;
    assert_eq!(response.error_code(), "profile_incomplete");

    set_reader_profile(app.pool(), &user.id, "Beginner", "none", &["Python"], &[]).await;
    let response = app.get("/api/chapters/9/personalized", Some(&user.access_token)).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    let response = app.get("/api/chapters/1/personalized?format=xml", Some(&user.access_token)).await;
    assert_eq!(response.error_code(), "bad_request");
    let response =
        app.get("/api/chapters/1/personalized?delivery=carrier-pigeon", Some(&user.access_token)).await;
    assert_eq!(response.error_code(), "bad_request");
    assert_eq!(copies(app.pool()).await, 0);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_miss_is_made_and_stored_then_served_from_the_store(pool: PgPool) {
    let app = TestApp::new(pool, chapters::router);
    let chapter = import_fixture(app.pool()).await;
    let (user, hash) = python_reader(&app, "reader@example.com").await;

    let first = app.get(PERSONALIZED_JSON, Some(&user.access_token)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let first = first.json();
    assert_eq!(first["cached"], false);
    assert_eq!(first["engine"], "rule");
    assert_eq!((first["chapter_id"].clone(), first["chapter_version"].clone()), (json!(1), json!(1)));
    assert_eq!(first["profile_hash"], hash.as_str());
    let markdown = first["markdown"].as_str().unwrap();
    assert!(markdown.starts_with("# First Steps\n\n> **Tailored for you.**"), "{markdown}");
    assert!(markdown.contains("### In Python") && !markdown.contains("### In C++"), "{markdown}");

    // The object holds exactly what was served, under the documented key.
    let key = rule_key(app.pool(), user.id.as_str(), chapter).await;
    assert!(key.as_str().ends_with(&format!("/v1-{}.md", first["fingerprint"].as_str().unwrap())));
    let stored = app.state.blobs.get(&key).await.unwrap().expect("the object was written");
    assert_eq!(String::from_utf8(stored).unwrap(), markdown);
    let engine: String =
        sqlx::query_scalar!("SELECT engine FROM personalized_chapters WHERE storage_path = $1", key.as_str())
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(engine, "rule");

    let second = app.get(PERSONALIZED_JSON, Some(&user.access_token)).await.json();
    assert_eq!(second["cached"], true);
    assert_eq!(second["markdown"], first["markdown"]);

    let plain = app.get("/api/chapters/1/personalized", Some(&user.access_token)).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(plain.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/markdown"));
    assert_eq!(plain.text(), markdown);
    // Without a bucket there is no URL to redirect to: the chapter comes inline.
    let redirect = app.get("/api/chapters/1/personalized?delivery=redirect", Some(&user.access_token)).await;
    assert_eq!((redirect.status, redirect.text()), (StatusCode::OK, markdown.to_owned()));
    assert_eq!(copies(app.pool()).await, 1);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_changed_profile_is_a_new_miss(pool: PgPool) {
    let app = TestApp::new(pool, chapters::router);
    import_fixture(app.pool()).await;
    let (user, old_hash) = python_reader(&app, "reader@example.com").await;
    let before = app.get(PERSONALIZED_JSON, Some(&user.access_token)).await.json();

    let new_hash =
        set_reader_profile(app.pool(), &user.id, "Advanced", "real_hardware", &["Cpp"], &["Jetson"]).await;
    assert_ne!(new_hash, old_hash);
    let after = app.get(PERSONALIZED_JSON, Some(&user.access_token)).await.json();
    assert_eq!(after["cached"], false);
    assert_eq!(after["profile_hash"], new_hash.as_str());
    let markdown = after["markdown"].as_str().unwrap();
    assert!(markdown.contains("### In C++") && !markdown.contains("### In Python"), "{markdown}");
    assert_ne!(after["markdown"], before["markdown"]);
    assert_eq!(copies(app.pool()).await, 2, "the old copy waits for the janitor");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_new_chapter_version_is_a_new_miss(pool: PgPool) {
    let app = TestApp::new(pool, chapters::router);
    import_fixture(app.pool()).await;
    let (user, _) = python_reader(&app, "reader@example.com").await;
    app.get(PERSONALIZED_JSON, Some(&user.access_token)).await;

    let fixture = std::fs::read_to_string(common::fixtures().join("01-first-steps.md")).unwrap();
    let revised =
        ChapterSource::parse("01-first-steps.md", format!("{fixture}\n## Revised\n\nNew text.\n")).unwrap();
    let mut conn = app.pool().acquire().await.unwrap();
    book::import_chapter(&mut conn, &revised).await.unwrap();
    drop(conn);

    let after = app.get(PERSONALIZED_JSON, Some(&user.access_token)).await.json();
    assert_eq!((after["cached"].clone(), after["chapter_version"].clone()), (json!(false), json!(2)));
    assert!(after["markdown"].as_str().unwrap().contains("## Revised"));
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn concurrent_misses_make_the_chapter_once(pool: PgPool) {
    let config = test_config();
    let dir = config.blob.dir.clone();
    let store = Arc::new(CountingStore::new(Arc::new(DirStore::new(&dir)), Duration::from_millis(200)));
    let state = AppState::new(config, pool).with_blobs(store.clone());
    let app = TestApp::with_state(state, chapters::router);
    import_fixture(app.pool()).await;
    let (user, _) = python_reader(&app, "reader@example.com").await;

    let requests = (0..6).map(|_| {
        let (app, token) = (app.clone(), user.access_token.clone());
        tokio::spawn(async move { app.get(PERSONALIZED_JSON, Some(&token)).await })
    });
    let mut bodies: Vec<Value> = Vec::new();
    for request in requests.collect::<Vec<_>>() {
        let response = request.await.unwrap();
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        bodies.push(response.json());
    }
    assert_eq!(bodies.iter().filter(|b| b["cached"] == false).count(), 1, "exactly one request made it");
    assert!(bodies.iter().all(|b| b["markdown"] == bodies[0]["markdown"]));
    assert_eq!(store.puts(), 1, "one generation, one write");
    assert_eq!(copies(app.pool()).await, 1);
    assert_eq!(files_under(&dir), 1);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_failed_store_write_is_a_503_and_leaves_no_row(pool: PgPool) {
    let healthy = TestApp::new(pool, chapters::router);
    import_fixture(healthy.pool()).await;
    let (user, _) = python_reader(&healthy, "reader@example.com").await;

    let state = AppState::new(test_config(), healthy.pool().clone()).with_blobs(Arc::new(UnreachableStore));
    let broken = TestApp::with_state(state, chapters::router);
    let response = broken.get(PERSONALIZED_JSON, Some(&user.access_token)).await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.error_code(), "unavailable");
    assert!(!response.text().contains("connection refused"), "nothing internal leaks");
    assert_eq!(copies(healthy.pool()).await, 0);

    // Nothing was left half-done: with the store back, the chapter is made as usual.
    let response = healthy.get(PERSONALIZED_JSON, Some(&user.access_token)).await;
    assert_eq!(response.json()["cached"], false);
    assert_eq!(copies(healthy.pool()).await, 1);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_lost_object_is_made_again(pool: PgPool) {
    let app = TestApp::new(pool, chapters::router);
    let chapter = import_fixture(app.pool()).await;
    let (user, _) = python_reader(&app, "reader@example.com").await;
    app.get(PERSONALIZED_JSON, Some(&user.access_token)).await;

    // As if the bucket's lifecycle rule had expired it.
    app.state.blobs.delete(&rule_key(app.pool(), user.id.as_str(), chapter).await).await.unwrap();
    let again = app.get(PERSONALIZED_JSON, Some(&user.access_token)).await.json();
    assert_eq!(again["cached"], false);
    assert_eq!(copies(app.pool()).await, 1);
    let back = app.get(PERSONALIZED_JSON, Some(&user.access_token)).await.json();
    assert_eq!(back["cached"], true);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_cache_hit_is_two_round_trips_and_one_object_read(pool: PgPool) {
    if skipped("pg_stat_statements") {
        return;
    }
    let app = TestApp::new(pool.clone(), chapters::router);
    import_fixture(app.pool()).await;
    let (reader, _) = python_reader(&app, "reader@example.com").await;
    let path = "/api/chapters/1/personalized?format=json";
    let made = app.get(path, Some(&reader.access_token)).await;
    assert_eq!(made.json()["cached"], false, "{}", made.text());
    app.get(path, Some(&reader.access_token)).await; // statements prepared, facets known

    let (hit, statements) = statements_during(&pool, app.get(path, Some(&reader.access_token))).await;
    assert_eq!(hit.status, StatusCode::OK, "{}", hit.text());
    assert_eq!(hit.json()["cached"], true);
    assert_eq!(statements, 2, "the caller's session, then the profile, version and copies in one");
}
