//! A database that drops its connections, as Neon does when it suspends or restarts a compute,
//! or a network to it that stalls, swallows or resets: every request on a killed or silent
//! connection is a 503 with `Retry-After` within seconds, never a 500, and the next requests
//! work without a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use primer_shared::AppState;
use primer_shared::test_util::fault_proxy::Fault;
use primer_shared::test_util::{TestApp, test_config, through_fault_proxy};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn terminating_every_backend_mid_load_is_never_a_500_and_recovers(pool: PgPool) {
    let app = TestApp::new(pool.clone(), auth::router);
    let user = app.signed_up("ada@example.com").await;

    // The killer has its own connection, outside the app's pool, and spares only itself.
    let killer_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut killed = 0i64;
            while !stop.load(Ordering::SeqCst) {
                let n: i64 = sqlx::query_scalar!(
                    r#"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS "killed!" FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()
                       AND backend_type = 'client backend'"#,
                )
                .fetch_one(&killer_pool)
                .await
                .unwrap();
                killed += n;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            killed
        })
    };

    // A bounded load: 8 clients, 40 requests each.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (app, token) = (app.clone(), user.access_token.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..40 {
                    let response = app.me(&token).await;
                    if response.status == StatusCode::SERVICE_UNAVAILABLE {
                        assert_eq!(response.error_code(), "unavailable", "{}", response.text());
                        assert!(response.headers.contains_key("retry-after"));
                    }
                    statuses.push(response.status);
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for client in clients {
        statuses.extend(client.await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    let killed = killer.await.unwrap();

    assert!(killed > 0, "no backend was terminated: the test proved nothing");
    let unexpected: Vec<_> =
        statuses.iter().filter(|s| **s != StatusCode::OK && **s != StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(unexpected.is_empty(), "only 200 or 503 while connections die, got {unexpected:?}");
    println!(
        "{} requests, {} backends terminated: {} × 200, {} × 503",
        statuses.len(),
        killed,
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        statuses.iter().filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE).count()
    );

    // Once the database is back, requests work again, without a new pool. The killer's last
    // sweep may have ended server connections PgBouncer has not noticed yet: each can fail one
    // request (a 503), no more; then five in a row succeed.
    let (mut in_a_row, mut attempts) = (0, 0);
    while in_a_row < 5 {
        attempts += 1;
        assert!(
            attempts <= 15,
            "the app did not recover: {in_a_row} answers in a row after {attempts} tries"
        );
        let response = app.me(&user.access_token).await;
        match response.status {
            StatusCode::OK => in_a_row += 1,
            StatusCode::SERVICE_UNAVAILABLE if in_a_row == 0 => {}
            other => panic!("{other} after the killing stopped: {}", response.text()),
        }
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn every_connection_starts_with_statement_lock_and_idle_transaction_time_outs(pool: PgPool) {
    let app = TestApp::new(pool, auth::router);
    let settings = sqlx::query!(
        r#"SELECT current_setting('statement_timeout') AS "statement!",
                current_setting('lock_timeout') AS "lock!",
                current_setting('idle_in_transaction_session_timeout') AS "idle!""#,
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    let (statement, lock, idle) = (settings.statement, settings.lock, settings.idle);
    assert_eq!((statement.as_str(), lock.as_str(), idle.as_str()), ("5s", "3s", "10s"));
}

/// Every server error that a retry resolves is a 503 `unavailable` with `Retry-After`: the
/// shutdowns a Neon restart sends (57P01-57P03), connection exceptions, a full server, time-outs,
/// deadlocks and serialization failures. Any other database error stays a 500. Each is raised
/// by the server itself, through the pooler.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn database_errors_a_retry_resolves_are_503s_and_others_500s(pool: PgPool) {
    let pool = primer_shared::test_util::through_pooler(&pool);
    let raise = |code: &'static str| {
        let pool = pool.clone();
        async move {
            // A DO block takes no parameters, so the code is spliced in: runtime-checked.
            let sql = format!("DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{code}'; END $$");
            let failed = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap_err();
            axum::response::IntoResponse::into_response(primer_shared::Error::from(failed))
        }
    };
    for code in ["57P01", "57P02", "57P03", "08006", "08P01", "53300", "57014", "55P03", "40P01", "40001"] {
        let response = raise(code).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{code}");
        assert_eq!(response.headers()["retry-after"], "2", "{code}");
    }
    for code in ["23505", "22P02", "42501", "XX000"] {
        assert_eq!(raise(code).await.status(), StatusCode::INTERNAL_SERVER_ERROR, "{code}");
    }
}

/// The app reaches PgBouncer through a proxy that then stalls: the connections stay open and
/// nothing comes back. Every request is a 503 with `Retry-After` within the deadline of its own
/// work (5 s), not a hang; once the network is well again, requests work on the same pool, on
/// new connections (the stalled ones were discarded).
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_stalled_database_connection_is_a_503_within_seconds_and_is_discarded(pool: PgPool) {
    let (proxy, proxied) = through_fault_proxy(&pool).await;
    let app = TestApp::on_its_own_pool(AppState::new(test_config(), proxied), auth::router);
    let user = app.signed_up("ada@example.com").await;
    assert_eq!(app.me(&user.access_token).await.status, StatusCode::OK);

    for fault in [Fault::Stall, Fault::BlackHole, Fault::Latency(Duration::from_secs(3))] {
        proxy.set(fault);
        let started = Instant::now();
        let requests: Vec<_> = (0..12)
            .map(|_| {
                let (app, token) = (app.clone(), user.access_token.clone());
                tokio::spawn(async move { app.me(&token).await })
            })
            .collect();
        for request in requests {
            let response = request.await.unwrap();
            assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE, "{fault:?}: {}", response.text());
            assert_eq!(response.error_code(), "unavailable");
            assert!(response.headers.contains_key("retry-after"));
        }
        // Bounded, not timed: a hang would be minutes.
        assert!(started.elapsed() < Duration::from_secs(20), "{fault:?}: {:?}", started.elapsed());

        proxy.set(Fault::None);
        let connections = proxy.connections();
        for _ in 0..3 {
            let response = app.me(&user.access_token).await;
            assert_eq!(response.status, StatusCode::OK, "{fault:?}, afterwards: {}", response.text());
        }
        assert!(proxy.connections() > connections, "{fault:?}: no new connection replaced the stalled ones");
    }
}

/// A reset of every connection is a 503 at once, and the next requests work.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn reset_database_connections_are_503s_and_the_pool_recovers(pool: PgPool) {
    let (proxy, proxied) = through_fault_proxy(&pool).await;
    let app = TestApp::on_its_own_pool(AppState::new(test_config(), proxied), auth::router);
    let user = app.signed_up("ada@example.com").await;
    proxy.set(Fault::Reset);
    let response = app.me(&user.access_token).await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE, "{}", response.text());
    proxy.set(Fault::None);
    // Idle connections the reset killed are checked (and replaced) before reuse once they have
    // sat for a second; a request that picks one sooner is a 503 of its own.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.me(&user.access_token).await.status, StatusCode::OK);
}
