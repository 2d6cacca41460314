//! Cost control for the model: each reader's daily quotas (messages posted, model tokens) and
//! the deployment's daily token budget, counted in `usage_daily` and `model_budget_daily`.
//!
//! Every quota is enforced by the statement that counts: an upsert of the (subject, day) row
//! whose `WHERE` refuses to go past the quota, so any number of requests at once cannot
//! exceed it. A model call reserves a generous estimate of its tokens before it starts
//! ([`reserve_tokens`]) and settles the tokens the endpoint reports after it ([`settle`]);
//! nothing is held in between. A call whose process dies keeps its estimate counted.
//!
//! Days are UTC days of the database's clock.

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::error::{Error, QuotaDetails, Result, ResultExt};
use crate::model::Spend;
use crate::owner::Owner;

/// A reader's allowance per day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyQuota {
    /// Messages posted to the tutor.
    pub messages: i64,
    /// Model tokens (prompt and completion), of the tutor and of personalization.
    pub tokens: i64,
}

/// Quotas, the deployment's budget, and the length limit of model answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageLimits {
    /// A signed-in user's day (`QUOTA_USER_*`).
    pub user: DailyQuota,
    /// A guest's day (`QUOTA_GUEST_*`): far below a user's.
    pub guest: DailyQuota,
    /// Model tokens the whole deployment may use per day (`MODEL_DAILY_TOKEN_BUDGET`); once
    /// spent, the offline tutor and the rule-based engine answer.
    pub daily_token_budget: i64,
    /// The part of it all guests together may use (`MODEL_DAILY_GUEST_TOKEN_BUDGET`), so
    /// that minted guest tokens cannot spend the users' share.
    pub guest_daily_token_budget: i64,
    /// `max_tokens` of a tutor reply (`MODEL_MAX_TOKENS`).
    pub reply_max_tokens: u32,
    /// `max_tokens` of a model-personalized chapter (`PERSONALIZE_MAX_TOKENS`).
    pub personalize_max_tokens: u32,
    /// Whether a signed-in user needs a verified e-mail address for what the model serves
    /// (`REQUIRE_VERIFIED_EMAIL`, off by default; only with a model configured): posting to
    /// the tutor, and every model call. Guests are bound by their own quota instead.
    pub require_verified_email: bool,
}

impl Default for UsageLimits {
    fn default() -> Self {
        Self {
            user: DailyQuota { messages: 200, tokens: 400_000 },
            guest: DailyQuota { messages: 10, tokens: 30_000 },
            daily_token_budget: 5_000_000,
            guest_daily_token_budget: 1_000_000,
            reply_max_tokens: 1_024,
            personalize_max_tokens: 8_192,
            require_verified_email: false,
        }
    }
}

impl UsageLimits {
    /// The quota of `subject`'s kind.
    pub fn quota(&self, subject: &Owner) -> DailyQuota {
        if subject.is_guest() { self.guest } else { self.user }
    }
}

/// Today's UTC date on the database's clock.
const TODAY: &str = "(now() AT TIME ZONE 'utc')::date";

/// Counts one posted message against `subject`'s day, in the caller's transaction (the one
/// that stores the message, so a refused post stores nothing and a stored one is counted).
/// 429 `quota_exceeded` when the day's messages are used up, or its tokens are; 403
/// `email_unverified` when the reader must verify their address first.
pub async fn take_message(conn: &mut PgConnection, subject: &Owner, limits: &UsageLimits) -> Result<()> {
    require_verified_email(&mut *conn, subject, limits).await?;
    let quota = limits.quota(subject);
    if quota.messages > 0 && quota.tokens > 0 {
        // The column name is one of two constants, never input.
        let sql = format!(
            "INSERT INTO usage_daily AS u (day, user_id, guest_id, messages) VALUES ({TODAY}, $1, $2, 1)
             ON CONFLICT ({column}, day) DO UPDATE SET messages = u.messages + 1, updated_at = now()
             WHERE u.messages < $3 AND u.tokens < $4
             RETURNING u.messages",
            column = subject.column()
        );
        let taken: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(subject.user_id())
            .bind(subject.guest_id())
            .bind(quota.messages)
            .bind(quota.tokens)
            .fetch_optional(&mut *conn)
            .await
            // The account was deleted while its request was in flight.
            .on_constraint("usage_daily_user_id_fkey", |_| Error::Unauthorized)?;
        if taken.is_some() {
            return Ok(());
        }
    }
    let (messages, tokens) = used_today(&mut *conn, subject).await?;
    Err(if messages >= quota.messages {
        exceeded("messages", quota.messages, messages)
    } else {
        exceeded("tokens", quota.tokens, tokens)
    })
}

fn exceeded(quota: &'static str, limit: i64, used: i64) -> Error {
    let resets_at = next_midnight(Utc::now());
    Error::QuotaExceeded(QuotaDetails { quota, limit, used, period: "day", resets_at })
}

fn next_midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = now.date_naive().checked_add_days(Days::new(1)).unwrap_or(NaiveDate::MAX);
    tomorrow.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

async fn used_today(conn: &mut PgConnection, subject: &Owner) -> Result<(i64, i64)> {
    let sql = format!(
        "SELECT messages::bigint, tokens FROM usage_daily
         WHERE (user_id = $1 OR guest_id = $2) AND day = {TODAY}"
    );
    let row: Option<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(subject.user_id())
        .bind(subject.guest_id())
        .fetch_optional(conn)
        .await?;
    Ok(row.unwrap_or((0, 0)))
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

/// Tokens reserved for one model call, to be [`settle`]d after it.
#[derive(Debug)]
#[must_use = "a reservation is settled after the call, or its estimate stays counted"]
pub struct TokenReservation {
    subject: Owner,
    day: NaiveDate,
    tokens: i64,
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
/// concurrent calls cannot either. 403 `email_unverified` when the reader must verify their
/// address before the model serves them.
pub async fn reserve_tokens(
    pool: &PgPool,
    subject: &Owner,
    limits: &UsageLimits,
    estimate: u64,
) -> Result<Allowance> {
    require_verified_email(pool, subject, limits).await?;
    let tokens = i64::try_from(estimate).unwrap_or(i64::MAX);
    if tokens > limits.quota(subject).tokens {
        return Ok(Allowance::Spent(Exhausted::Reader));
    }
    if tokens > limits.daily_token_budget {
        return Ok(budget_refused("all"));
    }
    if subject.is_guest() && tokens > limits.guest_daily_token_budget {
        return Ok(budget_refused("guests"));
    }
    let mut tx = pool.begin().await?;
    let sql = format!(
        "INSERT INTO usage_daily AS u (day, user_id, guest_id, tokens) VALUES ({TODAY}, $1, $2, $3)
         ON CONFLICT ({column}, day) DO UPDATE SET tokens = u.tokens + $3, updated_at = now()
         WHERE u.tokens + $3 <= $4
         RETURNING u.day",
        column = subject.column()
    );
    let day: Option<NaiveDate> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(subject.user_id())
        .bind(subject.guest_id())
        .bind(tokens)
        .bind(limits.quota(subject).tokens)
        .fetch_optional(&mut *tx)
        .await
        .on_constraint("usage_daily_user_id_fkey", |_| Error::Unauthorized)?;
    let Some(day) = day else { return Ok(Allowance::Spent(Exhausted::Reader)) };
    let mut pools = vec![("all", limits.daily_token_budget)];
    if subject.is_guest() {
        pools.push(("guests", limits.guest_daily_token_budget));
    }
    for (pool_name, budget) in pools {
        let reserved: Option<NaiveDate> = sqlx::query_scalar(
            "INSERT INTO model_budget_daily AS b (day, pool, tokens) VALUES ($1, $2, $3)
             ON CONFLICT (day, pool) DO UPDATE SET tokens = b.tokens + $3
             WHERE b.tokens + $3 <= $4
             RETURNING b.day",
        )
        .bind(day)
        .bind(pool_name)
        .bind(tokens)
        .bind(budget)
        .fetch_optional(&mut *tx)
        .await?;
        if reserved.is_none() {
            // Dropping the transaction gives back the reader's reservation too.
            return Ok(budget_refused(pool_name));
        }
    }
    tx.commit().await?;
    Ok(Allowance::Granted(TokenReservation { subject: subject.clone(), day, tokens }))
}

/// With [`UsageLimits::require_verified_email`], a user whose address is not verified is
/// refused what the model serves: the model is the operator's cost, and an address nobody
/// confirmed is the cheapest way to a new daily quota.
async fn require_verified_email(
    db: impl sqlx::PgExecutor<'_>,
    subject: &Owner,
    limits: &UsageLimits,
) -> Result<()> {
    let Some(user_id) = subject.user_id().filter(|_| limits.require_verified_email) else { return Ok(()) };
    let verified: Option<bool> = sqlx::query_scalar(r#"SELECT "emailVerified" FROM "user" WHERE id = $1"#)
        .bind(user_id)
        .fetch_optional(db)
        .await?;
    if verified == Some(false) { Err(Error::EmailUnverified) } else { Ok(()) }
}

/// Replaces a reservation's estimate with what the call cost: the reported tokens, nothing
/// (the endpoint refused), or the estimate itself when nobody can tell.
pub async fn settle(pool: &PgPool, reservation: TokenReservation, spend: Spend) -> Result<()> {
    let delta = match spend {
        Spend::Tokens(usage) => i64::try_from(usage.total()).unwrap_or(i64::MAX) - reservation.tokens,
        Spend::Unknown => 0,
        Spend::Nothing => -reservation.tokens,
    };
    if delta == 0 {
        return Ok(());
    }
    let subject = &reservation.subject;
    // One statement, so both counters move together without a transaction.
    sqlx::query(
        "WITH reader AS (
             UPDATE usage_daily SET tokens = greatest(tokens + $3, 0), updated_at = now()
             WHERE (user_id = $1 OR guest_id = $2) AND day = $4
         )
         UPDATE model_budget_daily SET tokens = greatest(tokens + $3, 0)
         WHERE day = $4 AND (pool = 'all' OR (pool = 'guests' AND $5))",
    )
    .bind(subject.user_id())
    .bind(subject.guest_id())
    .bind(delta)
    .bind(reservation.day)
    .bind(subject.is_guest())
    .execute(pool)
    .await?;
    Ok(())
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
    /// False once the deployment's budget for today (for guests: their share) is spent: the
    /// offline engines answer until it renews.
    pub model_budget_left: bool,
}

/// `subject`'s usage today.
pub async fn report(pool: &PgPool, subject: &Owner, limits: &UsageLimits) -> Result<UsageReport> {
    let mut conn = pool.acquire().await?;
    let (messages, tokens) = used_today(&mut conn, subject).await?;
    let (day, all, guests): (NaiveDate, Option<i64>, Option<i64>) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TODAY},
                (SELECT tokens FROM model_budget_daily WHERE day = {TODAY} AND pool = 'all'),
                (SELECT tokens FROM model_budget_daily WHERE day = {TODAY} AND pool = 'guests')"
        )))
        .fetch_one(&mut *conn)
        .await?;
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
        messages: Allowed::new(messages, quota.messages),
        tokens: Allowed::new(tokens, quota.tokens),
        model_budget_left: budget_left,
    })
}

/// Deletes the daily counters, readers' and the deployment's, of days more than `kept_days`
/// before today (UTC); only today's are needed to enforce anything.
pub async fn prune_days(db: &PgPool, kept_days: i32) -> Result<u64> {
    let removed: i64 = sqlx::query_scalar(
        "WITH readers AS (DELETE FROM usage_daily
                          WHERE day < (now() AT TIME ZONE 'utc')::date - $1 RETURNING 1),
              deployment AS (DELETE FROM model_budget_daily
                             WHERE day < (now() AT TIME ZONE 'utc')::date - $1 RETURNING 1)
         SELECT (SELECT count(*) FROM readers) + (SELECT count(*) FROM deployment)",
    )
    .bind(kept_days)
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
            (limits.quota(&Owner::User("u".into())), limits.quota(&Owner::Guest(Uuid::nil())));
        assert!(guest.messages * 10 <= user.messages && guest.tokens * 10 <= user.tokens);
        assert!(limits.guest_daily_token_budget < limits.daily_token_budget);
    }

    #[test]
    fn remaining_never_goes_negative() {
        assert_eq!(Allowed::new(12, 10), Allowed { used: 12, limit: 10, remaining: 0 });
    }
}
