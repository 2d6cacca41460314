//! Claims no longer than the work can live: a claim lasts until its request's function must have
//! ended; a dead claimant's reservation is given back when its claim lapses; a request whose
//! database stalls, or whose first try at giving its claim up fails, gives it up once it can; a
//! JSON retry of a question a dead streamed request claimed says at once when to try again.

use crate::common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{STUB_MODEL, create, id, model_at, post_message, retry, router, uuid};
use primer_shared::domain::conversations::{self, MessageContent, Owner, Posted};
use primer_shared::domain::usage::{self, Allowance};
use primer_shared::infra::model::ModelClient;
use primer_shared::test_util::fault_proxy::{Fault, FaultProxy};
use primer_shared::test_util::{
    CapturedLog, TestApp, TestResponse, test_config, through_fault_proxy, until_claim_ended,
};
use primer_shared::{AppState, Config};
use serde_json::json;
use sqlx::PgPool;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer};

/// A model answering after `delay`, reporting 100 tokens.
async fn model(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    let answer = wiremock::ResponseTemplate::new(200)
        .set_body_json(primer_shared::test_util::model_stub::completion(
            "A topic is a named channel.",
            Some(primer_shared::infra::model::TokenUsage { prompt_tokens: 60, completion_tokens: 40 }),
        ))
        .set_delay(delay);
    Mock::given(method("POST")).respond_with(answer).mount(&server).await;
    server
}

fn client(server: &MockServer) -> ModelClient {
    ModelClient::new(model_at(&server.uri(), Duration::from_secs(5), Duration::from_secs(8))).unwrap()
}

fn app_on(pool: PgPool, server: &MockServer, config: Config) -> TestApp {
    let state = AppState::new(config, pool).with_model(Some(std::sync::Arc::new(client(server))));
    TestApp::with_state(state, router)
}

/// Stores `content` in `conversation` as a post would and claims it for `lease`, then "dies".
async fn claimed_by_a_dead_request(
    app: &TestApp,
    owner: &Owner,
    conversation: &str,
    lease: Duration,
) -> String {
    let content = MessageContent::parse("What is a topic?".into()).unwrap();
    let posted = conversations::add_or_find_user_message(
        app.pool(),
        owner,
        &app.state.config.usage,
        conversation.parse().unwrap(),
        &content,
        chrono::Utc::now(),
        lease,
    )
    .await
    .unwrap();
    let Posted::New(question) = posted else { panic!("a new question") };
    question.id.to_string()
}

async fn claim_of(direct: &PgPool, message_id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    sqlx::query_scalar!("SELECT reply_lease_until FROM messages WHERE id = $1::uuid", uuid(message_id))
        .fetch_one(direct)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_json_retry_of_a_question_a_dead_stream_claimed_says_when_to_try_again(pool: PgPool) {
    let server = model(Duration::ZERO).await;
    let app = app_on(pool.clone(), &server, test_config());
    let user = app.signed_up("ada@example.com").await;
    let conversation = id(&create(&app, &user.access_token, json!({})).await);
    // A streamed post that claimed its question for the streamed function's 150 s and 2 more,
    // and died: a JSON retry (29 s) cannot outwait it.
    let question = claimed_by_a_dead_request(
        &app,
        &Owner::User(user.id.clone()),
        &conversation,
        Duration::from_secs(152),
    )
    .await;

    let started = Instant::now();
    let refused = retry(&app, &user.access_token, &conversation, &question).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.text());
    assert_eq!(refused.error_code(), "unavailable");
    let retry_after: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((140..=153).contains(&retry_after), "retry after {retry_after} s");
    // Bounded, not timed: waiting out its own 29 s would show.
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert!(server.received_requests().await.unwrap().is_empty());

    // Once the claim has lapsed, the retry answers it.
    sqlx::query!(
        "UPDATE messages SET reply_lease_until = now() - interval '1 second' WHERE id = $1::uuid",
        uuid(&question)
    )
    .execute(&pool)
    .await
    .unwrap();
    let answered = retry(&app, &user.access_token, &conversation, &question).await;
    assert_eq!(answered.status, StatusCode::CREATED, "{}", answered.text());
    assert_eq!(answered.json()["reply"]["content"], "A topic is a named channel.");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_dead_calls_reservation_is_given_back_when_its_claim_lapses(pool: PgPool) {
    let server = model(Duration::ZERO).await;
    let app = app_on(pool, &server, test_config());
    let user = app.signed_up("ada@example.com").await;
    let reader = Owner::User(user.id.clone());
    // A call that reserved 5,000 tokens for a claim of 300 ms, and whose process died.
    let limits = app.state.config.usage;
    let Allowance::Granted(dead) =
        usage::reserve_tokens(app.pool(), &reader, &limits, 5_000, Duration::from_millis(300)).await.unwrap()
    else {
        panic!("room for the call")
    };
    assert_eq!(dead.tokens(), 5_000);
    drop(dead);
    assert_eq!(
        app.usage(&user.access_token).await.json()["tokens"]["used"],
        5_000,
        "counted while it may run"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;

    // The next call gives it back before reserving its own, and books what it cost.
    let conversation = id(&create(&app, &user.access_token, json!({})).await);
    let posted = post_message(&app, &user.access_token, &conversation, "What is a topic?").await;
    assert_eq!(posted.json()["reply"]["ai_model"], STUB_MODEL, "{}", posted.text());
    assert_eq!(app.usage(&user.access_token).await.json()["tokens"]["used"], 100);
    let reserved: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM token_reservations"#)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(reserved, 0);
}

/// A post through a [`FaultProxy`] in front of the pooler, once the model is asked (so the app
/// knows it holds the question's claim), with what the app logs from the start (its tasks log
/// on the test's one thread).
struct ClaimedPost {
    app: TestApp,
    token: String,
    conversation: String,
    question: String,
    proxy: FaultProxy,
    post: tokio::task::JoinHandle<TestResponse>,
    captured: CapturedLog,
    _logging: tracing::subscriber::DefaultGuard,
    _model: MockServer,
}

/// Posts a question the model answers after `model_delay`, and returns once the model is asked.
/// Not as soon as the question is stored: its row shows once PostgreSQL has committed, before
/// the app has the answer to its COMMIT, and a fault between the two leaves the app not knowing
/// it took the claim (which then lapses by itself).
async fn claimed_post(direct: &PgPool, model_delay: Duration) -> ClaimedPost {
    let (captured, logging) = CapturedLog::on_this_thread();
    let server = model(model_delay).await;
    let (proxy, proxied) = through_fault_proxy(direct).await;
    let state = AppState::new(test_config(), proxied).with_model(Some(std::sync::Arc::new(client(&server))));
    let app = TestApp::on_its_own_pool(state, router);
    let user = app.signed_up("ada@example.com").await;
    let conversation = id(&create(&app, &user.access_token, json!({})).await);
    let post = {
        let (app, token, conversation) = (app.clone(), user.access_token.clone(), conversation.clone());
        tokio::spawn(async move { post_message(&app, &token, &conversation, "What is a topic?").await })
    };
    let question = loop {
        let stored: Option<uuid::Uuid> = sqlx::query_scalar!("SELECT id FROM messages WHERE sender = 'user'")
            .fetch_optional(direct)
            .await
            .unwrap();
        if let Some(question) = stored {
            break question.to_string();
        }
        assert!(!post.is_finished(), "the post ended before its question was stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    while server.received_requests().await.unwrap_or_default().is_empty() {
        assert!(!post.is_finished(), "the post ended before the model was asked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let token = user.access_token;
    ClaimedPost {
        app,
        token,
        conversation,
        question,
        proxy,
        post,
        captured,
        _logging: logging,
        _model: server,
    }
}

impl ClaimedPost {
    /// Puts `fault` on the pooler's network: the post is a 503, and its claim still held.
    async fn fails_under(&mut self, fault: Fault, direct: &PgPool) {
        self.proxy.set(fault);
        let answered = (&mut self.post).await.unwrap();
        assert_eq!(answered.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answered.text());
        assert!(claim_of(direct, &self.question).await.is_some(), "the claim could not be given up yet");
    }

    /// Lifts the fault, then waits until the claim is given up: well before it would lapse by
    /// itself (the function's 29 s and 2 more, from the post), with room for a loaded machine's
    /// slow retries; says what the app logged if it is not. Then a retry answers at once.
    async fn expect_given_up_once_the_database_answers(self, direct: &PgPool) {
        self.proxy.set(Fault::None);
        let question = &self.question;
        until_claim_ended(Duration::from_secs(20), &self.captured, || async {
            claim_of(direct, question).await.is_none()
        })
        .await;
        let retried = retry(&self.app, &self.token, &self.conversation, &self.question).await;
        assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.text());
    }
}

/// The database stalls after the question is claimed, while the model thinks: the post is a 503
/// within its deadline, and once the database answers again its claim is given up (not left to
/// lapse), so a retry answers at once.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_post_whose_database_stalls_gives_its_claim_up_once_it_answers_again(direct: PgPool) {
    let mut post = claimed_post(&direct, Duration::from_secs(2)).await;
    post.fails_under(Fault::Stall, &direct).await;
    post.expect_given_up_once_the_database_answers(&direct).await;
}

/// The pooler resets every connection after the question is claimed, while the model thinks: the
/// post fails at once (a 503), and so does its first try at giving the claim up; a task of its
/// own keeps trying, so once the pooler takes connections again the claim is given up (not left
/// to lapse), and a retry answers at once.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_claim_whose_give_up_fails_is_given_up_once_the_database_answers_again(direct: PgPool) {
    let mut post = claimed_post(&direct, Duration::from_secs(1)).await;
    post.fails_under(Fault::Reset, &direct).await;
    // Time for the post's own try at giving the claim up to have failed, and a retry after it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    post.expect_given_up_once_the_database_answers(&direct).await;
}

/// Every chunk to and from the pooler waits 2 s: a tutor post is a 503 within its deadline, not
/// an answer a minute and a half later, and leaves no claim behind.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_post_through_a_slow_pooler_ends_within_its_deadline_and_leaves_no_claim(direct: PgPool) {
    let (proxy, proxied) = through_fault_proxy(&direct).await;
    let app = TestApp::on_its_own_pool(AppState::new(test_config(), proxied), router);
    let user = app.signed_up("ada@example.com").await;
    let conversation = id(&create(&app, &user.access_token, json!({})).await);

    proxy.set(Fault::Latency(Duration::from_secs(2)));
    let started = Instant::now();
    let response = post_message(&app, &user.access_token, &conversation, "What is a topic?").await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE, "{}", response.text());
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());

    proxy.set(Fault::None);
    let settled = Instant::now() + Duration::from_secs(15);
    loop {
        let claimed: i64 = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM messages WHERE reply_lease_until IS NOT NULL"#
        )
        .fetch_one(&direct)
        .await
        .unwrap();
        if claimed == 0 {
            break;
        }
        assert!(Instant::now() < settled, "a claim was left to lapse");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = post_message(&app, &user.access_token, &conversation, "What is a node?").await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text());
}
