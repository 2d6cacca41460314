//! Identity: the account flows, passwords, tokens, sessions, the login rate limit, account
//! recovery by e-mail, Better-Auth's sessions, and signing in with other providers.

#[cfg(feature = "passwords")]
pub mod account;
pub mod better_auth;
pub mod oauth;
#[cfg(feature = "passwords")]
pub mod password;
pub mod rate_limit;
pub mod recovery;
pub mod sessions;
pub mod tokens;

use sqlx::PgPool;

use crate::domain::ids::UserId;
use crate::error::Result;

/// Deletes an account in one transaction: the user (their sessions, accounts, profile,
/// conversations and chapter rows cascade), their failed password checks and their pending
/// recovery links, which name the user by text rather than a foreign key. False when there was
/// no such user. The stored chapter objects are the caller's to remove (they are not rows).
pub async fn delete_account(pool: &PgPool, user_id: &UserId) -> Result<bool> {
    let mut tx = pool.begin().await?;
    // The account's lock first, as a login takes it (docs/data-model.md, "How requests lock").
    rate_limit::lock_account(&mut tx, user_id).await?;
    rate_limit::forget_account(&mut *tx, user_id).await?;
    // The reader's counters before the user row, whose deletion would take them by cascade
    // after it: the order every statement on the counters keeps (see `usage`).
    crate::domain::usage::forget_reader(&mut tx, user_id).await?;
    recovery::discard_everything_of(&mut *tx, user_id).await?;
    let deleted = crate::domain::user::delete(&mut *tx, user_id).await?;
    tx.commit().await?;
    Ok(deleted)
}
