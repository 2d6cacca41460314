//! Streamed replies (`Accept: text/event-stream`): the events and their order, what is stored,
//! failures mid-answer and retries, duplicates replayed, and posts at once through the pooler.
//! The model is a local stub that streams its chunks spaced out in time.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use axum::http::{StatusCode, header};
use common::{
    app_with_streaming_model, app_with_streaming_model_and, create, deltas, events, id, messages, names,
    offline_app, post_message, post_streamed, retry_streamed, stored_messages, user_token,
};
use primer_shared::test_util::model_stub::{StreamEnd, StreamScript, StreamingModel};
use primer_shared::test_util::test_config;
use serde_json::{Value, json};
use sqlx::PgPool;

/// The events of an answer: the question, at least `min_deltas` fragments, the citations, the
/// stored answer.
fn assert_answer_events(names: &[&str], min_deltas: usize) {
    let deltas = names.iter().filter(|n| **n == "delta").count();
    assert!(deltas >= min_deltas, "{names:?}");
    let mut expected = vec!["user_message"];
    expected.extend(std::iter::repeat_n("delta", deltas));
    expected.extend(["citations", "done"]);
    assert_eq!(names, expected);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR", fixtures("book"))]
async fn the_offline_tutor_streams_its_answer_sentence_by_sentence(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    let response = post_streamed(&app, &token, &conversation, "What is a ROS 2 topic?").await;
    let events = events(&response).await;
    assert_answer_events(&names(&events), 3);
    let ids: Vec<_> = events.iter().map(|e| e.id.clone().unwrap()).collect();
    assert_eq!(ids, (1..=events.len()).map(|n| n.to_string()).collect::<Vec<_>>());

    let question = &events[0].data;
    assert_eq!(
        (question["sender"].as_str(), question["content"].as_str()),
        (Some("user"), Some("What is a ROS 2 topic?"))
    );
    let citations = &events[events.len() - 2].data["citations"];
    assert_eq!(citations[0]["section"], "Topics and messages");
    let done = &events[events.len() - 1].data;
    assert_eq!(done["reply_to"], question["id"]);
    assert_eq!(done["ai_model"], "offline-tutor");
    assert_eq!(done["citations"], *citations);
    assert_eq!(deltas(&events).concat(), done["content"].as_str().unwrap());
    assert_eq!(
        messages(&app, &token, &conversation).await,
        [question.clone(), done.clone()],
        "stored as streamed"
    );

    // Without the header, the JSON contract as it was.
    let plain = post_message(&app, &token, &conversation, "What is a node?").await;
    assert_eq!(plain.status, StatusCode::CREATED);
    assert_eq!(plain.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(plain.json()["reply"]["sender"], "ai");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR", fixtures("book"))]
async fn a_model_answer_streams_in_its_chunks_and_is_stored_as_they_join(pool: PgPool) {
    let script = StreamScript::chunks(20, Duration::from_millis(5));
    let stub = StreamingModel::start(vec![script.clone()]).await;
    let app = app_with_streaming_model(pool, &stub);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    let events = events(&post_streamed(&app, &token, &conversation, "What is a ROS 2 topic?").await).await;
    assert_answer_events(&names(&events), 20);
    assert_eq!(deltas(&events), script.chunks, "every chunk, in order, as it came");
    let done = events.last().unwrap().data.clone();
    assert_eq!(done["content"], script.text());
    assert_eq!(done["is_error"], false);
    assert_eq!(done["ai_model"], common::STUB_MODEL);
    assert_eq!(events[events.len() - 2].data["citations"][0]["section"], "Topics and messages");
    assert_eq!(messages(&app, &token, &conversation).await[1], done);

    let calls = stub.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body["stream"], true);
    assert_eq!(
        calls[0].body["messages"].as_array().unwrap().last().unwrap()["content"],
        "What is a ROS 2 topic?"
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_model_failing_mid_answer_stores_one_error_with_the_partial_text_and_retry_streams_afresh(
    pool: PgPool,
) {
    let broken = StreamScript::chunks(5, Duration::from_millis(5)).ending(StreamEnd::Broken);
    let fresh = StreamScript {
        chunks: vec!["A fresh ".into(), "answer.".into()],
        ..broken.clone().ending(StreamEnd::Done)
    };
    let stub = StreamingModel::start(vec![broken.clone(), fresh.clone()]).await;
    let app = app_with_streaming_model(pool, &stub);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);

    let failed = events(&post_streamed(&app, &token, &conversation, "What is a node?").await).await;
    let mut expected = vec!["user_message"];
    expected.extend(["delta"; 5]);
    expected.push("error");
    assert_eq!(names(&failed), expected);
    let error = &failed.last().unwrap().data;
    assert_eq!(error["is_error"], true);
    assert_eq!(error["error_details"]["code"], "model_interrupted");
    assert_eq!(error["error_details"]["partial_content"], broken.text(), "what was received is kept");
    assert_eq!(stored_messages(app.pool(), &conversation).await, 2, "the question and one error");
    assert_eq!(messages(&app, &token, &conversation).await[1], *error);

    let question = id(&failed[0].data);
    let retried = events(&retry_streamed(&app, &token, &conversation, &question).await).await;
    assert_answer_events(&names(&retried), 2);
    assert_eq!(id(&retried[0].data), question, "the retried question comes first");
    assert_eq!(deltas(&retried), fresh.chunks);
    let done = &retried.last().unwrap().data;
    assert_eq!((done["content"].as_str(), &done["reply_to"]), (Some("A fresh answer."), &json!(question)));
    let history: Vec<Value> =
        messages(&app, &token, &conversation).await.iter().map(|m| m["is_error"].clone()).collect();
    assert_eq!(history, [json!(false), json!(true), json!(false)]);
    let model_history = stub.calls()[1].body["messages"].to_string();
    assert!(!model_history.contains("Chunk 0"), "the broken answer is not fed back to the model");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_duplicate_within_30_seconds_replays_the_stored_exchange(pool: PgPool) {
    let script = StreamScript::chunks(4, Duration::from_millis(5));
    let stub = StreamingModel::start(vec![script.clone()]).await;
    let app = app_with_streaming_model(pool, &stub);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    let first = events(&post_streamed(&app, &token, &conversation, "What is a node?").await).await;
    let again = events(&post_streamed(&app, &token, &conversation, "What is a node?").await).await;

    assert_eq!(names(&again), ["user_message", "delta", "citations", "done"]);
    assert_eq!(again[0].data, first[0].data, "the same stored question");
    assert_eq!(deltas(&again), [script.text()], "the stored answer in one fragment");
    assert_eq!(again[3].data, first.last().unwrap().data, "the same stored answer");
    let plain = post_message(&app, &token, &conversation, "What is a node?").await.json();
    assert_eq!(plain["reply"], again[3].data, "and the JSON route agrees");
    assert_eq!(stub.calls().len(), 1, "the model was asked once");
    assert_eq!(stored_messages(app.pool(), &conversation).await, 2);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn concurrent_identical_streamed_posts_ask_the_model_once(pool: PgPool) {
    // Long enough that every post arrives while the first is still streaming.
    let script = StreamScript::chunks(10, Duration::from_millis(30));
    let stub = StreamingModel::start(vec![script.clone()]).await;
    let app = app_with_streaming_model(pool.clone(), &stub);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);

    let posts: Vec<_> = (0..8)
        .map(|_| {
            let (app, token, conversation) = (app.clone(), token.clone(), conversation.clone());
            tokio::spawn(async move { post_streamed(&app, &token, &conversation, "What is a topic?").await })
        })
        .collect();
    let mut replies = HashSet::new();
    let mut questions = HashSet::new();
    for post in posts {
        let events = events(&post.await.unwrap()).await;
        let done = events.last().unwrap();
        assert_eq!(done.name, "done", "{:?}", names(&events));
        assert_eq!(deltas(&events).concat(), script.text(), "every reader gets the whole answer");
        questions.insert(id(&events[0].data));
        replies.insert(id(&done.data));
    }
    assert_eq!((questions.len(), replies.len()), (1, 1), "one question, one answer");
    assert_eq!(stub.calls().len(), 1, "the model was asked once");
    assert_eq!(stored_messages(&pool, &conversation).await, 2);
    let claimed: i64 = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM messages WHERE reply_lease_until IS NOT NULL"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(claimed, 0, "the claim ended with the reply");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn limits_owners_and_retry_rules_answer_in_json_before_any_event(pool: PgPool) {
    let stub = StreamingModel::start(vec![StreamScript::chunks(2, Duration::from_millis(1))]).await;
    let app = app_with_streaming_model(pool, &stub);
    let token = user_token(&app, "ada@example.com").await;
    let other = user_token(&app, "grace@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);

    let too_big = post_streamed(&app, &token, &conversation, &"a".repeat(32 * 1024 + 1)).await;
    let blank = post_streamed(&app, &token, &conversation, "  ").await;
    let not_theirs = post_streamed(&app, &other, &conversation, "What is a node?").await;
    for (response, status, code) in [
        (&too_big, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        (&blank, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (&not_theirs, StatusCode::NOT_FOUND, "not_found"),
    ] {
        assert_eq!((response.status, response.error_code().as_str()), (status, code));
        assert_eq!(response.headers[header::CONTENT_TYPE], "application/json");
    }

    let answered = events(&post_streamed(&app, &token, &conversation, "What is a node?").await).await;
    let question = id(&answered[0].data);
    let again = retry_streamed(&app, &token, &conversation, &question).await;
    assert_eq!((again.status, again.error_code().as_str()), (StatusCode::CONFLICT, "already_answered"));
    assert_eq!(retry_streamed(&app, &other, &conversation, &question).await.status, StatusCode::NOT_FOUND);
    assert_eq!(stub.calls().len(), 1);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn nothing_is_held_in_the_database_while_a_reply_streams(pool: PgPool) {
    let stub = StreamingModel::start(vec![StreamScript::chunks(12, Duration::from_millis(50))]).await;
    let app = app_with_streaming_model(pool.clone(), &stub);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    let posting = {
        let (app, token, conversation) = (app.clone(), token.clone(), conversation.clone());
        tokio::spawn(async move { post_streamed(&app, &token, &conversation, "What is a topic?").await })
    };
    let waited = std::time::Instant::now();
    while stub.calls().first().and_then(|call| call.first_chunk_at).is_none() {
        assert!(waited.elapsed() < Duration::from_secs(5), "the model never streamed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..10 {
        let held = sqlx::query!(
            r#"SELECT (SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND state LIKE 'idle in transaction%') AS "idle!",
                    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
                     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) AS "locks!""#,
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            (held.idle, held.locks),
            (0, 0),
            "a transaction or a lock is held while the model streams"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(!posting.is_finished(), "the stream ended before the sampling did");
    let events = events(&posting.await.unwrap()).await;
    assert_eq!(events.last().unwrap().name, "done");
}

/// Streams are held to the quotas as the JSON route is: the usage chunk's tokens are settled on
/// the reader's day; with too few tokens left for a call the offline tutor streams in the
/// model's stead and says so; past the message quota the post is a JSON 429 before any event,
/// and nothing is stored. (Each phase is the same database under other quotas.)
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR", fixtures("book"))]
async fn streamed_posts_are_held_to_the_quotas(pool: PgPool) {
    let script = StreamScript::chunks(3, Duration::from_millis(5));
    let stub = StreamingModel::start(vec![script.clone()]).await;
    let with_quota = |messages: i64, tokens: i64| {
        let mut config = test_config();
        config.usage.user.messages = messages;
        config.usage.user.tokens = tokens;
        app_with_streaming_model_and(pool.clone(), &stub, config)
    };
    let roomy = with_quota(100, 1_000_000);
    let token = user_token(&roomy, "ada@example.com").await;
    let conversation = id(&create(&roomy, &token, json!({})).await);
    let first = events(&post_streamed(&roomy, &token, &conversation, "What is a node?").await).await;
    assert_eq!(first.last().unwrap().data["ai_model"], common::STUB_MODEL);
    let reported = 42 + 3; // the stub's usage chunk: 42 prompt tokens, one per chunk
    let usage = roomy.usage(&token).await.json();
    assert_eq!(
        (usage["tokens"]["used"].as_i64(), usage["messages"]["used"].as_i64()),
        (Some(reported), Some(1))
    );

    let short = with_quota(100, reported + 10);
    let stand_in = events(&post_streamed(&short, &token, &conversation, "What is a topic?").await).await;
    assert_answer_events(&names(&stand_in), 1);
    let done = &stand_in.last().unwrap().data;
    assert_eq!(done["ai_model"], "offline-tutor");
    assert!(done["content"].as_str().unwrap().starts_with("*You have used today's allowance"), "{done}");
    assert_eq!(stub.calls().len(), 1, "the model was not asked again");

    let spent = with_quota(2, 1_000_000);
    let refused = post_streamed(&spent, &token, &conversation, "What is a service?").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{}", refused.text());
    assert_eq!(refused.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(refused.error_code(), "quota_exceeded");
    assert!(refused.headers.contains_key(header::RETRY_AFTER));
    assert_eq!(stored_messages(spent.pool(), &conversation).await, 4, "two exchanges, nothing more");
}

/// An endpoint that writes on past `max_tokens` (each chunk with text is at least a token) is
/// cut there: the stored answer is what came within it, and the call books what it reserved,
/// not the usage the endpoint would report after.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR", fixtures("book"))]
async fn a_stream_past_max_tokens_is_cut_there_and_books_its_reservation(pool: PgPool) {
    let script = StreamScript::chunks(30, Duration::from_millis(2));
    let stub = StreamingModel::start(vec![script.clone()]).await;
    let mut config = test_config();
    config.usage.reply_max_tokens = 5;
    let app = app_with_streaming_model_and(pool, &stub, config);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    let events = events(&post_streamed(&app, &token, &conversation, "What is a node?").await).await;
    assert_answer_events(&names(&events), 5);
    assert_eq!(deltas(&events), script.chunks[..5], "the answer within max_tokens");
    let done = &events.last().unwrap().data;
    assert_eq!(done["content"], script.chunks[..5].concat());

    let sent = &stub.calls()[0].body;
    assert_eq!(sent["max_tokens"], 5);
    let reserved = primer_shared::infra::model::estimate_prompt_tokens(
        &serde_json::from_value::<Vec<primer_shared::infra::model::ChatMessage>>(sent["messages"].clone())
            .unwrap(),
    ) + 5;
    let usage = app.usage(&token).await.json();
    assert_eq!(usage["tokens"]["used"].as_u64(), Some(reserved), "{usage}");
}
