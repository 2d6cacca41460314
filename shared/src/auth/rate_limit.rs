//! Limits that hold against parallel requests: failed password checks per account and per
//! client address, and admissions through the anonymous entry points (registration, guest
//! tokens) per address. All of them live in the database, so every Lambda instance counts
//! the same requests.
//!
//! Every limit reserves its slot before the work it guards. A reservation is a short
//! transaction that takes a transaction-scoped advisory lock on what is counted (the account,
//! the address), counts the rows of the sliding window and inserts its own row only if the
//! count allows; a second request for the same account waits for the first one's commit and
//! then counts its row. So N requests at once get at most the limit, and nothing outlives the
//! transaction (Neon's pooler runs in transaction mode).
//!
//! Password checks: a login or a password re-check reserves a check for the account before
//! verifying (a wrong password keeps the row: it is the failure's record; a right one deletes
//! it). A password-reset or address-verification token is checked the same way, counted
//! against the account it names under a key of its own ([`AccountKey::recovery`]), so that
//! someone guessing passwords cannot lock the owner out of recovery too. The per-account limit (5 in 15 minutes) bounds guessing against any account whatever
//! the addresses. The per-address limit bounds spraying many accounts from one address
//! without locking out a classroom behind one NAT address: it is generous (100), a sign-in
//! forgives the typos its account made from that address, and once it is reached, accounts
//! that already have a live session opened from that address may still sign in there.
//!
//! Admissions: registrations, guest tokens and forgot-password requests are admitted per
//! client address; the e-mails sent to one account are admitted per account and kind, with an
//! address no account has counted like an account, so a refusal says nothing about either.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::email::MailKind;
use crate::error::{Error, Result};

/// How many failed password checks within how long lock further checks out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed (or in-flight) checks per account within the window, from any address.
    pub per_account: i64,
    /// Failed checks per client address within the window, not counting those of accounts
    /// that then signed in from it.
    pub per_address: i64,
    /// The sliding window.
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self { per_account: 5, per_address: 100, window: Duration::from_secs(15 * 60) }
    }
}

/// How many requests one client address may make through an anonymous entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressLimit {
    /// Admitted requests per address within the window.
    pub per_address: i64,
    /// The sliding window.
    pub window: Duration,
}

/// What a password check is counted against: the account when there is one, else the
/// normalised email (so an unknown address is limited exactly like a known one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountKey(String);

impl AccountKey {
    /// The key of an existing account.
    pub fn user(user_id: &str) -> Self {
        Self(format!("user:{user_id}"))
    }

    /// The key of an email no account has.
    pub fn unknown_email(email: &str) -> Self {
        Self(format!("email:{email}"))
    }

    /// The key of an account's recovery tokens (password reset, address verification): kept
    /// apart from its password checks, so that failed logins do not block recovery.
    pub fn recovery(user_id: &str) -> Self {
        Self(format!("recovery:user:{user_id}"))
    }

    /// The key of a token that names no account, by a digest of the token (never the token).
    pub fn unknown_token(digest: &str) -> Self {
        Self(format!("token:{digest}"))
    }

    /// The user behind the key, if it is an account's.
    fn user_id(&self) -> Option<&str> {
        self.0.strip_prefix("user:").or_else(|| self.0.strip_prefix("recovery:user:"))
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password check reserved by [`reserve_check`]: its row counts as a failure until
/// [`PasswordCheck::passed`] removes it.
#[derive(Debug)]
#[must_use = "a check that passed must be released, or it counts as a failure"]
pub struct PasswordCheck {
    id: i64,
    account: AccountKey,
    address: Option<String>,
}

impl PasswordCheck {
    /// The password was right: the check does not count, and the account's failures from this
    /// address stop counting against the address. In a transaction of its own; see
    /// [`passed_in`](Self::passed_in).
    pub async fn passed(self, db: &PgPool) -> Result<()> {
        let mut tx = db.begin().await?;
        self.passed_in(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`passed`](Self::passed) in the caller's transaction, which then holds the account's lock
    /// until it ends (as a reservation takes it: two logins that pass at once would otherwise
    /// update each other's rows in opposite orders, and deadlock). Call it before the
    /// transaction locks any row, and hash nothing in that transaction.
    pub async fn passed_in(self, tx: &mut PgConnection) -> Result<()> {
        lock(tx, "password-checks:account", self.account.as_str()).await?;
        // Without an address (`$3` NULL) no other row matches.
        sqlx::query(
            "WITH mine AS (DELETE FROM password_checks WHERE id = $1)
             UPDATE password_checks SET forgiven_for_address = true
             WHERE account = $2 AND address = $3 AND NOT forgiven_for_address AND id <> $1",
        )
        .bind(self.id)
        .bind(self.account.as_str())
        .bind(self.address.as_deref())
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// Reserves one password check for `account` from `address`; 429 with `Retry-After` when the
/// account, or the address, has used up its failures in the window.
pub async fn reserve_check(
    db: &PgPool,
    limits: LoginLimits,
    account: &AccountKey,
    address: Option<&str>,
) -> Result<PasswordCheck> {
    let mut tx = db.begin().await?;
    // Always the account first, then the address: no two reservations wait on each other in
    // opposite orders.
    lock(&mut tx, "password-checks:account", account.as_str()).await?;
    if let Some(until) = full_until(
        &mut *tx,
        "SELECT checked_at FROM password_checks WHERE account = $1 AND checked_at > now() - make_interval(secs => $3)
         ORDER BY checked_at DESC OFFSET $2 - 1 LIMIT 1",
        account.as_str(),
        limits.per_account,
        limits.window,
    )
    .await?
    {
        return Err(rate_limited(until));
    }
    if let Some(address) = address {
        lock(&mut tx, "password-checks:address", address).await?;
        let full = full_until(
            &mut *tx,
            "SELECT checked_at FROM password_checks
             WHERE address = $1 AND NOT forgiven_for_address AND checked_at > now() - make_interval(secs => $3)
             ORDER BY checked_at DESC OFFSET $2 - 1 LIMIT 1",
            address,
            limits.per_address,
            limits.window,
        )
        .await?;
        if let Some(until) = full
            && !signed_in_from(&mut *tx, account, address).await?
        {
            return Err(rate_limited(until));
        }
    }
    let id =
        sqlx::query_scalar("INSERT INTO password_checks (account, address) VALUES ($1, $2) RETURNING id")
            .bind(account.as_str())
            .bind(address)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(PasswordCheck { id, account: account.clone(), address: address.map(str::to_owned) })
}

/// An anonymous entry point, throttled per client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPoint {
    /// `POST /api/auth/register`: each costs a password hash.
    Register,
    /// `POST /api/auth/guest`: each is a new daily model quota.
    Guest,
    /// `POST /api/auth/password/forgot`: each may send an e-mail.
    PasswordForgot,
    /// `GET /api/auth/oauth/{provider}/start`: each stores a pending sign-in.
    OAuthStart,
    /// `GET /api/auth/oauth/{provider}/callback`: each calls the provider.
    OAuthCallback,
}

impl EntryPoint {
    fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Guest => "guest",
            Self::PasswordForgot => "password-forgot",
            Self::OAuthStart => "oauth-start",
            Self::OAuthCallback => "oauth-callback",
        }
    }
}

/// Admits one request through `entry` from `address`; 429 with `Retry-After` once the address
/// has had its share in the window. A request without a known address is admitted (only a
/// misconfigured platform sends none).
pub async fn admit(db: &PgPool, entry: EntryPoint, limit: AddressLimit, address: Option<&str>) -> Result<()> {
    let Some(address) = address else { return Ok(()) };
    admit_one(db, entry.as_str(), limit.per_address, limit.window, address).await
}

/// How many e-mails of one kind one account may be sent within how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountMailLimit {
    /// E-mails per account (or per address without an account) within the window.
    pub per_account: i64,
    /// The sliding window.
    pub window: Duration,
}

/// Admits one e-mail of `kind` to `account` (an address without an account is counted the
/// same way, so a 429 says nothing about whether one exists); 429 with `Retry-After` once the
/// account has had its share in the window.
pub async fn admit_mail(
    db: &PgPool,
    kind: MailKind,
    limit: AccountMailLimit,
    account: &AccountKey,
) -> Result<()> {
    let scope = match kind {
        MailKind::PasswordReset => "mail:password-reset",
        MailKind::VerifyEmail => "mail:verify-email",
    };
    admit_one(db, scope, limit.per_account, limit.window, account.as_str()).await
}

/// Admits one request of `scope` for `key` (an address, or an account key for the mail
/// scopes) if fewer than `per` were admitted within `window`.
async fn admit_one(db: &PgPool, scope: &str, per: i64, window: Duration, key: &str) -> Result<()> {
    let mut tx = db.begin().await?;
    lock(&mut tx, scope, key).await?;
    let nth: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT admitted_at FROM address_admissions
         WHERE scope = $4 AND address = $1 AND admitted_at > now() - make_interval(secs => $3)
         ORDER BY admitted_at DESC OFFSET $2 - 1 LIMIT 1",
    )
    .bind(key)
    .bind(per.max(1))
    .bind(window.as_secs_f64())
    .bind(scope)
    .fetch_optional(&mut *tx)
    .await?;
    let full = if per <= 0 { Some(Utc::now()) } else { nth };
    if let Some(until) = full.map(|at| at + window) {
        return Err(rate_limited(until));
    }
    sqlx::query("INSERT INTO address_admissions (scope, address) VALUES ($1, $2)")
        .bind(scope)
        .bind(key)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Serialises, until the transaction ends, every reservation counting the same thing.
async fn lock(tx: &mut PgConnection, what: &str, key: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("primer.{what}:{key}"))
        .execute(tx)
        .await?;
    Ok(())
}

/// When the window has room again, if it is full: the `limit`-th newest row's time plus the
/// window. `sql` selects that row's time, given `$1` key, `$2` limit and `$3` window seconds.
async fn full_until(
    db: impl PgExecutor<'_>,
    sql: &'static str,
    key: &str,
    limit: i64,
    window: Duration,
) -> Result<Option<DateTime<Utc>>> {
    if limit <= 0 {
        return Ok(Some(Utc::now() + window));
    }
    let nth: Option<DateTime<Utc>> =
        sqlx::query_scalar(sql).bind(key).bind(limit).bind(window.as_secs_f64()).fetch_optional(db).await?;
    Ok(nth.map(|at| at + window))
}

/// True when the account has a live session opened from `address`: a reader known there, who
/// may still sign in when others' failures have filled the address's limit.
async fn signed_in_from(db: impl PgExecutor<'_>, account: &AccountKey, address: &str) -> Result<bool> {
    let Some(user_id) = account.user_id() else { return Ok(false) };
    Ok(sqlx::query_scalar(
        r#"SELECT EXISTS (SELECT 1 FROM "session"
                          WHERE "userId" = $1 AND "ipAddress" = $2 AND "expiresAt" > now())"#,
    )
    .bind(user_id)
    .bind(address)
    .fetch_one(db)
    .await?)
}

fn rate_limited(until: DateTime<Utc>) -> Error {
    let secs = (until - Utc::now()).num_seconds().max(1) as u64;
    Error::RateLimited { retry_after_secs: secs }
}

/// Forgets the failed password and recovery-token checks of a deleted account (keyed by
/// text, not a foreign key).
pub async fn forget_account(db: impl PgExecutor<'_>, user_id: &str) -> Result<u64> {
    let forgotten = sqlx::query("DELETE FROM password_checks WHERE account IN ($1, $2)")
        .bind(AccountKey::user(user_id).as_str())
        .bind(AccountKey::recovery(user_id).as_str())
        .execute(db)
        .await?;
    Ok(forgotten.rows_affected())
}

/// What [`prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Failed password and recovery-token checks.
    pub checks: u64,
    /// Admissions (registrations, guest tokens, e-mails).
    pub admissions: u64,
}

/// Deletes failed password checks older than `checks_kept` and admissions older than
/// `admissions_kept`, in one statement: the limits count a window of minutes to an hour, the
/// rest is kept for investigations.
pub async fn prune(
    db: impl PgExecutor<'_>,
    checks_kept: Duration,
    admissions_kept: Duration,
) -> Result<Pruned> {
    let (checks, admissions): (i64, i64) = sqlx::query_as(
        "WITH checks AS (DELETE FROM password_checks
                         WHERE checked_at < now() - make_interval(secs => $1) RETURNING 1),
              admissions AS (DELETE FROM address_admissions
                             WHERE admitted_at < now() - make_interval(secs => $2) RETURNING 1)
         SELECT (SELECT count(*) FROM checks), (SELECT count(*) FROM admissions)",
    )
    .bind(checks_kept.as_secs_f64())
    .bind(admissions_kept.as_secs_f64())
    .fetch_one(db)
    .await?;
    Ok(Pruned { checks: checks as u64, admissions: admissions as u64 })
}
