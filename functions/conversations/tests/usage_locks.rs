//! The token counters under parallel reservations and settlements: one reader and many guests
//! (who share the guests' part of the budget) reserve and settle at once, through PgBouncer,
//! settling more and less than they reserved. No statement may wait on another in a cycle
//! (PostgreSQL would abort one with a deadlock, a 503), and the counters end exactly at what
//! was booked.

use crate::common;

use std::time::Duration;

use primer_shared::domain::owner::Owner;
use primer_shared::domain::usage::{self, Allowance, UsageLimits};
use primer_shared::infra::model::{Spend, TokenUsage};
use primer_shared::test_util::TestApp;
use sqlx::PgPool;
use uuid::Uuid;

/// Reservations (and settlements) each caller makes, one after another.
const ROUNDS: i64 = 12;

async fn deadlocks(direct: &PgPool) -> i64 {
    sqlx::query_scalar!(
        r#"SELECT deadlocks AS "deadlocks!" FROM pg_stat_database WHERE datname = current_database()"#
    )
    .fetch_one(direct)
    .await
    .unwrap()
}

/// The tokens a static statement sums.
macro_rules! tokens {
    ($direct:expr, $sql:tt) => {
        sqlx::query_scalar!($sql).fetch_one($direct).await.unwrap()
    };
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn parallel_reservations_and_settlements_never_deadlock_and_add_up(direct: PgPool) {
    let app = TestApp::with_changed_config(
        direct.clone(),
        |config| {
            config.usage.user.tokens = 100_000_000;
            config.usage.guest.tokens = 100_000_000;
            config.usage.daily_token_budget = 1_000_000_000;
            config.usage.guest_daily_token_budget = 1_000_000_000;
        },
        common::router,
    );
    let reader = Owner::User(app.signed_up("ada@example.com").await.id);
    let guests: Vec<Owner> = (0..6).map(|_| Owner::Guest(Uuid::new_v4())).collect();
    // Twelve callers for the reader, three for each guest: each reader row and both budget
    // rows are wanted by many transactions at once.
    let callers: Vec<Owner> = std::iter::repeat_n(reader.clone(), 12)
        .chain(guests.iter().flat_map(|g| [g.clone(), g.clone(), g.clone()]))
        .collect();
    let before = deadlocks(&direct).await;

    let tasks: Vec<_> = callers
        .into_iter()
        .enumerate()
        .map(|(n, subject)| {
            let (pool, limits): (PgPool, UsageLimits) = (app.pool().clone(), app.state.config.usage);
            tokio::spawn(async move {
                let (mut booked, mut failures) = (0i64, Vec::new());
                for round in 0..ROUNDS {
                    let estimate = 1_000 + 10 * (n as i64) + round;
                    let lease = Duration::from_secs(60);
                    let reservation =
                        match usage::reserve_tokens(&pool, &subject, &limits, estimate as u64, lease).await {
                            Ok(Allowance::Granted(reservation)) => reservation,
                            Ok(Allowance::Spent(why)) => panic!("the quotas are far away: {why:?}"),
                            Err(e) => {
                                failures.push(format!("reserve: {e:?}"));
                                continue;
                            }
                        };
                    // Every other call reports more than it reserved, the others less.
                    let reported = if round % 2 == 0 { estimate + 300 } else { estimate - 300 };
                    let usage = TokenUsage { prompt_tokens: 100, completion_tokens: (reported - 100) as u32 };
                    match usage::settle(&pool, reservation, Spend::Tokens(usage)).await {
                        // A request books at most what it reserved.
                        Ok(()) => booked += reported.min(estimate),
                        Err(e) => failures.push(format!("settle: {e:?}")),
                    }
                }
                (subject, booked, failures)
            })
        })
        .collect();
    let mut booked_by_reader = 0;
    let mut booked_by_guests = 0;
    let mut failures = Vec::new();
    for task in tasks {
        let (subject, booked, failed) = task.await.unwrap();
        failures.extend(failed);
        match subject {
            Owner::User(_) => booked_by_reader += booked,
            Owner::Guest(_) => booked_by_guests += booked,
        }
    }
    assert!(failures.is_empty(), "{} calls failed, e.g. {:?}", failures.len(), failures.first());

    // PostgreSQL publishes a backend's statistics when it goes idle, within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::query!("SELECT pg_stat_clear_snapshot()").execute(&direct).await.unwrap();
    assert_eq!(deadlocks(&direct).await, before, "PostgreSQL detected a deadlock");

    let reader_tokens = tokens!(
        &direct,
        r#"SELECT coalesce(sum(tokens), 0)::bigint AS "tokens!" FROM usage_daily WHERE user_id IS NOT NULL"#
    );
    let guest_tokens = tokens!(
        &direct,
        r#"SELECT coalesce(sum(tokens), 0)::bigint AS "tokens!" FROM usage_daily WHERE guest_id IS NOT NULL"#
    );
    let all = tokens!(
        &direct,
        r#"SELECT coalesce(sum(tokens), 0)::bigint AS "tokens!" FROM model_budget_daily WHERE pool = 'all'"#
    );
    let guests_pool = tokens!(
        &direct,
        r#"SELECT coalesce(sum(tokens), 0)::bigint AS "tokens!" FROM model_budget_daily WHERE pool = 'guests'"#
    );
    assert_eq!((reader_tokens, guest_tokens), (booked_by_reader, booked_by_guests));
    assert_eq!((all, guests_pool), (booked_by_reader + booked_by_guests, booked_by_guests));
}
