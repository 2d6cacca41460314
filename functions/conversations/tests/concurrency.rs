//! The tutor where it really runs: many posts at once through the pooler (PgBouncer in
//! transaction mode when `scripts/test` runs it), with a model that takes its time. Identical
//! posts are stored and answered once, nothing session-scoped is left on a server connection,
//! and no transaction stays open while the model thinks.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::http::StatusCode;
use common::{app_with_model, completion, create, id, post_message, user_token, uuid};
use primer_shared::domain::conversations::{self, MessageContent, Owner, Posted};
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer};

/// A model stub that answers every question after `delay`.
async fn slow_model(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(completion("A topic is a named channel.").set_delay(delay))
        .mount(&server)
        .await;
    server
}

async fn advisory_locks(observer: &PgPool) -> i64 {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM pg_locks
         WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"#,
    )
        .fetch_one(observer)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn sixteen_concurrent_posters_with_repeated_contents_are_answered_once_per_message(pool: PgPool) {
    let server = slow_model(Duration::from_millis(300)).await;
    let app = app_with_model(pool.clone(), &server);
    // Two readers, a conversation each; 8 posters per reader, 4 distinct questions each sent twice.
    let mut posters = Vec::new();
    for reader in ["ada@example.com", "grace@example.com"] {
        let token = user_token(&app, reader).await;
        let conversation = id(&create(&app, &token, json!({})).await);
        for n in 0..8 {
            let question = format!("What does a {} do?", ["node", "topic", "service", "action"][n % 4]);
            posters.push((token.clone(), conversation.clone(), question));
        }
    }

    let sent: Vec<_> = posters
        .iter()
        .cloned()
        .map(|(token, conversation, question)| {
            let app = app.clone();
            tokio::spawn(async move {
                let response = post_message(&app, &token, &conversation, &question).await;
                (conversation, question, response)
            })
        })
        .collect();
    let mut groups: HashMap<(String, String), Vec<Value>> = HashMap::new();
    for handle in sent {
        let (conversation, question, response) = handle.await.unwrap();
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
        groups.entry((conversation, question)).or_default().push(response.json());
    }

    assert_eq!(groups.len(), 8);
    for ((conversation, question), exchanges) in &groups {
        // Every poster of a group got the same stored exchange.
        let user_ids: HashSet<_> = exchanges.iter().map(|e| id(&e["user_message"])).collect();
        let reply_ids: HashSet<_> = exchanges.iter().map(|e| id(&e["reply"])).collect();
        assert_eq!((user_ids.len(), reply_ids.len()), (1, 1), "{question}: {exchanges:?}");
        assert!(exchanges.iter().all(|e| e["reply"]["is_error"] == false), "{exchanges:?}");
        let stored: i64 = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM messages WHERE conversation_id = $1::uuid AND (content = $2 OR reply_to = $3::uuid)"#,
            uuid(conversation),
            question,
            uuid(user_ids.iter().next().unwrap()),
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(stored, 2, "{question}: one question and one reply stored");
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 8, "the model is asked once per message");
    assert_eq!(advisory_locks(&pool).await, 0, "no advisory lock outlives its transaction");
    let claimed: i64 = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM messages WHERE reply_lease_until IS NOT NULL"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(claimed, 0, "every claim ends with its reply");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn no_connection_is_idle_in_transaction_while_the_model_thinks(pool: PgPool) {
    let server = slow_model(Duration::from_millis(1500)).await;
    let app = app_with_model(pool.clone(), &server);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);

    let posting = {
        let (app, token, conversation) = (app.clone(), token.clone(), conversation.clone());
        tokio::spawn(async move { post_message(&app, &token, &conversation, "What is a topic?").await })
    };
    // A short transaction (storing the question, reserving or settling tokens) can be caught
    // between two of its statements on a busy machine; one held across the 1.5 s the model
    // thinks is seen in every sample. So a transaction (or an advisory lock) seen for 250 ms fails
    // the test.
    let mut samples = 0;
    let mut open_since: HashMap<(i32, String), usize> = HashMap::new();
    let mut locked_streak = 0;
    while !posting.is_finished() {
        let idle: Vec<(i32, String)> = sqlx::query!(
            r#"SELECT pid AS "pid!", xact_start::text AS "xact_start!" FROM pg_stat_activity
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'"#,
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|backend| (backend.pid, backend.xact_start))
        .collect();
        open_since.retain(|key, _| idle.contains(key));
        for key in idle {
            let seen = open_since.entry(key).or_insert(0);
            *seen += 1;
            assert!(*seen < 5, "a connection is idle in transaction while the model thinks");
        }
        locked_streak = if advisory_locks(&pool).await > 0 { locked_streak + 1 } else { 0 };
        assert!(locked_streak < 5, "an advisory lock is held while the model thinks");
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Five samples in a row fail the test: with fewer than six (a loaded machine samples
    // slower than every 50 ms), a transaction held across the wait could go unseen.
    assert!(samples >= 6, "the post was not in flight long enough to observe ({samples} samples)");
    let response = posting.await.unwrap();
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_duplicate_takes_over_a_claim_whose_holder_died(pool: PgPool) {
    let server = slow_model(Duration::ZERO).await;
    let app = app_with_model(pool.clone(), &server);
    let user = app.signed_up("ada@example.com").await;
    let token = user.access_token.clone();
    let conversation = id(&create(&app, &token, json!({})).await);

    // A post that stored its question and claimed it, then died (its Lambda timed out): the
    // claim lapses after its lease.
    let content = MessageContent::parse("What is a topic?".into()).unwrap();
    let arrived = chrono::Utc::now();
    let lease = Duration::from_millis(300);
    let owner = Owner::User(user.id.clone());
    let Posted::New(question) = conversations::add_or_find_user_message(
        &pool,
        &owner,
        &app.state.config.usage,
        conversation.parse().unwrap(),
        &content,
        arrived,
        lease,
    )
    .await
    .unwrap() else {
        panic!("the first post stores its question");
    };

    let response = post_message(&app, &token, &conversation, "What is a topic?").await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    let exchange = response.json();
    assert_eq!(id(&exchange["user_message"]), question.id.to_string(), "the question is stored once");
    assert_eq!(exchange["reply"]["content"], "A topic is a named channel.");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}
