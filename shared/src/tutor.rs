//! The tutor: answers a reader's message in a conversation, grounded in the book.
//!
//! The message is stored before anything is asked of the model and the reply after it, as an
//! answer or, when the model fails, as a failure notice that can be retried, so a crash in
//! between loses no question. Without a configured model the offline tutor answers.
//!
//! The same message posted twice within 30 s is stored and answered once. Nothing is held while
//! the model thinks, neither a transaction nor a pooled connection (Neon's pooler is PgBouncer
//! in transaction mode, where a session lock would not survive and a held connection starves
//! everyone else): the message is stored in a short transaction that also claims it for
//! answering for a lease (see [`conversations::claim_reply`]); a duplicate post polls for the
//! reply, and takes the claim over if the lease lapses without one.

pub mod offline;
pub mod prompt;
pub mod retrieval;

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::book;
use crate::conversations::{
    self, AiModel, Conversation, ErrorDetails, Message, MessageContent, NewReply, Owner, Posted, Unanswered,
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
        // The 30 s count from the post's arrival.
        let arrived = chrono::Utc::now();
        let posted = conversations::add_or_find_user_message(
            self.pool,
            conversation.id,
            &content,
            arrived,
            self.lease(),
        )
        .await?;
        Ok(match posted {
            Posted::New(user_message) => {
                let reply = self.answer(&conversation, &user_message).await?;
                Exchange { user_message, reply }
            }
            Posted::Duplicate(user_message) => {
                let reply = self.await_reply(&conversation, &user_message, Unanswered::NoReply).await?;
                Exchange { user_message, reply }
            }
        })
    }

    /// Answers again a user message of the caller whose reply failed; 409 when its latest
    /// reply is an answer.
    pub async fn retry(&self, owner: &Owner, conversation_id: Uuid, message_id: Uuid) -> Result<Message> {
        let conversation =
            conversations::get(self.pool, owner, conversation_id).await?.ok_or(Error::NotFound)?;
        let question = conversations::user_message(self.pool, owner, conversation.id, message_id)
            .await?
            .ok_or(Error::NotFound)?;
        self.await_reply(&conversation, &question, Unanswered::NoAnswer).await
    }

    /// How long a claim on a message lasts: the longest the model may take, and then some.
    fn lease(&self) -> Duration {
        let thinking = self.models.0.map_or(Duration::from_secs(5), ModelClient::total_timeout);
        thinking + Duration::from_secs(5)
    }

    /// The reply to `question`: someone else's, once stored, or this call's own once it wins the
    /// claim (the first claimant died, or `which` allows answering a failed reply again). For
    /// a retry (`NoAnswer`), an answered question is a 409. Polls with a short backoff, holding
    /// no connection in between, for at most about one lease.
    async fn await_reply(
        &self,
        conversation: &Conversation,
        question: &Message,
        which: Unanswered,
    ) -> Result<Message> {
        let deadline = Instant::now() + self.lease() + Duration::from_secs(1);
        let mut pause = Duration::from_millis(20);
        loop {
            if let Some(reply) = conversations::latest_reply(self.pool, question.id).await? {
                match which {
                    Unanswered::NoReply => return Ok(reply),
                    Unanswered::NoAnswer if !reply.is_error => {
                        return Err(Error::Conflict {
                            code: "already_answered",
                            message: "this message has an answer; only a failed reply can be retried".into(),
                        });
                    }
                    Unanswered::NoAnswer => {}
                }
            }
            if conversations::claim_reply(self.pool, question.id, which, self.lease()).await? {
                return self.answer(conversation, question).await;
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable("another request is still answering this message".into()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// Answers `question`, which the caller has claimed, and stores the reply (or the model's
    /// failure), ending the claim. When that fails, the claim is given up so that a retry need
    /// not wait for it to lapse.
    async fn answer(&self, conversation: &Conversation, question: &Message) -> Result<Message> {
        let answered = async {
            let reply = self.reply_to(conversation, question).await?;
            conversations::add_reply(&mut *self.pool.acquire().await?, question, reply).await
        }
        .await;
        if answered.is_err()
            && let Err(e) = conversations::release_reply_claim(self.pool, question.id).await
        {
            tracing::warn!(error = %ErrorChain(&e), "giving up a reply claim failed; it lapses by itself");
        }
        answered
    }

    /// Finds the passages for `question` and has the model or the offline tutor answer. Each
    /// query takes a pooled connection and gives it back: none is held across the model call.
    async fn reply_to(&self, conversation: &Conversation, question: &Message) -> Result<NewReply> {
        let passages = retrieval::best_passages(self.pool, &question.content, PASSAGES_PER_ANSWER).await?;
        let Some((client, model)) = self.models.engine(&conversation.ai_model) else {
            // Only an answer that found nothing points the reader at the chapters.
            let titles = if passages.is_empty() {
                book::list(self.pool).await?.into_iter().map(|chapter| chapter.title).collect()
            } else {
                Vec::new()
            };
            return Ok(offline::answer(&passages, &titles));
        };
        let history =
            conversations::history_before(self.pool, question, prompt::MAX_HISTORY_MESSAGES).await?;
        let messages =
            prompt::build(conversation.system_prompt.as_deref(), &passages, &history, &question.content);
        Ok(match client.complete(model, &messages).await {
            Ok(text) => NewReply {
                // PostgreSQL text cannot hold NUL; a model can still emit one.
                content: text.replace('\0', ""),
                ai_model: model.to_owned(),
                citations: passages.iter().map(Passage::citation).collect(),
                error: None,
            },
            Err(e) => failure_notice(model, &e),
        })
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
