//! Cost control: daily quotas of users and guests, the deployment's budget, `max_tokens`, the
//! usage stored per reply and `GET /api/usage`, under many posts at once through the pooler.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{STUB_MODEL, create, guest_token, id, model_at, post_message, router, user_token, uuid};
use primer_shared::domain::usage::{self, UsageLimits};
use primer_shared::infra::model::{ModelClient, TokenUsage};
use primer_shared::test_util::model_stub::completion;
use primer_shared::test_util::{CapturedLog, TestApp, TestResponse, test_config};
use primer_shared::{AppState, Config};
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Room for one short reply: with the prompt's estimate, a call reserves about 1,170 tokens.
const MAX_TOKENS: u32 = 1000;

fn config(change: impl FnOnce(&mut UsageLimits)) -> Config {
    let mut config = test_config();
    config.usage.reply_max_tokens = MAX_TOKENS;
    change(&mut config.usage);
    config
}

fn offline_app(pool: PgPool, change: impl FnOnce(&mut UsageLimits)) -> TestApp {
    TestApp::with_config(pool, config(change), router)
}

fn app_with_model(pool: PgPool, server: &MockServer, change: impl FnOnce(&mut UsageLimits)) -> TestApp {
    let client =
        ModelClient::new(model_at(&server.uri(), Duration::from_secs(2), Duration::from_secs(3))).unwrap();
    let state = AppState::new(config(change), pool).with_model(Some(Arc::new(client)));
    TestApp::with_state(state, router)
}

/// A model that answers after `delay`, reporting 200 prompt and 1,000 completion tokens.
async fn model(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion(
                    "A node is a process.",
                    Some(TokenUsage { prompt_tokens: 200, completion_tokens: 1000 }),
                ))
                .set_delay(delay),
        )
        .mount(&server)
        .await;
    server
}

async fn all(handles: Vec<tokio::task::JoinHandle<TestResponse>>) -> Vec<TestResponse> {
    let mut responses = Vec::new();
    for handle in handles {
        responses.push(handle.await.unwrap());
    }
    responses
}

fn count(responses: &[TestResponse], status: StatusCode) -> usize {
    responses.iter().filter(|r| r.status == status).count()
}

async fn stored_user_messages(pool: &PgPool) -> i64 {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM messages WHERE sender = 'user'"#)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_guest_posting_until_refused_is_refused_at_the_guest_quota(pool: PgPool) {
    let app = offline_app(pool, |u| u.guest.messages = 4);
    let guest = guest_token(&app).await;
    let conversation = id(&create(&app, &guest, json!({})).await);
    let mut posted = 0;
    let refused = loop {
        let response = post_message(&app, &guest, &conversation, &format!("Question {posted}?")).await;
        if response.status != StatusCode::CREATED {
            break response;
        }
        posted += 1;
        assert!(posted <= 4, "posted past the quota");
    };
    assert_eq!(posted, 4);
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded")
    );
    let details = &refused.json()["error"]["details"];
    assert_eq!(
        (details["quota"].as_str(), details["limit"].as_i64(), details["used"].as_i64()),
        (Some("messages"), Some(4), Some(4))
    );
    let retry: i64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert_eq!(stored_user_messages(app.pool()).await, 4, "the refused message is not stored");

    let usage = app.usage(&guest).await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.text());
    let usage = usage.json();
    assert_eq!((usage["caller"].as_str(), usage["model_configured"].as_bool()), (Some("guest"), Some(false)));
    assert_eq!(usage["messages"], json!({"used": 4, "limit": 4, "remaining": 0}));
    // A user's quota is their own, and far larger.
    let user = user_token(&app, "ada@example.com").await;
    let theirs = app.usage(&user).await.json();
    assert_eq!(theirs["messages"]["used"], 0);
    assert_eq!(theirs["messages"]["limit"], UsageLimits::default().user.messages);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn thirty_posts_at_once_get_exactly_the_message_quota(pool: PgPool) {
    let app = offline_app(pool, |u| u.guest.messages = 5);
    let guest = guest_token(&app).await;
    let conversations: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(id(&create(&app, &guest, json!({})).await));
        }
        ids
    };
    let handles = (0..30)
        .map(|n| {
            let (app, guest, conversation) = (app.clone(), guest.clone(), conversations[n % 3].clone());
            tokio::spawn(
                async move { post_message(&app, &guest, &conversation, &format!("Question {n}?")).await },
            )
        })
        .collect();
    let responses = all(handles).await;
    assert_eq!(
        (count(&responses, StatusCode::CREATED), count(&responses, StatusCode::TOO_MANY_REQUESTS)),
        (5, 25)
    );
    assert_eq!(stored_user_messages(app.pool()).await, 5);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn concurrent_model_calls_never_pass_the_token_quota(pool: PgPool) {
    let server = model(Duration::from_millis(400)).await;
    // A reservation is the prompt at a token per character (about 450 here) plus the longest
    // reply (1,024), and a call settles at the 1,200 the stub reports: two reservations fit
    // (2 × ~1,470), a third never does (1,200 + 1,200 + ~1,470), whatever the order.
    let app = app_with_model(pool, &server, |u| u.user.tokens = 3_200);
    let token = user_token(&app, "ada@example.com").await;
    // One conversation each, so no prompt carries another post's question (a history whose
    // length depended on the order the posts were stored in would move the estimates).
    let mut conversations = Vec::new();
    for _ in 0..10 {
        conversations.push(id(&create(&app, &token, json!({})).await));
    }
    let handles = conversations
        .into_iter()
        .enumerate()
        .map(|(n, conversation)| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move {
                post_message(&app, &token, &conversation, &format!("What is node {n}?")).await
            })
        })
        .collect();
    let responses = all(handles).await;
    assert_eq!(count(&responses, StatusCode::CREATED), 10, "every admitted question gets an answer");
    let replies: Vec<Value> = responses.iter().map(|r| r.json()["reply"].clone()).collect();
    let by_model = replies.iter().filter(|r| r["ai_model"] == STUB_MODEL).count();
    assert_eq!(by_model, 2, "{replies:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    for offline in replies.iter().filter(|r| r["ai_model"] == "offline-tutor") {
        assert_eq!(offline["is_error"], false);
        let text = offline["content"].as_str().unwrap();
        assert!(text.starts_with("*You have used today's allowance of the language model"), "{text}");
    }
    let usage = app.usage(&token).await.json();
    assert_eq!(usage["tokens"]["used"], 2400, "the reported tokens, settled: {usage}");
    assert_eq!(usage["messages"]["used"], 10);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn once_the_deployment_budget_is_spent_the_offline_tutor_answers_and_says_so(pool: PgPool) {
    let server = model(Duration::ZERO).await;
    let app = app_with_model(pool, &server, |u| u.daily_token_budget = 2000);
    let ada = user_token(&app, "ada@example.com").await;
    let grace = user_token(&app, "grace@example.com").await;

    let first = post_message(&app, &ada, &id(&create(&app, &ada, json!({})).await), "What is a node?").await;
    assert_eq!(first.json()["reply"]["ai_model"], STUB_MODEL);
    // Another reader, the same deployment: its budget is what is spent. The refusal is logged
    // as the line the model-budget alarm counts.
    let (captured, logging) = CapturedLog::on_this_thread();
    let second =
        post_message(&app, &grace, &id(&create(&app, &grace, json!({})).await), "What is a topic?").await;
    drop(logging);
    let refusals: Vec<Value> = captured
        .text()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["event"] == usage::BUDGET_SPENT_EVENT)
        .collect();
    assert_eq!(refusals.len(), 1, "{}", captured.text());
    assert_eq!((refusals[0]["level"].as_str(), refusals[0]["pool"].as_str()), (Some("WARN"), Some("all")));
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text());
    let reply = &second.json()["reply"];
    assert_eq!(
        (reply["ai_model"].as_str(), reply["is_error"].as_bool()),
        (Some("offline-tutor"), Some(false))
    );
    let text = reply["content"].as_str().unwrap();
    assert!(text.starts_with("*The language model has reached today's budget"), "{text}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    let usage = app.usage(&grace).await.json();
    assert_eq!(
        (usage["model_configured"].as_bool(), usage["model_budget_left"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(usage["tokens"]["used"], 0, "grace spent nothing");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn guests_together_stay_within_their_share_of_the_budget(pool: PgPool) {
    let server = model(Duration::ZERO).await;
    let app = app_with_model(pool, &server, |u| u.guest_daily_token_budget = 2000);
    let mut models = Vec::new();
    for n in 0..3 {
        let guest = guest_token(&app).await;
        let reply =
            post_message(&app, &guest, &id(&create(&app, &guest, json!({})).await), &format!("Node {n}?"))
                .await;
        models.push(reply.json()["reply"]["ai_model"].as_str().unwrap().to_owned());
    }
    assert_eq!(models, [STUB_MODEL, "offline-tutor", "offline-tutor"]);
    // Users are not held to the guests' share.
    let user = user_token(&app, "ada@example.com").await;
    let reply = post_message(&app, &user, &id(&create(&app, &user, json!({})).await), "Node?").await;
    assert_eq!(reply.json()["reply"]["ai_model"], STUB_MODEL);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn every_call_sends_max_tokens_and_each_reply_keeps_its_usage(pool: PgPool) {
    let server = model(Duration::ZERO).await;
    let app = app_with_model(pool, &server, |_| {});
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    let reply = post_message(&app, &token, &conversation, "What is a node?").await.json()["reply"].clone();
    let sent: Value = server.received_requests().await.unwrap()[0].body_json().unwrap();
    assert_eq!(sent["max_tokens"], MAX_TOKENS);
    let stored = sqlx::query!(
        "SELECT prompt_tokens, completion_tokens FROM messages WHERE id = $1::uuid",
        uuid(&id(&reply)),
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!((stored.prompt_tokens, stored.completion_tokens), (Some(200), Some(1000)));
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn guests_cannot_set_a_system_prompt_and_users_are_bounded(pool: PgPool) {
    let app = offline_app(pool, |_| {});
    let guest = guest_token(&app).await;
    let refused = app
        .call(
            Method::POST,
            "/api/conversations",
            Some(&guest),
            Some(json!({"system_prompt": "Ignore the book."})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.json()["error"]["details"][0]["field"], "system_prompt");
    let conversation = id(&create(&app, &guest, json!({"system_prompt": "  "})).await);
    let path = format!("/api/conversations/{conversation}");
    let patched =
        app.call(Method::PATCH, &path, Some(&guest), Some(json!({"system_prompt": "Be a pirate."}))).await;
    assert_eq!(patched.status, StatusCode::UNPROCESSABLE_ENTITY);

    let user = user_token(&app, "ada@example.com").await;
    create(&app, &user, json!({"system_prompt": "p".repeat(2000)})).await;
    let too_long = app
        .call(
            Method::POST,
            "/api/conversations",
            Some(&user),
            Some(json!({"system_prompt": "p".repeat(2001)})),
        )
        .await;
    assert_eq!(too_long.status, StatusCode::UNPROCESSABLE_ENTITY);
    // And the database holds the rule too.
    let forced =
        sqlx::query!("UPDATE conversations SET system_prompt = 'x' WHERE id = $1::uuid", uuid(&conversation))
            .execute(app.pool())
            .await;
    assert!(forced.is_err(), "a guest conversation cannot store a system prompt");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn usage_needs_a_caller(pool: PgPool) {
    let app = offline_app(pool, |_| {});
    let response = app.get("/api/usage", None).await;
    assert_eq!((response.status, response.error_code().as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"));
}

#[test]
fn the_budget_alarm_counts_the_line_the_refusal_logs() {
    let template = include_str!("../../../template.yaml");
    let pattern = format!(r#"FilterPattern: '{{ $.event = "{}" }}'"#, usage::BUDGET_SPENT_EVENT);
    assert!(template.contains(&pattern), "template.yaml's metric filter: {pattern}");
}

/// A model that counts a token per character of the prompt (as some tokenizers count CJK text)
/// and reports a longer answer than `max_tokens` allows: whatever it reports, no call books more
/// than it reserved, so a reader near the quota ends at most at it, and the budget too.
struct CountsEveryCharacter;

impl wiremock::Respond for CountsEveryCharacter {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let body: Value = request.body_json().unwrap();
        let prompt: usize = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().chars().count())
            .sum();
        let usage = TokenUsage { prompt_tokens: prompt as u32 + 7, completion_tokens: 5_000 };
        ResponseTemplate::new(200).set_body_json(completion("节点是一个进程。", Some(usage)))
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_model_counting_more_than_the_estimate_never_takes_a_reader_past_the_quota(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(CountsEveryCharacter).mount(&server).await;
    let app = app_with_model(pool, &server, |u| u.daily_token_budget = 800_000);
    let user = app.signed_up("ada@example.com").await;
    // 370,000 of 400,000 used already.
    sqlx::query!(
        "INSERT INTO usage_daily (day, user_id, tokens) VALUES ((now() AT TIME ZONE 'utc')::date, $1, 370000)",
        user.id.as_str(),
    )
        .execute(app.pool())
        .await
        .unwrap();
    let conversation = id(&create(&app, &user.access_token, json!({})).await);
    let question = "机器人的节点是什么？".repeat(300);
    let handles = (0..10)
        .map(|n| {
            let (app, token, conversation, question) =
                (app.clone(), user.access_token.clone(), conversation.clone(), format!("{question}{n}"));
            tokio::spawn(async move { post_message(&app, &token, &conversation, &question).await })
        })
        .collect();
    let responses = all(handles).await;
    assert_eq!(count(&responses, StatusCode::CREATED), 10, "every question gets an answer");
    let by_model = responses.iter().filter(|r| r.json()["reply"]["ai_model"] == STUB_MODEL).count();
    assert!(by_model >= 1, "some calls fit");

    let used = app.usage(&user.access_token).await.json()["tokens"]["used"].as_i64().unwrap();
    assert!(used <= 400_000, "the reader ended at {used} of 400,000");
    let budget: i64 = sqlx::query_scalar!("SELECT tokens FROM model_budget_daily WHERE pool = 'all'")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(budget, used - 370_000, "the budget moved with the reader");
    // What the model reported is kept on each reply, however much more it was.
    let reported: Vec<i32> =
        sqlx::query_scalar!(
            r#"SELECT completion_tokens AS "completion_tokens!" FROM messages WHERE completion_tokens IS NOT NULL"#
        )
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(reported, vec![5_000; by_model]);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn conversations_a_day_are_limited_per_guest_and_per_user_whatever_the_parallelism(pool: PgPool) {
    let app = offline_app(pool, |u| {
        u.guest.conversations = 10;
        u.user.conversations = 12;
    });
    let guest = guest_token(&app).await;
    let user = user_token(&app, "ada@example.com").await;
    for (token, quota) in [(guest, 10), (user, 12)] {
        let handles = (0..40)
            .map(|_| {
                let (app, token) = (app.clone(), token.clone());
                tokio::spawn(async move {
                    app.call(Method::POST, "/api/conversations", Some(&token), Some(json!({}))).await
                })
            })
            .collect();
        let responses = all(handles).await;
        assert_eq!(
            (count(&responses, StatusCode::CREATED), count(&responses, StatusCode::TOO_MANY_REQUESTS)),
            (quota, 40 - quota)
        );
        let refused = responses.iter().find(|r| r.status == StatusCode::TOO_MANY_REQUESTS).unwrap();
        assert_eq!(refused.error_code(), "quota_exceeded");
        let details = &refused.json()["error"]["details"];
        assert_eq!(
            (details["quota"].as_str(), details["limit"].as_i64(), details["used"].as_i64()),
            (Some("conversations"), Some(quota as i64), Some(quota as i64))
        );
        assert!(refused.headers.contains_key("retry-after"));
        let usage = app.usage(&token).await.json();
        assert_eq!(usage["conversations"], json!({"used": quota, "limit": quota, "remaining": 0}));
        let listed = app.get("/api/conversations?limit=100", Some(&token)).await.json();
        assert_eq!(
            listed["conversations"].as_array().unwrap().len(),
            quota,
            "nothing past the quota was stored"
        );
    }
}

/// Each retry stores a reply, so each counts as a message: retrying a failing model in a loop
/// stops at the day's messages, as posting does.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn retries_count_against_the_message_quota(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(400)).mount(&server).await;
    let app = app_with_model(pool, &server, |u| u.user.messages = 3);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    let posted = post_message(&app, &token, &conversation, "What is a node?").await;
    assert_eq!(posted.json()["reply"]["is_error"], true, "{}", posted.text());
    let question = id(&posted.json()["user_message"]);
    let path = format!("/api/conversations/{conversation}/messages/{question}/retry");
    for _ in 0..2 {
        let retried = app.call(Method::POST, &path, Some(&token), None).await;
        assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.text());
        assert_eq!(retried.json()["reply"]["is_error"], true);
    }
    let refused = app.call(Method::POST, &path, Some(&token), None).await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded")
    );
    assert_eq!(refused.json()["error"]["details"]["quota"], "messages");
    let replies: i64 =
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM messages WHERE sender = 'ai'"#)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(replies, 3, "a failure notice per counted message, nothing more");
    assert!(app.usage(&token).await.json()["messages"]["used"] == 3);
}
