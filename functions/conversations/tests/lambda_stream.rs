//! The streaming Lambda binary (`conversations-stream`) run as Lambda runs it: a child process
//! that takes its invocation from a local Lambda Runtime API and streams its response back
//! (`Lambda-Runtime-Function-Response-Mode: streaming`: a JSON prelude with the status and
//! headers, eight NUL bytes, then the body as it is written). The Runtime API here is a small
//! server of the test's own that notes when each event of the body arrived; the model is the
//! streaming stub, 20 chunks 50 ms apart.

use crate::common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::{STUB_MODEL, create, id, messages, user_token};
use futures_util::StreamExt as _;
use http_body_util::StreamBody;
use primer_shared::test_util::model_stub::{EventReader, ReceivedEvent, StreamScript, StreamingModel};
use primer_shared::test_util::{TEST_JWT_SECRET, TestApp, database_url, event};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::mpsc;

/// What the Runtime API received for one invocation.
enum Outcome {
    Streamed { response_mode: Option<String>, prelude: Value, events: Vec<ReceivedEvent> },
    Failed(String),
}

struct RuntimeApi {
    invocations: Mutex<VecDeque<String>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

/// The Lambda Runtime API on 127.0.0.1: hands out `invocations` in order (and then keeps the
/// function waiting), and reports each response.
async fn runtime_api(invocations: Vec<String>) -> (String, mpsc::UnboundedReceiver<Outcome>) {
    let (outcomes, received) = mpsc::unbounded_channel();
    let api = Arc::new(RuntimeApi { invocations: Mutex::new(invocations.into()), outcomes });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(failure))
        .route("/2018-06-01/runtime/init/error", post(failure))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, received)
}

async fn next_invocation(State(api): State<Arc<RuntimeApi>>) -> Response {
    let next = api.invocations.lock().unwrap().pop_front();
    let Some(event) = next else { return std::future::pending().await };
    let deadline = std::time::SystemTime::now() + Duration::from_secs(60);
    let deadline_ms = deadline.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis().to_string();
    let headers = [
        ("lambda-runtime-aws-request-id", "8476a536-e9f4-11e8-9739-2dfe598c3fcd".to_owned()),
        ("lambda-runtime-deadline-ms", deadline_ms),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:conversations-stream".to_owned(),
        ),
        ("lambda-runtime-trace-id", "Root=1-6b056200-000000000000000000000011;Sampled=0".to_owned()),
    ];
    (headers, event).into_response()
}

/// A streamed response: the prelude, then the body read as Server-Sent Events as it comes.
async fn response(State(api): State<Arc<RuntimeApi>>, headers: HeaderMap, body: Body) -> StatusCode {
    let response_mode =
        headers.get("lambda-runtime-function-response-mode").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut chunks = body.into_data_stream();
    let mut head = Vec::new();
    let delimiter = loop {
        match chunks.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            other => {
                let _ =
                    api.outcomes.send(Outcome::Failed(format!("the body ended in its prelude: {other:?}")));
                return StatusCode::BAD_REQUEST;
            }
        }
        if let Some(at) = head.windows(8).position(|w| w == [0u8; 8]) {
            break at;
        }
    };
    let prelude = serde_json::from_slice(&head[..delimiter]).unwrap_or(Value::Null);
    let rest = Bytes::copy_from_slice(&head[delimiter + 8..]);
    let body =
        futures_util::stream::iter([Ok(rest)]).chain(chunks).map(|chunk| chunk.map(http_body::Frame::data));
    let events = EventReader::new(StreamBody::new(body)).all().await;
    let _ = api.outcomes.send(Outcome::Streamed { response_mode, prelude, events });
    StatusCode::ACCEPTED
}

async fn failure(State(api): State<Arc<RuntimeApi>>, body: String) -> StatusCode {
    let _ = api.outcomes.send(Outcome::Failed(body));
    StatusCode::ACCEPTED
}

/// The binary, ended when the test ends.
struct Function(std::process::Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR", fixtures("book"))]
async fn the_streaming_binary_streams_a_reply_through_the_runtime_api(pool: PgPool) {
    let script = StreamScript::chunks(20, Duration::from_millis(50));
    let stub = StreamingModel::start(vec![script.clone()]).await;
    let app = TestApp::new(pool, common::router);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, serde_json::json!({})).await);
    let invocation = event(
        "conversations-stream-messages-post.json",
        &[("REPLACE_WITH_ACCESS_TOKEN", &token), ("REPLACE_WITH_CONVERSATION_ID", &conversation)],
    );
    let (runtime_api, mut outcomes) = runtime_api(vec![invocation]).await;

    let blobs = std::env::temp_dir().join(format!("primer-test-blobs/{}", uuid::Uuid::new_v4()));
    let _function = Function(
        std::process::Command::new(env!("CARGO_BIN_EXE_conversations-stream"))
            .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", "conversations-stream")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true")
            .env("DATABASE_URL", database_url(app.pool()))
            .env("JWT_SECRET", TEST_JWT_SECRET)
            .env("MODEL_API_KEY", "sk-test")
            .env("MODEL_BASE_URL", stub.base_url().as_str())
            .env("MODEL_NAME", STUB_MODEL)
            .env_remove("MODEL_ALLOWED")
            .env("PRIMER_BLOB_DIR", &blobs)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("the streaming binary starts"),
    );

    let outcome =
        tokio::time::timeout(Duration::from_secs(30), outcomes.recv()).await.expect("a response in time");
    let (response_mode, prelude, events) = match outcome {
        Some(Outcome::Streamed { response_mode, prelude, events }) => (response_mode, prelude, events),
        Some(Outcome::Failed(why)) => panic!("the invocation failed: {why}"),
        None => panic!("the Runtime API stopped"),
    };
    assert_eq!(response_mode.as_deref(), Some("streaming"));
    assert_eq!(prelude["statusCode"], 201, "{prelude}");
    assert_eq!(prelude["headers"]["content-type"], "text/event-stream", "{prelude}");

    // The first fragment is passed on as it comes, not when the answer is over; what is stored
    // is what was streamed.
    let done = stub.assert_streamed_as_written(&events, &script);
    assert_eq!(messages(&app, &token, &conversation).await[1], done.data);
    let _ = std::fs::remove_dir_all(blobs);
}
