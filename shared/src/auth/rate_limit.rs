//! The failed-login limit, per email and per client IP, kept in the database so that every
//! Lambda instance counts the same failures.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::{Error, Result};

/// How many failures within how long lock further attempts out.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Failures per email within the window.
    pub per_email: i64,
    /// Failures per IP within the window (higher: many people can share one address).
    pub per_ip: i64,
    /// The sliding window.
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self { per_email: 5, per_ip: 20, window: Duration::from_secs(15 * 60) }
    }
}

/// 429 with `Retry-After` when the email or the IP has used up its failures.
pub async fn check(db: &sqlx::PgPool, limits: LoginLimits, email: &str, ip: Option<&str>) -> Result<()> {
    let by_email = blocked_until(db, "email", email, limits.per_email, limits.window).await?;
    let by_ip = match ip {
        Some(ip) => blocked_until(db, "ip_address", ip, limits.per_ip, limits.window).await?,
        None => None,
    };
    match by_email.max(by_ip) {
        Some(until) => {
            let secs = (until - Utc::now()).num_seconds().max(1) as u64;
            Err(Error::RateLimited { retry_after_secs: secs })
        }
        None => Ok(()),
    }
}

/// When the `limit`-th most recent failure leaves the window, if it is still in it.
async fn blocked_until(
    db: impl PgExecutor<'_>,
    column: &'static str,
    value: &str,
    limit: i64,
    window: Duration,
) -> Result<Option<DateTime<Utc>>> {
    // `column` is one of two constants above, never input.
    let sql = format!(
        "SELECT failed_at + make_interval(secs => $3) FROM login_failures
         WHERE {column} = $1 AND failed_at > now() - make_interval(secs => $3)
         ORDER BY failed_at DESC OFFSET $2 - 1 LIMIT 1"
    );
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(value)
        .bind(limit)
        .bind(window.as_secs_f64())
        .fetch_optional(db)
        .await?)
}

/// Counts a failed attempt.
pub async fn record_failure(db: impl PgExecutor<'_>, email: &str, ip: Option<&str>) -> Result<()> {
    sqlx::query("INSERT INTO login_failures (email, ip_address) VALUES ($1, $2)")
        .bind(email)
        .bind(ip)
        .execute(db)
        .await?;
    Ok(())
}

/// Forgets the email's failures after a successful login.
pub async fn clear(db: impl PgExecutor<'_>, email: &str) -> Result<()> {
    sqlx::query("DELETE FROM login_failures WHERE email = $1").bind(email).execute(db).await?;
    Ok(())
}
