//! Conversations and their messages (the chatbot model), owned by a user or, until claimed, by a guest
//! (the guest-chat model): the domain values and the rows.
//!
//! Every query names its owner (`WHERE user_id = ...` or the guest's id), so another owner's
//! conversation is simply not found. Pages are keyset-paginated with opaque cursors. What
//! the tutor answers, and how a message and its reply are stored around the model call, is in
//! [`crate::tutor`].

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use sqlx::{Connection, PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::error::{Error, Result, ResultExt};
use crate::model::TokenUsage;
use crate::usage::{self, UsageLimits};

pub use crate::owner::Owner;

/// The owner check of every query: `$1` is the user id, `$2` the guest id (one of them NULL).
/// A claimed conversation has a user, so the guest who started it no longer sees it.
macro_rules! owned {
    () => {
        "(c.user_id = $1 OR (c.user_id IS NULL AND c.guest_id = $2))"
    };
}

/// A conversation's title: trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    /// Parses a title someone typed.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let title = raw.trim();
        match title.chars().count() {
            0 => Err("must not be empty".into()),
            n if n > 200 => Err("must be at most 200 characters".into()),
            _ if title.chars().any(char::is_control) => Err("must not contain control characters".into()),
            _ => Ok(Self(title.to_owned())),
        }
    }

    /// The title.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A signed-in user's instructions for the model in one conversation: at most 2,000
/// characters (about 500 tokens, sent with every question and paid from the user's quota).
/// Guests cannot give any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemPrompt(String);

impl SystemPrompt {
    /// The longest system prompt a conversation may have. Prompts stored under an older, higher
    /// bound are cut to it when sent.
    pub const MAX_CHARS: usize = 2000;

    /// Parses a system prompt; a blank one means none.
    pub fn parse(raw: &str) -> Result<Option<Self>, String> {
        let prompt = raw.trim();
        if prompt.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if prompt.contains('\0') {
            return Err("must not contain NUL characters".into());
        }
        Ok((!prompt.is_empty()).then(|| Self(prompt.to_owned())))
    }

    /// The prompt.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A model a conversation may use: one of the configured ones, as
/// [`crate::tutor::ModelCatalog::parse`] checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiModel(String);

impl AiModel {
    /// A model the catalog has checked.
    pub(crate) fn checked(name: &str) -> Self {
        Self(name.to_owned())
    }

    /// The model's id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a message's content was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentError {
    /// Nothing but whitespace.
    Blank,
    /// Over [`MessageContent::MAX_BYTES`].
    TooLarge,
    /// Holds a NUL character, which PostgreSQL cannot store.
    Nul,
}

impl From<ContentError> for Error {
    fn from(e: ContentError) -> Self {
        match e {
            ContentError::Blank => Error::invalid("content", "must not be empty"),
            ContentError::TooLarge => Error::PayloadTooLarge { limit: MessageContent::MAX_BYTES },
            ContentError::Nul => Error::invalid("content", "must not contain NUL characters"),
        }
    }
}

/// What a person says to the tutor: not blank, at most 32 KiB (docs/api.md). Kept exactly as sent,
/// since leading spaces may be code indentation; its SHA-256 is what duplicates are found by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContent(String);

impl MessageContent {
    /// The largest message content, in bytes of UTF-8.
    pub const MAX_BYTES: usize = 32 * 1024;

    /// Parses a message's content.
    pub fn parse(raw: String) -> Result<Self, ContentError> {
        if raw.len() > Self::MAX_BYTES {
            Err(ContentError::TooLarge)
        } else if raw.trim().is_empty() {
            Err(ContentError::Blank)
        } else if raw.contains('\0') {
            Err(ContentError::Nul)
        } else {
            Ok(Self(raw))
        }
    }

    /// The content.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `content_hash` of this content.
    pub fn hash(&self) -> String {
        content_hash(&self.0)
    }
}

/// SHA-256 of a message's content, in lower-case hex.
pub fn content_hash(content: &str) -> String {
    hex::encode(Sha256::digest(content.as_bytes()))
}

/// A conversation as the API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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

/// The `conversations` columns as [`Conversation`] reads them (table alias `c`).
macro_rules! conversation_columns {
    () => {
        "c.id, c.title, c.ai_model, c.system_prompt, c.is_archived, c.is_pinned, c.created_at, c.updated_at, \
         c.last_message_at"
    };
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

/// Creates a conversation. An untitled one gets the owner's next `Untitled N`, from a counter
/// bumped in the same transaction, so simultaneous creates get different numbers.
pub async fn create(db: &mut PgConnection, owner: &Owner, new: NewConversation) -> Result<Conversation> {
    let mut tx = db.begin().await?;
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

/// One page of a list and the cursor of the next, if there is one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Where the next page starts.
    pub next_cursor: Option<String>,
}

/// How many items a page holds: 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u16);

impl PageSize {
    /// Parses `?limit=`, with `default` when absent.
    pub fn parse(raw: Option<u32>, default: u16) -> Result<Self> {
        match raw {
            None => Ok(Self(default)),
            Some(n @ 1..=100) => Ok(Self(n as u16)),
            Some(_) => Err(Error::BadRequest("limit must be between 1 and 100".into())),
        }
    }

    fn fetch(self) -> i64 {
        // One more than asked tells whether another page follows.
        i64::from(self.0) + 1
    }
}

/// A position in a list: the sort key of the last item seen, and for conversations the moment
/// the first page was read (`as_of`), so that later pages sort by the activity of that moment
/// and a conversation that gets a message between two fetches is neither skipped nor repeated.
/// Opaque to clients (base64 of `pinned:micros:id[:as_of_micros]`); one that does not parse is
/// a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pinned: bool,
    at: DateTime<Utc>,
    id: Uuid,
    as_of: Option<DateTime<Utc>>,
}

impl Cursor {
    /// Parses a cursor a client sent back.
    pub fn parse(raw: &str) -> Result<Self> {
        let bad = || Error::BadRequest("the cursor is not one this API issued".into());
        // Within what `timestamptz` holds (and what this service ever wrote), so a forged
        // cursor is a 400, not a database error.
        let time = |micros: &str| {
            micros
                .parse()
                .ok()
                .and_then(DateTime::from_timestamp_micros)
                .filter(|at| (1970..=9999).contains(&at.year()))
                .ok_or_else(bad)
        };
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let parts: Vec<&str> = text.split(':').collect();
        let (pinned, micros, id, as_of) = match parts[..] {
            [pinned, micros, id] => (pinned, micros, id, None),
            [pinned, micros, id, as_of] => (pinned, micros, id, Some(time(as_of)?)),
            _ => return Err(bad()),
        };
        Ok(Self {
            pinned: match pinned {
                "1" => true,
                "0" => false,
                _ => return Err(bad()),
            },
            at: time(micros)?,
            id: id.parse().map_err(|_| bad())?,
            as_of,
        })
    }

    fn encode(&self) -> String {
        let mut text = format!("{}:{}:{}", u8::from(self.pinned), self.at.timestamp_micros(), self.id);
        if let Some(as_of) = self.as_of {
            text.push_str(&format!(":{}", as_of.timestamp_micros()));
        }
        URL_SAFE_NO_PAD.encode(text)
    }
}

/// Which conversations a list shows.
#[derive(Debug, Clone, Copy)]
pub struct ConversationQuery {
    /// Archived ones, or the others.
    pub archived: bool,
    /// Page size.
    pub limit: PageSize,
    /// Where to continue.
    pub after: Option<Cursor>,
}

#[derive(sqlx::FromRow)]
struct ListedConversation {
    #[sqlx(flatten)]
    conversation: Conversation,
    activity: DateTime<Utc>,
    as_of: DateTime<Utc>,
}

/// The caller's conversations: pinned first, then by latest activity (the newest message, or
/// the creation for an empty one), as of the first page's moment: later pages leave out
/// conversations created since and sort by the newest message up to that moment, so paging
/// while messages arrive neither skips nor repeats a conversation. (Pinning or archiving one
/// between two fetches still moves it.)
pub async fn list(
    db: impl PgExecutor<'_>,
    owner: &Owner,
    query: ConversationQuery,
) -> Result<Page<Conversation>> {
    let rows: Vec<ListedConversation> = sqlx::query_as(concat!(
        "WITH snapshot AS (SELECT coalesce($8::timestamptz, statement_timestamp()) AS as_of),
         listed AS (
           SELECT c.*, s.as_of,
                  CASE WHEN c.last_message_at IS NULL THEN c.created_at
                       WHEN c.last_message_at <= s.as_of THEN c.last_message_at
                       ELSE coalesce((SELECT max(m.created_at) FROM messages m
                                      WHERE m.conversation_id = c.id AND m.created_at <= s.as_of),
                                     c.created_at)
                  END AS activity
           FROM conversations c CROSS JOIN snapshot s
           WHERE ",
        owned!(),
        " AND c.is_archived = $3 AND c.created_at <= s.as_of
         )
         SELECT ",
        conversation_columns!(),
        ", c.activity, c.as_of
         FROM listed c
         WHERE ($4::boolean IS NULL OR (c.is_pinned, c.activity, c.id) < ($4, $5, $6))
         ORDER BY c.is_pinned DESC, c.activity DESC, c.id DESC
         LIMIT $7"
    ))
    .bind(owner.user_id())
    .bind(owner.guest_id())
    .bind(query.archived)
    .bind(query.after.map(|c| c.pinned))
    .bind(query.after.map(|c| c.at))
    .bind(query.after.map(|c| c.id))
    .bind(query.limit.fetch())
    .bind(query.after.and_then(|c| c.as_of))
    .fetch_all(db)
    .await?;
    Ok(paginate(rows, query.limit, |row| Cursor {
        pinned: row.conversation.is_pinned,
        at: row.activity,
        id: row.conversation.id,
        as_of: Some(row.as_of),
    })
    .map(|row| row.conversation))
}

fn paginate<R>(mut rows: Vec<R>, limit: PageSize, cursor_of: impl Fn(&R) -> Cursor) -> Page<R> {
    let more = rows.len() > usize::from(limit.0);
    rows.truncate(usize::from(limit.0));
    let next_cursor = if more { rows.last().map(|row| cursor_of(row).encode()) } else { None };
    Page { items: rows, next_cursor }
}

impl<T> Page<T> {
    fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

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
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Message {
    /// Id.
    pub id: Uuid,
    /// The conversation it belongs to (not shown: the client asked by it).
    #[serde(skip)]
    pub conversation_id: Uuid,
    /// Who wrote it.
    #[sqlx(try_from = "String")]
    #[schema(inline)]
    pub sender: Sender,
    /// What was said.
    pub content: String,
    /// The model that wrote a reply.
    #[schema(required)]
    pub ai_model: Option<String>,
    /// For an ai reply: the user message it answers.
    pub reply_to: Option<Uuid>,
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

/// The `messages` columns as [`Message`] reads them (table alias `m`).
macro_rules! message_columns {
    () => {
        "m.id, m.conversation_id, m.sender, m.content, m.ai_model, m.reply_to, m.is_error, m.error_details, \
         m.citations, m.created_at, m.content_hash, m.prompt_tokens, m.completion_tokens"
    };
}

/// The caller's messages of a conversation, newest page first: the `limit` messages before
/// `before` (or the newest ones), oldest first; the cursor leads to older ones.
pub async fn list_messages(
    db: impl PgExecutor<'_>,
    owner: &Owner,
    conversation_id: Uuid,
    limit: PageSize,
    before: Option<Cursor>,
) -> Result<Page<Message>> {
    let rows: Vec<Message> = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        "
         FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE c.id = $3 AND ",
        owned!(),
        "
           AND ($4::timestamptz IS NULL OR (m.created_at, m.id) < ($4, $5))
         ORDER BY m.created_at DESC, m.id DESC
         LIMIT $6"
    ))
    .bind(owner.user_id())
    .bind(owner.guest_id())
    .bind(conversation_id)
    .bind(before.map(|c| c.at))
    .bind(before.map(|c| c.id))
    .bind(limit.fetch())
    .fetch_all(db)
    .await?;
    let mut page =
        paginate(rows, limit, |m| Cursor { pinned: false, at: m.created_at, id: m.id, as_of: None });
    page.items.reverse();
    Ok(page)
}

/// A user message of `conversation_id` with this content hash, stored in the last 30 seconds.
async fn recent_duplicate(
    db: impl PgExecutor<'_>,
    conversation_id: Uuid,
    hash: &str,
    arrived: DateTime<Utc>,
) -> Result<Option<Message>> {
    let message = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m
         WHERE m.conversation_id = $1 AND m.content_hash = $2 AND m.sender = 'user'
           AND m.created_at > $3 - interval '30 seconds'
         ORDER BY m.created_at DESC LIMIT 1"
    ))
    .bind(conversation_id)
    .bind(hash)
    .bind(arrived)
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
    conversation_id: Uuid,
    content: &MessageContent,
    arrived: DateTime<Utc>,
    lease: Duration,
) -> Result<Posted> {
    let hash = content.hash();
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("primer.exchange:{conversation_id}:{hash}"))
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

/// Claims user message `message_id` for answering for `lease`: true when the caller may now
/// ask the model and store the reply. False while someone else's claim runs, or when the
/// message already has the reply `which` asks for.
///
/// The lease is taken by an UPDATE of the message's row, so of any number of claimants at once
/// one wins and the others wait for it; the replies are looked at by the next statement, which
/// sees every reply committed before the row was taken (a reply is stored in the transaction
/// that ends its claim). Four round trips, but only duplicates and retries claim.
pub async fn claim_reply(
    pool: &PgPool,
    message_id: Uuid,
    which: Unanswered,
    lease: Duration,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let taken: Option<Uuid> = sqlx::query_scalar(
        "UPDATE messages SET reply_lease_until = clock_timestamp() + make_interval(secs => $2)
         WHERE id = $1 AND sender = 'user'
           AND (reply_lease_until IS NULL OR reply_lease_until < clock_timestamp())
         RETURNING id",
    )
    .bind(message_id)
    .bind(lease.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    if taken.is_none() {
        return Ok(false);
    }
    let latest_failed: Option<bool> = sqlx::query_scalar(
        "SELECT is_error FROM messages WHERE reply_to = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(message_id)
    .fetch_optional(&mut *tx)
    .await?;
    let may_answer = match latest_failed {
        None => true,
        Some(failed) => failed && which == Unanswered::NoAnswer,
    };
    if may_answer {
        tx.commit().await?;
    }
    // Otherwise the transaction rolls back as it drops: the lease stays as it was.
    Ok(may_answer)
}

/// Gives up a claim without a reply (the caller failed before it could store one), so the next
/// post or retry need not wait for the lease to lapse.
pub async fn release_reply_claim(db: impl PgExecutor<'_>, message_id: Uuid) -> Result<()> {
    sqlx::query("UPDATE messages SET reply_lease_until = NULL WHERE id = $1 AND sender = 'user'")
        .bind(message_id)
        .execute(db)
        .await?;
    Ok(())
}

/// The caller's user message `message_id` in conversation `conversation_id`.
pub async fn user_message(
    db: impl PgExecutor<'_>,
    owner: &Owner,
    conversation_id: Uuid,
    message_id: Uuid,
) -> Result<Option<Message>> {
    let message = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        "
         FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.id = $4 AND c.id = $3 AND m.sender = 'user' AND ",
        owned!()
    ))
    .bind(owner.user_id())
    .bind(owner.guest_id())
    .bind(conversation_id)
    .bind(message_id)
    .fetch_optional(db)
    .await?;
    Ok(message)
}

/// The newest reply to a user message, failed or not.
pub async fn latest_reply(db: impl PgExecutor<'_>, user_message_id: Uuid) -> Result<Option<Message>> {
    let message = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m WHERE m.reply_to = $1
         ORDER BY m.created_at DESC, m.id DESC LIMIT 1"
    ))
    .bind(user_message_id)
    .fetch_optional(db)
    .await?;
    Ok(message)
}

/// The conversation before `message`, newest first, at most `limit` messages: what the model
/// is reminded of. Failure notices are left out; they are not part of the dialogue.
pub async fn history_before(db: impl PgExecutor<'_>, message: &Message, limit: i64) -> Result<Vec<Message>> {
    let messages = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m JOIN messages this ON this.id = $1
         WHERE m.conversation_id = this.conversation_id AND NOT m.is_error AND m.sender <> 'system'
           AND (m.created_at, m.id) < (this.created_at, this.id)
         ORDER BY m.created_at DESC, m.id DESC LIMIT $2"
    ))
    .bind(message.id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(messages)
}

/// Stores a user message, claimed by nobody, and moves the conversation's `last_message_at` to
/// it (history written straight into the store, e.g. by an import or a test).
pub async fn add_user_message(
    db: &mut PgConnection,
    conversation_id: Uuid,
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
    sqlx::query("UPDATE messages SET reply_lease_until = NULL WHERE id = $1")
        .bind(user_message.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(stored)
}

enum NewMessage<'a> {
    User { content: &'a str, hash: String, lease: Option<Duration> },
    Reply { to: Uuid, reply: NewReply },
}

/// Inserts a message and moves its conversation's `last_message_at`, inside the caller's
/// transaction.
async fn insert(tx: &mut PgConnection, conversation_id: Uuid, message: NewMessage<'_>) -> Result<Message> {
    let query = sqlx::query_as::<_, Message>(concat!(
        "INSERT INTO messages AS m
            (conversation_id, sender, content, content_hash, ai_model, reply_to, is_error, error_details,
             citations, reply_lease_until, prompt_tokens, completion_tokens)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, clock_timestamp() + make_interval(secs => $10), $11, $12)
         RETURNING ",
        message_columns!()
    ))
    .bind(conversation_id);
    let query = match message {
        NewMessage::User { content, hash, lease } => query
            .bind("user")
            .bind(content.to_owned())
            .bind(hash)
            .bind(None::<String>)
            .bind(None::<Uuid>)
            .bind(false)
            .bind(None::<Json<ErrorDetails>>)
            .bind(Json(Vec::<Citation>::new()))
            .bind(lease.map(|lease| lease.as_secs_f64()))
            .bind(None::<i32>)
            .bind(None::<i32>),
        NewMessage::Reply { to, reply } => query
            .bind("ai")
            .bind(reply.content.clone())
            .bind(content_hash(&reply.content))
            .bind(Some(reply.ai_model))
            .bind(Some(to))
            .bind(reply.error.is_some())
            .bind(reply.error.map(Json))
            .bind(Json(reply.citations))
            .bind(None::<f64>)
            .bind(reply.usage.map(|u| i32::try_from(u.prompt_tokens).unwrap_or(i32::MAX)))
            .bind(reply.usage.map(|u| i32::try_from(u.completion_tokens).unwrap_or(i32::MAX))),
    };
    // The conversation may be deleted while the tutor thinks: then there is nothing to answer.
    let stored = query
        .fetch_one(&mut *tx)
        .await
        .on_constraint("messages_conversation_id_fkey", |_| Error::NotFound)?;
    // GREATEST, so a slow writer never moves the time back past a newer message.
    sqlx::query("UPDATE conversations SET last_message_at = GREATEST(last_message_at, $2) WHERE id = $1")
        .bind(conversation_id)
        .bind(stored.created_at)
        .execute(&mut *tx)
        .await?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_the_round_trip_and_garbage_is_refused() {
        let at = DateTime::from_timestamp_micros(1_795_514_400_123_456).unwrap();
        for as_of in [None, Some(at)] {
            let cursor = Cursor { pinned: true, at, id: Uuid::new_v4(), as_of };
            assert_eq!(Cursor::parse(&cursor.encode()).unwrap(), cursor);
        }
        for garbage in ["", "!!", "bm90IGEgY3Vyc29y", &URL_SAFE_NO_PAD.encode("2:1:x")] {
            assert_eq!(
                Cursor::parse(garbage).unwrap_err().code(),
                crate::error::Code::BadRequest,
                "{garbage}"
            );
        }
    }

    #[test]
    fn message_content_is_bounded_and_not_blank() {
        assert_eq!(MessageContent::parse(" \n ".into()), Err(ContentError::Blank));
        assert_eq!(MessageContent::parse("x".repeat(32 * 1024 + 1)), Err(ContentError::TooLarge));
        assert_eq!(MessageContent::parse("a\0b".into()), Err(ContentError::Nul));
        assert!(SystemPrompt::parse("be\0brief").is_err());
        let content = MessageContent::parse("What is a topic?".into()).unwrap();
        assert_eq!(content.hash(), hex::encode(Sha256::digest(b"What is a topic?")));
    }

    #[test]
    fn titles_and_prompts_parse() {
        assert_eq!(Title::parse("  ROS notes ").unwrap().as_str(), "ROS notes");
        assert!(Title::parse("   ").is_err());
        assert!(Title::parse(&"t".repeat(201)).is_err());
        assert_eq!(SystemPrompt::parse("  ").unwrap(), None);
        assert!(SystemPrompt::parse(&"p".repeat(2001)).is_err());
        assert!(SystemPrompt::parse(&"p".repeat(2000)).is_ok());
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(PageSize::parse(None, 20).unwrap(), PageSize(20));
        assert!(PageSize::parse(Some(0), 20).is_err());
        assert!(PageSize::parse(Some(101), 20).is_err());
    }
}
