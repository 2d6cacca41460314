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
//! verifying (a wrong password marks the row failed: it is the failure's record; a right one
//! deletes it). A password-reset or address-verification token is checked the same way,
//! counted against the account it names under a key of its own ([`AccountKey::recovery`]), so
//! that someone guessing passwords cannot lock the owner out of recovery too.
//!
//! **No lock-out by strangers** (OWASP's advice on online guessing: failures counted per account
//! and source, with a budget of their own for places the account signed in from before). Each
//! check has a source: a *known place* (an address the account signed in from with its password
//! in the last 90 days, `sign_in_places`), the *session* a signed-in reader re-proves their
//! password in, or *elsewhere* (every other address, together). Each source of an account has
//! its own budget of failures (5 in 15 minutes): a reader at a place they signed in from before,
//! or in their own session, is never blocked by failures from anywhere else, while guessing
//! stays bounded per account: 5 guesses per window from all unknown addresses together, and 5
//! more per place and per session, which only the password (or the reader's own network) opens.
//! A check in flight counts against its budget until it ends, so parallel guesses cannot
//! outrun it; a request that finds its budget full of checks still in flight (the same reader
//! signing in from twelve tabs at once) waits for them instead of being refused, and is refused
//! only by failures. A check whose process died counts as a failure once it is older than a
//! check can take ([`CHECK_LIFETIME`]).
//!
//! The per-address limit bounds spraying many accounts from one address without locking out a
//! classroom behind one NAT address: it is generous (100), a sign-in forgives the typos its
//! account made from that address, and it does not apply to an account's known places: readers
//! known there still sign in when strangers have filled it.
//!
//! Admissions: registrations, guest tokens and forgot-password requests are admitted per
//! client address; the e-mails sent to one account are admitted per account and kind, with an
//! address no account has counted like an account, so a refusal says nothing about either.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::domain::ids::UserId;
use crate::error::{Error, Result};
pub use crate::infra::config::{AccountMailLimit, AddressLimit, LoginLimits};
use crate::infra::email::MailKind;

/// What a password check is counted against: the account when there is one, else the
/// normalised email (so an unknown address is limited exactly like a known one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountKey(String);

impl AccountKey {
    /// The key of an existing account.
    pub fn user(user_id: &UserId) -> Self {
        Self(format!("user:{user_id}"))
    }

    /// The key of an email no account has.
    pub fn unknown_email(email: &str) -> Self {
        Self(format!("email:{email}"))
    }

    /// The key of an account's recovery tokens (password reset, address verification): kept
    /// apart from its password checks, so that failed logins do not block recovery.
    pub fn recovery(user_id: &UserId) -> Self {
        Self(format!("recovery:user:{user_id}"))
    }

    /// The key of a token that names no account, by a digest of the token (never the token).
    pub fn unknown_token(digest: &str) -> Self {
        Self(format!("token:{digest}"))
    }

    /// The user behind the key when it is an account's password checks (not its recovery
    /// tokens): the account whose known places apply.
    fn signed_in_user(&self) -> Option<&str> {
        self.0.strip_prefix("user:")
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password check reserved by [`reserve_check`]: its row counts against its budget until
/// [`PasswordCheck::passed`] removes it or [`PasswordCheck::failed`] records the failure.
#[derive(Debug)]
#[must_use = "a check is passed or failed, or it counts as a failure once it is stale"]
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
        sqlx::query!(
            "WITH mine AS (DELETE FROM password_checks WHERE id = $1)
             UPDATE password_checks SET forgiven_for_address = true
             WHERE account = $2 AND address = $3 AND NOT forgiven_for_address AND id <> $1",
            self.id,
            self.account.as_str(),
            self.address.as_deref(),
        )
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// The password (or token) was wrong: the check stays, as the failure's record.
    pub async fn failed(self, db: &PgPool) -> Result<()> {
        sqlx::query!("UPDATE password_checks SET failed = true WHERE id = $1", self.id).execute(db).await?;
        Ok(())
    }
}

/// How long a check may be in flight: a password hash (bounded by its queue's time-out and its
/// own cost) and a few statements. An unfinished check older than this (its process died)
/// counts as a failure.
pub const CHECK_LIFETIME: Duration = Duration::from_secs(30);

/// How long a reservation waits for checks in flight to end before it is refused (with a
/// short `Retry-After`).
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(10);

/// How long an address stays a known place of an account after it signed in from there.
pub const KNOWN_PLACE_KEPT: Duration = Duration::from_secs(90 * 24 * 3600);

/// Where a check comes from, whose failures it is counted with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// An address the account signed in from before.
    Place(String),
    /// A session of the account, re-proving its password.
    Session(String),
    /// Anywhere else.
    Elsewhere,
}

impl Source {
    fn key(&self) -> String {
        match self {
            Self::Place(address) => format!("place:{address}"),
            Self::Session(id) => format!("session:{id}"),
            Self::Elsewhere => "elsewhere".into(),
        }
    }
}

/// Reserves one password check for `account` from `address`; 429 with `Retry-After` when the
/// account's budget for where the check comes from (a known place, or elsewhere), or the
/// address's, is used up by failures in the window. See the module's documentation.
pub async fn reserve_check(
    db: &PgPool,
    limits: LoginLimits,
    account: &AccountKey,
    address: Option<&str>,
) -> Result<PasswordCheck> {
    reserve(db, limits, account, None, address).await
}

/// [`reserve_check`] for a signed-in reader re-proving their password in session `session_id`:
/// counted against that session's own budget, so failures from anywhere else do not block it.
pub async fn reserve_check_in_session(
    db: &PgPool,
    limits: LoginLimits,
    account: &AccountKey,
    session_id: &str,
    address: Option<&str>,
) -> Result<PasswordCheck> {
    reserve(db, limits, account, Some(session_id), address).await
}

/// What a budget holds within its window.
#[derive(Debug)]
struct Budget {
    /// Checks that failed (or whose process died).
    failures: i64,
    /// Checks still in flight.
    in_flight: i64,
    /// The time of the `limit`-th newest failure, if there are that many.
    nth_failure_at: Option<DateTime<Utc>>,
}

/// Whether a budget admits another check.
enum Verdict {
    Room,
    /// Full of failures until then.
    FullUntil(DateTime<Utc>),
    /// Full only of checks in flight: they may yet pass.
    Busy,
}

impl Budget {
    fn verdict(&self, limit: i64, window: Duration) -> Verdict {
        if limit <= 0 {
            return Verdict::FullUntil(Utc::now() + window);
        }
        if self.failures >= limit {
            let at = self.nth_failure_at.unwrap_or_else(Utc::now);
            return Verdict::FullUntil(at + window);
        }
        if self.failures + self.in_flight >= limit { Verdict::Busy } else { Verdict::Room }
    }
}

async fn reserve(
    db: &PgPool,
    limits: LoginLimits,
    account: &AccountKey,
    session: Option<&str>,
    address: Option<&str>,
) -> Result<PasswordCheck> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match try_reserve(db, limits, account, session, address).await? {
            Some(check) => return Ok(check),
            None if started.elapsed() >= IN_FLIGHT_WAIT => {
                return Err(Error::RateLimited { retry_after_secs: 1 });
            }
            None => {
                crate::infra::deadline::exempt(tokio::time::sleep(pause)).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// One attempt at a reservation: the check, a 429, or `None` when the budget is full of checks
/// in flight (try again shortly).
async fn try_reserve(
    db: &PgPool,
    limits: LoginLimits,
    account: &AccountKey,
    session: Option<&str>,
    address: Option<&str>,
) -> Result<Option<PasswordCheck>> {
    let mut tx = db.begin().await?;
    // Always the account first, then the address: no two reservations wait on each other in
    // opposite orders.
    lock(&mut tx, "password-checks:account", account.as_str()).await?;
    let source = match (session, address) {
        (Some(session), _) => Source::Session(session.to_owned()),
        (None, Some(address)) if is_known_place(&mut *tx, account, address).await? => {
            Source::Place(address.to_owned())
        }
        _ => Source::Elsewhere,
    };
    let source_key = source.key();
    let (per_account, window) = (limits.per_account, limits.window);
    let of_account = BudgetOf::Account { account: account.as_str(), source: &source_key };
    match budget(&mut tx, of_account, per_account, window).await? {
        Verdict::FullUntil(until) => return Err(rate_limited(until)),
        Verdict::Busy => return Ok(None),
        Verdict::Room => {}
    }
    // Strangers to the address share its budget; readers known there (a place, a session) do not.
    if let Some(address) = address.filter(|_| source == Source::Elsewhere) {
        lock(&mut tx, "password-checks:address", address).await?;
        match budget(&mut tx, BudgetOf::Address(address), limits.per_address, limits.window).await? {
            Verdict::FullUntil(until) => return Err(rate_limited(until)),
            Verdict::Busy => return Ok(None),
            Verdict::Room => {}
        }
    }
    let id = sqlx::query_scalar!(
        "INSERT INTO password_checks (account, address, source) VALUES ($1, $2, $3) RETURNING id",
        account.as_str(),
        address,
        source_key,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(PasswordCheck { id, account: account.clone(), address: address.map(str::to_owned) }))
}

/// The budget a check counts against.
#[derive(Clone, Copy)]
enum BudgetOf<'a> {
    /// An account's, for one source of checks (a place, a session, elsewhere).
    Account { account: &'a str, source: &'a str },
    /// An address's: the typos of accounts that then signed in there are forgiven.
    Address(&'a str),
}

/// [`sqlx::query_as!`] of a [`Budget`]: the failures and the checks in flight within the window
/// (`$2` seconds) of the checks the budget counts, and the `$4`-th newest failure's time; a check
/// in flight for more than `$3` seconds counts as a failure. The `WHERE` condition on `$1` (and
/// `$5`) that picks the budget's checks follows.
macro_rules! budget_query {
    ($condition:tt, $($arg:expr),+ $(,)?) => {
        sqlx::query_as!(
            Budget,
            r#"SELECT count(*) FILTER (WHERE failed OR checked_at <= clock_timestamp() - make_interval(secs => $3)) AS "failures!",
                count(*) FILTER (WHERE NOT failed AND checked_at > clock_timestamp() - make_interval(secs => $3)) AS "in_flight!",
                (array_agg(checked_at ORDER BY checked_at DESC)
                    FILTER (WHERE failed OR checked_at <= clock_timestamp() - make_interval(secs => $3)))[$4] AS nth_failure_at
         FROM password_checks
         WHERE checked_at > now() - make_interval(secs => $2) AND "# + $condition,
            $($arg),+
        )
    };
}

/// Whether `budget` admits another check.
async fn budget(
    tx: &mut PgConnection,
    budget: BudgetOf<'_>,
    limit: i64,
    window: Duration,
) -> Result<Verdict> {
    let (window_secs, lifetime_secs, nth) =
        (window.as_secs_f64(), CHECK_LIFETIME.as_secs_f64(), limit.max(1) as i32);
    let held = match budget {
        BudgetOf::Account { account, source } => {
            budget_query!("account = $1 AND source = $5", account, window_secs, lifetime_secs, nth, source)
                .fetch_one(tx)
                .await?
        }
        BudgetOf::Address(address) => {
            budget_query!(
                "address = $1 AND NOT forgiven_for_address",
                address,
                window_secs,
                lifetime_secs,
                nth
            )
            .fetch_one(tx)
            .await?
        }
    };
    Ok(held.verdict(limit, window))
}

/// True when `account` signed in with its password from `address` within
/// [`KNOWN_PLACE_KEPT`].
async fn is_known_place(db: impl PgExecutor<'_>, account: &AccountKey, address: &str) -> Result<bool> {
    let Some(user_id) = account.signed_in_user() else { return Ok(false) };
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM sign_in_places
                        WHERE user_id = $1 AND address = $2 AND signed_in_at > now() - make_interval(secs => $3)) AS "known!""#,
        user_id,
        address,
        KNOWN_PLACE_KEPT.as_secs_f64(),
    )
    .fetch_one(db)
    .await?)
}

/// Records that `user_id` signed in from `address` (with their password, a reset link, or at
/// sign-up), in the caller's transaction: from now on a known place of the account. Call it
/// after the transaction has locked the user's row, as every sign-in does.
pub async fn record_place(db: impl PgExecutor<'_>, user_id: &UserId, address: Option<&str>) -> Result<()> {
    let Some(address) = address else { return Ok(()) };
    sqlx::query!(
        "INSERT INTO sign_in_places (user_id, address) VALUES ($1, $2)
         ON CONFLICT (user_id, address) DO UPDATE SET signed_in_at = now()",
        user_id.as_str(),
        address,
    )
    .execute(db)
    .await?;
    Ok(())
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
    let nth: Option<DateTime<Utc>> = sqlx::query_scalar!(
        "SELECT admitted_at FROM address_admissions
         WHERE scope = $4 AND address = $1 AND admitted_at > now() - make_interval(secs => $3)
         ORDER BY admitted_at DESC OFFSET $2 - 1 LIMIT 1",
        key,
        // `$2 - 1` is an int4 to PostgreSQL; no limit is anywhere near its end.
        i32::try_from(per.max(1)).unwrap_or(i32::MAX),
        window.as_secs_f64(),
        scope,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let full = if per <= 0 { Some(Utc::now()) } else { nth };
    if let Some(until) = full.map(|at| at + window) {
        return Err(rate_limited(until));
    }
    sqlx::query!("INSERT INTO address_admissions (scope, address) VALUES ($1, $2)", scope, key)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Takes the account's lock until the caller's transaction ends: the one every transaction that
/// changes what signs an account in (a login, a password change or reset, the account's
/// deletion) takes first, before any row, so that no two of them lock the account's rows (its
/// user, credentials, sessions, checks) in different orders.
pub async fn lock_account(tx: &mut PgConnection, user_id: &UserId) -> Result<()> {
    lock(tx, "password-checks:account", AccountKey::user(user_id).as_str()).await
}

/// Serialises, until the transaction ends, every reservation counting the same thing.
async fn lock(tx: &mut PgConnection, what: &str, key: &str) -> Result<()> {
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", format!("primer.{what}:{key}"))
        .execute(tx)
        .await?;
    Ok(())
}

fn rate_limited(until: DateTime<Utc>) -> Error {
    let secs = (until - Utc::now()).num_seconds().max(1) as u64;
    Error::RateLimited { retry_after_secs: secs }
}

/// Forgets the failed password and recovery-token checks of a deleted account (keyed by
/// text, not a foreign key; its known places go with the user row).
pub async fn forget_account(db: impl PgExecutor<'_>, user_id: &UserId) -> Result<u64> {
    let (checks, recovery) = (AccountKey::user(user_id), AccountKey::recovery(user_id));
    let forgotten = sqlx::query!(
        "DELETE FROM password_checks WHERE account IN ($1, $2)",
        checks.as_str(),
        recovery.as_str(),
    )
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
    /// Known places no sign-in renewed for 90 days.
    pub places: u64,
}

/// Deletes failed password checks older than `checks_kept`, admissions older than
/// `admissions_kept` and known places unused for [`KNOWN_PLACE_KEPT`], in one statement: the
/// limits count a window of minutes to an hour, the rest is kept for investigations. The three
/// tables' rows are locked by no other statement together with each other's.
pub async fn prune(
    db: impl PgExecutor<'_>,
    checks_kept: Duration,
    admissions_kept: Duration,
) -> Result<Pruned> {
    let counts = sqlx::query!(
        r#"WITH checks AS (DELETE FROM password_checks
                         WHERE checked_at < now() - make_interval(secs => $1) RETURNING 1),
              admissions AS (DELETE FROM address_admissions
                             WHERE admitted_at < now() - make_interval(secs => $2) RETURNING 1),
              places AS (DELETE FROM sign_in_places
                         WHERE signed_in_at < now() - make_interval(secs => $3) RETURNING 1)
         SELECT (SELECT count(*) FROM checks) AS "checks!", (SELECT count(*) FROM admissions) AS "admissions!",
                (SELECT count(*) FROM places) AS "places!""#,
        checks_kept.as_secs_f64(),
        admissions_kept.as_secs_f64(),
        KNOWN_PLACE_KEPT.as_secs_f64(),
    )
    .fetch_one(db)
    .await?;
    let (checks, admissions, places) = (counts.checks, counts.admissions, counts.places);
    Ok(Pruned { checks: checks as u64, admissions: admissions as u64, places: places as u64 })
}
