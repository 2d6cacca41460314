//! The account flows: sign-up, sign-in, refreshing a session, re-proving and changing a
//! password, deleting an account, and redeeming a recovery link. Each is one function over
//! the pool, the mail sender and the configuration, testable without HTTP; the auth function
//! maps requests onto them and their results onto responses.
//!
//! Every flow that checks a password reserves the check first ([`rate_limit::reserve_check`]),
//! so parallel guesses cannot outrun the limit, and no transaction is open while a password is
//! hashed or an e-mail is sent.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::password::{self, Password, Verdict};
use super::rate_limit::{self, AccountKey, EntryPoint};
use super::recovery::{self, Purpose, Recovery};
use super::sessions::{self, ClientMeta, Rotated, Rotation};
use super::tokens::RefreshToken;
use crate::domain::conversations::guests;
use crate::domain::ids::UserId;
use crate::domain::personalize;
use crate::domain::user::{self, Email, SignInEmail, User, UserName};
use crate::error::{Error, ErrorChain, Result};
use crate::infra::blob::BlobStore;
use crate::infra::config::Config;
use crate::infra::email::EmailSender;

/// One answer for an unknown email and a wrong password, so neither can be told apart.
const BAD_CREDENTIALS: Error = Error::UnauthorizedWith("invalid email or password");

/// How recent a session must be to delete an account that has no password.
const FRESH_SESSION: Duration = Duration::from_secs(5 * 60);

/// A session just opened for `user`; its refresh token is shown to the client once.
#[derive(Debug)]
pub struct SignedIn {
    /// The user as they are now.
    pub user: User,
    /// The new session's id.
    pub session_id: String,
    /// The new session's refresh token.
    pub refresh: RefreshToken,
}

/// What a sign-up needs, each part already parsed.
pub struct NewAccount {
    pub email: Email,
    pub password: Password,
    pub name: UserName,
    /// A guest whose conversations become the new user's.
    pub guest: Option<Uuid>,
}

/// The account flows over one pool, mail sender and configuration.
pub struct Accounts<'a> {
    pool: &'a PgPool,
    mail: &'a dyn EmailSender,
    config: &'a Config,
}

impl<'a> Accounts<'a> {
    /// The flows over `pool`, sending e-mail through `mail`, configured by `config`.
    pub fn new(pool: &'a PgPool, mail: &'a dyn EmailSender, config: &'a Config) -> Self {
        Self { pool, mail, config }
    }

    /// The recovery flows (reset and verification links) over the same parts.
    pub fn recovery(&self) -> Recovery<'a> {
        Recovery::new(self.pool, self.mail, self.config)
    }

    /// Creates an account and signs it in. Throttled per client address before the hash, so
    /// every attempt, an address already taken included, spends the address's share. A link
    /// that verifies the address is e-mailed; a failed delivery does not fail the sign-up.
    pub async fn register(&self, account: NewAccount, client: &ClientMeta) -> Result<SignedIn> {
        let limit = self.config.limits.register;
        rate_limit::admit(self.pool, EntryPoint::Register, limit, client.ip.as_deref()).await?;
        let hash = password::hash(&account.password).await?;
        let refresh = RefreshToken::generate();
        let mut tx = self.pool.begin().await?;
        let user = user::create_with_password(&mut tx, &account.email, &account.name, &hash).await?;
        let session_id = sessions::create(&mut *tx, &user.id, &refresh, self.session_ttl(), client).await?;
        // Signing up is signing in: the address becomes a known place of the account.
        rate_limit::record_place(&mut *tx, &user.id, client.ip.as_deref()).await?;
        if let Some(guest_id) = account.guest {
            guests::claim_conversations(&mut *tx, guest_id, &user.id).await?;
        }
        tx.commit().await?;
        tracing::info!(user_id = %user.id, "registered");
        self.recovery().welcome(&user).await;
        Ok(SignedIn { user, session_id, refresh })
    }

    /// Signs in with an e-mail and a password: one 401 for an unknown e-mail and a wrong
    /// password, 429 past the limits, 403 for a disabled account. A hash of an older scheme is
    /// upgraded, and a guest's conversations become the user's.
    pub async fn login(
        &self,
        email: &SignInEmail,
        password: &Password,
        guest: Option<Uuid>,
        client: &ClientMeta,
    ) -> Result<SignedIn> {
        let found = user::credentials_by_email(self.pool, email).await?;
        let account = found
            .as_ref()
            .map_or_else(|| AccountKey::unknown_email(email.as_str()), |c| AccountKey::user(&c.user.id));
        // An unknown address is limited like a known one, so a 429 says nothing about either.
        let check = self.reserve_check(&account, client).await?;
        let verdict = match found.as_ref().and_then(|c| c.password_hash.as_deref()) {
            Some(stored) => password::verify(password, stored).await?,
            None => password::verify_dummy(password).await?,
        };
        // A wrong password keeps the reserved check: it is the failure's record.
        let Some(found) = found.filter(|_| verdict.matched()) else {
            check.failed(self.pool).await?;
            return Err(BAD_CREDENTIALS);
        };
        if !found.user.is_active {
            check.passed(self.pool).await?;
            return Err(Error::AccountDisabled);
        }
        let stored = found.password_hash.as_deref().unwrap_or_default();
        let keep_better_auth = !self.config.upgrade_better_auth_hashes;
        let upgraded = match password::upgrade_of(password, stored, verdict, keep_better_auth) {
            Some(canonical) => Some(password::hash(&canonical).await?),
            None => None,
        };

        let refresh = RefreshToken::generate();
        let mut tx = self.pool.begin().await?;
        // The check is released with the session written: one transaction fewer, and a login
        // that fails from here on keeps its check, as a wrong password does.
        check.passed_in(&mut tx).await?;
        // The hash just verified must still be the account's: a password change that won the
        // race wins, and an upgrade never writes an old password over a new one.
        let Some(user) =
            user::record_password_login(&mut tx, &found.user.id, stored, upgraded.as_deref()).await?
        else {
            return Err(BAD_CREDENTIALS);
        };
        let session_id = sessions::create(&mut *tx, &user.id, &refresh, self.session_ttl(), client).await?;
        rate_limit::record_place(&mut *tx, &user.id, client.ip.as_deref()).await?;
        if let Some(guest_id) = guest {
            guests::claim_conversations(&mut *tx, guest_id, &user.id).await?;
        }
        tx.commit().await?;
        Ok(SignedIn { user, session_id, refresh })
    }

    /// Rotates a refresh token. Within the reuse interval a second presentation gets the same
    /// successor (two tabs refreshing at once); a spent token presented later revokes the
    /// session (it has leaked) and is a 401, as is an unknown one; 403 for a disabled account.
    pub async fn refresh(&self, presented: &str) -> Result<Rotated> {
        let (jwt, reuse) = (&self.config.jwt, self.config.limits.refresh_reuse);
        let mut tx = self.pool.begin().await?;
        match sessions::rotate(&mut tx, jwt, presented, jwt.session_ttl, reuse).await? {
            Rotation::Rotated(Rotated { is_active: false, .. })
            | Rotation::Reused(Rotated { is_active: false, .. }) => Err(Error::AccountDisabled),
            Rotation::Rotated(rotated) | Rotation::Reused(rotated) => {
                tx.commit().await?;
                Ok(rotated)
            }
            Rotation::Replayed => {
                // Keep the revocation: a spent token came back, so it has leaked.
                tx.commit().await?;
                tracing::warn!("refresh token replayed; session revoked");
                Err(Error::Unauthorized)
            }
            Rotation::Unknown => Err(Error::Unauthorized),
        }
    }

    /// A signed-in user re-proves their password in session `session_id` before a sensitive
    /// change; a wrong one is a 422 on `field` (not a 401, which would read as "your token is
    /// bad"). Each re-check counts like a login, against the session's own budget of failures:
    /// a stolen access token cannot be used to guess the password past it, and failures from
    /// elsewhere cannot block the reader's own session.
    pub async fn confirm_password(
        &self,
        user_id: &UserId,
        session_id: &str,
        password: &Password,
        field: &str,
        client: &ClientMeta,
    ) -> Result<()> {
        let found = user::credentials_by_id(self.pool, user_id).await?.ok_or(Error::Unauthorized)?;
        let limits = self.config.limits.login;
        let account = AccountKey::user(user_id);
        let check = rate_limit::reserve_check_in_session(
            self.pool,
            limits,
            &account,
            session_id,
            client.ip.as_deref(),
        )
        .await?;
        let verdict = match found.password_hash.as_deref() {
            Some(stored) => password::verify(password, stored).await?,
            None => Verdict::Mismatch,
        };
        if !verdict.matched() {
            check.failed(self.pool).await?;
            return Err(Error::invalid(field, "is incorrect"));
        }
        check.passed(self.pool).await
    }

    /// Changes the password of the session's user after re-proving the current one, and
    /// revokes every other session of the user.
    pub async fn change_password(
        &self,
        user_id: &UserId,
        session_id: &str,
        current: &Password,
        new: &Password,
        client: &ClientMeta,
    ) -> Result<()> {
        self.confirm_password(user_id, session_id, current, "current_password", client).await?;
        let hash = password::hash(new).await?;
        let mut tx = self.pool.begin().await?;
        rate_limit::lock_account(&mut tx, user_id).await?;
        user::set_password_hash(&mut *tx, user_id, &hash).await?;
        sessions::revoke_all_but(&mut *tx, user_id, Some(session_id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the session's user and everything of theirs: rows and stored chapters. The
    /// current password is required (a 422 on `password` when wrong); an account without one
    /// (a social sign-in) needs a session opened in the last few minutes instead. Returns how
    /// many stored objects went.
    pub async fn delete(
        &self,
        blobs: &dyn BlobStore,
        user_id: &UserId,
        session_id: &str,
        password: Option<String>,
        client: &ClientMeta,
    ) -> Result<u64> {
        let found = user::credentials_by_id(self.pool, user_id).await?.ok_or(Error::Unauthorized)?;
        if found.password_hash.is_some() || password.is_some() {
            let password = Password::parse_presented(password.unwrap_or_default())
                .map_err(|m| Error::invalid("password", m))?;
            self.confirm_password(user_id, session_id, &password, "password", client).await?;
        } else if !sessions::is_fresh(self.pool, session_id, FRESH_SESSION).await? {
            // No password to re-prove: a fresh session proves the owner is at the keyboard.
            return Err(Error::invalid(
                "password",
                "this account has no password: sign in again, then delete it within 5 minutes",
            ));
        }
        // Objects first: if the store fails, the account stays and the request can be retried.
        let objects = personalize::cache::delete_user_objects(blobs, user_id).await?;
        super::delete_account(self.pool, user_id).await?;
        // A chapter request racing the delete may have stored one more object; the row is gone
        // with the user, so sweep again (best effort: the bucket's lifecycle rule is the
        // backstop).
        if let Err(e) = personalize::cache::delete_user_objects(blobs, user_id).await {
            tracing::warn!(user_id = %user_id, error = %ErrorChain(&e), "objects left after account deletion");
        }
        tracing::info!(user_id = %user_id, objects, "account deleted");
        Ok(objects)
    }

    /// Sets a new password with a reset link's token and signs the reader in: the token (and
    /// every other reset link of the account) is consumed, every session is revoked, and a
    /// fresh one is opened. An unknown, expired, spent or forged token is one 400.
    pub async fn reset_password(&self, token: &str, new: &Password, client: &ClientMeta) -> Result<SignedIn> {
        let redeemable = self.recovery().check(Purpose::PasswordReset, token, client.ip.as_deref()).await?;
        if !redeemable.is_active {
            return Err(Error::AccountDisabled);
        }
        let hash = password::hash(new).await?;
        let refresh = RefreshToken::generate();
        let mut tx = self.pool.begin().await?;
        rate_limit::lock_account(&mut tx, &redeemable.user_id).await?;
        if !recovery::complete_password_reset(&mut tx, &redeemable, &hash).await? {
            // Another request with the same token won the race.
            return Err(Error::InvalidToken);
        }
        let user = user::record_login(&mut *tx, &redeemable.user_id).await?;
        let session_id = sessions::create(&mut *tx, &user.id, &refresh, self.session_ttl(), client).await?;
        rate_limit::record_place(&mut *tx, &user.id, client.ip.as_deref()).await?;
        tx.commit().await?;
        tracing::info!(user_id = %user.id, "password reset; every other session revoked");
        Ok(SignedIn { user, session_id, refresh })
    }

    /// Marks the account's address verified with a verification link's token; returns the
    /// user's id. An unknown, expired, spent or forged token is one 400.
    pub async fn verify_email(&self, token: &str, client: &ClientMeta) -> Result<UserId> {
        let redeemable = self.recovery().check(Purpose::VerifyEmail, token, client.ip.as_deref()).await?;
        let mut tx = self.pool.begin().await?;
        if !recovery::complete_verification(&mut tx, &redeemable).await? {
            return Err(Error::InvalidToken);
        }
        tx.commit().await?;
        tracing::info!(user_id = %redeemable.user_id, "e-mail address verified");
        Ok(redeemable.user_id)
    }

    async fn reserve_check(
        &self,
        account: &AccountKey,
        client: &ClientMeta,
    ) -> Result<rate_limit::PasswordCheck> {
        rate_limit::reserve_check(self.pool, self.config.limits.login, account, client.ip.as_deref()).await
    }

    fn session_ttl(&self) -> Duration {
        self.config.jwt.session_ttl
    }
}
