//! Conversations and their messages (the chatbot model), owned by a user or, until claimed, by a guest
//! (the guest-chat model). This module owns the `conversations`, `conversation_title_counters`
//! and `messages` tables: the conversation rows here, the checked values in [`values`], listing
//! in pages in [`paging`], messages in [`messages`], and what becomes of a guest's
//! conversations in [`guests`].
//!
//! Every query names its owner (`WHERE user_id = ...` or the guest's id), so another owner's
//! conversation is simply not found. Pages are keyset-paginated with opaque cursors. What
//! the tutor answers, and how a message and its reply are stored around the model call, is in
//! [`crate::domain::tutor`].

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgExecutor};

use crate::domain::ids::{ConversationId, UserId};
use crate::domain::usage::{self, UsageLimits};
use crate::error::{Error, Result, ResultExt};

pub use crate::domain::owner::Owner;

// Every statement names its owner with `$1` the user id and `$2` the guest id (one of them
// NULL), as `(c.user_id = $1 OR (c.user_id IS NULL AND c.guest_id = $2))`: a claimed
// conversation has a user, so the guest who started it no longer sees it. The statements are
// spelled out whole, so the compiler checks each against the schema.

pub mod guests;
mod messages;
mod paging;
mod values;

pub use messages::*;
pub use paging::{ConversationQuery, Cursor, Page, PageSize, list};
pub use values::*;

/// A conversation as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(examples(crate::schema::examples::conversation))]
pub struct Conversation {
    /// Id.
    #[schema(value_type = Uuid)]
    pub id: ConversationId,
    /// Title (`Untitled N` unless one was given).
    pub title: String,
    /// The model that answers in it.
    pub ai_model: String,
    /// Its own instructions for the model, if any.
    #[schema(required)]
    pub system_prompt: Option<String>,
    /// Archived conversations are listed only on request.
    pub is_archived: bool,
    /// Pinned conversations are listed first.
    pub is_pinned: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed (title, model, flags).
    pub updated_at: DateTime<Utc>,
    /// When its newest message was stored.
    #[schema(required)]
    pub last_message_at: Option<DateTime<Utc>>,
}

/// A conversation to create; the model is already checked against the allowed ones.
#[derive(Debug, Clone)]
pub struct NewConversation {
    /// `None` numbers it `Untitled N`.
    pub title: Option<Title>,
    /// The model that will answer.
    pub ai_model: AiModel,
    /// Its instructions for the model.
    pub system_prompt: Option<SystemPrompt>,
}

/// Creates a conversation, counted against the owner's daily quota of conversations in the same
/// transaction (429 `quota_exceeded`, and nothing created, once it is used up). An untitled one
/// gets the owner's next `Untitled N`, from a counter bumped in the same transaction, so
/// simultaneous creates get different numbers.
pub async fn create(
    db: &mut PgConnection,
    owner: &Owner,
    limits: &UsageLimits,
    new: NewConversation,
) -> Result<Conversation> {
    let mut tx = db.begin().await?;
    // The reader's counter first, as every transaction that counts locks it (see `usage`).
    usage::take_conversation(&mut tx, owner, limits).await?;
    let title = match new.title {
        Some(title) => title.0,
        None => format!("Untitled {}", next_untitled_number(&mut *tx, owner).await?),
    };
    let conversation = sqlx::query_as!(
        Conversation,
        r#"INSERT INTO conversations AS c (user_id, guest_id, title, ai_model, system_prompt)
           VALUES ($1, $2, $3, $4, $5)
           RETURNING c.id AS "id: ConversationId", c.title, c.ai_model, c.system_prompt, c.is_archived,
                     c.is_pinned, c.created_at, c.updated_at, c.last_message_at"#,
        owner.user_id() as Option<&UserId>,
        owner.guest_id(),
        title,
        new.ai_model.0,
        new.system_prompt.map(|p| p.0),
    )
    .fetch_one(&mut *tx)
    .await
    .on_constraint("conversations_user_id_fkey", account_gone)?;
    tx.commit().await?;
    Ok(conversation)
}

async fn next_untitled_number(db: impl PgExecutor<'_>, owner: &Owner) -> Result<i32> {
    let number = match owner {
        Owner::User(user_id) => {
            sqlx::query_scalar!(
                "INSERT INTO conversation_title_counters AS t (user_id, last_number) VALUES ($1, 1)
             ON CONFLICT (user_id) DO UPDATE SET last_number = t.last_number + 1, updated_at = now()
             RETURNING last_number",
                user_id as &UserId,
            )
            .fetch_one(db)
            .await
        }
        Owner::Guest(guest_id) => {
            sqlx::query_scalar!(
                "INSERT INTO conversation_title_counters AS t (guest_id, last_number) VALUES ($1, 1)
             ON CONFLICT (guest_id) DO UPDATE SET last_number = t.last_number + 1, updated_at = now()
             RETURNING last_number",
                guest_id,
            )
            .fetch_one(db)
            .await
        }
    };
    number.on_constraint("conversation_title_counters_user_id_fkey", account_gone)
}

/// A user's row went while their request was in flight (the account was deleted): their token
/// no longer names anyone.
fn account_gone(_: &sqlx::Error) -> Error {
    Error::Unauthorized
}

/// The caller's conversation `id`, if it is theirs.
pub async fn get(db: impl PgExecutor<'_>, owner: &Owner, id: ConversationId) -> Result<Option<Conversation>> {
    let conversation = sqlx::query_as!(
        Conversation,
        r#"SELECT c.id AS "id: ConversationId", c.title, c.ai_model, c.system_prompt, c.is_archived, c.is_pinned,
                  c.created_at, c.updated_at, c.last_message_at
           FROM conversations c WHERE c.id = $3 AND (c.user_id = $1 OR (c.user_id IS NULL AND c.guest_id = $2))"#,
        owner.user_id() as Option<&UserId>,
        owner.guest_id(),
        id as ConversationId,
    )
    .fetch_optional(db)
    .await?;
    Ok(conversation)
}

/// What a PATCH changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ConversationChanges {
    /// A new title.
    pub title: Option<Title>,
    /// A new model.
    pub ai_model: Option<AiModel>,
    /// `Some(None)` removes the system prompt.
    pub system_prompt: Option<Option<SystemPrompt>>,
    /// Archive or restore.
    pub is_archived: Option<bool>,
    /// Pin or unpin.
    pub is_pinned: Option<bool>,
}

/// Applies `changes` to the caller's conversation `id`; `None` if it is not theirs.
pub async fn update(
    db: impl PgExecutor<'_>,
    owner: &Owner,
    id: ConversationId,
    changes: ConversationChanges,
) -> Result<Option<Conversation>> {
    let (set_prompt, prompt) = match changes.system_prompt {
        Some(prompt) => (true, prompt.map(|p| p.0)),
        None => (false, None),
    };
    let conversation = sqlx::query_as!(
        Conversation,
        r#"UPDATE conversations AS c SET
              title = coalesce($4, c.title),
              ai_model = coalesce($5, c.ai_model),
              system_prompt = CASE WHEN $6 THEN $7 ELSE c.system_prompt END,
              is_archived = coalesce($8, c.is_archived),
              is_pinned = coalesce($9, c.is_pinned),
              updated_at = now()
           WHERE c.id = $3 AND (c.user_id = $1 OR (c.user_id IS NULL AND c.guest_id = $2))
           RETURNING c.id AS "id: ConversationId", c.title, c.ai_model, c.system_prompt, c.is_archived,
                     c.is_pinned, c.created_at, c.updated_at, c.last_message_at"#,
        owner.user_id() as Option<&UserId>,
        owner.guest_id(),
        id as ConversationId,
        changes.title.map(|t| t.0),
        changes.ai_model.map(|m| m.0),
        set_prompt,
        prompt,
        changes.is_archived,
        changes.is_pinned,
    )
    .fetch_optional(db)
    .await?;
    Ok(conversation)
}

/// Deletes the caller's conversation `id` and, by cascade, its messages; false if it is not
/// theirs.
pub async fn delete(db: impl PgExecutor<'_>, owner: &Owner, id: ConversationId) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM conversations AS c
         WHERE c.id = $3 AND (c.user_id = $1 OR (c.user_id IS NULL AND c.guest_id = $2))",
        owner.user_id() as Option<&UserId>,
        owner.guest_id(),
        id as ConversationId,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
