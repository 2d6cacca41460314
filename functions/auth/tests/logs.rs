//! Logs never carry secrets, at any level: the auth function runs under the real Lambda
//! runtime (against a stub of the Lambda Runtime API) with logging at `trace`, serves a login
//! (a password in the body), a `GET /api/auth/me` (a bearer token in the headers) and a
//! forgot-password request (a reset link e-mailed), and the captured log holds neither, nor
//! any token it issued or e-mailed, nor the signing secret.
//!
//! One test in its own binary: it installs the global subscriber and sets the runtime's
//! environment variables.

use std::time::{Duration, Instant};

use primer_shared::infra::config::EmailDelivery;
use primer_shared::infra::telemetry;
use primer_shared::test_util::{CapturedLog, TEST_JWT_SECRET, TestApp, event, test_config};
use serde_json::Value;
use sqlx::PgPool;
use tracing_subscriber::filter::Targets;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// One invocation the stub Runtime API hands out.
fn invocation(request_id: &str, event: &str) -> ResponseTemplate {
    let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
    ResponseTemplate::new(200)
        .insert_header("lambda-runtime-aws-request-id", request_id)
        .insert_header("lambda-runtime-deadline-ms", deadline.to_string().as_str())
        .insert_header(
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:auth",
        )
        .set_body_raw(event.to_owned(), "application/json")
}

/// The responses the runtime posts back, once it has posted `n`.
async fn answers(runtime_api: &MockServer, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let posted: Vec<Value> = runtime_api
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.method.as_str() == "POST")
            .map(|r| r.body_json().unwrap())
            .collect();
        if posted.len() == n {
            return posted;
        }
        assert!(Instant::now() < deadline, "the runtime did not answer every event: {posted:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn no_password_token_or_secret_reaches_the_log_at_trace(pool: PgPool) {
    let captured = CapturedLog::default();
    tracing::subscriber::set_global_default(telemetry::subscriber(
        "trace".parse::<Targets>().unwrap(),
        true,
        captured.clone(),
    ))
    .expect("the only subscriber of this binary");

    // As on Lambda, where the outbox logs no links.
    let mut config = test_config();
    if let EmailDelivery::Outbox { log_links, .. } = &mut config.email.delivery {
        *log_links = false;
    }
    let app = TestApp::with_config(pool, config, auth::router);
    // The login event's account, and a signed-in user for the /me event.
    let ada = app.signed_up("ada@example.com").await;
    let reader = app.signed_up("reader@example.com").await;

    let runtime_api = MockServer::start().await;
    let next = "/2018-06-01/runtime/invocation/next";
    let login = event("auth-login.json", &[]);
    let me = event("auth-me-get.json", &[("REPLACE_WITH_ACCESS_TOKEN", &reader.access_token)]);
    let forgot = event("auth-password-forgot.json", &[]);
    Mock::given(method("GET"))
        .and(path(next))
        .respond_with(invocation("req-1", &login))
        .up_to_n_times(1)
        .mount(&runtime_api)
        .await;
    Mock::given(method("GET"))
        .and(path(next))
        .respond_with(invocation("req-2", &me))
        .up_to_n_times(1)
        .mount(&runtime_api)
        .await;
    Mock::given(method("GET"))
        .and(path(next))
        .respond_with(invocation("req-3", &forgot))
        .up_to_n_times(1)
        .mount(&runtime_api)
        .await;
    Mock::given(method("GET"))
        .and(path(next))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(600)))
        .mount(&runtime_api)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(202)).mount(&runtime_api).await;

    // SAFETY: set before the runtime starts, and nothing else in this binary reads or writes
    // the environment concurrently.
    unsafe {
        std::env::set_var("AWS_LAMBDA_RUNTIME_API", runtime_api.address().to_string());
        std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "auth");
        std::env::set_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256");
        std::env::set_var("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
    }
    // The runtime's future is not Send: it runs beside the wait, not on another task.
    let responses = tokio::select! {
        stopped = lambda_http::run(app.router.clone()) => panic!("the runtime stopped: {stopped:?}"),
        responses = answers(&runtime_api, 3) => responses,
    };

    let login_body: Value = serde_json::from_str(responses[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(responses[0]["statusCode"], 200, "{login_body}");
    assert_eq!(responses[1]["statusCode"], 200, "{}", responses[1]);
    assert_eq!(responses[2]["statusCode"], 202, "{}", responses[2]);
    let e_mailed: Vec<String> = app.outbox().into_iter().map(|mail| mail.token).collect();
    assert_eq!(e_mailed.len(), 3, "two sign-ups' verification links and a reset link");
    let issued = [
        login_body["session"]["access_token"].as_str().unwrap().to_owned(),
        login_body["session"]["refresh_token"].as_str().unwrap().to_owned(),
    ];

    let log = captured.text();
    // The capture worked, below info too, and saw both invocations.
    assert!(
        log.contains("Ab02cDeFIAMEJ-w=")
            && log.contains("Ab06cDeFIAMEJ-w=")
            && log.contains("Ab13cDeFIAMEJ-w="),
        "{log}"
    );
    assert!(log.contains(r#""level":"DEBUG""#) || log.contains(r#""level":"TRACE""#), "{log}");
    for (what, secret) in [
        ("the password", ada.password.as_str()),
        ("the bearer token", reader.access_token.as_str()),
        ("the issued access token", issued[0].as_str()),
        ("the issued refresh token", issued[1].as_str()),
        ("the JWT secret", TEST_JWT_SECRET),
    ] {
        assert!(!log.contains(secret), "{what} is in the log");
    }
    for token in &e_mailed {
        let secret = token.split_once('.').unwrap().1;
        assert!(!log.contains(secret), "an e-mailed token is in the log");
    }
}
