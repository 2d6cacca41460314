//! The model-based engine behind the route: used when it answers well and in time, replaced by
//! the rule-based engine otherwise. The model is a local stub server.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{import_fixture, python_reader, with_auth};
use primer_shared::AppState;
use primer_shared::model::{ModelClient, ModelConfig};
use primer_shared::test_util::{TestApp, test_config};
use primer_shared::usage::UsageLimits;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PERSONALIZED_JSON: &str = "/api/chapters/1/personalized?format=json";

/// The fixture chapter's headings for a Python reader, as an adapted chapter must keep them.
const ADAPTED: &str = "# First Steps\n\nA gentler start, with a Jetson in mind.\n\n## Reading a sensor\n\n### In Python\n\nRead it at 10 Hz.\n\n## Acting\n\nMove slowly.\n";

fn completion(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 700, "completion_tokens": 300, "total_tokens": 1000}
    }))
}

/// The chapters service with a model at `server` and a personalization budget of `budget`.
async fn app_with_model(pool: PgPool, server: &MockServer, budget: Duration) -> TestApp {
    app_with_limits(pool, server, budget, |_| {}).await
}

/// The same, with other quotas.
async fn app_with_limits(
    pool: PgPool,
    server: &MockServer,
    budget: Duration,
    change: impl FnOnce(&mut UsageLimits),
) -> TestApp {
    let mut config = test_config();
    config.personalize_budget = budget;
    change(&mut config.usage);
    let url = format!("{}/v1", server.uri()).parse().unwrap();
    let client =
        ModelClient::new(ModelConfig::new("sk-test".to_owned().into(), url, "editor-small")).unwrap();
    let state = AppState::new(config, pool).with_model(Some(Arc::new(client)));
    TestApp::with_state(state, with_auth)
}

async fn personalized(app: &TestApp) -> Value {
    import_fixture(app.pool()).await;
    let (reader, _) = python_reader(app, "reader@example.com").await;
    let response = app.get(PERSONALIZED_JSON, Some(&reader.access_token)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

async fn stored_engine(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT engine FROM personalized_chapters").fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn a_good_answer_in_time_is_served_as_the_models(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        // The model gets the reader and the chapter already filtered for them.
        .and(body_string_contains(
            "an intermediate reader, experienced in simulation, writing Python, with Jetson",
        ))
        .and(body_string_contains("### In Python"))
        .respond_with(completion(&format!("```markdown\n{ADAPTED}```")))
        .expect(1)
        .mount(&server)
        .await;
    let app = app_with_model(pool, &server, Duration::from_secs(5)).await;
    let body = personalized(&app).await;
    assert_eq!(body["engine"], "model");
    let markdown = body["markdown"].as_str().unwrap();
    assert!(
        markdown.starts_with("# First Steps\n\n> **Tailored for you.** A language model adapted"),
        "{markdown}"
    );
    assert!(markdown.contains("Read it at 10 Hz."));
    assert_eq!(stored_engine(app.pool()).await, "model");
}

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn a_slow_model_is_replaced_by_the_rules_within_the_budget(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(completion(ADAPTED).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let app = app_with_model(pool, &server, Duration::from_millis(300)).await;
    let started = Instant::now();
    let body = personalized(&app).await;
    assert!(started.elapsed() < Duration::from_secs(4), "waited {:?} for a 5 s model", started.elapsed());
    assert_eq!(body["engine"], "rule");
    assert!(body["markdown"].as_str().unwrap().contains("Shown for an intermediate reader"));
    assert_eq!(stored_engine(app.pool()).await, "rule");
}

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn an_answer_that_loses_a_heading_is_replaced_by_the_rules(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(completion("# First Steps\n\nJust a summary, the sections are gone.\n"))
        .mount(&server)
        .await;
    let app = app_with_model(pool, &server, Duration::from_secs(5)).await;
    assert_eq!(personalized(&app).await["engine"], "rule");
}

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn a_failing_model_is_replaced_by_the_rules(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(401)).mount(&server).await;
    let app = app_with_model(pool, &server, Duration::from_secs(5)).await;
    assert_eq!(personalized(&app).await["engine"], "rule");
}

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn the_call_is_bounded_and_its_usage_counted_and_stored(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(completion(ADAPTED)).expect(1).mount(&server).await;
    let app =
        app_with_limits(pool, &server, Duration::from_secs(5), |u| u.personalize_max_tokens = 4000).await;
    assert_eq!(personalized(&app).await["engine"], "model");
    let sent: Value = server.received_requests().await.unwrap()[0].body_json().unwrap();
    assert_eq!(sent["max_tokens"], 4000);
    let stored: (Option<i32>, Option<i32>) =
        sqlx::query_as("SELECT prompt_tokens, completion_tokens FROM personalized_chapters")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(stored, (Some(700), Some(300)));
    let (user, budget): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT tokens FROM usage_daily), (SELECT tokens FROM model_budget_daily WHERE pool = 'all')",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!((user, budget), (1000, 1000), "the reported tokens replace the estimate");
}

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn without_allowance_left_the_rules_personalize_and_the_model_is_not_asked(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(completion(ADAPTED)).expect(0).mount(&server).await;
    let app = app_with_limits(pool, &server, Duration::from_secs(5), |u| u.daily_token_budget = 500).await;
    assert_eq!(personalized(&app).await["engine"], "rule");
    let reserved: i64 =
        sqlx::query_scalar("SELECT count(*) FROM model_budget_daily").fetch_one(app.pool()).await.unwrap();
    assert_eq!(reserved, 0, "nothing stays reserved");
}
