//! Every sample event in `events/` for the conversations function, fed through the Lambda
//! entry (`lambda_http`'s request from an API Gateway payload) into the router; the function
//! URL events of the streaming entry (`conversations-stream-*`) into its own router.

mod common;

use axum::http::{StatusCode, header};
use common::{create, id, post_message};
use primer_shared::test_util::{TestApp, event, event_names};
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

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn every_conversations_event_gets_its_status(pool: PgPool) {
    let app = TestApp::new(pool, common::router);
    let streaming = TestApp::with_state(app.state.clone(), conversations::stream_router);
    let mut names = event_names("conversations-");
    names.extend(event_names("models-"));
    names.extend(event_names("usage-"));
    names.sort();
    let mut covered: Vec<String> = EXPECTED.iter().map(|(n, _)| n.to_string()).collect();
    covered.sort();
    assert_eq!(names, covered, "every event of this function has an expected status");

    let user = app.signed_up("events@example.com").await;
    for (name, expected) in EXPECTED {
        // A fresh conversation per event, with one exchange whose reply failed (so that
        // retry applies), so one event's effect (delete) cannot spoil another.
        let conversation = id(&create(&app, &user.access_token, json!({})).await);
        let exchange = post_message(&app, &user.access_token, &conversation, "What is a node?").await.json();
        let question = id(&exchange["user_message"]);
        sqlx::query(
            r#"UPDATE messages SET is_error = true,
                      error_details = '{"code": "model_timeout", "message": "too slow"}'
               WHERE reply_to = $1::uuid"#,
        )
        .bind(&question)
        .execute(app.pool())
        .await
        .unwrap();

        let json = event(
            name,
            &[
                ("REPLACE_WITH_ACCESS_TOKEN", &user.access_token),
                ("REPLACE_WITH_CONVERSATION_ID", &conversation),
                ("REPLACE_WITH_MESSAGE_ID", &question),
            ],
        );
        let streamed = name.starts_with("conversations-stream-");
        let response = if streamed { streaming.send_event(&json).await } else { app.send_event(&json).await };
        assert_eq!(response.status, StatusCode::from_u16(*expected).unwrap(), "{name}: {}", response.text());
        if streamed {
            assert_eq!(response.headers[header::CONTENT_TYPE], "text/event-stream", "{name}");
            assert!(response.text().contains("event: done"), "{name}: {}", response.text());
        }
    }
}
