//! The sweep: every clean-up once, and how long each kind of record is kept.

use std::time::Duration;

use primer_shared::domain::auth::{rate_limit, recovery, sessions};
use primer_shared::domain::conversations::guests;
use primer_shared::domain::personalize::cache;
use primer_shared::{AppState, Result, domain::usage};
use serde::Serialize;

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
    /// Places an account signed in from, unused for 90 days (no longer known places).
    pub known_places: u64,
    /// Daily usage counters (readers' and the deployment's) of days more than 90 days ago.
    pub usage_days: u64,
    /// Token reservations of model calls whose claim lapsed unsettled: their tokens were given
    /// back to the reader's day and the deployment's budget.
    pub lapsed_reservations: u64,
    /// Unclaimed guest conversations untouched for longer than a guest token lives.
    pub guest_conversations: u64,
    /// Stale personalized chapters, object and row.
    pub personalized_chapters: u64,
    /// Stale personalized chapters whose object could not be removed; they stay, row and all,
    /// for the next run.
    pub personalized_chapters_failed: u64,
}

/// Runs every clean-up once. Each table's module owns its clean-up, one statement for the
/// tables it owns; the janitor only says how long records are kept.
///
/// The clean-ups touch different tables, so they run at once, on as many connections as the
/// pool allows: a cold run opens its connections together and needs about half the round trips
/// one after another.
pub async fn sweep(state: &AppState) -> Result<Sweep> {
    let (pool, limits) = (&state.pool, &state.config.limits);
    let stale_chapters = async {
        let (mut removed, mut failed, mut after) = (0, 0, None);
        loop {
            let batch = cache::remove_stale_batch(pool, state.blobs.as_ref(), after, STALE_BATCH).await?;
            (removed, failed) = (removed + batch.removed, failed + batch.failed);
            match batch.next {
                Some(next) => after = Some(next),
                None => return Ok((removed, failed)),
            }
        }
    };
    let (
        sessions,
        verifications,
        limit_records,
        (usage_days, lapsed_reservations),
        guest_conversations,
        (personalized_chapters, personalized_chapters_failed),
    ) = tokio::try_join!(
        sessions::prune(pool, SPENT_REFRESH_TOKENS_KEPT),
        recovery::delete_expired(pool),
        rate_limit::prune(
            pool,
            LIMIT_RECORDS_KEPT.max(limits.login.window),
            LIMIT_RECORDS_KEPT.max(limits.register.window).max(limits.guest.window),
        ),
        async {
            let lapsed = usage::release_lapsed(pool, u32::MAX).await?;
            Ok((usage::prune_days(pool, USAGE_DAYS_KEPT).await?, lapsed))
        },
        guests::delete_unreachable(pool, state.config.jwt.guest_ttl),
        stale_chapters,
    )?;
    Ok(Sweep {
        sessions: sessions.expired,
        verifications,
        spent_refresh_tokens: sessions.spent,
        password_checks: limit_records.checks,
        address_admissions: limit_records.admissions,
        known_places: limit_records.places,
        usage_days,
        lapsed_reservations,
        guest_conversations,
        personalized_chapters,
        personalized_chapters_failed,
    })
}
