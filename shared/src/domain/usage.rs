//! Cost control: each reader's daily quotas (messages posted, conversations created, model
//! tokens) and the deployment's daily token budget, counted in `usage_daily` and
//! `model_budget_daily`, with the tokens of calls in flight in `token_reservations`.
//!
//! Every quota is enforced by the statement that counts: an upsert of the (subject, day) row
//! whose `WHERE` refuses to go past the quota, so any number of requests at once cannot
//! exceed it. A model call reserves a worst-case estimate of its tokens before it starts
//! ([`reserve_tokens`]) and settles what the endpoint reports after it ([`settle`]), never
//! booking more than it reserved, so neither a reader's counter nor the budget can end above
//! its limit; nothing is held in between. A reservation is a row in `token_reservations` that
//! lapses with the claim of the work it was made for: when its process dies, the tokens are
//! given back ([`release_lapsed`], by the next reservation or the janitor).
//!
//! **How these tables lock.** Every statement and transaction that writes `usage_daily`,
//! `model_budget_daily` or `token_reservations` takes its rows in one order: a
//! `token_reservations` row, then the reader's `usage_daily` row, then the budget's `all` row,
//! then its `guests` row, each in a statement of its own (the rows one statement locks are
//! taken in an order the planner chooses, so no request's statement locks two of them). Reserving
//! ([`reserve_tokens`]), settling ([`settle`]) and giving back a lapsed reservation
//! ([`release_lapsed`]) follow it, so no two of them can wait on each other in a cycle.
//! Counting a message or a conversation ([`take_message`], [`take_conversation`]) locks the
//! reader's row alone, first in its transaction among these tables. The janitor's pruning
//! ([`prune_days`]) deletes only days at least 90 days old, which nothing else writes.
//! Deleting an account takes its reservations, then its counters of every day, then the
//! budget's rows day by day ([`forget_reader`]), before its user row: a request locks one of
//! those rows at a time, so the deletion's several cannot close a cycle with it.
//!
//! Days are UTC days of the database's clock: `(now() AT TIME ZONE 'utc')::date` in the
//! statements.

use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::domain::ids::UserId;
use crate::domain::owner::Owner;
use crate::domain::user;
use crate::error::{Error, QuotaDetails, Result, ResultExt};
pub use crate::infra::config::{DailyQuota, UsageLimits};
use crate::infra::model::Spend;

impl UsageLimits {
    /// The quota of `subject`'s kind.
    pub fn quota(&self, subject: &Owner) -> DailyQuota {
        if subject.is_guest() { self.guest } else { self.user }
    }
}

/// Counts one posted message against `subject`'s day, in the caller's transaction (the one
/// that stores the message, so a refused post stores nothing and a stored one is counted).
/// 429 `quota_exceeded` when the day's messages are used up, or its tokens are; 403
/// `email_unverified` when the reader must verify their address first.
pub async fn take_message(conn: &mut PgConnection, subject: &Owner, limits: &UsageLimits) -> Result<()> {
    require_verified_email(&mut *conn, subject, limits).await?;
    let quota = limits.quota(subject);
    if quota.messages > 0
        && quota.tokens > 0
        && take(conn, subject, Counted::Messages, quota.messages, quota.tokens).await?
    {
        return Ok(());
    }
    let used = used_today(&mut *conn, subject).await?;
    Err(if used.messages >= quota.messages {
        exceeded("messages", quota.messages, used.messages)
    } else {
        exceeded("tokens", quota.tokens, used.tokens)
    })
}

/// Counts one created conversation against `subject`'s day, in the caller's transaction (the
/// one that creates it). 429 `quota_exceeded` when the day's conversations are used up.
pub async fn take_conversation(conn: &mut PgConnection, subject: &Owner, limits: &UsageLimits) -> Result<()> {
    let quota = limits.quota(subject);
    if quota.conversations > 0
        && take(conn, subject, Counted::Conversations, quota.conversations, i64::MAX).await?
    {
        return Ok(());
    }
    let used = used_today(&mut *conn, subject).await?;
    Err(exceeded("conversations", quota.conversations, used.conversations))
}

/// What [`take`] counts.
#[derive(Debug, Clone, Copy)]
enum Counted {
    Messages,
    Conversations,
}

/// Adds one to `subject`'s `counted` of today unless it is at `limit` or the day's tokens are at
/// `tokens_limit`: one statement, so requests at once cannot pass either. True when counted.
/// One statement per counter and kind of reader, as the upsert names both in its text.
async fn take(
    conn: &mut PgConnection,
    subject: &Owner,
    counted: Counted,
    limit: i64,
    tokens_limit: i64,
) -> Result<bool> {
    // Each case's statement differs only in the counter and the reader's key it names.
    macro_rules! count_one {
        ($sql:literal) => {
            sqlx::query_scalar!(
                $sql,
                subject.user_id() as Option<&UserId>,
                subject.guest_id(),
                limit,
                tokens_limit
            )
            .fetch_optional(&mut *conn)
            .await
        };
    }
    let taken = match (counted, subject) {
        (Counted::Messages, Owner::User(_)) => count_one!(
            "INSERT INTO usage_daily AS u (day, user_id, guest_id, messages)
             VALUES ((now() AT TIME ZONE 'utc')::date, $1, $2, 1)
             ON CONFLICT (user_id, day) DO UPDATE SET messages = u.messages + 1, updated_at = now()
             WHERE u.messages < $3::bigint AND u.tokens < $4
             RETURNING 1"
        ),
        (Counted::Messages, Owner::Guest(_)) => count_one!(
            "INSERT INTO usage_daily AS u (day, user_id, guest_id, messages)
             VALUES ((now() AT TIME ZONE 'utc')::date, $1, $2, 1)
             ON CONFLICT (guest_id, day) DO UPDATE SET messages = u.messages + 1, updated_at = now()
             WHERE u.messages < $3::bigint AND u.tokens < $4
             RETURNING 1"
        ),
        (Counted::Conversations, Owner::User(_)) => count_one!(
            "INSERT INTO usage_daily AS u (day, user_id, guest_id, conversations)
             VALUES ((now() AT TIME ZONE 'utc')::date, $1, $2, 1)
             ON CONFLICT (user_id, day) DO UPDATE SET conversations = u.conversations + 1, updated_at = now()
             WHERE u.conversations < $3::bigint AND u.tokens < $4
             RETURNING 1"
        ),
        (Counted::Conversations, Owner::Guest(_)) => count_one!(
            "INSERT INTO usage_daily AS u (day, user_id, guest_id, conversations)
             VALUES ((now() AT TIME ZONE 'utc')::date, $1, $2, 1)
             ON CONFLICT (guest_id, day) DO UPDATE SET conversations = u.conversations + 1, updated_at = now()
             WHERE u.conversations < $3::bigint AND u.tokens < $4
             RETURNING 1"
        ),
    }
    // The account was deleted while its request was in flight.
    .on_constraint("usage_daily_user_id_fkey", |_| Error::Unauthorized)?;
    Ok(taken.is_some())
}

fn exceeded(quota: &'static str, limit: i64, used: i64) -> Error {
    let resets_at = next_midnight(Utc::now());
    Error::QuotaExceeded(QuotaDetails { quota, limit, used, period: "day", resets_at })
}

fn next_midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = now.date_naive().checked_add_days(Days::new(1)).unwrap_or(NaiveDate::MAX);
    tomorrow.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// What a reader counted today.
#[derive(Debug, Clone, Copy, Default)]
struct UsedToday {
    messages: i64,
    tokens: i64,
    conversations: i64,
}

async fn used_today(conn: &mut PgConnection, subject: &Owner) -> Result<UsedToday> {
    let row = sqlx::query_as!(
        UsedToday,
        r#"SELECT messages::bigint AS "messages!", tokens, conversations::bigint AS "conversations!"
           FROM usage_daily
           WHERE (user_id = $1 OR guest_id = $2) AND day = (now() AT TIME ZONE 'utc')::date"#,
        subject.user_id() as Option<&UserId>,
        subject.guest_id(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.unwrap_or_default())
}

/// Why a model call was not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// The reader's tokens for today would not cover the call.
    Reader,
    /// The deployment's budget for today (or its guests' share) would not.
    Deployment,
}

/// The `event` field of the line logged (at `warn`) each time the deployment's daily budget, or
/// its guests' share, refuses a model call. template.yaml's metric filter counts these lines
/// for the model-budget alarm: keep the two the same.
pub const BUDGET_SPENT_EVENT: &str = "model_budget_spent";

/// The deployment's budget (`pool`: all, or the guests' share) refused a call: the line the
/// model-budget alarm counts.
fn budget_refused(pool: &str) -> Allowance {
    tracing::warn!(
        event = BUDGET_SPENT_EVENT,
        pool,
        "the daily model budget is spent; a model call was refused"
    );
    Allowance::Spent(Exhausted::Deployment)
}

/// Tokens reserved for one model call, to be [`settle`]d after it. Its row in
/// `token_reservations` lapses with the claim of the work it was made for: should the process
/// die before settling, the tokens are given back then ([`release_lapsed`]).
#[derive(Debug)]
#[must_use = "a reservation is settled after the call, or its tokens stay counted until it lapses"]
pub struct TokenReservation {
    id: i64,
    subject: Owner,
    day: NaiveDate,
    tokens: i64,
    /// The reader's quota and the budgets it was reserved under: what a late settlement (one
    /// that finds its reservation lapsed) may fill the counters up to.
    caps: Caps,
}

#[derive(Debug, Clone, Copy)]
struct Caps {
    reader: i64,
    all: i64,
    guests: i64,
}

impl TokenReservation {
    /// The tokens reserved.
    pub fn tokens(&self) -> i64 {
        self.tokens
    }
}

/// What [`reserve_tokens`] allows.
#[derive(Debug)]
pub enum Allowance {
    /// Call the model, then settle this.
    Granted(TokenReservation),
    /// Do not: the offline engine answers instead.
    Spent(Exhausted),
}

/// Reserves `estimate` tokens of `subject`'s day and of the deployment's budget for one model
/// call, all or nothing, in one short transaction: the row updates refuse to pass a quota, so
/// concurrent calls cannot either. The reservation lapses after `lease` (the claim of the work
/// it is for). Lapsed reservations of anyone are given back first. 403 `email_unverified`
/// when the reader must verify their address before the model serves them.
///
/// Locks, in the one order every statement on these tables keeps: the reader's counter row,
/// then the budget's `all` row, then its `guests` row (the reservation's own row is new).
pub async fn reserve_tokens(
    pool: &PgPool,
    subject: &Owner,
    limits: &UsageLimits,
    estimate: u64,
    lease: Duration,
) -> Result<Allowance> {
    require_verified_email(pool, subject, limits).await?;
    release_lapsed(pool, LAPSED_PER_RESERVATION).await?;
    let tokens = i64::try_from(estimate).unwrap_or(i64::MAX);
    let caps = Caps {
        reader: limits.quota(subject).tokens,
        all: limits.daily_token_budget,
        guests: limits.guest_daily_token_budget,
    };
    if tokens > caps.reader {
        return Ok(Allowance::Spent(Exhausted::Reader));
    }
    if tokens > caps.all {
        return Ok(budget_refused("all"));
    }
    if subject.is_guest() && tokens > caps.guests {
        return Ok(budget_refused("guests"));
    }
    let mut tx = pool.begin().await?;
    // One statement per kind of reader, as the upsert names its key in its text.
    let day = match subject {
        Owner::User(_) => {
            sqlx::query_scalar!(
                "INSERT INTO usage_daily AS u (day, user_id, guest_id, tokens)
             VALUES ((now() AT TIME ZONE 'utc')::date, $1, $2, $3)
             ON CONFLICT (user_id, day) DO UPDATE SET tokens = u.tokens + $3, updated_at = now()
             WHERE u.tokens + $3 <= $4
             RETURNING u.day",
                subject.user_id() as Option<&UserId>,
                subject.guest_id(),
                tokens,
                caps.reader,
            )
            .fetch_optional(&mut *tx)
            .await
        }
        Owner::Guest(_) => {
            sqlx::query_scalar!(
                "INSERT INTO usage_daily AS u (day, user_id, guest_id, tokens)
             VALUES ((now() AT TIME ZONE 'utc')::date, $1, $2, $3)
             ON CONFLICT (guest_id, day) DO UPDATE SET tokens = u.tokens + $3, updated_at = now()
             WHERE u.tokens + $3 <= $4
             RETURNING u.day",
                subject.user_id() as Option<&UserId>,
                subject.guest_id(),
                tokens,
                caps.reader,
            )
            .fetch_optional(&mut *tx)
            .await
        }
    }
    .on_constraint("usage_daily_user_id_fkey", |_| Error::Unauthorized)?;
    let Some(day) = day else { return Ok(Allowance::Spent(Exhausted::Reader)) };
    for (budget_pool, budget) in budget_pools(subject, caps) {
        let reserved = sqlx::query_scalar!(
            "INSERT INTO model_budget_daily AS b (day, pool, tokens) VALUES ($1, $2, $3)
             ON CONFLICT (day, pool) DO UPDATE SET tokens = b.tokens + $3
             WHERE b.tokens + $3 <= $4
             RETURNING b.day",
            day,
            budget_pool,
            tokens,
            budget,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if reserved.is_none() {
            // Dropping the transaction gives back the reader's reservation too.
            return Ok(budget_refused(budget_pool));
        }
    }
    let id = sqlx::query_scalar!(
        "INSERT INTO token_reservations (day, user_id, guest_id, tokens, expires_at)
         VALUES ($1, $2, $3, $4, clock_timestamp() + make_interval(secs => $5))
         RETURNING id",
        day,
        subject.user_id() as Option<&UserId>,
        subject.guest_id(),
        tokens,
        lease.as_secs_f64(),
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Allowance::Granted(TokenReservation { id, subject: subject.clone(), day, tokens, caps }))
}

/// The budget rows a subject's calls count against, in lock order: `all`, then `guests`.
fn budget_pools(subject: &Owner, caps: Caps) -> impl Iterator<Item = (&'static str, i64)> {
    [("all", caps.all)].into_iter().chain(subject.is_guest().then_some(("guests", caps.guests)))
}

/// How many lapsed reservations a new reservation gives back before its own: a crash leaves
/// one per call in flight, and the janitor sweeps whatever is left.
const LAPSED_PER_RESERVATION: u32 = 16;

/// With [`UsageLimits::require_verified_email`], a user whose address is not verified is
/// refused what the model serves: the model is the operator's cost, and an address nobody
/// confirmed is the cheapest way to a new daily quota.
async fn require_verified_email(
    db: impl sqlx::PgExecutor<'_>,
    subject: &Owner,
    limits: &UsageLimits,
) -> Result<()> {
    let Some(user_id) = subject.user_id().filter(|_| limits.require_verified_email) else { return Ok(()) };
    let verified = user::email_verified(db, user_id).await?;
    if verified == Some(false) { Err(Error::EmailUnverified) } else { Ok(()) }
}

/// Replaces a reservation with what the call cost: the reported tokens but never more than was
/// reserved (a call may not book past the quota it was admitted under), nothing (the endpoint
/// refused), or the reservation itself when nobody can tell.
///
/// One transaction, locking in the order [`reserve_tokens`] does: the reservation's row (it is
/// deleted), the reader's counter, the budget's `all` row, its `guests` row. A reservation that
/// lapsed before its call settled was given back already; then what the call cost is booked
/// afresh, filling the counters at most to the limits it was reserved under.
pub async fn settle(pool: &PgPool, reservation: TokenReservation, spend: Spend) -> Result<()> {
    let booked = match spend {
        Spend::Tokens(usage) => i64::try_from(usage.total()).unwrap_or(i64::MAX).min(reservation.tokens),
        Spend::Unknown => reservation.tokens,
        Spend::Nothing => 0,
    };
    let mut tx = pool.begin().await?;
    let still_reserved =
        sqlx::query_scalar!("DELETE FROM token_reservations WHERE id = $1 RETURNING id", reservation.id)
            .fetch_optional(&mut *tx)
            .await?;
    let caps = reservation.caps;
    let change = match still_reserved {
        Some(_) => Change::Add(booked - reservation.tokens),
        None => {
            tracing::warn!(tokens = booked, "a model call outlived its reservation; booking it afresh");
            Change::AddUpTo(booked)
        }
    };
    if !matches!(change, Change::Add(0) | Change::AddUpTo(0)) {
        move_counters(&mut tx, &reservation.subject, reservation.day, change, caps).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// How [`move_counters`] changes each counter.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// Adds this (a negative amount gives tokens back), never below zero.
    Add(i64),
    /// Adds this, but fills no counter past its cap.
    AddUpTo(i64),
}

/// Moves `subject`'s counter of `day` and the budget's by `change`, in the lock order: the
/// reader's row, then `all`, then `guests`. Inside the caller's transaction.
async fn move_counters(
    tx: &mut PgConnection,
    subject: &Owner,
    day: NaiveDate,
    change: Change,
    caps: Caps,
) -> Result<()> {
    let (amount, capped) = match change {
        Change::Add(amount) => (amount, false),
        Change::AddUpTo(amount) => (amount, true),
    };
    // `$4` caps the new value when `$5`; without it, the amount only has to keep it positive.
    sqlx::query!(
        "UPDATE usage_daily SET tokens = CASE WHEN $5 THEN greatest(tokens, least(tokens + $3, $4))
                                              ELSE greatest(tokens + $3, 0) END,
                                updated_at = now()
         WHERE (user_id = $1 OR guest_id = $2) AND day = $6",
        subject.user_id() as Option<&UserId>,
        subject.guest_id(),
        amount,
        caps.reader,
        capped,
        day,
    )
    .execute(&mut *tx)
    .await?;
    for (budget_pool, cap) in budget_pools(subject, caps) {
        sqlx::query!(
            "UPDATE model_budget_daily SET tokens = CASE WHEN $4 THEN greatest(tokens, least(tokens + $2, $3))
                                                         ELSE greatest(tokens + $2, 0) END
             WHERE day = $5 AND pool = $1",
            budget_pool,
            amount,
            cap,
            capped,
            day,
        )
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Gives back the tokens of up to `most` reservations whose claim lapsed (their process died
/// before settling), one transaction each, in the lock order of [`settle`]; returns how many.
/// A reservation being settled or given back by another request at the moment is skipped,
/// never waited for.
pub async fn release_lapsed(pool: &PgPool, most: u32) -> Result<u64> {
    let any = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM token_reservations WHERE expires_at < clock_timestamp()) AS "any!""#,
    )
    .fetch_one(pool)
    .await?;
    if !any {
        return Ok(0);
    }
    let mut released = 0;
    while released < u64::from(most) {
        let mut tx = pool.begin().await?;
        let lapsed = sqlx::query!(
            r#"DELETE FROM token_reservations
               WHERE id = (SELECT id FROM token_reservations WHERE expires_at < clock_timestamp()
                           ORDER BY expires_at LIMIT 1 FOR UPDATE SKIP LOCKED)
               RETURNING day, user_id AS "user_id: UserId", guest_id, tokens"#,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(lapsed) = lapsed else { break };
        let (day, tokens) = (lapsed.day, lapsed.tokens);
        let subject = match (lapsed.user_id, lapsed.guest_id) {
            (Some(user_id), _) => Owner::User(user_id),
            (None, Some(guest_id)) => Owner::Guest(guest_id),
            (None, None) => return Err(Error::internal("a reservation without a subject")),
        };
        let caps = Caps { reader: i64::MAX, all: i64::MAX, guests: i64::MAX };
        move_counters(&mut tx, &subject, day, Change::Add(-tokens), caps).await?;
        tx.commit().await?;
        released += 1;
    }
    if released > 0 {
        tracing::info!(released, "gave back the tokens of model calls whose process died");
    }
    Ok(released)
}

/// One allowance as `GET /api/usage` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = Allowance)]
pub struct Allowed {
    /// Used today (tokens include calls in flight).
    pub used: i64,
    /// The day's quota.
    pub limit: i64,
    /// What is left.
    #[schema(minimum = 0)]
    pub remaining: i64,
}

impl Allowed {
    fn new(used: i64, limit: i64) -> Self {
        Self { used, limit, remaining: (limit - used).max(0) }
    }
}

/// What a reader has used of today and has left.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    /// The UTC day counted.
    pub day: NaiveDate,
    /// When the next day starts.
    pub resets_at: DateTime<Utc>,
    /// Messages posted to the tutor today.
    pub messages: Allowed,
    /// Model tokens used today by the tutor and by personalization, calls in flight included.
    pub tokens: Allowed,
    /// Conversations created today.
    pub conversations: Allowed,
    /// False once the deployment's budget for today (for guests: their share) is spent: the
    /// offline engines answer until it renews.
    pub model_budget_left: bool,
}

/// `subject`'s usage today.
pub async fn report(pool: &PgPool, subject: &Owner, limits: &UsageLimits) -> Result<UsageReport> {
    let mut conn = pool.acquire().await?;
    let used = used_today(&mut conn, subject).await?;
    let budget = sqlx::query!(
        r#"SELECT (now() AT TIME ZONE 'utc')::date AS "day!",
              (SELECT tokens FROM model_budget_daily
               WHERE day = (now() AT TIME ZONE 'utc')::date AND pool = 'all') AS all_tokens,
              (SELECT tokens FROM model_budget_daily
               WHERE day = (now() AT TIME ZONE 'utc')::date AND pool = 'guests') AS guest_tokens"#,
    )
    .fetch_one(&mut *conn)
    .await?;
    let (day, all, guests) = (budget.day, budget.all_tokens, budget.guest_tokens);
    let quota = limits.quota(subject);
    // "Left" means room for at least one more reply of the longest allowed length.
    let room = i64::from(limits.reply_max_tokens);
    let mut budget_left = all.unwrap_or(0) + room <= limits.daily_token_budget;
    if subject.is_guest() {
        budget_left &= guests.unwrap_or(0) + room <= limits.guest_daily_token_budget;
    }
    Ok(UsageReport {
        day,
        resets_at: next_midnight(day.and_hms_opt(12, 0, 0).unwrap_or_default().and_utc()),
        messages: Allowed::new(used.messages, quota.messages),
        tokens: Allowed::new(used.tokens, quota.tokens),
        conversations: Allowed::new(used.conversations, quota.conversations),
        model_budget_left: budget_left,
    })
}

/// Removes a user's reservations and counters before their account goes, in the transaction
/// that deletes it, and gives the reservations' tokens back to the deployment's budget: locked
/// in the order every other statement here keeps (reservations, then counters, then the
/// budget's rows by day), before the user row whose deletion would otherwise take them by
/// cascade, after it.
pub async fn forget_reader(tx: &mut PgConnection, user_id: &UserId) -> Result<()> {
    let reserved = sqlx::query!(
        r#"WITH gone AS (DELETE FROM token_reservations WHERE user_id = $1 RETURNING day, tokens)
           SELECT day AS "day!", sum(tokens)::bigint AS "tokens!" FROM gone GROUP BY day ORDER BY day"#,
        user_id as &UserId,
    )
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query!("DELETE FROM usage_daily WHERE user_id = $1", user_id as &UserId).execute(&mut *tx).await?;
    for gone in reserved {
        sqlx::query!(
            "UPDATE model_budget_daily SET tokens = greatest(tokens - $2, 0) WHERE day = $1 AND pool = 'all'",
            gone.day,
            gone.tokens,
        )
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Deletes the daily counters, readers' and the deployment's, of days more than `kept_days`
/// before today (UTC); only today's are needed to enforce anything.
pub async fn prune_days(db: &PgPool, kept_days: i32) -> Result<u64> {
    let removed = sqlx::query_scalar!(
        r#"WITH readers AS (DELETE FROM usage_daily
                          WHERE day < (now() AT TIME ZONE 'utc')::date - $1::int RETURNING 1),
              deployment AS (DELETE FROM model_budget_daily
                             WHERE day < (now() AT TIME ZONE 'utc')::date - $1::int RETURNING 1)
         SELECT (SELECT count(*) FROM readers) + (SELECT count(*) FROM deployment) AS "removed!""#,
        kept_days,
    )
    .fetch_one(db)
    .await?;
    Ok(removed as u64)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn the_day_resets_at_the_next_utc_midnight() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T23:59:30Z").unwrap().to_utc();
        assert_eq!(next_midnight(now).to_rfc3339(), "2026-11-30T00:00:00+00:00");
    }

    #[test]
    fn guests_get_far_less_than_users() {
        let limits = UsageLimits::default();
        let (user, guest) =
            (limits.quota(&Owner::User(UserId::from("u"))), limits.quota(&Owner::Guest(Uuid::nil())));
        assert!(guest.messages * 10 <= user.messages && guest.tokens * 10 <= user.tokens);
        assert!(guest.conversations < user.conversations);
        assert!(limits.guest_daily_token_budget < limits.daily_token_budget);
    }

    #[test]
    fn remaining_never_goes_negative() {
        assert_eq!(Allowed::new(12, 10), Allowed { used: 12, limit: 10, remaining: 0 });
    }
}
