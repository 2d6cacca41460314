//! Sessions, in Better-Auth's `session` table. Ours keep only the hash of their current
//! refresh token in `token`; rotated-away hashes go to `refresh_token_spent` so that a replay
//! is recognised and revokes the whole session, unless it comes within a few seconds of the
//! rotation while the successor is still current (two tabs refreshing at once), which gets the
//! same successor instead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::tokens::{RefreshToken, storage_hash};
use crate::domain::ids::UserId;
use crate::error::Result;
use crate::infra::config::JwtConfig;

/// Where a request comes from: recorded on sessions and used to rate-limit logins.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    /// The client's address, as the platform vouches for it.
    pub ip: Option<String>,
    /// The `User-Agent` header, cut to 512 characters.
    pub user_agent: Option<String>,
}

/// The most sessions one user keeps: each sign-in opens one, and whoever has the password can
/// sign in in a loop, so opening one more revokes the oldest past this many.
pub const MAX_SESSIONS_PER_USER: i64 = 100;

/// The most rotated-away refresh tokens one session remembers (a day's worth at one refresh
/// every 15 minutes, as long as the janitor keeps them anyway): a client refreshing in a loop
/// cannot grow the table without end.
pub const MAX_SPENT_TOKENS_PER_SESSION: i64 = 100;

/// Opens a session whose refresh token is `refresh`, returning its id; the user's oldest
/// sessions past [`MAX_SESSIONS_PER_USER`] are revoked by the same statement. Those that another
/// request holds at the moment (being refreshed or revoked) are skipped, never waited for.
pub async fn create(
    db: impl PgExecutor<'_>,
    user_id: &UserId,
    refresh: &RefreshToken,
    ttl: Duration,
    client: &ClientMeta,
) -> Result<String> {
    let id = Uuid::new_v4().to_string();
    // The statement does not see its own new row: it keeps the newest MAX - 1 of the others.
    sqlx::query!(
        r#"WITH opened AS (
               INSERT INTO "session" (id, "expiresAt", token, "createdAt", "updatedAt", "ipAddress", "userAgent", "userId")
               VALUES ($1, now() + make_interval(secs => $2), $3, now(), now(), $4, $5, $6)
           )
           DELETE FROM "session" WHERE id IN (
               SELECT id FROM "session" WHERE "userId" = $6
               ORDER BY "createdAt" DESC, id DESC OFFSET $7 - 1
               FOR UPDATE SKIP LOCKED)"#,
        id,
        ttl.as_secs_f64(),
        refresh.storage_hash(),
        client.ip.as_deref(),
        client.user_agent.as_deref(),
        user_id.as_str(),
        // The statement takes the count as PostgreSQL infers `$7 - 1`: an int4.
        MAX_SESSIONS_PER_USER as i32,
    )
    .execute(db)
    .await?;
    Ok(id)
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum Rotation {
    /// The token was current: it is now spent and `next` is the session's token.
    Rotated(Rotated),
    /// The token was rotated moments ago (within the reuse interval) and its successor is
    /// still the session's token: a second tab refreshing at the same time. It gets the very
    /// tokens the first one got (the access token signed anew if the key rotated between).
    Reused(Rotated),
    /// The token had already been rotated away, longer ago than the reuse interval or with a
    /// newer token since: it has leaked, and the session is now revoked.
    Replayed,
    /// No session knows this token (never issued, expired, or revoked).
    Unknown,
}

/// A session's new refresh token and when it was issued.
#[derive(Debug)]
pub struct Rotated {
    /// The session.
    pub session_id: String,
    /// Its user.
    pub user_id: UserId,
    /// False when the account is disabled.
    pub is_active: bool,
    /// The session's refresh token from now on.
    pub next: RefreshToken,
    /// When it was issued (Unix seconds, the database's clock): the access token issued with
    /// it carries this `iat`, so a reuse gets the same access token too.
    pub issued_at: i64,
}

/// Swaps the session's current refresh token `presented` for its successor, extending the
/// session. Runs on one connection; concurrent presentations of one token serialise on the
/// session's row: the first rotates, and the others find the token spent moments ago and,
/// within `reuse_interval`, get the same successor (see [`Rotation::Reused`]).
pub async fn rotate(
    conn: &mut PgConnection,
    jwt: &JwtConfig,
    presented: &str,
    ttl: Duration,
    reuse_interval: Duration,
) -> Result<Rotation> {
    let old = storage_hash(presented);
    let next = RefreshToken::successor(jwt, presented)?;
    let rotated = sqlx::query!(
        r#"UPDATE "session" s SET token = $2, "expiresAt" = now() + make_interval(secs => $3), "updatedAt" = now()
           FROM "user" u
           WHERE s.token = $1 AND s."expiresAt" > now() AND u.id = s."userId"
           RETURNING s.id, s."userId" AS "user_id: UserId", u.is_active, floor(extract(epoch FROM now()))::bigint AS "issued_at!""#,
        old,
        next.storage_hash(),
        ttl.as_secs_f64(),
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = rotated {
        let (session_id, user_id, is_active, issued_at) = (row.id, row.user_id, row.is_active, row.issued_at);
        // The session's row is ours until the transaction ends: its spent tokens too.
        sqlx::query!(
            "WITH spent AS (INSERT INTO refresh_token_spent (token_hash, session_id, spent_at) VALUES ($1, $2, now()))
             DELETE FROM refresh_token_spent WHERE token_hash IN (
                 SELECT token_hash FROM refresh_token_spent WHERE session_id = $2
                 ORDER BY spent_at DESC, token_hash OFFSET $3 - 1)",
            old,
            session_id,
            MAX_SPENT_TOKENS_PER_SESSION as i32,
        )
        .execute(&mut *conn)
        .await?;
        return Ok(Rotation::Rotated(Rotated { session_id, user_id, is_active, next, issued_at }));
    }
    // A new statement sees what a concurrent rotation committed while we waited for the row.
    // The twin that rotated first may have done so under the key before a rotation of
    // JWT_SECRET: its successor is one of the previous keys'.
    let spent = sqlx::query!(
        r#"SELECT s.id, s."userId" AS "user_id: UserId", u.is_active, floor(extract(epoch FROM sp.spent_at))::bigint AS "issued_at!",
                  sp.spent_at > now() - make_interval(secs => $2) AS "recent!", s.token
           FROM refresh_token_spent sp JOIN "session" s ON s.id = sp.session_id JOIN "user" u ON u.id = s."userId"
           WHERE sp.token_hash = $1 AND s."expiresAt" > now()"#,
        old,
        reuse_interval.as_secs_f64(),
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(spent) = spent else {
        return Ok(Rotation::Unknown);
    };
    let (session_id, user_id, is_active, issued_at, recent, current) =
        (spent.id, spent.user_id, spent.is_active, spent.issued_at, spent.recent, spent.token);
    let twin = RefreshToken::possible_successors(jwt, presented)
        .into_iter()
        .find(|successor| successor.storage_hash() == current);
    match twin {
        Some(next) if recent => {
            Ok(Rotation::Reused(Rotated { session_id, user_id, is_active, next, issued_at }))
        }
        _ => {
            sqlx::query!(r#"DELETE FROM "session" WHERE id = $1"#, session_id).execute(&mut *conn).await?;
            Ok(Rotation::Replayed)
        }
    }
}

/// True when session `session_id` was opened less than `within` ago.
pub async fn is_fresh(db: impl PgExecutor<'_>, session_id: &str, within: Duration) -> Result<bool> {
    let fresh: Option<Option<bool>> = sqlx::query_scalar!(
        r#"SELECT "createdAt" > now() - make_interval(secs => $2) FROM "session" WHERE id = $1"#,
        session_id,
        within.as_secs_f64(),
    )
    .fetch_optional(db)
    .await?;
    Ok(fresh == Some(Some(true)))
}

/// What [`prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Sessions past their expiry, Better-Auth's included (they answer 401 already).
    pub expired: u64,
    /// Spent refresh tokens older than the time they are kept.
    pub spent: u64,
}

/// Deletes the expired sessions, and forgets spent refresh tokens older than `spent_kept`: a
/// replay of one is then no longer told from an unknown token (a 401 either way), and the table
/// does not grow by a row per refresh for a session's whole life.
///
/// One statement: deleting a session deletes its spent tokens too, so two statements run at
/// once could each hold a row the other waits for. The spent tokens of the expired sessions go
/// with them; only those older than `spent_kept` are counted.
pub async fn prune(db: impl PgExecutor<'_>, spent_kept: Duration) -> Result<Pruned> {
    let counts = sqlx::query!(
        r#"WITH expired AS (DELETE FROM "session" WHERE "expiresAt" < now() RETURNING 1),
                spent AS (DELETE FROM refresh_token_spent
                          WHERE spent_at < now() - make_interval(secs => $1) RETURNING 1)
           SELECT (SELECT count(*) FROM expired) AS "expired!", (SELECT count(*) FROM spent) AS "spent!""#,
        spent_kept.as_secs_f64(),
    )
    .fetch_one(db)
    .await?;
    let (expired, spent) = (counts.expired, counts.spent);
    Ok(Pruned { expired: expired as u64, spent: spent as u64 })
}

/// Revokes one of the user's sessions; false when the user has no such session.
pub async fn revoke(db: impl PgExecutor<'_>, user_id: &UserId, session_id: &str) -> Result<bool> {
    // Session ids (ours and Better-Auth's) are short runs of letters, digits, `-` and `_`:
    // anything else names no session, and must not reach the database (a NUL cannot).
    let plausible = (1..=64).contains(&session_id.len())
        && session_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plausible {
        return Ok(false);
    }
    let done = sqlx::query!(
        r#"DELETE FROM "session" WHERE id = $1 AND "userId" = $2"#,
        session_id,
        user_id.as_str()
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Revokes every session of the user but `keep` (all of them when `keep` is `None`).
pub async fn revoke_all_but(db: impl PgExecutor<'_>, user_id: &UserId, keep: Option<&str>) -> Result<u64> {
    let done = sqlx::query!(
        r#"DELETE FROM "session" WHERE "userId" = $1 AND id IS DISTINCT FROM $2"#,
        user_id.as_str(),
        keep
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// A live session as its owner sees it in the list.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(examples(crate::schema::examples::session_info))]
pub struct SessionInfo {
    /// Session id.
    pub id: String,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When it lapses unless refreshed.
    pub expires_at: DateTime<Utc>,
    /// Where it was opened from.
    #[schema(required)]
    pub ip_address: Option<String>,
    /// With what.
    #[schema(required)]
    pub user_agent: Option<String>,
    /// True for the session making the request.
    pub current: bool,
}

/// The user's live sessions, newest first.
pub async fn list(db: impl PgExecutor<'_>, user_id: &UserId, current: &str) -> Result<Vec<SessionInfo>> {
    Ok(sqlx::query_as!(
        SessionInfo,
        r#"SELECT id, "createdAt" AS created_at, "expiresAt" AS expires_at, "ipAddress" AS ip_address,
                  "userAgent" AS user_agent, id = $2 AS "current!"
           FROM "session" WHERE "userId" = $1 AND "expiresAt" > now()
           ORDER BY "createdAt" DESC, id"#,
        user_id.as_str(),
        current,
    )
    .fetch_all(db)
    .await?)
}
