//! What the conversations tests share: the app, callers of every kind, and a model client
//! pointed at a local stub server.

#![allow(dead_code)] // Each test file uses its own part.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use primer_shared::infra::model::{ModelClient, ModelConfig, Url};
use primer_shared::test_util::model_stub::{self, ReceivedEvent, StreamingModel, events_in};
use primer_shared::test_util::{TestApp, TestResponse, test_config};
use primer_shared::{AppState, Config};
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::MockServer;

/// The conversations service.
pub fn router(state: AppState) -> Router {
    conversations::router(state)
}

/// The app with the offline tutor (no model configured).
pub fn offline_app(pool: PgPool) -> TestApp {
    TestApp::new(pool, router)
}

/// The model the stub server plays.
pub const STUB_MODEL: &str = "tutor-small";

/// The stub model at `base` (`http://host:port`), given `request` per attempt and `total` in
/// all: short, so failing tests fail fast.
pub fn model_at(base: &str, request: Duration, total: Duration) -> ModelConfig {
    let url = Url::parse(&format!("{base}/v1")).unwrap();
    let mut config = ModelConfig::new("sk-test".to_owned().into(), url, STUB_MODEL);
    config.request_timeout = request;
    config.total_timeout = total;
    config.retry_backoff = Duration::from_millis(5);
    config
}

/// The app with a model client pointed at `server`; short timeouts keep failing tests fast,
/// yet each call gets well over the stubs' delays (a few hundred milliseconds; 5 s in the
/// time-out test) so that a loaded machine does not turn an answer into a time-out.
pub fn app_with_model(pool: PgPool, server: &MockServer) -> TestApp {
    let mut config = model_at(&server.uri(), Duration::from_secs(2), Duration::from_secs(4));
    config.allowed_models.push("tutor-large".into());
    let client = ModelClient::new(config).unwrap();
    let state = AppState::new(test_config(), pool).with_model(Some(Arc::new(client)));
    TestApp::with_state(state, router)
}

/// The app with a model client pointed at the streaming stub.
pub fn app_with_streaming_model(pool: PgPool, stub: &StreamingModel) -> TestApp {
    app_with_streaming_model_and(pool, stub, test_config())
}

/// The same, with `config` (other quotas, say).
pub fn app_with_streaming_model_and(pool: PgPool, stub: &StreamingModel, config: Config) -> TestApp {
    let client = ModelClient::new(stub.config(STUB_MODEL)).unwrap();
    let state = AppState::new(config, pool).with_model(Some(Arc::new(client)));
    TestApp::with_state(state, router)
}

/// A chat completion whose answer is `text`.
pub fn completion(text: &str) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(200).set_body_json(model_stub::completion(text, None))
}

/// A fresh guest token.
pub async fn guest_token(app: &TestApp) -> String {
    app.guest_token()
}

/// A signed-up user's access token.
pub async fn user_token(app: &TestApp, email: &str) -> String {
    app.signed_up(email).await.access_token
}

/// `POST /api/conversations` with `body`, which must succeed; the conversation.
pub async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.call(Method::POST, "/api/conversations", Some(token), Some(body)).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    response.json()["conversation"].clone()
}

/// The id of a value that has one.
pub fn id(value: &Value) -> String {
    value["id"].as_str().unwrap_or_else(|| panic!("no id in {value}")).to_owned()
}

/// An id as the API writes it, as the uuid the database keeps.
pub fn uuid(id: &str) -> uuid::Uuid {
    id.parse().unwrap_or_else(|_| panic!("not a uuid: {id}"))
}

/// `POST /api/conversations/{id}/messages`.
pub async fn post_message(app: &TestApp, token: &str, conversation_id: &str, content: &str) -> TestResponse {
    let path = format!("/api/conversations/{conversation_id}/messages");
    app.call(Method::POST, &path, Some(token), Some(json!({"content": content}))).await
}

/// `POST /api/conversations/{id}/messages/{message_id}/retry`.
pub async fn retry(app: &TestApp, token: &str, conversation_id: &str, message_id: &str) -> TestResponse {
    let path = format!("/api/conversations/{conversation_id}/messages/{message_id}/retry");
    app.call(Method::POST, &path, Some(token), None).await
}

/// Every message of a conversation, oldest first, as the API lists them.
pub async fn messages(app: &TestApp, token: &str, conversation_id: &str) -> Vec<Value> {
    let response =
        app.get(&format!("/api/conversations/{conversation_id}/messages?limit=100"), Some(token)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    response.json()["messages"].as_array().unwrap().clone()
}

/// How many message rows a conversation has in the database.
pub async fn stored_messages(pool: &PgPool, conversation_id: &str) -> i64 {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM messages WHERE conversation_id = $1::uuid"#,
        uuid(conversation_id)
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `POST path` asking for Server-Sent Events, with `body` as JSON when there is one.
pub async fn post_for_events(app: &TestApp, token: &str, path: &str, body: Option<Value>) -> TestResponse {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::ACCEPT, "text/event-stream")
        .header(header::CONTENT_TYPE, "application/json");
    let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
    app.send(request.body(body).unwrap()).await
}

/// `POST /api/conversations/{id}/messages`, streamed.
pub async fn post_streamed(app: &TestApp, token: &str, conversation_id: &str, content: &str) -> TestResponse {
    let path = format!("/api/conversations/{conversation_id}/messages");
    post_for_events(app, token, &path, Some(json!({"content": content}))).await
}

/// `POST /api/conversations/{id}/messages/{message_id}/retry`, streamed.
pub async fn retry_streamed(
    app: &TestApp,
    token: &str,
    conversation_id: &str,
    message_id: &str,
) -> TestResponse {
    let path = format!("/api/conversations/{conversation_id}/messages/{message_id}/retry");
    post_for_events(app, token, &path, None).await
}

/// The events of a streamed response, which must be one.
pub async fn events(response: &TestResponse) -> Vec<ReceivedEvent> {
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    let content_type = response.headers.get(header::CONTENT_TYPE).unwrap().to_str().unwrap();
    assert_eq!(content_type, "text/event-stream", "{}", response.text());
    events_in(response.body.clone()).await
}

/// The names of `events`, in order.
pub fn names(events: &[ReceivedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_str()).collect()
}

/// The text of every `delta` event, in order.
pub fn deltas(events: &[ReceivedEvent]) -> Vec<String> {
    events.iter().filter(|e| e.name == "delta").map(|e| e.data["text"].as_str().unwrap().to_owned()).collect()
}
