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
//!
//! Cost control: a new message counts against its owner's daily messages in the transaction
//! that stores it (429 `quota_exceeded` once they are used up). Every model call is bracketed
//! by [`Tutor::reserve`], which reserves an estimate of its tokens from the owner's daily
//! quota and the deployment's budget, and [`Tutor::settle`], which books what the endpoint
//! reported; when either has no room left, the offline tutor answers and its reply says why.
//! A streaming answer calls the same two around its stream.
//! A streamed reply ([`Tutor::post_streaming`], [`Tutor::retry_streaming`]) goes through the
//! same steps, claims and stores, in a task of its own that hands the answer's text on as the
//! model writes it (see [`stream`]).
//!
//! **Claims no longer than the work can live.** A request must be done by its function's
//! timeout (template.yaml: 29 s for the JSON routes, 150 s for the streamed ones), counted
//! from its arrival; the claim it takes lasts until then and [`CLAIM_MARGIN`] more, and the
//! work is cut at that moment on the local runner too, so no claimant is ever taken over while
//! it may still be working, and one that died is taken over 2 s after it must have ended. The
//! tokens reserved for its model call lapse with the claim, and are given back then. A request
//! dropped while it holds a claim (its work's deadline passed, say) gives the claim up.

pub mod offline;
pub mod prompt;
pub mod retrieval;
pub mod stream;

use std::time::{Duration, Instant};

use crate::domain::ids::{ConversationId, MessageId};
use serde::Serialize;
use sqlx::PgPool;

use crate::domain::book;
use crate::domain::claim::{self, CLAIM_MARGIN};
use crate::domain::conversations::{
    self, AiModel, Conversation, ErrorDetails, Message, MessageContent, NewReply, Owner, Posted, Unanswered,
};
use crate::domain::usage::{self, Allowance, Exhausted, TokenReservation, UsageLimits};
use crate::error::{Error, ErrorChain, Result};
use crate::infra::config::{Config, FunctionTimeouts};
use crate::infra::model::{ChatMessage, ModelClient, ModelError, Spend, estimate_prompt_tokens};
use crate::{infra::deadline, infra::telemetry};
use offline::OFFLINE_TUTOR;
use retrieval::Passage;
use stream::{ReplyEvent, ReplySender, ReplyStream};

/// How many passages of the book go into a prompt and its citations.
const PASSAGES_PER_ANSWER: i64 = 3;

/// What answering takes besides the model: retrieval, the prompt's history, storing the reply.
const ANSWER_MARGIN: Duration = Duration::from_secs(2);

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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = MessageExchange, examples(crate::schema::examples::exchange))]
pub struct Exchange {
    /// The stored user message.
    pub user_message: Message,
    /// The stored reply: an answer or a failure notice.
    pub reply: Message,
}

/// The tutor over a database and, when configured, a model, within the configured quotas.
#[derive(Debug, Clone, Copy)]
pub struct Tutor<'a> {
    pool: &'a PgPool,
    models: ModelCatalog<'a>,
    limits: &'a UsageLimits,
    timeouts: FunctionTimeouts,
    work_deadline: Duration,
}

/// The moment a request must be done by: its arrival and its function's timeout.
#[derive(Debug, Clone, Copy)]
struct Until(Instant);

impl Until {
    /// How long a claim taken now lasts: until the request must be done, and the margin.
    fn lease(self) -> Duration {
        self.0.saturating_duration_since(Instant::now()) + CLAIM_MARGIN
    }

    fn left(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

impl<'a> Tutor<'a> {
    /// A tutor that answers with `model`, or offline without one, within `config`'s quotas and
    /// time limits.
    pub fn new(pool: &'a PgPool, model: Option<&'a ModelClient>, config: &'a Config) -> Self {
        Self {
            pool,
            models: ModelCatalog::new(model),
            limits: &config.usage,
            timeouts: config.timeouts,
            work_deadline: config.work_deadline,
        }
    }

    /// When a JSON request arriving now must be done.
    fn json_until(&self) -> Until {
        Until(Instant::now() + self.timeouts.json)
    }

    /// When a streamed request arriving now must be done.
    fn stream_until(&self) -> Until {
        Until(Instant::now() + self.timeouts.stream)
    }

    /// Stores the caller's message in their conversation and answers it. The same message
    /// within 30 s returns the first exchange instead of a second one.
    pub async fn post(
        &self,
        owner: &Owner,
        conversation_id: ConversationId,
        content: MessageContent,
    ) -> Result<Exchange> {
        let until = self.json_until();
        let (conversation, posted) = self.store_question(owner, conversation_id, &content, until).await?;
        Ok(match posted {
            Posted::New(user_message) => {
                let reply = self.answer(owner, &conversation, &user_message, None, until).await?;
                Exchange { user_message, reply }
            }
            Posted::Duplicate(user_message) => {
                let reply = self
                    .await_reply(owner, &conversation, &user_message, Unanswered::NoReply, None, until)
                    .await?;
                Exchange { user_message, reply }
            }
        })
    }

    /// [`Tutor::post`], streamed: the stored message first, then the answer as it is written.
    /// A duplicate within 30 s replays the stored exchange. What fails before the message is
    /// stored (no such conversation, the database) fails here, before any event.
    pub async fn post_streaming(
        &self,
        owner: &Owner,
        conversation_id: ConversationId,
        content: MessageContent,
    ) -> Result<ReplyStream> {
        let until = self.stream_until();
        let (conversation, posted) = self.store_question(owner, conversation_id, &content, until).await?;
        Ok(match posted {
            Posted::New(question) => self.stream_reply(owner, conversation, question, None, until),
            Posted::Duplicate(question) => {
                self.stream_reply(owner, conversation, question, Some(Unanswered::NoReply), until)
            }
        })
    }

    /// The caller's conversation and the message stored in it (claimed until `until` and the
    /// margin), or the same message that arrived within 30 s before: the first step of a post,
    /// streamed or not.
    async fn store_question(
        &self,
        owner: &Owner,
        conversation_id: ConversationId,
        content: &MessageContent,
        until: Until,
    ) -> Result<(Conversation, Posted)> {
        let conversation =
            conversations::get(self.pool, owner, conversation_id).await?.ok_or(Error::NotFound)?;
        // The 30 s count from the post's arrival.
        let arrived = chrono::Utc::now();
        let posted = conversations::add_or_find_user_message(
            self.pool,
            owner,
            self.limits,
            conversation.id,
            content,
            arrived,
            until.lease(),
        )
        .await?;
        Ok((conversation, posted))
    }

    /// [`Tutor::retry`], streamed. An answered message is a 409 before any event.
    pub async fn retry_streaming(
        &self,
        owner: &Owner,
        conversation_id: ConversationId,
        message_id: MessageId,
    ) -> Result<ReplyStream> {
        let conversation =
            conversations::get(self.pool, owner, conversation_id).await?.ok_or(Error::NotFound)?;
        let question = conversations::user_message(self.pool, owner, conversation.id, message_id)
            .await?
            .ok_or(Error::NotFound)?;
        if conversations::latest_reply(self.pool, question.id).await?.is_some_and(|reply| !reply.is_error) {
            return Err(already_answered());
        }
        let until = self.stream_until();
        Ok(self.stream_reply(owner, conversation, question, Some(Unanswered::NoAnswer), until))
    }

    /// Starts the task that answers `question` (claimed by this call when `wait` is `None`,
    /// else once it wins the claim or finds the reply stored) and sends the events. The task
    /// has the deadline a request's own work has.
    fn stream_reply(
        &self,
        owner: &Owner,
        conversation: Conversation,
        question: Message,
        wait: Option<Unanswered>,
        until: Until,
    ) -> ReplyStream {
        let (sender, events) = ReplySender::channel();
        sender.send(ReplyEvent::UserMessage(question.clone()));
        // The task owns what it uses: it may outlive the request that started it.
        let (pool, owner, limits) = (self.pool.clone(), owner.clone(), *self.limits);
        let (model, timeouts, work_deadline) = (self.models.0.cloned(), self.timeouts, self.work_deadline);
        tokio::spawn(telemetry::in_request_context(async move {
            let tutor = Tutor {
                pool: &pool,
                models: ModelCatalog::new(model.as_ref()),
                limits: &limits,
                timeouts,
                work_deadline,
            };
            let answering = async {
                match wait {
                    None => tutor.answer(&owner, &conversation, &question, Some(&sender), until).await,
                    Some(which) => {
                        tutor.await_reply(&owner, &conversation, &question, which, Some(&sender), until).await
                    }
                }
            };
            let outcome = deadline::within(work_deadline, answering)
                .await
                .unwrap_or_else(|overrun| Err(Error::Unavailable(Box::new(overrun))));
            sender.finish(outcome);
        }));
        events
    }

    /// Answers again a user message of the caller whose reply failed; 409 when its latest
    /// reply is an answer.
    pub async fn retry(
        &self,
        owner: &Owner,
        conversation_id: ConversationId,
        message_id: MessageId,
    ) -> Result<Message> {
        let conversation =
            conversations::get(self.pool, owner, conversation_id).await?.ok_or(Error::NotFound)?;
        let question = conversations::user_message(self.pool, owner, conversation.id, message_id)
            .await?
            .ok_or(Error::NotFound)?;
        let until = self.json_until();
        self.await_reply(owner, &conversation, &question, Unanswered::NoAnswer, None, until).await
    }

    /// The longest an answer of this tutor may take once claimed: the model's own limits
    /// (the whole call; a streamed one from its request to its last chunk) and the rest of the
    /// work. A request takes over a claim only while it has that much time left.
    fn answer_needs(&self, streamed: bool) -> Duration {
        let model = match self.models.0 {
            Some(client) if streamed => client.stream_timeout().max(client.total_timeout()),
            Some(client) => client.total_timeout(),
            None => Duration::ZERO,
        };
        model + ANSWER_MARGIN
    }

    /// The reply to `question`: someone else's, once stored, or this call's own once it wins the
    /// claim (the first claimant died, or `which` allows answering a failed reply again) while
    /// it has time enough to answer. For a retry (`NoAnswer`), an answered question is a 409.
    /// Polls with a short backoff, holding no connection in between, until the request must be
    /// done: then a 503 whose `Retry-After` says when the other claim lapses. A claim that
    /// outlasts this request (a streamed one, seen from a JSON request) is that 503 at once:
    /// its holder may have died, and waiting could not tell. With `stream`, an answer of its own
    /// is streamed there.
    async fn await_reply(
        &self,
        owner: &Owner,
        conversation: &Conversation,
        question: &Message,
        which: Unanswered,
        stream: Option<&ReplySender>,
        until: Until,
    ) -> Result<Message> {
        let needs = self.answer_needs(stream.is_some());
        let mut pause = Duration::from_millis(20);
        let mut looked_at_the_claim = false;
        loop {
            if let Some(reply) = conversations::latest_reply(self.pool, question.id).await? {
                match which {
                    Unanswered::NoReply => return Ok(reply),
                    Unanswered::NoAnswer if !reply.is_error => return Err(already_answered()),
                    Unanswered::NoAnswer => {}
                }
            }
            // A second's grace: a request that just arrived has its whole timeout, less a moment.
            if until.left() + Duration::from_secs(1) >= needs
                && conversations::claim_reply(
                    self.pool,
                    owner,
                    self.limits,
                    question.id,
                    which,
                    until.lease(),
                )
                .await?
            {
                return self.answer(owner, conversation, question, stream, until).await;
            }
            // A claim of a request that arrived with this one (a duplicate post) ends with it,
            // give or take the margin and the time the two took to get this far.
            let outlasts_us = |left: Duration| left > until.left() + 2 * CLAIM_MARGIN;
            if !looked_at_the_claim || until.left() <= pause {
                looked_at_the_claim = true;
                let lapses_in = conversations::reply_claim_left(self.pool, question.id).await?;
                if lapses_in.is_some_and(outlasts_us) || until.left() <= pause {
                    return Err(Error::Busy {
                        what: "another request is still answering this message",
                        retry_after_secs: lapses_in.map_or(1, |left| left.as_secs() + 1),
                    });
                }
            }
            deadline::exempt(tokio::time::sleep(pause)).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// Answers `question`, which the caller has claimed, and stores the reply (or the model's
    /// failure), ending the claim; all by `until`, when the request must be done. When that
    /// fails, or the request is dropped first, the claim is given up so that a retry need not
    /// wait for it to lapse. With `stream`, the text goes there as it is written.
    async fn answer(
        &self,
        owner: &Owner,
        conversation: &Conversation,
        question: &Message,
        stream: Option<&ReplySender>,
        until: Until,
    ) -> Result<Message> {
        let claim = ReplyClaim {
            pool: self.pool,
            message_id: question.id,
            lapses_at: until.0 + CLAIM_MARGIN,
            held: true,
        };
        let answering = async {
            let reply = self.reply_to(owner, conversation, question, stream, until).await?;
            conversations::add_reply(&mut *self.pool.acquire().await?, question, reply).await
        };
        let answered = tokio::time::timeout_at(until.0.into(), answering).await.unwrap_or_else(|_| {
            Err(Error::Unavailable("the answer was not stored before its function's time ran out".into()))
        });
        match &answered {
            // Storing the reply ended the claim.
            Ok(_) => claim.ended(),
            Err(_) => claim.give_up().await,
        }
        answered
    }

    /// Finds the passages for `question` and has the model or the offline tutor answer, into
    /// `stream` as the text comes when there is one. Each query takes a pooled connection and
    /// gives it back: none is held across the model call.
    async fn reply_to(
        &self,
        owner: &Owner,
        conversation: &Conversation,
        question: &Message,
        stream: Option<&ReplySender>,
        until: Until,
    ) -> Result<NewReply> {
        let passages = retrieval::best_passages(self.pool, &question.content, PASSAGES_PER_ANSWER).await?;
        let Some((client, model)) = self.models.engine(&conversation.ai_model) else {
            return self.offline(&passages, None, stream).await;
        };
        let history =
            conversations::history_before(self.pool, question, prompt::MAX_HISTORY_MESSAGES).await?;
        // Guests do not instruct the model (a prompt from before that rule included).
        let instructions = match owner {
            Owner::User(_) => conversation.system_prompt.as_deref(),
            Owner::Guest(_) => None,
        };
        let messages = prompt::build(instructions, &passages, &history, &question.content);
        // The reservation lapses with the claim.
        let reservation = match self.reserve(owner, &messages, until.lease()).await? {
            Allowance::Granted(reservation) => reservation,
            Allowance::Spent(why) => return self.offline(&passages, Some(why), stream).await,
        };
        let max_tokens = self.limits.reply_max_tokens;
        // The model's calls are bounded by its own time limits.
        let answered = deadline::exempt(async {
            match stream {
                None => client.complete(model, &messages, max_tokens).await.map_err(|e| (e, String::new())),
                Some(stream) => client
                    .complete_streaming(model, &messages, max_tokens, |text| stream.delta(&without_nul(text)))
                    .await
                    .map_err(|failure| (failure.error, failure.partial)),
            }
        })
        .await;
        let spend = match &answered {
            Ok(answer) => Spend::of(answer),
            Err((e, _)) => e.spend(),
        };
        self.settle(reservation, spend).await;
        Ok(match answered {
            Ok(answer) => NewReply {
                content: without_nul(&answer.text),
                ai_model: model.to_owned(),
                citations: passages.iter().map(Passage::citation).collect(),
                error: None,
                usage: answer.usage,
            },
            Err((e, partial)) => failure_notice(model, &e, &partial),
        })
    }

    /// Before a model call for `owner`: reserves the most its tokens can be (the prompt
    /// `messages` at a token per character, and the longest reply allowed) from the owner's day
    /// and the deployment's budget, for `lease` (the claim's). [`Allowance::Spent`] means no
    /// model call: the offline tutor answers instead. Every granted reservation goes to
    /// [`Tutor::settle`] once the call is over.
    pub async fn reserve(
        &self,
        owner: &Owner,
        messages: &[ChatMessage],
        lease: Duration,
    ) -> Result<Allowance> {
        let estimate = estimate_prompt_tokens(messages) + u64::from(self.limits.reply_max_tokens);
        usage::reserve_tokens(self.pool, owner, self.limits, estimate, lease).await
    }

    /// After a model call: books what it cost (`Spend::of` the answer, or the error's
    /// [`ModelError::spend`]) in place of the estimate. Never fails the reply: should the
    /// booking fail, the estimate stays counted, which errs on the side of the budget.
    pub async fn settle(&self, reservation: TokenReservation, spend: Spend) {
        if let Err(e) = usage::settle(self.pool, reservation, spend).await {
            tracing::warn!(error = %ErrorChain(&e), "settling a model call failed; its estimate stays counted");
        }
    }

    /// The offline tutor's answer, streamed sentence by sentence into `stream` when there is
    /// one; when it stands in for a model whose allowance is spent, the reply says so first.
    async fn offline(
        &self,
        passages: &[Passage],
        standing_in: Option<Exhausted>,
        stream: Option<&ReplySender>,
    ) -> Result<NewReply> {
        // Only an answer that found nothing points the reader at the chapters.
        let titles = if passages.is_empty() {
            book::list(self.pool).await?.into_iter().map(|chapter| chapter.title).collect()
        } else {
            Vec::new()
        };
        let mut reply = offline::answer(passages, &titles);
        if let Some(why) = standing_in {
            tracing::info!(?why, "a model allowance is spent; the offline tutor answers");
            reply.content = format!("{}\n\n{}", offline::standing_in_note(why), reply.content);
        }
        if let Some(stream) = stream {
            offline::sentences(&reply.content).for_each(|sentence| stream.delta(sentence));
        }
        Ok(reply)
    }
}

/// A reply claim this request holds: given up when the request fails or is dropped before the
/// reply is stored, so that the next post or retry need not wait for it to lapse.
struct ReplyClaim<'a> {
    pool: &'a PgPool,
    message_id: MessageId,
    /// When the claim lapses by itself.
    lapses_at: Instant,
    held: bool,
}

impl ReplyClaim<'_> {
    /// The reply is stored, which ended the claim.
    fn ended(mut self) {
        self.held = false;
    }

    /// Gives the claim up now. Until that has succeeded the claim is still held, so that one
    /// that fails, or is cut short with the request, is given up from a task of its own as it
    /// drops ([`claim::give_up_in_background`]).
    async fn give_up(mut self) {
        match conversations::release_reply_claim(self.pool, self.message_id).await {
            Ok(()) => self.held = false,
            Err(e) => tracing::warn!(error = %ErrorChain(&e), "giving up a reply claim failed; trying again"),
        }
    }
}

impl Drop for ReplyClaim<'_> {
    fn drop(&mut self) {
        if self.held {
            let (pool, message_id) = (self.pool.clone(), self.message_id);
            claim::give_up_in_background("a reply claim", self.lapses_at.into(), move || {
                let pool = pool.clone();
                async move { conversations::release_reply_claim(&pool, message_id).await }
            });
        }
    }
}

/// PostgreSQL text cannot hold NUL; a model can still emit one.
fn without_nul(text: &str) -> String {
    text.replace('\0', "")
}

fn already_answered() -> Error {
    Error::Conflict {
        code: crate::error::Code::AlreadyAnswered,
        message: "this message has an answer; only a failed reply can be retried".into(),
    }
}

/// The reply stored when the model fails: the reader sees why and may retry. `partial` is the
/// text a streamed answer had reached, kept in the details.
fn failure_notice(model: &str, e: &ModelError, partial: &str) -> NewReply {
    tracing::warn!(code = e.code(), error = %ErrorChain(e), "the model failed; a failure notice is stored");
    NewReply {
        content: format!("The tutor could not answer: {e}. Retry this message to ask again."),
        ai_model: model.to_owned(),
        citations: Vec::new(),
        error: Some(ErrorDetails {
            code: e.code().to_owned(),
            message: e.to_string(),
            partial_content: Some(without_nul(partial)).filter(|text| !text.is_empty()),
        }),
        usage: None,
    }
}
