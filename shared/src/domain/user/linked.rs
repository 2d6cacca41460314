//! Provider accounts: the `account` rows that let a user sign in with GitHub, Google or an
//! OpenID Connect provider, written as Better-Auth writes them (`providerId`, `accountId` = the
//! provider's id of the reader, `userId`, `scope`, `createdAt`, `updatedAt`), so that a
//! Better-Auth frontend on the same database finds the same links. The token columns stay
//! empty: primer keeps no provider token (see `auth::oauth`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::{Email, User, UserName, email_taken};
use crate::domain::ids::UserId;
use crate::error::{Code, Error, Result, ResultExt};

/// An account at a provider, as the provider names it.
#[derive(Debug, Clone, Copy)]
pub struct ProviderAccount<'a> {
    /// The provider's id (`account.providerId`).
    pub provider: &'a str,
    /// The reader's id there (`account.accountId`): GitHub's numeric id, an ID token's `sub`.
    pub account_id: &'a str,
    /// The scopes granted, comma-separated as Better-Auth stores them.
    pub scope: &'a str,
}

/// The user who owns the account `account` names, if any.
pub async fn owner_of(db: impl PgExecutor<'_>, account: &ProviderAccount<'_>) -> Result<Option<User>> {
    Ok(query_user!(
        "SELECT ",
        r#" FROM "account" a JOIN "user" u ON u.id = a."userId"
           WHERE a."providerId" = $1 AND a."accountId" = $2"#,
        account.provider,
        account.account_id,
    )
    .fetch_optional(db)
    .await?)
}

/// The id of the user's account at `provider`, if they have one.
pub async fn account_at(db: impl PgExecutor<'_>, user_id: &UserId, provider: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT "accountId" FROM "account" WHERE "userId" = $1 AND "providerId" = $2 ORDER BY "createdAt" LIMIT 1"#,
        user_id.as_str(),
        provider,
    )
    .fetch_optional(db)
    .await?)
}

/// 409 `account_already_linked`: the provider account belongs to another user.
pub fn already_linked() -> Error {
    Error::Conflict {
        code: Code::AccountAlreadyLinked,
        message: "this account at the provider is already linked to another user".into(),
    }
}

/// Links `account` to the user, in the caller's transaction; 409 `account_already_linked`
/// when it is linked already (to anyone: the caller checks whose first).
pub async fn link(db: impl PgExecutor<'_>, user_id: &UserId, account: &ProviderAccount<'_>) -> Result<()> {
    sqlx::query!(
        r#"INSERT INTO "account" (id, "accountId", "providerId", "userId", scope, "createdAt", "updatedAt")
           VALUES ($1, $2, $3, $4, $5, now(), now())"#,
        Uuid::new_v4().to_string(),
        account.account_id,
        account.provider,
        user_id.as_str(),
        account.scope,
    )
    .execute(db)
    .await
    .on_constraint("account_provider_account_key", |_| already_linked())?;
    Ok(())
}

/// Creates a user who signs in with `account` (no password), in the caller's transaction.
/// 409 `email_taken` when the address is taken, 409 `account_already_linked` when the account
/// is: both mean another request got there first.
pub async fn create_with_provider(
    conn: &mut PgConnection,
    email: &Email,
    email_verified: bool,
    name: &UserName,
    image: Option<&str>,
    account: &ProviderAccount<'_>,
) -> Result<User> {
    let id = Uuid::new_v4().to_string();
    let user: User = query_user!(
        r#"INSERT INTO "user" AS u (id, name, email, "emailVerified", image, "createdAt", "updatedAt")
           VALUES ($1, $2, $3, $4, $5, now(), now()) RETURNING "#,
        "",
        id,
        name.as_str(),
        email.as_str(),
        email_verified,
        image,
    )
    .fetch_one(&mut *conn)
    .await
    .on_constraint("user_email_key", email_taken)
    .on_constraint("user_email_lower_key", email_taken)?;
    link(&mut *conn, &user.id, account).await?;
    Ok(user)
}

/// One way a user signs in: their password (`credential`), or an account at a provider.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SignInMethod {
    /// `credential` for the password, else the provider's id (`github`, `google`, ...).
    pub provider: String,
    /// When it was added.
    pub linked_at: DateTime<Utc>,
}

/// The user's ways to sign in, oldest first: a password account with a password, and every
/// provider account (those a Better-Auth frontend linked included).
pub async fn sign_in_methods(db: impl PgExecutor<'_>, user_id: &UserId) -> Result<Vec<SignInMethod>> {
    Ok(sqlx::query_as!(
        SignInMethod,
        r#"SELECT "providerId" AS provider, min("createdAt") AS "linked_at!" FROM "account"
           WHERE "userId" = $1 AND ("providerId" <> 'credential' OR password IS NOT NULL)
           GROUP BY "providerId" ORDER BY "linked_at!", provider"#,
        user_id.as_str(),
    )
    .fetch_all(db)
    .await?)
}

/// Locks the user's row until the caller's transaction ends, so that changes to one user's
/// ways of signing in happen one after another; false when there is no such user.
pub async fn lock_user(conn: &mut PgConnection, user_id: &UserId) -> Result<bool> {
    let found = sqlx::query_scalar!(r#"SELECT 1 FROM "user" WHERE id = $1 FOR UPDATE"#, user_id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.is_some())
}

/// Removes the user's accounts at `provider` (`credential`: the password), in the caller's
/// transaction; returns how many went.
pub async fn unlink(db: impl PgExecutor<'_>, user_id: &UserId, provider: &str) -> Result<u64> {
    let done = sqlx::query!(
        r#"DELETE FROM "account" WHERE "userId" = $1 AND "providerId" = $2"#,
        user_id.as_str(),
        provider
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
