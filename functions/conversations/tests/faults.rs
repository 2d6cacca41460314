//! The model behind a sick network (the test kit's fault proxy between the app and the model
//! stub): a tutor post is answered within the model's own time limits, with a failure notice
//! that can be retried, whatever the network does; once it is well, the retry answers.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{create, id, model_at, post_message, retry, router};
use primer_shared::AppState;
use primer_shared::infra::model::ModelClient;
use primer_shared::test_util::fault_proxy::{Fault, FaultProxy};
use primer_shared::test_util::{TestApp, test_config};
use serde_json::json;
use sqlx::PgPool;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer};

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_model_behind_a_sick_network_is_a_failure_notice_within_its_limits(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(common::completion("A topic is a named channel."))
        .mount(&server)
        .await;
    let proxy = FaultProxy::start(*server.address()).await;
    let model =
        model_at(&format!("http://{}", proxy.address()), Duration::from_millis(700), Duration::from_secs(2));
    let state =
        AppState::new(test_config(), pool).with_model(Some(Arc::new(ModelClient::new(model).unwrap())));
    let app = TestApp::with_state(state, router);
    let token = app.signed_up("ada@example.com").await.access_token;
    let conversation = id(&create(&app, &token, json!({})).await);

    for (fault, code) in [
        (Fault::Stall, "model_timeout"),
        (Fault::BlackHole, "model_timeout"),
        (Fault::Latency(Duration::from_secs(3)), "model_timeout"),
        (Fault::Reset, "model_unreachable"),
    ] {
        proxy.set(fault);
        let started = Instant::now();
        let posted =
            post_message(&app, &token, &conversation, &format!("What is a topic? ({fault:?})")).await;
        assert_eq!(posted.status, StatusCode::CREATED, "{fault:?}: {}", posted.text());
        let reply = &posted.json()["reply"];
        assert_eq!(
            (reply["is_error"].as_bool(), reply["error_details"]["code"].as_str()),
            (Some(true), Some(code)),
            "{fault:?}: {reply}"
        );
        // Bounded, not timed: the call's 2 s in all, then the store.
        assert!(started.elapsed() < Duration::from_secs(10), "{fault:?}: {:?}", started.elapsed());

        proxy.set(Fault::None);
        let question = id(&posted.json()["user_message"]);
        let retried = retry(&app, &token, &conversation, &question).await;
        assert_eq!(retried.status, StatusCode::CREATED, "{fault:?}: {}", retried.text());
        assert_eq!(retried.json()["reply"]["content"], "A topic is a named channel.");
    }
}
