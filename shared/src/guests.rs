//! Guests (the guest-chat model): strangers who chat before they sign up, identified by a guest token.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;

/// Hands every conversation of the guest to the user; returns how many moved. Run inside the
/// transaction that registers or logs the user in, so the hand-over is all or nothing.
pub async fn claim_conversations(db: impl PgExecutor<'_>, guest_id: Uuid, user_id: &str) -> Result<u64> {
    // The guest's `Untitled N` counter goes too: the titles stay, and from now on the user's
    // own counter numbers new conversations.
    let done = sqlx::query(
        "WITH forgotten AS (DELETE FROM conversation_title_counters WHERE guest_id = $1)
         UPDATE conversations SET user_id = $2, guest_id = NULL, updated_at = now()
         WHERE guest_id = $1 AND user_id IS NULL",
    )
    .bind(guest_id)
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
