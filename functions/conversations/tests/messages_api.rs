//! Messages: posting, paging, duplicates, retries, and the model client against a local stub
//! server (wiremock).

use crate::common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{
    STUB_MODEL, app_with_model, completion, create, id, messages, offline_app, post_message, retry,
    stored_messages, user_token,
};
use primer_shared::domain::conversations::{self, MessageContent, NewReply};
use primer_shared::domain::tutor::prompt::HISTORY_BUDGET_CHARS;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The JSON bodies the stub server received.
async fn model_requests(server: &MockServer) -> Vec<Value> {
    server.received_requests().await.unwrap().iter().map(|r| r.body_json::<Value>().unwrap()).collect()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR", fixtures("book"))]
async fn a_message_is_stored_and_answered(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    let response = post_message(&app, &token, &conversation, "What is a ROS 2 topic?").await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    let body = response.json();
    assert_eq!(body["user_message"]["sender"], "user");
    assert_eq!(body["user_message"]["content"], "What is a ROS 2 topic?");
    assert_eq!(body["reply"]["sender"], "ai");
    assert_eq!(body["reply"]["reply_to"], body["user_message"]["id"]);
    assert_eq!(body["reply"]["is_error"], false);
    assert_eq!(body["reply"]["error_details"], Value::Null);
    assert_eq!(body["reply"]["ai_model"], "offline-tutor");

    // last_message_at follows the newest message: the reply.
    let shown = app.get(&format!("/api/conversations/{conversation}"), Some(&token)).await.json();
    assert_eq!(shown["conversation"]["last_message_at"], body["reply"]["created_at"]);
    assert_eq!(
        messages(&app, &token, &conversation).await,
        [body["user_message"].clone(), body["reply"].clone()]
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn content_limits_are_enforced(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    let too_big = post_message(&app, &token, &conversation, &"a".repeat(32 * 1024 + 1)).await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_big.error_code(), "payload_too_large");
    let exactly = post_message(&app, &token, &conversation, &"a ".repeat(16 * 1024)).await;
    assert_eq!(exactly.status, StatusCode::CREATED, "32 KiB is allowed");
    let blank = post_message(&app, &token, &conversation, " \n\t").await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    // PostgreSQL cannot store NUL: a 422, not a 500.
    let nul = post_message(&app, &token, &conversation, "hi\u{0}there").await;
    assert_eq!(
        (nul.status, nul.error_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );
    let prompt = app
        .call(
            Method::POST,
            "/api/conversations",
            Some(&token),
            Some(json!({"system_prompt": "be\u{0}brief"})),
        )
        .await;
    assert_eq!(prompt.status, StatusCode::UNPROCESSABLE_ENTITY);
    let path = format!("/api/conversations/{conversation}/messages");
    let missing = app.call(Method::POST, &path, Some(&token), Some(json!({}))).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(stored_messages(app.pool(), &conversation).await, 2);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn the_same_message_within_30_seconds_is_stored_and_answered_once(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    let first = post_message(&app, &token, &conversation, "What is a node?").await;
    let again = post_message(&app, &token, &conversation, "What is a node?").await;
    assert_eq!((first.status, again.status), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(first.json(), again.json(), "the second post gets the first exchange");
    assert_eq!(stored_messages(app.pool(), &conversation).await, 2);

    // Another text is another message; the same text later is a new question.
    post_message(&app, &token, &conversation, "What is a topic?").await;
    assert_eq!(stored_messages(app.pool(), &conversation).await, 4);
    sqlx::query!("UPDATE messages SET created_at = created_at - interval '31 seconds'")
        .execute(app.pool())
        .await
        .unwrap();
    let later = post_message(&app, &token, &conversation, "What is a node?").await;
    assert_ne!(later.json()["user_message"]["id"], first.json()["user_message"]["id"]);
    assert_eq!(stored_messages(app.pool(), &conversation).await, 6);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn concurrent_identical_posts_ask_the_model_once(pool: PgPool) {
    let server = MockServer::start().await;
    // Slow enough that the two posts overlap.
    Mock::given(method("POST"))
        .respond_with(completion("A node is a process.").set_delay(Duration::from_millis(300)))
        .expect(1)
        .mount(&server)
        .await;
    let app = app_with_model(pool, &server);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    let (a, b) = tokio::join!(
        post_message(&app, &token, &conversation, "What is a node?"),
        post_message(&app, &token, &conversation, "What is a node?"),
    );
    assert_eq!((a.status, b.status), (StatusCode::CREATED, StatusCode::CREATED), "{} {}", a.text(), b.text());
    assert_eq!(a.json(), b.json());
    assert_eq!(stored_messages(app.pool(), &conversation).await, 2);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn messages_are_paged_from_the_newest_oldest_first(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    for question in ["one?", "two?", "three?"] {
        post_message(&app, &token, &conversation, question).await;
    }
    let all = messages(&app, &token, &conversation).await;
    let contents: Vec<&str> = all.iter().step_by(2).map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["one?", "two?", "three?"]);

    let path = format!("/api/conversations/{conversation}/messages");
    let newest = app.get(&format!("{path}?limit=4"), Some(&token)).await.json();
    assert_eq!(newest["messages"].as_array().unwrap().as_slice(), &all[2..]);
    let cursor = newest["next_cursor"].as_str().unwrap();
    let older = app.get(&format!("{path}?limit=4&before={cursor}"), Some(&token)).await.json();
    assert_eq!(older["messages"].as_array().unwrap().as_slice(), &all[..2]);
    assert_eq!(older["next_cursor"], Value::Null);
    assert_eq!(
        app.get(&format!("{path}?before=garbage"), Some(&token)).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR", fixtures("book"))]
async fn the_model_answers_and_its_reply_cites_the_retrieved_sections(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test"))
        .respond_with(completion("A topic is a named channel."))
        .expect(1)
        .mount(&server)
        .await;
    let app = app_with_model(pool, &server);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({"ai_model": "tutor-large"})).await);
    let response = post_message(&app, &token, &conversation, "What is a ROS 2 topic?").await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    let reply = &response.json()["reply"];
    assert_eq!(reply["content"], "A topic is a named channel.");
    assert_eq!(reply["ai_model"], "tutor-large");
    assert_eq!(reply["is_error"], false);
    assert_eq!(
        reply["citations"][0],
        json!({"chapter_id": 1, "section": "Topics and messages", "title": "ROS 2 Nodes and Topics", "anchor": "topics-and-messages"})
    );
    assert_eq!(model_requests(&server).await[0]["model"], "tutor-large");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_server_error_is_retried_and_then_answered(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST")).respond_with(completion("Second time lucky.")).expect(1).mount(&server).await;
    let app = app_with_model(pool, &server);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    let response = post_message(&app, &token, &conversation, "What is a node?").await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert_eq!(response.json()["reply"]["content"], "Second time lucky.");
    assert_eq!(response.json()["reply"]["is_error"], false);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_model_timeout_stores_an_error_reply_and_still_answers_201(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(completion("too late").set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let app = app_with_model(pool, &server);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    let response = post_message(&app, &token, &conversation, "What is a node?").await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    let body = response.json();
    assert_eq!(body["user_message"]["content"], "What is a node?", "the question was kept");
    assert_eq!(body["reply"]["is_error"], true);
    assert_eq!(body["reply"]["error_details"]["code"], "model_timeout");
    assert!(body["reply"]["error_details"]["message"].as_str().unwrap().contains("in time"));
    assert_eq!(messages(&app, &token, &conversation).await.len(), 2);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_refused_key_is_an_error_reply_with_a_clear_code_and_can_be_retried(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"message": "bad key", "type": "invalid_request_error"}})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST")).respond_with(completion("Now I can answer.")).expect(1).mount(&server).await;
    let app = app_with_model(pool, &server);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);

    let failed = post_message(&app, &token, &conversation, "What is a node?").await;
    assert_eq!(failed.status, StatusCode::CREATED);
    let failed = failed.json();
    assert_eq!(failed["reply"]["is_error"], true);
    assert_eq!(failed["reply"]["error_details"]["code"], "model_unauthorized");
    assert!(!failed["reply"]["content"].as_str().unwrap().contains("bad key"), "upstream text stays out");

    let question = id(&failed["user_message"]);
    let retried = retry(&app, &token, &conversation, &question).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.text());
    let reply = retried.json()["reply"].clone();
    assert_eq!(reply["content"], "Now I can answer.");
    assert_eq!(reply["reply_to"], question.as_str());
    assert_eq!(reply["is_error"], false);

    // The failure stays in the history; an answered message cannot be retried again.
    let all = messages(&app, &token, &conversation).await;
    assert_eq!(
        all.iter().map(|m| m["is_error"].clone()).collect::<Vec<_>>(),
        [json!(false), json!(true), json!(false)]
    );
    let again = retry(&app, &token, &conversation, &question).await;
    assert_eq!((again.status, again.error_code().as_str()), (StatusCode::CONFLICT, "already_answered"));
    assert_eq!(
        retry(&app, &token, &conversation, &id(&reply)).await.status,
        StatusCode::NOT_FOUND,
        "not a user message"
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR", fixtures("book"))]
async fn the_model_gets_the_system_prompt_the_bounded_history_and_the_sections(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(completion("Arr, a topic be a channel.")).mount(&server).await;
    let app = app_with_model(pool, &server);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = create(&app, &token, json!({"system_prompt": "Answer like a pirate."})).await;
    let conversation_id = id(&conversation);

    // A long conversation so far, straight into the store: 8 exchanges of 1,000 characters
    // each side, more than the history budget.
    let mut conn = app.pool().acquire().await.unwrap();
    for n in 0..8 {
        let question = MessageContent::parse(format!("question {n} {}", "q".repeat(1000))).unwrap();
        let stored = conversations::add_user_message(&mut conn, conversation_id.parse().unwrap(), &question)
            .await
            .unwrap();
        let answer = NewReply {
            content: format!("answer {n} {}", "a".repeat(1000)),
            ai_model: STUB_MODEL.into(),
            citations: Vec::new(),
            error: None,
            usage: None,
        };
        conversations::add_reply(&mut conn, &stored, answer).await.unwrap();
    }
    drop(conn);

    let response = post_message(&app, &token, &conversation_id, "What is a ROS 2 topic?").await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    let sent = model_requests(&server).await.pop().unwrap();
    let sent = sent["messages"].as_array().unwrap();

    let system = &sent[0];
    assert_eq!(system["role"], "system", "the system prompt comes first");
    let system_text = system["content"].as_str().unwrap();
    assert!(system_text.contains("Answer like a pirate."));
    assert!(system_text.contains("ROS 2 Nodes and Topics, \"Topics and messages\""));
    assert!(system_text.contains("a topic is a named channel over which nodes exchange messages"));

    let last = sent.last().unwrap();
    assert_eq!(
        (last["role"].as_str(), last["content"].as_str()),
        (Some("user"), Some("What is a ROS 2 topic?"))
    );

    let history = &sent[1..sent.len() - 1];
    let history_chars: usize = history.iter().map(|m| m["content"].as_str().unwrap().chars().count()).sum();
    assert!(history_chars <= HISTORY_BUDGET_CHARS, "{history_chars}");
    assert!(history.len() < 16, "the oldest messages were left out");
    let newest = &history[history.len() - 1];
    assert_eq!(newest["role"], "assistant");
    assert!(newest["content"].as_str().unwrap().starts_with("answer 7 "), "the newest are kept");
    assert!(history[0]["content"].as_str().unwrap().starts_with("question"), "whole exchanges, oldest first");
}
