//! Every sample event in `events/` for the profile function, fed through the Lambda entry.

use crate::common;

use axum::http::StatusCode;
use common::{ProfileRoutes, app, full_profile};
use primer_shared::test_util::assert_events_covered;
use sqlx::PgPool;

/// Each profile event, whether its user has a profile beforehand, and the status it must get.
const EXPECTED: &[(&str, bool, u16)] = &[
    ("profile-get.json", true, 200),
    ("profile-options.json", false, 200),
    ("profile-patch.json", true, 200),
    ("profile-put.json", false, 201),
];

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn every_profile_event_gets_its_status(pool: PgPool) {
    let app = app(pool);
    let statuses: Vec<(&str, u16)> = EXPECTED.iter().map(|(name, _, status)| (*name, *status)).collect();
    assert_events_covered(&["profile-"], &statuses);

    for (i, (name, with_profile, expected)) in EXPECTED.iter().enumerate() {
        let user = app.signed_up(&format!("event{i}@example.com")).await;
        if *with_profile {
            let put = app.put_profile(Some(&user.access_token), full_profile()).await;
            assert_eq!(put.status, StatusCode::CREATED);
        }
        let response = app
            .send_sample_event(name, &[("REPLACE_WITH_ACCESS_TOKEN", &user.access_token)], *expected)
            .await;
        if name.ends_with("-patch.json") {
            // The sample patch is a merge patch: it changed the GPU and kept the RAM.
            let specifications = &response.json()["profile"]["hardware_context"]["specifications"];
            assert_eq!(specifications["gpu"], "RTX4090");
            assert_eq!(specifications["ram"], "16GB");
        }
    }
}
