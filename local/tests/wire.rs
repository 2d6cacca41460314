//! The runner on a real socket, fed what a careless or hostile client sends: requests that
//! never finish, bodies shorter than they said or trickling in, more connections than the
//! runner holds, bytes that are not a valid URL, headers framed two ways. Every answer the API
//! gives has the contract's error shape; a request the parser refuses is a bare 400; nothing
//! holds a connection for long.

use std::time::{Duration, Instant};

use local::ConnectionLimits;
use primer_shared::AppState;
use primer_shared::test_util::{TestApp, test_config, through_pooler};
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMITS: ConnectionLimits = ConnectionLimits {
    headers: Duration::from_millis(500),
    body: Duration::from_millis(1500),
    min_body_rate: 1024,
    write_stall: Duration::from_secs(1),
    max_connections: 64,
};

/// Starts the runner on a free port; its address.
async fn runner(pool: PgPool) -> String {
    runner_with(pool, LIMITS).await
}

async fn runner_with(pool: PgPool, limits: ConnectionLimits) -> String {
    let state = AppState::new(test_config(), through_pooler(&pool));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(local::serve(listener, local::app(state), limits, std::future::pending()));
    address
}

/// Writes `raw`, then reads until the server closes or 5 s pass; what it answered and when.
async fn exchange(address: &str, raw: &[u8]) -> (String, Duration) {
    exchange_within(address, raw, Duration::from_secs(5)).await
}

/// [`exchange`], waiting at most `patience` for each read.
async fn exchange_within(address: &str, raw: &[u8], patience: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(patience, stream.read(&mut buffer)).await {
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

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_request_whose_headers_never_finish_is_dropped_after_the_header_time_out(pool: PgPool) {
    let address = runner(pool).await;
    let (answer, took) = exchange(&address, b"GET /api/chapters HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    assert!(took < Duration::from_secs(3), "the connection stayed open {took:?}");
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer:?}");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_body_shorter_than_declared_is_a_400_after_the_body_time_out(pool: PgPool) {
    let address = runner(pool).await;
    let raw = b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":";
    let (answer, took) = exchange(&address, raw).await;
    assert!(took < Duration::from_secs(3), "the request stayed open {took:?}");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(error_body(&answer)["error"]["code"], "bad_request");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
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

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
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

/// A header line the parser cannot read strictly is refused (RFC 9112: 400, and the connection
/// closes), never dropped: a dropped `Transfer-Encoding` would leave its chunked body to be
/// read as a second request. Each of these requests smuggles one; exactly one answer comes.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_header_line_framed_two_ways_is_a_400_and_nothing_is_smuggled(pool: PgPool) {
    let address = runner(pool).await;
    let smuggled = "GET /api/chapters HTTP/1.1\r\nHost: x\r\n\r\n";
    let chunked = format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len());
    for disguise in [
        "transfer-encoding : chunked",
        "Transfer-Encoding:\x0bchunked",
        "X-Padding: a\r\n Transfer-Encoding: chunked",
        "Authorization: Bearer \x01\x7f\x1b[0m\r\nTransfer-Encoding: chunked",
    ] {
        let raw = format!(
            "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{disguise}\r\n\r\n{chunked}"
        );
        let (answer, took) = exchange(&address, raw.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{disguise:?}: {answer:?}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{disguise:?}: a second answer: {answer:?}");
        assert!(took < Duration::from_secs(4), "{disguise:?}: the connection stayed open {took:?}");
    }
}

/// `Content-Length: 60000`, then one byte at a time: the body falls behind the minimum rate
/// (1 KiB/s after its first second) and is cut long before its deadline would pass, answered
/// 400, and the connection closed.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_body_trickling_in_is_cut_at_the_minimum_rate(pool: PgPool) {
    let address = runner_with(pool, ConnectionLimits { body: Duration::from_secs(60), ..LIMITS }).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        // One byte every 200 ms, and whatever the runner says in between.
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
            Err(_) => {
                if stream.write_all(b" ").await.is_err() {
                    break;
                }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "still open after {:?}", started.elapsed());
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(error_body(&answer)["error"]["code"], "bad_request");
}

/// Case 1 of the attack report, scaled down: more trickling clients than the runner holds
/// connections. They wait in the listen queue, each is cut at the minimum rate, and a client
/// that sends a whole request gets its answer once a connection frees up.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn trickling_clients_past_the_connection_cap_cannot_keep_others_out(pool: PgPool) {
    let limits = ConnectionLimits { max_connections: 8, body: Duration::from_secs(60), ..LIMITS };
    let address = runner_with(pool, limits).await;
    let trickles: Vec<_> = (0..24)
        .map(|_| {
            let address = address.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = TcpStream::connect(&address).await else { return };
                let head = b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n";
                if stream.write_all(head).await.is_err() {
                    return;
                }
                for _ in 0..100 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if stream.write_all(b" ").await.is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let raw = b"GET /api/profile/options HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (answer, took) = exchange_within(&address, raw, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(took < Duration::from_secs(25), "{took:?}");
    for trickle in trickles {
        trickle.abort();
    }
}

/// A client that asks and asks and never reads what it is sent cannot hold its connection: once
/// its socket is full, the runner's writes wait at most the write-stall limit, then the
/// connection is dropped.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_client_that_never_reads_is_dropped_after_the_write_stall_limit(pool: PgPool) {
    let address = runner(pool).await;
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let request = b"GET /api/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n";
    let started = Instant::now();
    // Pipelined requests, whose answers fill both sockets' buffers unread.
    let dropped = loop {
        match tokio::time::timeout(Duration::from_secs(3), stream.write_all(request)).await {
            Ok(Ok(())) => {}
            // The runner stopped reading (its writes are blocked) or hung up.
            Ok(Err(_)) | Err(_) => break true,
        }
        if started.elapsed() > Duration::from_secs(30) {
            break false;
        }
    };
    assert!(dropped, "the runner kept reading requests whose answers nobody read");
    // The connection goes: reading now finds its end (after the answers it did send).
    let mut sink = vec![0u8; 1 << 20];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection stayed open");
}
