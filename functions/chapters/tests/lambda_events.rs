//! Every sample event in `events/` for the chapters function, fed through the Lambda entry.

use crate::common;

use axum::http::StatusCode;
use common::{import_fixture, python_reader};
use primer_shared::test_util::{TestApp, assert_events_covered, event};
use sqlx::PgPool;

/// Each chapters event and the status it must get.
const EXPECTED: &[(&str, u16)] = &[
    ("chapters-get.json", 200),
    ("chapters-list.json", 200),
    ("chapters-openapi.json", 200),
    ("chapters-personalized.json", 200),
];

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn every_chapters_event_gets_its_status(pool: PgPool) {
    let app = TestApp::new(pool, chapters::router);
    import_fixture(app.pool()).await;
    let (reader, _) = python_reader(&app, "reader@example.com").await;
    assert_events_covered(&["chapters-"], EXPECTED);

    let token = [("REPLACE_WITH_ACCESS_TOKEN", reader.access_token.as_str())];
    for (name, expected) in EXPECTED {
        app.send_sample_event(name, &token, *expected).await;
    }
    let personalized = app.send_sample_event("chapters-personalized.json", &token, 200).await;
    assert_eq!(personalized.json()["cached"], true, "the first personalized event stored it");
}

/// A path id that is not UTF-8, as API Gateway hands it on, gets the error shape.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_path_that_is_not_utf8_gets_the_error_shape_on_lambda(pool: PgPool) {
    let app = TestApp::new(pool, chapters::router);
    let json = event("chapters-get.json", &[]).replace("/api/chapters/1", "/api/chapters/%FF");
    let response = app.send_event(&json).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST, "{}", response.text());
    let error = &response.json()["error"];
    assert!(error["code"].is_string() && error["request_id"].is_string(), "{error}");
}
