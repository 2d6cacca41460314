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
use uuid::Uuid;

use crate::domain::usage::{self, UsageLimits};
use crate::error::{Error, Result, ResultExt};

pub use crate::domain::owner::Owner;

/// The owner check of every query: `$1` is the user id, `$2` the guest id (one of them NULL).
/// A claimed conversation has a user, so the guest who started it no longer sees it.
macro_rules! owned {
    () => {
        "(c.user_id = $1 OR (c.user_id IS NULL AND c.guest_id = $2))"
    };
}

/// The `conversations` columns as [`Conversation`] reads them (table alias `c`).
macro_rules! conversation_columns {
    () => {
        "c.id, c.title, c.ai_model, c.system_prompt, c.is_archived, c.is_pinned, c.created_at, c.updated_at, \
         c.last_message_at"
    };
}

pub mod guests;
mod messages;
mod paging;
mod values;

pub use messages::*;
pub use paging::{ConversationQuery, Cursor, Page, PageSize, list};
pub use values::*;

/// A conversation as the API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(examples(crate::schema::examples::conversation))]
pub struct Conversation {
    /// Id.
    pub id: Uuid,
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
    let conversation = sqlx::query_as(concat!(
        "INSERT INTO conversations AS c (user_id, guest_id, title, ai_model, system_prompt)
         VALUES ($1, $2, $3, $4, $5) RETURNING ",
        conversation_columns!()
    ))
    .bind(owner.user_id())
    .bind(owner.guest_id())
    .bind(title)
    .bind(new.ai_model.0)
    .bind(new.system_prompt.map(|p| p.0))
    .fetch_one(&mut *tx)
    .await
    .on_constraint("conversations_user_id_fkey", account_gone)?;
    tx.commit().await?;
    Ok(conversation)
}

async fn next_untitled_number(db: impl PgExecutor<'_>, owner: &Owner) -> Result<i32> {
    let query = match owner {
        Owner::User(user_id) => sqlx::query_scalar(
            "INSERT INTO conversation_title_counters AS t (user_id, last_number) VALUES ($1, 1)
             ON CONFLICT (user_id) DO UPDATE SET last_number = t.last_number + 1, updated_at = now()
             RETURNING last_number",
        )
        .bind(user_id.as_str()),
        Owner::Guest(guest_id) => sqlx::query_scalar(
            "INSERT INTO conversation_title_counters AS t (guest_id, last_number) VALUES ($1, 1)
             ON CONFLICT (guest_id) DO UPDATE SET last_number = t.last_number + 1, updated_at = now()
             RETURNING last_number",
        )
        .bind(*guest_id),
    };
    query.fetch_one(db).await.on_constraint("conversation_title_counters_user_id_fkey", account_gone)
}

/// A user's row went while their request was in flight (the account was deleted): their token
/// no longer names anyone.
fn account_gone(_: &sqlx::Error) -> Error {
    Error::Unauthorized
}

/// The caller's conversation `id`, if it is theirs.
pub async fn get(db: impl PgExecutor<'_>, owner: &Owner, id: Uuid) -> Result<Option<Conversation>> {
    let conversation = sqlx::query_as(concat!(
        "SELECT ",
        conversation_columns!(),
        " FROM conversations c WHERE c.id = $3 AND ",
        owned!()
    ))
    .bind(owner.user_id())
    .bind(owner.guest_id())
    .bind(id)
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
    id: Uuid,
    changes: ConversationChanges,
) -> Result<Option<Conversation>> {
    let (set_prompt, prompt) = match changes.system_prompt {
        Some(prompt) => (true, prompt.map(|p| p.0)),
        None => (false, None),
    };
    let conversation = sqlx::query_as(concat!(
        "UPDATE conversations AS c SET
            title = coalesce($4, c.title),
            ai_model = coalesce($5, c.ai_model),
            system_prompt = CASE WHEN $6 THEN $7 ELSE c.system_prompt END,
            is_archived = coalesce($8, c.is_archived),
            is_pinned = coalesce($9, c.is_pinned),
            updated_at = now()
         WHERE c.id = $3 AND ",
        owned!(),
        "
         RETURNING ",
        conversation_columns!()
    ))
    .bind(owner.user_id())
    .bind(owner.guest_id())
    .bind(id)
    .bind(changes.title.map(|t| t.0))
    .bind(changes.ai_model.map(|m| m.0))
    .bind(set_prompt)
    .bind(prompt)
    .bind(changes.is_archived)
    .bind(changes.is_pinned)
    .fetch_optional(db)
    .await?;
    Ok(conversation)
}

/// Deletes the caller's conversation `id` and, by cascade, its messages; false if it is not
/// theirs.
pub async fn delete(db: impl PgExecutor<'_>, owner: &Owner, id: Uuid) -> Result<bool> {
    let done = sqlx::query(concat!("DELETE FROM conversations AS c WHERE c.id = $3 AND ", owned!()))
        .bind(owner.user_id())
        .bind(owner.guest_id())
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}
