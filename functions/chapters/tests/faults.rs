//! Personalization where it really runs: through the pooler, with many readers at once and with
//! the store or the model slow, gone or behind a sick network. A miss holds no transaction (and
//! so no pooled server connection) while it generates; a store that hangs is a 503 within its
//! time-out, leaving no row and no claim behind; a model that hangs gives way to the rules; a
//! crashed request's claim holds the next reader up no longer than its work could have taken;
//! a claim whose ending fails is ended once the database answers again.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{Credentials, Region, SharedCredentialsProvider};
use axum::http::StatusCode;
use common::{copies, import_fixture, python_reader, rule_key};
use primer_shared::AppState;
use primer_shared::infra::blob::S3Store;
use primer_shared::infra::config::S3Config;
use primer_shared::infra::model::{ModelClient, ModelConfig};
use primer_shared::test_util::fault_proxy::{Fault, FaultProxy};
use primer_shared::test_util::model_stub::completion;
use primer_shared::test_util::{CapturedLog, TestApp, test_config, through_fault_proxy, until_claim_ended};
use sqlx::PgPool;
use tokio::net::TcpListener;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const PERSONALIZED_JSON: &str = "/api/chapters/1/personalized?format=json";

/// A model stub that answers with the fixture chapter's headings after `delay`.
async fn slow_model(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    let adapted = "# First Steps\n\nAdapted.\n\n## Reading a sensor\n\n### In Python\n\nRead it.\n\n## Acting\n\nMove.\n";
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(adapted, None)).set_delay(delay))
        .mount(&server)
        .await;
    server
}

/// The app's state on `pool`, with the model at `server`.
fn state_with_model(pool: PgPool, server: &MockServer) -> AppState {
    let url = format!("{}/v1", server.uri()).parse().unwrap();
    let client = ModelClient::new(ModelConfig::new("sk-test".to_owned().into(), url, "editor")).unwrap();
    AppState::new(test_config(), pool).with_model(Some(Arc::new(client)))
}

fn app_with_model(pool: PgPool, server: &MockServer) -> TestApp {
    TestApp::with_state(state_with_model(pool, server), chapters::router)
}

/// The transactions (backend, start) of this test's database sitting open doing nothing.
async fn idle_in_transaction(observer: &PgPool) -> Vec<(i32, String)> {
    let idle = sqlx::query!(
        r#"SELECT pid AS "pid!", xact_start::text AS "xact_start!" FROM pg_stat_activity
         WHERE datname = current_database() AND state LIKE 'idle in transaction%'"#,
    )
    .fetch_all(observer)
    .await
    .unwrap();
    idle.into_iter().map(|backend| (backend.pid, backend.xact_start)).collect()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn concurrent_misses_generate_once_and_hold_no_transaction_while_the_model_works(pool: PgPool) {
    let server = slow_model(Duration::from_millis(1500)).await;
    let app = app_with_model(pool.clone(), &server);
    import_fixture(app.pool()).await;
    let (reader, _) = python_reader(&app, "reader@example.com").await;

    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (app, token) = (app.clone(), reader.access_token.clone());
            tokio::spawn(async move { app.get(PERSONALIZED_JSON, Some(&token)).await })
        })
        .collect();
    // While the model works, nobody holds a transaction open on this database. A short one
    // (claiming, reserving tokens) can be caught between two statements on a busy machine; one
    // held across the 1.5 s the model takes is seen sample after sample, so a transaction seen
    // open for 250 ms fails the test.
    let mut samples = 0;
    let mut open_since: std::collections::HashMap<(i32, String), usize> = Default::default();
    while readers.iter().any(|r| !r.is_finished()) {
        let idle = idle_in_transaction(&pool).await;
        open_since.retain(|key, _| idle.contains(key));
        for key in idle {
            let seen = open_since.entry(key).or_insert(0);
            *seen += 1;
            assert!(*seen < 5, "a connection is idle in transaction while the model works");
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Five samples in a row fail the test: with fewer than six (a loaded machine samples
    // slower than every 50 ms), a transaction held across the wait could go unseen.
    assert!(samples >= 6, "the readers were not in flight long enough to observe ({samples} samples)");

    let mut bodies = Vec::new();
    for reader in readers {
        let response = reader.await.unwrap();
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        bodies.push(response.json());
    }
    assert!(bodies.iter().all(|b| b["markdown"] == bodies[0]["markdown"] && b["engine"] == "model"));
    assert_eq!(
        bodies.iter().filter(|b| b["cached"] == false).count(),
        1,
        "made once, served from the cache after"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1, "the model was asked once");
    assert_eq!(copies(&pool).await, 1);
    let claims: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM personalization_claims"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(claims, 0, "the claim ends with the generation");
}

/// An S3 store at `endpoint` with short time-outs.
fn s3_at(endpoint: String) -> S3Store {
    let sdk = aws_config::SdkConfig::builder()
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test", "test", None, None, "t",
        )))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let mut s3 = S3Config::new("primer-faults", Some(endpoint), true);
    s3.connect_timeout = Duration::from_millis(300);
    s3.operation_timeout = Duration::from_millis(800);
    S3Store::new(&sdk, &s3)
}

/// A server that accepts connections and never answers, as a paused S3 server does.
async fn paused_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    (endpoint, held)
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_paused_or_stopped_store_is_a_503_within_its_time_out_and_leaves_nothing(pool: PgPool) {
    let (paused, _held) = paused_server().await;
    // A port nobody listens on: a stopped server.
    let stopped = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    for endpoint in [paused, stopped] {
        let state = AppState::new(test_config(), pool.clone()).with_blobs(Arc::new(s3_at(endpoint.clone())));
        let app = TestApp::with_state(state, chapters::router);
        import_fixture(app.pool()).await;
        let email = format!("reader-{}@example.com", uuid::Uuid::new_v4().simple());
        let (reader, _) = python_reader(&app, &email).await;

        let started = Instant::now();
        let response = app.get(PERSONALIZED_JSON, Some(&reader.access_token)).await;
        let took = started.elapsed();
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE, "{endpoint}: {}", response.text());
        assert_eq!(response.error_code(), "unavailable");
        assert!(response.headers.contains_key("retry-after"));
        // The cache-hit read and the write, each within its 0.8 s operation time-out.
        assert!(took < Duration::from_secs(4), "{endpoint}: the 503 took {took:?}");
        assert_eq!(copies(&pool).await, 0, "{endpoint}: no row points at a missing object");
        let claims: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM personalization_claims"#)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(claims, 0, "{endpoint}: a failed generation gives its claim up");
    }
}

/// The store's network between the app and the S3 server (moto's) stalls, swallows, resets or
/// slows every chunk past the operation's time-out: each miss is a 503 within the store's own
/// bounds (its connect and operation time-outs), leaving no row and no claim; once the network
/// is well, the same app stores and serves the chapter.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn the_store_behind_a_sick_network_is_a_503_within_its_time_outs_and_recovers(pool: PgPool) {
    let endpoint = std::env::var("PRIMER_TEST_S3_ENDPOINT")
        .expect("PRIMER_TEST_S3_ENDPOINT is not set: run scripts/test, which starts an S3-compatible server");
    let upstream = endpoint.trim_start_matches("http://").parse().expect("the S3 server's address");
    let proxy = FaultProxy::start(upstream).await;
    let store = s3_at(format!("http://{}", proxy.address()));
    store.client().create_bucket().bucket("primer-faults").send().await.ok();
    let state = AppState::new(test_config(), pool.clone()).with_blobs(Arc::new(store));
    let app = TestApp::with_state(state, chapters::router);
    import_fixture(app.pool()).await;

    for fault in [Fault::Stall, Fault::BlackHole, Fault::Reset, Fault::Latency(Duration::from_secs(2))] {
        proxy.set(fault);
        let email = format!("reader-{}@example.com", uuid::Uuid::new_v4().simple());
        let (reader, _) = python_reader(&app, &email).await;
        let started = Instant::now();
        let response = app.get(PERSONALIZED_JSON, Some(&reader.access_token)).await;
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE, "{fault:?}: {}", response.text());
        assert!(response.headers.contains_key("retry-after"));
        // Bounded, not timed: the write's 0.8 s (and a read's), far from a hang.
        assert!(started.elapsed() < Duration::from_secs(10), "{fault:?}: {:?}", started.elapsed());
        let rows: i64 = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM personalized_chapters WHERE user_id = $1"#,
            reader.id.as_str()
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(rows, 0, "{fault:?}: no row without its object");
        let claims: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM personalization_claims"#)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(claims, 0, "{fault:?}: the claim was given up");

        proxy.set(Fault::None);
        let served = app.get(PERSONALIZED_JSON, Some(&reader.access_token)).await;
        assert_eq!(served.status, StatusCode::OK, "{fault:?}, afterwards: {}", served.text());
    }
}

/// The model's network stalls or swallows everything: the miss waits no longer than the
/// personalization budget, then serves the rule-based chapter.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_model_behind_a_stalled_network_gives_way_to_the_rules_within_the_budget(pool: PgPool) {
    let server = slow_model(Duration::ZERO).await;
    let proxy = FaultProxy::start(server.address().to_owned()).await;
    let url = format!("http://{}/v1", proxy.address()).parse().unwrap();
    let mut model = ModelConfig::new("sk-test".to_owned().into(), url, "editor");
    model.request_timeout = Duration::from_secs(1);
    model.total_timeout = Duration::from_secs(2);
    let mut config = test_config();
    config.personalize_budget = Duration::from_secs(2);
    let state = AppState::new(config, pool).with_model(Some(Arc::new(ModelClient::new(model).unwrap())));
    let app = TestApp::with_state(state, chapters::router);
    import_fixture(app.pool()).await;
    for fault in [Fault::Stall, Fault::BlackHole] {
        proxy.set(fault);
        let email = format!("reader-{}@example.com", uuid::Uuid::new_v4().simple());
        let (reader, _) = python_reader(&app, &email).await;
        let started = Instant::now();
        let response = app.get(PERSONALIZED_JSON, Some(&reader.access_token)).await;
        assert_eq!(response.status, StatusCode::OK, "{fault:?}: {}", response.text());
        assert_eq!(response.json()["engine"], "rule");
        assert!(started.elapsed() < Duration::from_secs(10), "{fault:?}: {:?}", started.elapsed());
    }
}

/// A request that died while making a chapter (its claim left behind, as a crash leaves it)
/// holds the next reader up by at most the claim's lease: the rules' work (8 s) and the margin,
/// not the model's budget (no model is configured) nor the function's whole timeout.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_claim_left_by_a_crash_lapses_with_the_work_it_stood_for(pool: PgPool) {
    let app = TestApp::with_state(AppState::new(test_config(), pool.clone()), chapters::router);
    let chapter = import_fixture(app.pool()).await;
    let (reader, _) = python_reader(&app, "reader@example.com").await;
    // A request took the claim on the reader's copy, then crashed: its claim is left as taken.
    let key = rule_key(&pool, reader.id.as_str(), chapter).await;
    let lease =
        primer_shared::domain::personalize::cache::RULES_WORK + primer_shared::domain::claim::CLAIM_MARGIN;
    sqlx::query!(
        "INSERT INTO personalization_claims (storage_path, expires_at)
         VALUES ($1, clock_timestamp() + make_interval(secs => $2))",
        key.as_str(),
        lease.as_secs_f64()
    )
    .execute(&pool)
    .await
    .unwrap();

    let started = Instant::now();
    let next = app.get(PERSONALIZED_JSON, Some(&reader.access_token)).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text());
    assert_eq!(next.json()["cached"], false, "made again, by the next reader, after the claim lapsed");
    let waited = started.elapsed();
    assert!(waited <= lease + Duration::from_secs(3), "held up {waited:?} by a claim of {lease:?}");
}

/// The pooler resets every connection while the model writes a reader's chapter: the miss is a
/// 503 (the chapter cannot be stored), and its own try at ending its claim fails; a task of its
/// own keeps trying, so once the pooler takes connections again the claim's row is gone (not left
/// to lapse, as a row that stays until the next claim), and the next read makes the chapter at
/// once.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_claim_whose_ending_fails_is_ended_once_the_database_answers_again(direct: PgPool) {
    let (captured, _logging) = CapturedLog::on_this_thread();
    let server = slow_model(Duration::from_millis(1000)).await;
    let (proxy, proxied) = through_fault_proxy(&direct).await;
    let app = TestApp::on_its_own_pool(state_with_model(proxied, &server), chapters::router);
    import_fixture(app.pool()).await;
    let (reader, _) = python_reader(&app, "reader@example.com").await;
    let claims = || async {
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM personalization_claims"#)
            .fetch_one(&direct)
            .await
            .unwrap()
    };

    let miss = {
        let (app, token) = (app.clone(), reader.access_token.clone());
        tokio::spawn(async move { app.get(PERSONALIZED_JSON, Some(&token)).await })
    };
    // The fault starts once the model is asked, when the app knows it holds the claim. The claim's
    // row shows earlier, as soon as PostgreSQL commits it, and a fault before the app has the
    // answer to that COMMIT leaves it not knowing it took the claim (which then lapses by itself).
    while server.received_requests().await.unwrap_or_default().is_empty() {
        assert!(!miss.is_finished(), "the miss ended before the model was asked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(claims().await, 1, "the model is asked under a claim");
    proxy.set(Fault::Reset);
    let missed = miss.await.unwrap();
    assert_eq!(missed.status, StatusCode::SERVICE_UNAVAILABLE, "{}", missed.text());
    assert_eq!(claims().await, 1, "the claim could not be ended yet");
    // Time for the miss's own try at ending the claim to have failed, and a retry after it.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Well before the claim would lapse by itself (the 28 s the work may take, and 2 more), with
    // room for a loaded machine's slow retries; says what the app logged if it is not ended.
    proxy.set(Fault::None);
    until_claim_ended(Duration::from_secs(20), &captured, || async { claims().await == 0 }).await;
    let next = app.get(PERSONALIZED_JSON, Some(&reader.access_token)).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text());
    assert_eq!(next.json()["cached"], false, "made by the next read, at once");
}
