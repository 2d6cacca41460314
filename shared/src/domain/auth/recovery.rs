//! Account recovery: single-use tokens, sent by e-mail, that set a new password or confirm the
//! account's address.
//!
//! A token is `<selector>.<secret>`: the selector is the id of its row in Better-Auth's
//! `verification` table, the secret 256 random bits of which the row keeps only a SHA-256 hash,
//! taken together with the purpose and the address the mail went to. So a row is found by its
//! id, the secret is compared in constant time, and a token stops working when the account's
//! address changes. The row's identifier says whose and what for:
//! `primer:reset-password:<user id>` or `primer:verify-email:<user id>`.
//!
//! Better-Auth keeps its own reset tokens in the same table (`reset-password:<token>`, the user
//! id in `value`, in plain). Every query here names primer's identifiers (or a row id under
//! one of them), and Better-Auth looks its rows up by their exact identifier: neither side can
//! consume or change the other's rows. Expired rows of both are removed by the janitor (and by
//! Better-Auth's own clean-up).
//!
//! Checking a token counts like a password check (see `rate_limit`): reserved before the
//! comparison, per account (under the account's recovery key) and per client address, a wrong
//! or stale token keeping its reservation as the failure's record.
//!
//! The flows ([`Recovery`]) hold no transaction or connection while an e-mail is sent.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgExecutor, PgPool};

use super::rate_limit::{self, AccountKey, EntryPoint, LoginLimits};
use super::sessions;
use crate::domain::ids::UserId;
use crate::domain::user::{self, SignInEmail, User};
use crate::error::{Error, ErrorChain, Result};
use crate::infra::config::{AbuseLimits, Config, EmailConfig};
use crate::infra::email::{EmailSender, Mail, MailKind};

/// What a token is for; each purpose has its own rows and its own identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Setting a new password without the old one.
    PasswordReset,
    /// Confirming that the account's address reaches its owner.
    VerifyEmail,
}

impl Purpose {
    /// The start of this purpose's identifiers; the user id follows.
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::PasswordReset => "primer:reset-password:",
            Self::VerifyEmail => "primer:verify-email:",
        }
    }

    fn identifier(self, user_id: &UserId) -> String {
        format!("{}{user_id}", self.prefix())
    }
}

/// A token as issued, shown once (in the e-mail). Its `Debug` shows nothing of it.
pub struct RecoveryToken {
    selector: String,
    secret: String,
}

impl std::fmt::Debug for RecoveryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryToken(..)")
    }
}

impl RecoveryToken {
    fn generate() -> Self {
        let secret: [u8; 32] = rand::random();
        Self { selector: uuid::Uuid::new_v4().simple().to_string(), secret: URL_SAFE_NO_PAD.encode(secret) }
    }

    /// The token as the reader receives it: `<selector>.<secret>`, URL-safe.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.selector, self.secret)
    }
}

/// The stored form of a secret: `sha256:` and the hex digest of the purpose, the address the
/// token was sent to, and the secret.
fn secret_hash(purpose: Purpose, email: &str, secret: &str) -> String {
    let mut digest = Sha256::new();
    for part in [purpose.prefix(), email, secret] {
        digest.update(part.as_bytes());
        digest.update(b"\n");
    }
    format!("sha256:{}", hex::encode(digest.finalize()))
}

/// Equality that takes as long for every input of a length.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Stores a new token of `purpose` for the user whose address is `email`, valid for `ttl`.
pub async fn issue(
    db: impl PgExecutor<'_>,
    purpose: Purpose,
    user_id: &UserId,
    email: &str,
    ttl: Duration,
) -> Result<RecoveryToken> {
    let token = RecoveryToken::generate();
    sqlx::query!(
        r#"INSERT INTO "verification" (id, identifier, value, "expiresAt", "createdAt", "updatedAt")
           VALUES ($1, $2, $3, now() + make_interval(secs => $4), now(), now())"#,
        token.selector,
        purpose.identifier(user_id),
        secret_hash(purpose, email, &token.secret),
        ttl.as_secs_f64(),
    )
    .execute(db)
    .await?;
    Ok(token)
}

/// A token that checked out: its row, and its account.
#[derive(Debug)]
pub struct Redeemable {
    /// What it is for.
    pub purpose: Purpose,
    /// Whose it is.
    pub user_id: UserId,
    /// False when the account is disabled.
    pub is_active: bool,
    id: String,
    value: String,
}

/// A pending token's row joined with its account.
struct Pending {
    id: String,
    value: String,
    live: bool,
    user_id: UserId,
    email: String,
    is_active: bool,
}

/// The pending token with this selector and its account, read from each one's owner: a recovery
/// link is no hot path, so two short reads rather than a join across owners.
async fn pending(db: &PgPool, purpose: Purpose, selector: &str) -> Result<Option<Pending>> {
    let Some(token) = sqlx::query!(
        r#"SELECT id, value, "expiresAt" > now() AS "live!", substr(identifier, length($2) + 1) AS "user_id!: UserId"
           FROM "verification" WHERE id = $1 AND starts_with(identifier, $2)"#,
        selector,
        purpose.prefix(),
    )
    .fetch_optional(db)
    .await?
    else {
        return Ok(None);
    };
    let Some(account) = user::by_id(db, &token.user_id).await? else { return Ok(None) };
    Ok(Some(Pending {
        id: token.id,
        value: token.value,
        live: token.live,
        user_id: account.id,
        email: account.email,
        is_active: account.is_active,
    }))
}

/// Checks a presented token of `purpose`: a password check is reserved for its account (or
/// for the token itself when it names none) and the client address first, then the secret is
/// compared. Unknown, malformed, expired, spent or forged: one 400 `invalid_token`, and the
/// reservation stays as the failure's record. The token is not consumed here.
pub async fn check(
    pool: &PgPool,
    limits: LoginLimits,
    purpose: Purpose,
    presented: &str,
    address: Option<&str>,
) -> Result<Redeemable> {
    let halves = presented.split_once('.').filter(|(selector, secret)| {
        selector.len() == 32
            && selector.bytes().all(|b| b.is_ascii_hexdigit())
            && !secret.is_empty()
            && secret.len() <= 64
    });
    let found = match halves {
        Some((selector, _)) => pending(pool, purpose, selector).await?,
        None => None,
    };
    // A token that names no account is counted under a digest of itself: never the token.
    let account = found.as_ref().map_or_else(
        || AccountKey::unknown_token(&hex::encode(&Sha256::digest(presented.as_bytes())[..16])),
        |p| AccountKey::recovery(&p.user_id),
    );
    let check = rate_limit::reserve_check(pool, limits, &account, address).await?;
    let redeemable = match (found, halves) {
        (Some(found), Some((_, secret)))
            if found.live && same(&secret_hash(purpose, &found.email, secret), &found.value) =>
        {
            found
        }
        _ => {
            check.failed(pool).await?;
            return Err(Error::InvalidToken);
        }
    };
    let found = redeemable;
    check.passed(pool).await?;
    Ok(Redeemable {
        purpose,
        user_id: found.user_id,
        is_active: found.is_active,
        id: found.id,
        value: found.value,
    })
}

/// Deletes the token's row if it is still there and live; false when another request consumed
/// it first, or it expired in between.
async fn consume(conn: &mut PgConnection, token: &Redeemable) -> Result<bool> {
    let done = sqlx::query!(
        r#"DELETE FROM "verification" WHERE id = $1 AND identifier = $2 AND value = $3 AND "expiresAt" > now()"#,
        token.id,
        token.purpose.identifier(&token.user_id),
        token.value,
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the verification rows past their expiry (a link that no longer works), Better-Auth's
/// included.
pub async fn delete_expired(db: impl PgExecutor<'_>) -> Result<u64> {
    let deleted = sqlx::query!(r#"DELETE FROM "verification" WHERE "expiresAt" < now()"#).execute(db).await?;
    Ok(deleted.rows_affected())
}

/// Drops every pending token of a deleted user, which name the user by text rather than a
/// foreign key: primer's (both purposes) and a Better-Auth frontend's reset links
/// (`reset-password:<token>`, the user id as value).
pub async fn discard_everything_of(db: impl PgExecutor<'_>, user_id: &UserId) -> Result<u64> {
    let done = sqlx::query!(
        r#"DELETE FROM "verification"
           WHERE identifier IN ($2 || $1, $3 || $1)
              OR (starts_with(identifier, 'reset-password:') AND value = $1)"#,
        user_id.as_str(),
        Purpose::PasswordReset.prefix(),
        Purpose::VerifyEmail.prefix(),
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Drops every pending token of `purpose` of the user: once one worked, older links stop.
async fn discard_all(db: impl PgExecutor<'_>, purpose: Purpose, user_id: &UserId) -> Result<u64> {
    let done =
        sqlx::query!(r#"DELETE FROM "verification" WHERE identifier = $1"#, purpose.identifier(user_id))
            .execute(db)
            .await?;
    Ok(done.rows_affected())
}

/// Redeems a password-reset token in the caller's transaction: consumes it and the user's
/// other reset tokens, sets `password_hash` (creating the password account of a user who had
/// none, as one signed in through another provider), revokes every session of the user,
/// Better-Auth's included, and marks the address verified (the link reached it). False, and
/// nothing done, when the token was consumed meanwhile.
pub async fn complete_password_reset(
    conn: &mut PgConnection,
    token: &Redeemable,
    password_hash: &str,
) -> Result<bool> {
    debug_assert_eq!(token.purpose, Purpose::PasswordReset);
    if !consume(conn, token).await? {
        return Ok(false);
    }
    discard_all(&mut *conn, Purpose::PasswordReset, &token.user_id).await?;
    user::set_or_create_password(&mut *conn, &token.user_id, password_hash).await?;
    sessions::revoke_all_but(&mut *conn, &token.user_id, None).await?;
    user::mark_email_verified(&mut *conn, &token.user_id).await?;
    Ok(true)
}

/// Redeems an address-verification token in the caller's transaction: consumes it and the
/// user's other verification tokens and sets `emailVerified`. False, and nothing done, when
/// the token was consumed meanwhile.
pub async fn complete_verification(conn: &mut PgConnection, token: &Redeemable) -> Result<bool> {
    debug_assert_eq!(token.purpose, Purpose::VerifyEmail);
    if !consume(conn, token).await? {
        return Ok(false);
    }
    discard_all(&mut *conn, Purpose::VerifyEmail, &token.user_id).await?;
    user::mark_email_verified(&mut *conn, &token.user_id).await?;
    Ok(true)
}

/// The flows that send e-mail: a forgotten password, and an address to verify.
pub struct Recovery<'a> {
    pool: &'a PgPool,
    mail: &'a dyn EmailSender,
    email: &'a EmailConfig,
    limits: &'a AbuseLimits,
}

impl<'a> Recovery<'a> {
    /// The flows over `pool`, sending through `mail`, configured by `config`.
    pub fn new(pool: &'a PgPool, mail: &'a dyn EmailSender, config: &'a Config) -> Self {
        Self { pool, mail, email: &config.email, limits: &config.limits }
    }

    /// A reader forgot their password: if `email` is an active account's, a reset link goes
    /// there. The answer is the same either way, and comes no sooner than
    /// [`EmailConfig::forgot_min_duration`] after the call, so that neither the result nor the
    /// time tells whether the address has an account. Throttled per client address and per
    /// account (an address without one counted alike): 429. A failed delivery is logged, not
    /// told.
    pub async fn forgot_password(&self, email: &SignInEmail, address: Option<&str>) -> Result<()> {
        let answer_at = Instant::now() + self.email.forgot_min_duration;
        let outcome = self.send_reset_link(email, address).await;
        let late = Instant::now().saturating_duration_since(answer_at);
        // Past the minimum, the time may tell: the operator should raise it.
        if !late.is_zero() && !self.email.forgot_min_duration.is_zero() {
            tracing::warn!(
                late_ms = late.as_millis() as u64,
                "a forgot-password request outlasted PASSWORD_FORGOT_MIN_MS"
            );
        }
        crate::infra::deadline::exempt(tokio::time::sleep_until(answer_at.into())).await;
        outcome
    }

    async fn send_reset_link(&self, email: &SignInEmail, address: Option<&str>) -> Result<()> {
        rate_limit::admit(self.pool, EntryPoint::PasswordForgot, self.limits.password_forgot, address)
            .await?;
        let found = user::credentials_by_email(self.pool, email).await?.map(|c| c.user);
        let account = found
            .as_ref()
            .map_or_else(|| AccountKey::unknown_email(email.as_str()), |u| AccountKey::user(&u.id));
        rate_limit::admit_mail(self.pool, MailKind::PasswordReset, self.limits.account_mails, &account)
            .await?;
        let Some(user) = found.filter(|u| u.is_active) else { return Ok(()) };
        if let Err(e) = self.send(Purpose::PasswordReset, &user).await {
            tracing::warn!(user_id = %user.id, error = %ErrorChain(&e), "a password-reset e-mail was not sent");
        }
        Ok(())
    }

    /// Sends `user` a link that verifies their address; 409 `email_already_verified` when it
    /// is, 429 past the account's e-mails, 503 when delivery fails.
    pub async fn send_verification(&self, user: &User) -> Result<()> {
        if user.email_verified {
            return Err(Error::Conflict {
                code: crate::error::Code::EmailAlreadyVerified,
                message: "this account's e-mail address is already verified".into(),
            });
        }
        let account = AccountKey::user(&user.id);
        rate_limit::admit_mail(self.pool, MailKind::VerifyEmail, self.limits.account_mails, &account).await?;
        self.send(Purpose::VerifyEmail, user).await
    }

    /// The verification e-mail of a new account: a failure is logged, and the reader can ask
    /// for another one, so the sign-up stands.
    pub async fn welcome(&self, user: &User) {
        if let Err(e) = self.send_verification(user).await {
            tracing::warn!(user_id = %user.id, error = %ErrorChain(&e), "the verification e-mail of a sign-up was not sent");
        }
    }

    /// Stores a token for `user` and sends it: no transaction is open while the mail goes.
    async fn send(&self, purpose: Purpose, user: &User) -> Result<()> {
        let ttl = match purpose {
            Purpose::PasswordReset => self.email.reset_ttl,
            Purpose::VerifyEmail => self.email.verify_ttl,
        };
        let token = issue(self.pool, purpose, &user.id, &user.email, ttl).await?.expose();
        let mail = match purpose {
            Purpose::PasswordReset => Mail::password_reset(self.email, &user.email, &token),
            Purpose::VerifyEmail => Mail::verify_email(self.email, &user.email, &token),
        };
        self.mail.send(&mail).await?;
        tracing::info!(user_id = %user.id, kind = mail.kind.as_str(), "recovery e-mail sent");
        Ok(())
    }

    /// Checks a presented token of `purpose` (see [`check`]) with the login limits.
    pub async fn check(
        &self,
        purpose: Purpose,
        presented: &str,
        address: Option<&str>,
    ) -> Result<Redeemable> {
        check(self.pool, self.limits.login, purpose, presented, address).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let (a, b) = (RecoveryToken::generate(), RecoveryToken::generate());
        assert_ne!(a.expose(), b.expose());
        let (selector, secret) =
            a.expose().split_once('.').map(|(s, t)| (s.to_owned(), t.to_owned())).unwrap();
        assert_eq!(selector.len(), 32);
        assert_eq!(URL_SAFE_NO_PAD.decode(&secret).unwrap().len(), 32, "256 secret bits");
        assert!(a.expose().bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        assert_eq!(format!("{a:?}"), "RecoveryToken(..)");
    }

    #[test]
    fn the_stored_hash_binds_purpose_and_address() {
        let hash = secret_hash(Purpose::PasswordReset, "ada@example.com", "s3cret");
        assert!(hash.starts_with("sha256:") && !hash.contains("s3cret"));
        assert_ne!(hash, secret_hash(Purpose::VerifyEmail, "ada@example.com", "s3cret"));
        assert_ne!(hash, secret_hash(Purpose::PasswordReset, "eve@example.com", "s3cret"));
        assert_ne!(hash, secret_hash(Purpose::PasswordReset, "ada@example.com", "s3creT"));
        assert!(same(&hash, &secret_hash(Purpose::PasswordReset, "ada@example.com", "s3cret")));
        assert!(!same("abc", "abd") && !same("abc", "ab"));
    }

    #[test]
    fn primers_identifiers_never_look_like_better_auths() {
        for purpose in [Purpose::PasswordReset, Purpose::VerifyEmail] {
            let user = UserId::from("u1");
            assert!(purpose.identifier(&user).starts_with("primer:"));
            assert!(!purpose.identifier(&user).starts_with("reset-password:"));
        }
    }
}
