//! Guests (the guest-chat model): strangers who chat before they sign up, identified by a guest token.

use std::time::Duration;

use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::domain::ids::UserId;
use crate::error::Result;

/// Hands every conversation of the guest to the user; returns how many moved. Run inside the
/// transaction that registers or logs the user in, so the hand-over is all or nothing.
pub async fn claim_conversations(db: impl PgExecutor<'_>, guest_id: Uuid, user_id: &UserId) -> Result<u64> {
    // The guest's `Untitled N` counter goes too: the titles stay, and from now on the user's
    // own counter numbers new conversations.
    let done = sqlx::query!(
        "WITH forgotten AS (DELETE FROM conversation_title_counters WHERE guest_id = $1)
         UPDATE conversations SET user_id = $2, guest_id = NULL, updated_at = now()
         WHERE guest_id = $1 AND user_id IS NULL",
        guest_id,
        user_id as &UserId,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes the guest conversations nobody can reach any more, and returns how many. A guest
/// token reaches its guest's conversations until it expires (`token_ttl`), and every change to
/// a conversation was made with a token issued before it: so one untouched for longer than
/// that is out of everyone's reach for good. A guest's title counter as old goes too: nobody
/// can create with that guest id again.
pub async fn delete_unreachable(db: &PgPool, token_ttl: Duration) -> Result<u64> {
    let removed = sqlx::query_scalar!(
        r#"WITH counters AS (DELETE FROM conversation_title_counters WHERE guest_id IS NOT NULL
                             AND updated_at < now() - make_interval(secs => $1)),
              removed AS (DELETE FROM conversations WHERE user_id IS NULL
                            AND greatest(updated_at, last_message_at) < now() - make_interval(secs => $1)
                          RETURNING 1)
         SELECT count(*) AS "removed!" FROM removed"#,
        token_ttl.as_secs_f64(),
    )
    .fetch_one(db)
    .await?;
    Ok(removed as u64)
}
