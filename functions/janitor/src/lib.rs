//! The janitor: a clean-up run hourly by an EventBridge schedule, not over HTTP. It removes
//! expired sessions and verification rows, failed password checks and address admissions older
//! than the limits need, usage counters of days long past, guest conversations no guest token
//! can reach any more, and personalized chapters nobody can be served any more (stored under a
//! fingerprint the user's current profile no longer gives the chapter, or made for an old
//! chapter version): object first, then row. It
//! answers (and logs) how many of each it removed.
//!
//! What counts as stale, and the removal itself, live in the core crate
//! (`primer_shared::personalize::cache`), beside the code that makes those chapters.

use std::time::Duration;

use primer_shared::auth::sessions;
use primer_shared::error::ErrorChain;
use primer_shared::personalize::cache;
use primer_shared::{AppState, Result, telemetry};
use serde::Serialize;
use serde_json::Value;

/// Failed password checks and address admissions are counted over minutes to an hour (as
/// configured); a day's worth, or a window's when that is longer, is kept for investigations.
const LIMIT_RECORDS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// How long a rotated-away refresh token is remembered, so that presenting it again revokes
/// its session: long enough to catch a stolen token in use, short enough that a session
/// refreshed every 15 minutes keeps about a hundred rows, not thousands.
const SPENT_REFRESH_TOKENS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Daily usage counters are needed for today only; three months are kept for the operator.
const USAGE_DAYS_KEPT: i32 = 90;

/// Stale copies removed per batch: one `DeleteObjects` request's worth.
const STALE_BATCH: i64 = 1000;

/// What one run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sweep {
    /// Sessions past their expiry.
    pub sessions: u64,
    /// Verification rows past their expiry.
    pub verifications: u64,
    /// Spent refresh tokens older than a day (replays are recognised, and the session
    /// revoked, for that long).
    pub spent_refresh_tokens: u64,
    /// Failed password checks older than a day.
    pub password_checks: u64,
    /// Admissions through registration and guest tokens older than a day.
    pub address_admissions: u64,
    /// Daily usage counters (readers' and the deployment's) of days more than 90 days ago.
    pub usage_days: u64,
    /// Unclaimed guest conversations untouched for longer than a guest token lives.
    pub guest_conversations: u64,
    /// Stale personalized chapters, object and row.
    pub personalized_chapters: u64,
    /// Stale personalized chapters whose object could not be removed; they stay, row and all,
    /// for the next run.
    pub personalized_chapters_failed: u64,
}

/// Runs every clean-up once.
pub async fn sweep(state: &AppState) -> Result<Sweep> {
    let mut sweep = Sweep {
        sessions: delete(state, r#"DELETE FROM "session" WHERE "expiresAt" < now()"#).await?,
        verifications: delete(state, r#"DELETE FROM "verification" WHERE "expiresAt" < now()"#).await?,
        spent_refresh_tokens: sessions::prune_spent(&state.pool, SPENT_REFRESH_TOKENS_KEPT).await?,
        password_checks: sqlx::query(
            "DELETE FROM password_checks WHERE checked_at < now() - make_interval(secs => $1)",
        )
        .bind(LIMIT_RECORDS_KEPT.max(state.config.limits.login.window).as_secs_f64())
        .execute(&state.pool)
        .await?
        .rows_affected(),
        address_admissions: sqlx::query(
            "DELETE FROM address_admissions WHERE admitted_at < now() - make_interval(secs => $1)",
        )
        .bind(
            LIMIT_RECORDS_KEPT
                .max(state.config.limits.register.window)
                .max(state.config.limits.guest.window)
                .as_secs_f64(),
        )
        .execute(&state.pool)
        .await?
        .rows_affected(),
        usage_days: sweep_usage_days(state).await?,
        guest_conversations: sweep_guest_conversations(state).await?,
        ..Sweep::default()
    };
    let mut after = None;
    loop {
        let batch = cache::remove_stale_batch(&state.pool, state.blobs.as_ref(), after, STALE_BATCH).await?;
        sweep.personalized_chapters += batch.removed;
        sweep.personalized_chapters_failed += batch.failed;
        match batch.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(sweep)
}

/// A guest token reaches its guest's conversations until it expires, and every change to a
/// conversation was made with a token issued before it: so one untouched for longer than a
/// guest token lives is out of everyone's reach for good.
async fn sweep_guest_conversations(state: &AppState) -> Result<u64> {
    let removed = sqlx::query(
        "DELETE FROM conversations WHERE user_id IS NULL
           AND greatest(updated_at, last_message_at) < now() - make_interval(secs => $1)",
    )
    .bind(state.config.jwt.guest_ttl.as_secs_f64())
    .execute(&state.pool)
    .await?
    .rows_affected();
    // A guest id is one token's: once its counter is as old, nobody can create with it again.
    sqlx::query(
        "DELETE FROM conversation_title_counters WHERE guest_id IS NOT NULL
           AND updated_at < now() - make_interval(secs => $1)",
    )
    .bind(state.config.jwt.guest_ttl.as_secs_f64())
    .execute(&state.pool)
    .await?;
    Ok(removed)
}

async fn sweep_usage_days(state: &AppState) -> Result<u64> {
    let mut removed = 0;
    for sql in [
        "DELETE FROM usage_daily WHERE day < (now() AT TIME ZONE 'utc')::date - $1",
        "DELETE FROM model_budget_daily WHERE day < (now() AT TIME ZONE 'utc')::date - $1",
    ] {
        removed += sqlx::query(sql).bind(USAGE_DAYS_KEPT).execute(&state.pool).await?.rows_affected();
    }
    Ok(removed)
}

async fn delete(state: &AppState, sql: &'static str) -> Result<u64> {
    Ok(sqlx::query(sql).execute(&state.pool).await?.rows_affected())
}

/// The Lambda handler: the schedule's event carries nothing the sweep needs.
pub async fn handle(state: &AppState, _event: Value) -> Result<Sweep, lambda_runtime::Error> {
    match sweep(state).await {
        Ok(sweep) => {
            tracing::info!(
                sessions = sweep.sessions,
                verifications = sweep.verifications,
                spent_refresh_tokens = sweep.spent_refresh_tokens,
                password_checks = sweep.password_checks,
                address_admissions = sweep.address_admissions,
                usage_days = sweep.usage_days,
                guest_conversations = sweep.guest_conversations,
                personalized_chapters = sweep.personalized_chapters,
                personalized_chapters_failed = sweep.personalized_chapters_failed,
                "janitor swept"
            );
            Ok(sweep)
        }
        Err(e) => {
            tracing::error!(error = %ErrorChain(&e), "janitor failed");
            Err(e.into())
        }
    }
}

/// The whole `main`: logging, state from the environment, then Lambda's loop.
pub async fn run_on_lambda() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let state =
        AppState::from_env().await.inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    lambda_runtime::run(lambda_runtime::service_fn(|event: lambda_runtime::LambdaEvent<Value>| {
        let state = state.clone();
        async move { handle(&state, event.payload).await }
    }))
    .await
}
