//! Messages: a conversation's history, a posted question stored once (duplicates within the
//! window find it), the claim of the request answering it, and the reply stored after the model.

use std::time::Duration;

use chrono::{DateTime, Utc};

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::types::Json;
use sqlx::{Connection, PgConnection, PgExecutor, PgPool};
use sqlx::{Decode, Postgres};

use super::paging::{Cursor, Page, PageSize, paginate};
use super::{MessageContent, Owner, content_hash};
use crate::domain::ids::{ConversationId, MessageId, UserId};
use crate::domain::usage::{self, UsageLimits};
use crate::error::{Error, Result, ResultExt};
use crate::infra::model::TokenUsage;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sender {
    /// The person.
    User,
    /// The tutor (a model or the offline engine).
    Ai,
    /// The system.
    System,
}

impl TryFrom<String> for Sender {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "user" => Ok(Self::User),
            "ai" => Ok(Self::Ai),
            "system" => Ok(Self::System),
            other => Err(format!("unknown sender {other:?}")),
        }
    }
}

/// `messages.sender` is text (checked to these three values), read by [`Sender`]'s parser.
impl sqlx::Type<Postgres> for Sender {
    fn type_info() -> PgTypeInfo {
        <&str as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Sender {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Self::try_from(<String as Decode<Postgres>>::decode(value)?)?)
    }
}

/// A passage of the book an answer rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Citation {
    /// The chapter's id.
    #[schema(minimum = 1)]
    pub chapter_id: i32,
    /// The section's heading.
    pub section: String,
    /// The chapter's title.
    pub title: String,
    /// The section's anchor in the chapter, for a link.
    pub anchor: String,
}

/// Why a reply failed, stored on the reply and shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetails {
    /// Stable machine-readable code, e.g. `model_timeout`.
    pub code: String,
    /// What happened, for a person.
    pub message: String,
    /// The text a streamed answer had reached when the model failed (absent when nothing had
    /// come). Not part of the conversation: a retry answers afresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub partial_content: Option<String>,
}

/// A message as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(examples(crate::schema::examples::reply))]
pub struct Message {
    /// Id.
    #[schema(value_type = Uuid)]
    pub id: MessageId,
    /// The conversation it belongs to (not shown: the client asked by it).
    #[serde(skip)]
    pub conversation_id: ConversationId,
    /// Who wrote it.
    #[schema(inline)]
    pub sender: Sender,
    /// What was said.
    pub content: String,
    /// The model that wrote a reply.
    #[schema(required)]
    pub ai_model: Option<String>,
    /// For an ai reply: the user message it answers.
    #[schema(value_type = Option<Uuid>)]
    pub reply_to: Option<MessageId>,
    /// True when the reply is a failure notice rather than an answer.
    pub is_error: bool,
    /// Why the reply failed.
    #[schema(value_type = Option<ErrorDetails>, inline, required)]
    pub error_details: Option<Json<ErrorDetails>>,
    /// The passages of the book the reply rests on.
    #[schema(value_type = Vec<Citation>)]
    pub citations: Json<Vec<Citation>>,
    /// Stored.
    pub created_at: DateTime<Utc>,
    /// SHA-256 of the content (not shown).
    #[serde(skip)]
    pub content_hash: String,
    /// For a model's reply: the prompt tokens it cost (not shown; `GET /api/usage` sums up).
    #[serde(skip)]
    pub prompt_tokens: Option<i32>,
    /// For a model's reply: the completion tokens it cost (not shown).
    #[serde(skip)]
    pub completion_tokens: Option<i32>,
}

/// A statement checked by the compiler that reads [`Message`]s: `SELECT` the `messages`
/// columns (table alias `m`) then `$rest` (a string literal: `FROM`, `WHERE` and what follows),
/// with `$args` for its parameters.
macro_rules! select_messages {
    ($rest:literal, $($args:tt)*) => {
        sqlx::query_as!(
            Message,
            r#"SELECT m.id AS "id: MessageId", m.conversation_id AS "conversation_id: ConversationId",
                      m.sender AS "sender: Sender", m.content, m.ai_model, m.reply_to AS "reply_to: MessageId",
                      m.is_error, m.error_details AS "error_details: Json<ErrorDetails>",
                      m.citations AS "citations: Json<Vec<Citation>>", m.created_at, m.content_hash,
                      m.prompt_tokens, m.completion_tokens "# + $rest,
            $($args)*
        )
    };
}

/// The caller's messages of a conversation, newest page first: the `limit` messages before
/// `before` (or the newest ones), oldest first; the cursor leads to older ones.
pub async fn list_messages(
    db: impl PgExecutor<'_>,
    owner: &Owner,
    conversation_id: ConversationId,
    limit: PageSize,
    before: Option<Cursor>,
) -> Result<Page<Message>> {
    let rows = select_messages!(
        "FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE c.id = $3 AND (c.user_id = $1 OR (c.user_id IS NULL AND c.guest_id = $2))
           AND ($4::timestamptz IS NULL OR (m.created_at, m.id) < ($4, $5))
         ORDER BY m.created_at DESC, m.id DESC
         LIMIT $6",
        owner.user_id() as Option<&UserId>,
        owner.guest_id(),
        conversation_id as ConversationId,
        before.map(|c| c.at),
        before.map(|c| c.id),
        limit.fetch(),
    )
    .fetch_all(db)
    .await?;
    let mut page =
        paginate(rows, limit, |m| Cursor { pinned: false, at: m.created_at, id: m.id.get(), as_of: None });
    page.items.reverse();
    Ok(page)
}

/// A user message of `conversation_id` with this content hash, stored in the last 30 seconds.
async fn recent_duplicate(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
    hash: &str,
    arrived: DateTime<Utc>,
) -> Result<Option<Message>> {
    let message = select_messages!(
        "FROM messages m
         WHERE m.conversation_id = $1 AND m.content_hash = $2 AND m.sender = 'user'
           AND m.created_at > $3::timestamptz - interval '30 seconds'
         ORDER BY m.created_at DESC LIMIT 1",
        conversation_id as ConversationId,
        hash,
        arrived,
    )
    .fetch_optional(db)
    .await?;
    Ok(message)
}

/// A user message as [`add_or_find_user_message`] left it.
#[derive(Debug)]
pub enum Posted {
    /// Stored now, and claimed for answering by the caller (see [`claim_reply`]).
    New(Message),
    /// The same message arrived within 30 s before: stored once, answered by whoever claims it.
    Duplicate(Message),
}

/// Stores a user message and claims it for answering for `lease`, unless the same message
/// reached the conversation within 30 s of `arrived`: then that one is returned instead. A new
/// message counts against `owner`'s daily messages in the same transaction (429
/// `quota_exceeded`, and nothing stored, once they are used up); a duplicate costs nothing.
///
/// The check and the insert are serialized per (conversation, content) by a transaction-scoped
/// advisory lock, held only for this short transaction, so two identical posts at once store
/// one message. Nothing outlives the transaction, as PgBouncer's transaction mode requires.
pub async fn add_or_find_user_message(
    pool: &PgPool,
    owner: &Owner,
    limits: &UsageLimits,
    conversation_id: ConversationId,
    content: &MessageContent,
    arrived: DateTime<Utc>,
    lease: Duration,
) -> Result<Posted> {
    let hash = content.hash();
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        format!("primer.exchange:{conversation_id}:{hash}"),
    )
    .execute(&mut *tx)
    .await?;
    let posted = match recent_duplicate(&mut *tx, conversation_id, &hash, arrived).await? {
        Some(message) => Posted::Duplicate(message),
        None => {
            usage::take_message(&mut tx, owner, limits).await?;
            let new = NewMessage::User { content: content.as_str(), hash, lease: Some(lease) };
            Posted::New(insert(&mut tx, conversation_id, new).await?)
        }
    };
    tx.commit().await?;
    Ok(posted)
}

/// Which user messages [`claim_reply`] may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// Only those with no reply yet (a duplicate post finishing the first one's work).
    NoReply,
    /// Those with no reply or whose newest reply failed (a retry).
    NoAnswer,
}

/// Claims user message `message_id` of `owner` for answering for `lease`: true when the caller
/// may now ask the model and store the reply. False while someone else's claim runs, or when
/// the message already has the reply `which` asks for. A retry (`NoAnswer`) that wins counts
/// as a message against the owner's day, in the same transaction (429 `quota_exceeded`, and
/// the claim not taken, once the day's messages are used up): each retry stores a reply, so
/// retrying a failing model in a loop would otherwise add rows without end.
///
/// The lease is taken by an UPDATE of the message's row, so of any number of claimants at once
/// one wins and the others wait for it; the replies are looked at by the next statement, which
/// sees every reply committed before the row was taken (a reply is stored in the transaction
/// that ends its claim). Four round trips, but only duplicates and retries claim.
pub async fn claim_reply(
    pool: &PgPool,
    owner: &Owner,
    limits: &UsageLimits,
    message_id: MessageId,
    which: Unanswered,
    lease: Duration,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let taken = sqlx::query_scalar!(
        "UPDATE messages SET reply_lease_until = clock_timestamp() + make_interval(secs => $2)
         WHERE id = $1 AND sender = 'user'
           AND (reply_lease_until IS NULL OR reply_lease_until < clock_timestamp())
         RETURNING id",
        message_id as MessageId,
        lease.as_secs_f64(),
    )
    .fetch_optional(&mut *tx)
    .await?;
    if taken.is_none() {
        return Ok(false);
    }
    let latest_failed = sqlx::query_scalar!(
        "SELECT is_error FROM messages WHERE reply_to = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
        message_id as MessageId,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let may_answer = match latest_failed {
        None => true,
        Some(failed) => failed && which == Unanswered::NoAnswer,
    };
    if may_answer {
        if which == Unanswered::NoAnswer {
            usage::take_message(&mut tx, owner, limits).await?;
        }
        tx.commit().await?;
    }
    // Otherwise the transaction rolls back as it drops: the lease stays as it was.
    Ok(may_answer)
}

/// Gives up a claim without a reply (the caller failed before it could store one), so the next
/// post or retry need not wait for the lease to lapse.
pub async fn release_reply_claim(db: impl PgExecutor<'_>, message_id: MessageId) -> Result<()> {
    sqlx::query!(
        "UPDATE messages SET reply_lease_until = NULL WHERE id = $1 AND sender = 'user'",
        message_id as MessageId,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// How long the claim on user message `message_id` has left; `None` when nobody holds one.
pub async fn reply_claim_left(db: impl PgExecutor<'_>, message_id: MessageId) -> Result<Option<Duration>> {
    // Not NULL: the row has a lease, or is not found.
    let left = sqlx::query_scalar!(
        r#"SELECT extract(epoch FROM reply_lease_until - clock_timestamp())::float8 AS "left!"
           FROM messages WHERE id = $1 AND reply_lease_until > clock_timestamp()"#,
        message_id as MessageId,
    )
    .fetch_optional(db)
    .await?;
    Ok(left.map(|secs| Duration::from_secs_f64(secs.max(0.0))))
}

/// The caller's user message `message_id` in conversation `conversation_id`.
pub async fn user_message(
    db: impl PgExecutor<'_>,
    owner: &Owner,
    conversation_id: ConversationId,
    message_id: MessageId,
) -> Result<Option<Message>> {
    let message = select_messages!(
        "FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.id = $4 AND c.id = $3 AND m.sender = 'user'
           AND (c.user_id = $1 OR (c.user_id IS NULL AND c.guest_id = $2))",
        owner.user_id() as Option<&UserId>,
        owner.guest_id(),
        conversation_id as ConversationId,
        message_id as MessageId,
    )
    .fetch_optional(db)
    .await?;
    Ok(message)
}

/// The newest reply to a user message, failed or not.
pub async fn latest_reply(db: impl PgExecutor<'_>, user_message_id: MessageId) -> Result<Option<Message>> {
    let message = select_messages!(
        "FROM messages m WHERE m.reply_to = $1
         ORDER BY m.created_at DESC, m.id DESC LIMIT 1",
        user_message_id as MessageId,
    )
    .fetch_optional(db)
    .await?;
    Ok(message)
}

/// The conversation before `message`, newest first, at most `limit` messages: what the model
/// is reminded of. Failure notices are left out; they are not part of the dialogue.
pub async fn history_before(db: impl PgExecutor<'_>, message: &Message, limit: i64) -> Result<Vec<Message>> {
    let messages = select_messages!(
        "FROM messages m JOIN messages this ON this.id = $1
         WHERE m.conversation_id = this.conversation_id AND NOT m.is_error AND m.sender <> 'system'
           AND (m.created_at, m.id) < (this.created_at, this.id)
         ORDER BY m.created_at DESC, m.id DESC LIMIT $2",
        message.id as MessageId,
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(messages)
}

/// Stores a user message, claimed by nobody, and moves the conversation's `last_message_at` to
/// it (history written straight into the store, e.g. by an import or a test).
pub async fn add_user_message(
    db: &mut PgConnection,
    conversation_id: ConversationId,
    content: &MessageContent,
) -> Result<Message> {
    let mut tx = db.begin().await?;
    let new = NewMessage::User { content: content.as_str(), hash: content.hash(), lease: None };
    let stored = insert(&mut tx, conversation_id, new).await?;
    tx.commit().await?;
    Ok(stored)
}

/// A reply to store: an answer or a failure notice.
#[derive(Debug, Clone)]
pub struct NewReply {
    /// The reply's text (for a failure, a notice for the person).
    pub content: String,
    /// The model (or offline engine) that produced it.
    pub ai_model: String,
    /// The passages it rests on.
    pub citations: Vec<Citation>,
    /// Set when the reply is a failure notice.
    pub error: Option<ErrorDetails>,
    /// What the model call cost, when a model answered and said.
    pub usage: Option<TokenUsage>,
}

/// Stores the reply to `user_message`, ends the claim on it, and moves the conversation's
/// `last_message_at` to the reply: one transaction.
pub async fn add_reply(db: &mut PgConnection, user_message: &Message, reply: NewReply) -> Result<Message> {
    let mut tx = db.begin().await?;
    let stored =
        insert(&mut tx, user_message.conversation_id, NewMessage::Reply { to: user_message.id, reply })
            .await?;
    sqlx::query!("UPDATE messages SET reply_lease_until = NULL WHERE id = $1", user_message.id as MessageId)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(stored)
}

enum NewMessage<'a> {
    User { content: &'a str, hash: String, lease: Option<Duration> },
    Reply { to: MessageId, reply: NewReply },
}

/// Inserts a message and moves its conversation's `last_message_at`, inside the caller's
/// transaction.
async fn insert(
    tx: &mut PgConnection,
    conversation_id: ConversationId,
    message: NewMessage<'_>,
) -> Result<Message> {
    let tokens = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    let (
        sender,
        content,
        hash,
        ai_model,
        reply_to,
        is_error,
        error_details,
        citations,
        lease,
        prompt,
        completion,
    ) = match message {
        NewMessage::User { content, hash, lease } => (
            "user",
            content.to_owned(),
            hash,
            None,
            None,
            false,
            None,
            Vec::new(),
            lease.map(|lease| lease.as_secs_f64()),
            None,
            None,
        ),
        NewMessage::Reply { to, reply } => (
            "ai",
            reply.content.clone(),
            content_hash(&reply.content),
            Some(reply.ai_model),
            Some(to),
            reply.error.is_some(),
            reply.error.map(Json),
            reply.citations,
            None,
            reply.usage.map(|u| tokens(u.prompt_tokens)),
            reply.usage.map(|u| tokens(u.completion_tokens)),
        ),
    };
    // The conversation may be deleted while the tutor thinks: then there is nothing to answer.
    let stored = sqlx::query_as!(
        Message,
        r#"INSERT INTO messages AS m
              (conversation_id, sender, content, content_hash, ai_model, reply_to, is_error, error_details,
               citations, reply_lease_until, prompt_tokens, completion_tokens)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, clock_timestamp() + make_interval(secs => $10), $11, $12)
           RETURNING m.id AS "id: MessageId", m.conversation_id AS "conversation_id: ConversationId",
                     m.sender AS "sender: Sender", m.content, m.ai_model, m.reply_to AS "reply_to: MessageId",
                     m.is_error, m.error_details AS "error_details: Json<ErrorDetails>",
                     m.citations AS "citations: Json<Vec<Citation>>", m.created_at, m.content_hash,
                     m.prompt_tokens, m.completion_tokens"#,
        conversation_id as ConversationId,
        sender,
        content,
        hash,
        ai_model,
        reply_to as Option<MessageId>,
        is_error,
        error_details as Option<Json<ErrorDetails>>,
        Json(citations) as Json<Vec<Citation>>,
        lease,
        prompt,
        completion,
    )
    .fetch_one(&mut *tx)
    .await
    .on_constraint("messages_conversation_id_fkey", |_| Error::NotFound)?;
    // GREATEST, so a slow writer never moves the time back past a newer message.
    sqlx::query!(
        "UPDATE conversations SET last_message_at = GREATEST(last_message_at, $2) WHERE id = $1",
        conversation_id as ConversationId,
        stored.created_at,
    )
    .execute(&mut *tx)
    .await?;
    Ok(stored)
}
