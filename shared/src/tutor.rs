//! The tutor: answers a reader's message in a conversation, grounded in the book.
//!
//! The message is stored before anything is asked of the model and the reply after it, as an
//! answer or, when the model fails, as a failure notice that can be retried, so a crash in
//! between loses no question. Without a configured model the offline tutor answers.
//!
//! The same message posted twice within 30 s is stored and answered once: an exchange holds a
//! PostgreSQL advisory lock on (conversation, content hash) from the duplicate check until its
//! reply is stored, so a second post waits for the first and then finds its message and reply.

pub mod offline;
pub mod prompt;
pub mod retrieval;

use serde::Serialize;
use sqlx::postgres::PgAdvisoryLock;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::book;
use crate::conversations::{
    self, AiModel, Conversation, ErrorDetails, Message, MessageContent, NewReply, Owner,
};
use crate::error::{Error, ErrorChain, Result};
use crate::model::{ModelClient, ModelError};
use offline::OFFLINE_TUTOR;
use retrieval::Passage;

/// How many passages of the book go into a prompt and its citations.
const PASSAGES_PER_ANSWER: i64 = 3;

/// The models a conversation may choose, as configured: the model endpoint's allowed models,
/// or the offline tutor alone when there is none.
#[derive(Debug, Clone, Copy)]
pub struct ModelCatalog<'a>(Option<&'a ModelClient>);

impl<'a> ModelCatalog<'a> {
    /// The catalog of a state's model client.
    pub fn new(client: Option<&'a ModelClient>) -> Self {
        Self(client)
    }

    /// Every model a conversation may use, the default first.
    pub fn allowed(&self) -> Vec<&'a str> {
        match self.0 {
            Some(client) => client.allowed_models().iter().map(String::as_str).collect(),
            None => vec![OFFLINE_TUTOR],
        }
    }

    /// The model of a conversation that names none.
    pub fn default_model(&self) -> AiModel {
        AiModel::checked(self.0.map_or(OFFLINE_TUTOR, ModelClient::default_model))
    }

    /// True when replies come from the offline tutor.
    pub fn is_offline(&self) -> bool {
        self.0.is_none()
    }

    /// Parses the model a caller chose for a conversation.
    pub fn parse(&self, raw: &str) -> Result<AiModel, String> {
        let allowed = self.allowed();
        match allowed.iter().find(|name| **name == raw.trim()) {
            Some(name) => Ok(AiModel::checked(name)),
            None => Err(format!("must be one of: {}", allowed.join(", "))),
        }
    }

    /// Who answers in a conversation: the model client and the model to ask, or `None` for the
    /// offline tutor. A model that is no longer allowed (the configuration changed since the
    /// conversation chose it) gives way to the default.
    fn engine(&self, conversation_model: &str) -> Option<(&'a ModelClient, &'a str)> {
        let client = self.0?;
        let model = client.allowed_models().iter().find(|name| *name == conversation_model);
        Some((client, model.map_or(client.default_model(), String::as_str)))
    }
}

/// A user message and the reply to it.
#[derive(Debug, Clone, Serialize)]
pub struct Exchange {
    /// The stored user message.
    pub user_message: Message,
    /// The stored reply: an answer or a failure notice.
    pub reply: Message,
}

/// The tutor over a database and, when configured, a model.
#[derive(Debug, Clone, Copy)]
pub struct Tutor<'a> {
    pool: &'a PgPool,
    models: ModelCatalog<'a>,
}

impl<'a> Tutor<'a> {
    /// A tutor that answers with `model`, or offline without one.
    pub fn new(pool: &'a PgPool, model: Option<&'a ModelClient>) -> Self {
        Self { pool, models: ModelCatalog::new(model) }
    }

    /// Stores the caller's message in their conversation and answers it. The same message
    /// within 30 s returns the first exchange instead of a second one.
    pub async fn post(
        &self,
        owner: &Owner,
        conversation_id: Uuid,
        content: MessageContent,
    ) -> Result<Exchange> {
        let conversation =
            conversations::get(self.pool, owner, conversation_id).await?.ok_or(Error::NotFound)?;
        let hash = content.hash();
        // The 30 s count from the post's arrival, not from when the lock was free.
        let arrived = chrono::Utc::now();
        let mut conn = exchange_lock(conversation.id, &hash).acquire(self.pool.acquire().await?).await?;
        let exchange =
            match conversations::recent_duplicate(&mut *conn, conversation.id, &hash, arrived).await? {
                Some(user_message) => {
                    let reply = match conversations::latest_reply(&mut *conn, user_message.id).await? {
                        Some(reply) => reply,
                        // The first post stored the message but ended before answering it.
                        None => self.answer(&mut conn, &conversation, &user_message).await?,
                    };
                    Exchange { user_message, reply }
                }
                None => {
                    let user_message =
                        conversations::add_user_message(&mut conn, conversation.id, &content).await?;
                    let reply = self.answer(&mut conn, &conversation, &user_message).await?;
                    Exchange { user_message, reply }
                }
            };
        release(conn).await;
        Ok(exchange)
    }

    /// Answers again a user message of the caller whose reply failed; 409 when its latest
    /// reply is an answer.
    pub async fn retry(&self, owner: &Owner, conversation_id: Uuid, message_id: Uuid) -> Result<Message> {
        let conversation =
            conversations::get(self.pool, owner, conversation_id).await?.ok_or(Error::NotFound)?;
        let question = conversations::user_message(self.pool, owner, conversation.id, message_id)
            .await?
            .ok_or(Error::NotFound)?;
        let mut conn = exchange_lock(conversation.id, &question.content_hash)
            .acquire(self.pool.acquire().await?)
            .await?;
        // Checked under the lock, so two retries at once answer once.
        if let Some(reply) = conversations::latest_reply(&mut *conn, question.id).await?
            && !reply.is_error
        {
            return Err(Error::Conflict {
                code: "already_answered",
                message: "this message has an answer; only a failed reply can be retried".into(),
            });
        }
        let reply = self.answer(&mut conn, &conversation, &question).await?;
        release(conn).await;
        Ok(reply)
    }

    /// Finds the passages for `question`, has the model or the offline tutor answer, and stores
    /// the reply (or the model's failure).
    async fn answer(
        &self,
        conn: &mut PgConnection,
        conversation: &Conversation,
        question: &Message,
    ) -> Result<Message> {
        let passages = retrieval::best_passages(&mut *conn, &question.content, PASSAGES_PER_ANSWER).await?;
        let reply = match self.models.engine(&conversation.ai_model) {
            None => {
                // Only an answer that found nothing points the reader at the chapters.
                let titles = if passages.is_empty() {
                    book::list(&mut *conn).await?.into_iter().map(|chapter| chapter.title).collect()
                } else {
                    Vec::new()
                };
                offline::answer(&passages, &titles)
            }
            Some((client, model)) => {
                let history =
                    conversations::history_before(&mut *conn, question, prompt::MAX_HISTORY_MESSAGES).await?;
                let messages = prompt::build(
                    conversation.system_prompt.as_deref(),
                    &passages,
                    &history,
                    &question.content,
                );
                match client.complete(model, &messages).await {
                    Ok(text) => NewReply {
                        // PostgreSQL text cannot hold NUL; a model can still emit one.
                        content: text.replace('\0', ""),
                        ai_model: model.to_owned(),
                        citations: passages.iter().map(Passage::citation).collect(),
                        error: None,
                    },
                    Err(e) => failure_notice(model, &e),
                }
            }
        };
        conversations::add_reply(conn, question, reply).await
    }
}

/// The reply stored when the model fails: the reader sees why and may retry.
fn failure_notice(model: &str, e: &ModelError) -> NewReply {
    tracing::warn!(code = e.code(), error = %ErrorChain(e), "the model failed; a failure notice is stored");
    NewReply {
        content: format!("The tutor could not answer: {e}. Retry this message to ask again."),
        ai_model: model.to_owned(),
        citations: Vec::new(),
        error: Some(ErrorDetails { code: e.code().to_owned(), message: e.to_string() }),
    }
}

/// The lock one exchange holds: the same message in the same conversation.
fn exchange_lock(conversation_id: Uuid, content_hash: &str) -> PgAdvisoryLock {
    PgAdvisoryLock::new(format!("primer.exchange:{conversation_id}:{content_hash}"))
}

/// Unlocks at once. Should it fail, the connection is broken and its lock ends with it, and
/// the exchange is already stored, so the caller still gets it.
async fn release<C: AsMut<PgConnection> + AsRef<PgConnection>>(
    guard: sqlx::postgres::PgAdvisoryLockGuard<C>,
) {
    if let Err(e) = guard.release_now().await {
        tracing::warn!(error = %ErrorChain(&e), "releasing an exchange lock failed");
    }
}
