//! Streamed tutor replies through the local runner, over a real socket: a reader sees each
//! fragment as the model writes it, and a reader who leaves early does not cut the answer
//! short. The model is a local stub that streams 20 chunks 50 ms apart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{StatusCode, header};
use primer_shared::AppState;
use primer_shared::infra::model::ModelClient;
use primer_shared::test_util::model_stub::{EventReader, StreamScript, StreamingModel};
use primer_shared::test_util::{TestApp, test_config};
use serde_json::{Value, json};
use sqlx::PgPool;

/// The runner on a free port of 127.0.0.1, answering with the stub, and a signed-in reader's
/// conversation in it.
struct Runner {
    app: TestApp,
    base: String,
    token: String,
    conversation: String,
}

impl Runner {
    async fn start(pool: PgPool, stub: &StreamingModel) -> Self {
        let client = ModelClient::new(stub.config("tutor-small")).unwrap();
        let state = AppState::new(test_config(), pool).with_model(Some(Arc::new(client)));
        let app = TestApp::with_state(state, local::app);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(local::serve(
            listener,
            app.router.clone(),
            local::ConnectionLimits::default(),
            std::future::pending(),
        ));
        let token = app.signed_up("ada@example.com").await.access_token;
        let created =
            app.call(axum::http::Method::POST, "/api/conversations", Some(&token), Some(json!({}))).await;
        let conversation = created.json()["conversation"]["id"].as_str().unwrap().to_owned();
        Self { app, base, token, conversation }
    }

    /// Posts `content` over HTTP asking for events, and starts reading them.
    async fn post_streamed(&self, content: &str) -> EventReader<reqwest::Body> {
        let response = primer_shared::test_util::http_client()
            .build()
            .unwrap()
            .post(format!("{}/api/conversations/{}/messages", self.base, self.conversation))
            .bearer_auth(&self.token)
            .header(header::ACCEPT, "text/event-stream")
            .json(&json!({"content": content}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
        EventReader::new(axum::http::Response::from(response).into_body())
    }

    /// The conversation's stored messages.
    async fn messages(&self) -> Vec<Value> {
        let path = format!("/api/conversations/{}/messages", self.conversation);
        self.app.get(&path, Some(&self.token)).await.json()["messages"].as_array().unwrap().clone()
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_streamed_reply_reaches_the_reader_as_the_model_writes_it(pool: PgPool) {
    let script = StreamScript::chunks(20, Duration::from_millis(50));
    let stub = StreamingModel::start(vec![script.clone()]).await;
    let runner = Runner::start(pool, &stub).await;
    let events = runner.post_streamed("What is a ROS 2 topic?").await.all().await;

    let done = stub.assert_streamed_as_written(&events, &script);
    assert_eq!(runner.messages().await[1], done.data, "stored as streamed");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_reader_who_leaves_after_the_first_delta_still_gets_the_whole_answer_stored(pool: PgPool) {
    let script = StreamScript::chunks(20, Duration::from_millis(50));
    let stub = StreamingModel::start(vec![script.clone()]).await;
    let runner = Runner::start(pool, &stub).await;
    let mut reader = runner.post_streamed("What is a ROS 2 topic?").await;
    while reader.next().await.expect("a delta before the end").name != "delta" {}
    drop(reader); // closes the connection mid-answer
    assert_eq!(runner.messages().await.len(), 1, "the answer is still being written");

    let left = Instant::now();
    let stored = loop {
        let messages = runner.messages().await;
        if messages.len() == 2 {
            break messages;
        }
        assert!(left.elapsed() < Duration::from_secs(5), "the answer was never stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stored[1]["content"], script.text(), "the whole answer, not what the reader saw");
    assert_eq!(stored[1]["is_error"], false);
    assert_eq!(stub.calls().len(), 1);
}
