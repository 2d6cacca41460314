//! The runner on a real socket, fed what a careless or hostile client sends: requests that
//! never finish, bodies shorter than they said, bytes that are not a valid URL or header.
//! Every answer has the contract's error shape; nothing holds a connection for long.

use std::time::{Duration, Instant};

use local::ReadTimeouts;
use primer_shared::AppState;
use primer_shared::test_util::{TestApp, test_config, through_pooler};
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TIMEOUTS: ReadTimeouts =
    ReadTimeouts { headers: Duration::from_millis(500), body: Duration::from_millis(500) };

/// Starts the runner on a free port; its address.
async fn runner(pool: PgPool) -> String {
    let state = AppState::new(test_config(), through_pooler(&pool));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(local::serve(listener, local::app(state), TIMEOUTS, std::future::pending()));
    address
}

/// Writes `raw`, then reads until the server closes or 5 s pass; what it answered and when.
async fn exchange(address: &str, raw: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buffer[..n]);
                // One response is enough once its body is in (bodies here are small JSON).
                if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                    break;
                }
            }
        }
    }
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

fn error_body(answer: &str) -> Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not the error shape ({e}): {answer:?}"))
}

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn a_request_whose_headers_never_finish_is_dropped_after_the_header_time_out(pool: PgPool) {
    let address = runner(pool).await;
    let (answer, took) = exchange(&address, b"GET /api/chapters HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    assert!(took < Duration::from_secs(3), "the connection stayed open {took:?}");
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer:?}");
}

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn a_body_shorter_than_declared_is_a_400_after_the_body_time_out(pool: PgPool) {
    let address = runner(pool).await;
    let raw = b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":";
    let (answer, took) = exchange(&address, raw).await;
    assert!(took < Duration::from_secs(3), "the request stayed open {took:?}");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(error_body(&answer)["error"]["code"], "bad_request");
}

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn a_path_that_is_not_utf8_gets_the_error_shape(pool: PgPool) {
    let address = runner(pool).await;
    // Each with a method its route has, so the path itself is what gets judged.
    let requests = [
        ("GET", "/api/chapters/%FF"),
        ("GET", "/api/conversations/%FF/messages"),
        ("DELETE", "/api/auth/sessions/%C0%AF"),
    ];
    for (method, path) in requests {
        let raw = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (answer, _) = exchange(&address, raw.as_bytes()).await;
        let status: u16 = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!((400..500).contains(&status) && status != 405, "{path}: {answer:?}");
        let body = error_body(&answer);
        assert!(
            body["error"]["code"].is_string() && body["error"]["request_id"].is_string(),
            "{path}: {body}"
        );
    }
}

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn a_nul_in_a_session_id_is_a_404_not_a_database_error(pool: PgPool) {
    let app = TestApp::new(pool, local::app);
    let user = app.signed_up("ada@example.com").await;
    for id in ["%00", "a%00b", &"x".repeat(300), "%20"] {
        let response = app
            .call(
                axum::http::Method::DELETE,
                &format!("/api/auth/sessions/{id}"),
                Some(&user.access_token),
                None,
            )
            .await;
        assert_eq!(response.status, 404, "{id}: {}", response.text());
        assert_eq!(response.error_code(), "not_found");
    }
}

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn control_bytes_in_a_header_get_the_error_shape(pool: PgPool) {
    let address = runner(pool).await;
    let raw = b"GET /api/auth/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \x01\x7f\x1b[0m\r\nConnection: close\r\n\r\n";
    let (answer, _) = exchange(&address, raw).await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer:?}");
    assert!(error_body(&answer)["error"]["code"].is_string(), "{answer:?}");
}
