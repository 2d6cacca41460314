//! A sign-in's rows in Better-Auth's `verification` table: the pending sign-in between the
//! start and the provider's callback (state, PKCE verifier, nonce, where to return; about ten
//! minutes), and the one-time code that hands a finished sign-in to the site (a minute).
//!
//! Both are found by a SHA-256 of their secret (`primer:oauth-state:<hex>`,
//! `primer:oauth-code:<hex>`), so the table never holds a state or a code that works, and both
//! are taken by one `DELETE ... RETURNING` of a live row: of any number of requests presenting
//! one, exactly one gets it. Better-Auth's own rows never start with `primer:`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::domain::ids::UserId;
use crate::error::Result;

const STATE: &str = "primer:oauth-state:";
const CODE: &str = "primer:oauth-code:";

/// 256 random bits, URL-safe: a state, a PKCE verifier, a nonce or a one-time code.
pub fn random_secret() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn identifier(prefix: &str, secret: &str) -> String {
    format!("{prefix}{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

/// What a sign-in keeps between its start and the provider's callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingSignIn {
    /// The provider it was started with; a callback for another is refused.
    pub provider: String,
    /// The PKCE code verifier (RFC 7636) whose S256 challenge went to the provider.
    pub verifier: String,
    /// The nonce the ID token must carry (OpenID Connect).
    pub nonce: String,
    /// Where the reader returns, on the allow-list.
    pub redirect_to: String,
    /// The callback URL sent to the provider; the code exchange must name it again.
    pub callback: String,
    /// The signed-in user who asked to link this provider, if it is a link.
    pub link_user: Option<UserId>,
    /// The session they asked from: the link is made only while it is live.
    pub link_session: Option<String>,
}

/// Stores `pending` under `state` for `ttl`.
pub async fn store(
    db: impl PgExecutor<'_>,
    state: &str,
    pending: &PendingSignIn,
    ttl: Duration,
) -> Result<()> {
    insert(
        db,
        &identifier(STATE, state),
        &serde_json::to_string(pending).map_err(crate::Error::internal)?,
        ttl,
    )
    .await
}

/// Takes the pending sign-in of `state` if it is there and live: it is gone afterwards, so a
/// state works once.
pub async fn take(db: impl PgExecutor<'_>, state: &str) -> Result<Option<PendingSignIn>> {
    let value = take_value(db, &identifier(STATE, state)).await?;
    // A row that does not parse was not written by this code: no sign-in.
    Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
}

/// A finished sign-in waiting for the site to redeem it.
#[derive(Serialize, Deserialize)]
struct Finished {
    user_id: UserId,
}

/// Stores a new one-time code that signs `user_id` in, valid for `ttl`; returns the code.
pub async fn issue_code(db: impl PgExecutor<'_>, user_id: &UserId, ttl: Duration) -> Result<String> {
    let code = random_secret();
    let value =
        serde_json::to_string(&Finished { user_id: user_id.to_owned() }).map_err(crate::Error::internal)?;
    insert(db, &identifier(CODE, &code), &value, ttl).await?;
    Ok(code)
}

/// Redeems a one-time code: the user it signs in, if it is there and live; it is gone
/// afterwards. A presented value that cannot be a code never reaches the database.
pub async fn redeem_code(db: impl PgExecutor<'_>, code: &str) -> Result<Option<UserId>> {
    if code.len() != 43 || !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Ok(None);
    }
    let value = take_value(db, &identifier(CODE, code)).await?;
    Ok(value.and_then(|v| serde_json::from_str::<Finished>(&v).ok()).map(|f| f.user_id))
}

async fn insert(db: impl PgExecutor<'_>, identifier: &str, value: &str, ttl: Duration) -> Result<()> {
    sqlx::query!(
        r#"INSERT INTO "verification" (id, identifier, value, "expiresAt", "createdAt", "updatedAt")
           VALUES ($1, $2, $3, now() + make_interval(secs => $4), now(), now())"#,
        Uuid::new_v4().to_string(),
        identifier,
        value,
        ttl.as_secs_f64(),
    )
    .execute(db)
    .await?;
    Ok(())
}

async fn take_value(db: impl PgExecutor<'_>, identifier: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar!(
        r#"DELETE FROM "verification" WHERE identifier = $1 AND "expiresAt" > now() RETURNING value"#,
        identifier,
    )
    .fetch_optional(db)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_stored_as_digests() {
        let (a, b) = (random_secret(), random_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let stored = identifier(CODE, &a);
        assert!(stored.starts_with("primer:oauth-code:") && !stored.contains(&a));
        assert_eq!(stored.len(), CODE.len() + 64);
    }
}
