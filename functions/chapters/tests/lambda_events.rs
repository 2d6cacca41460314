//! Every sample event in `events/` for the chapters function, fed through the Lambda entry.

mod common;

use axum::http::StatusCode;
use common::{import_fixture, python_reader};
use primer_shared::test_util::{TestApp, event, event_names};
use sqlx::PgPool;

/// Each chapters event and the status it must get.
const EXPECTED: &[(&str, u16)] = &[
    ("chapters-get.json", 200),
    ("chapters-list.json", 200),
    ("chapters-openapi.json", 200),
    ("chapters-personalized.json", 200),
];

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn every_chapters_event_gets_its_status(pool: PgPool) {
    let app = TestApp::new(pool, chapters::router);
    import_fixture(app.pool()).await;
    let (reader, _) = python_reader(&app, "reader@example.com").await;
    let covered: Vec<String> = EXPECTED.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(event_names("chapters-"), covered, "every chapters event has an expected status");

    for (name, expected) in EXPECTED {
        let json = event(name, &[("REPLACE_WITH_ACCESS_TOKEN", &reader.access_token)]);
        let response = app.send_event(&json).await;
        assert_eq!(response.status, StatusCode::from_u16(*expected).unwrap(), "{name}: {}", response.text());
    }
    let personalized = app
        .send_event(&event(
            "chapters-personalized.json",
            &[("REPLACE_WITH_ACCESS_TOKEN", &reader.access_token)],
        ))
        .await;
    assert_eq!(personalized.json()["cached"], true, "the first personalized event stored it");
}
