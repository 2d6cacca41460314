//! Every sample event in `events/` for the conversations function, fed through the Lambda
//! entry (`lambda_http`'s request from an API Gateway payload) into the router; the function
//! URL events of the streaming entry (`conversations-stream-*`) into its own router.

use crate::common;

use axum::http::header;
use common::{create, id, post_message, uuid};
use primer_shared::test_util::{TestApp, assert_events_covered};
use serde_json::json;
use sqlx::PgPool;

/// Each event of this function and the status it must get.
const EXPECTED: &[(&str, u16)] = &[
    ("models-list.json", 200),
    ("conversations-create.json", 201),
    ("conversations-list.json", 200),
    ("conversations-get.json", 200),
    ("conversations-patch.json", 200),
    ("conversations-delete.json", 204),
    ("conversations-messages-list.json", 200),
    ("conversations-messages-post.json", 201),
    ("conversations-messages-retry.json", 201),
    ("usage-get.json", 200),
    ("conversations-stream-messages-post.json", 201),
    ("conversations-stream-messages-retry.json", 201),
];

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn every_conversations_event_gets_its_status(pool: PgPool) {
    let app = TestApp::new(pool, common::router);
    let streaming = TestApp::with_state(app.state.clone(), conversations::stream_router);
    assert_events_covered(&["conversations-", "models-", "usage-"], EXPECTED);

    let user = app.signed_up("events@example.com").await;
    for (name, expected) in EXPECTED {
        // A fresh conversation per event, with one exchange whose reply failed (so that
        // retry applies), so one event's effect (delete) cannot spoil another.
        let conversation = id(&create(&app, &user.access_token, json!({})).await);
        let exchange = post_message(&app, &user.access_token, &conversation, "What is a node?").await.json();
        let question = id(&exchange["user_message"]);
        sqlx::query!(
            r#"UPDATE messages SET is_error = true,
                      error_details = '{"code": "model_timeout", "message": "too slow"}'
               WHERE reply_to = $1::uuid"#,
            uuid(&question)
        )
        .execute(app.pool())
        .await
        .unwrap();

        let substitutions = [
            ("REPLACE_WITH_ACCESS_TOKEN", user.access_token.as_str()),
            ("REPLACE_WITH_CONVERSATION_ID", &conversation),
            ("REPLACE_WITH_MESSAGE_ID", &question),
        ];
        let streamed = name.starts_with("conversations-stream-");
        let entry = if streamed { &streaming } else { &app };
        let response = entry.send_sample_event(name, &substitutions, *expected).await;
        if streamed {
            assert_eq!(response.headers[header::CONTENT_TYPE], "text/event-stream", "{name}");
            assert!(response.text().contains("event: done"), "{name}: {}", response.text());
        }
    }
}
