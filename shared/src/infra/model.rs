//! The language model: a client for any OpenAI-compatible chat-completions endpoint.
//!
//! One [`ModelClient`] is built per cold start from a [`ModelConfig`] (see
//! [`crate::infra::config`]); without an API key there is no client and the built-in offline engines
//! stand in. A call is bounded twice: each attempt by `request_timeout`, the whole call,
//! retries included, by `total_timeout`. Rate limits (429) and server errors (5xx) are retried
//! a bounded number of times with exponential backoff; nothing else is, because a bad key or
//! a bad request fails the same way the second time.
//!
//! A streamed call ([`ModelClient::complete_streaming`]) asks with `stream: true` and hands
//! each fragment of text on as it arrives. Until the first chunk it is bounded and retried
//! like a plain call; after it, every gap between chunks by `stream_idle_timeout` and the
//! whole call by `stream_timeout`. Nothing is retried once text has been handed on: a broken
//! stream fails with the text received so far.
//!
//! The HTTP client is the `model` feature: a function built without it (one that never asks the
//! model anything) has a [`ModelClient`] type that cannot be built, so `AppState::model` is
//! always `None` there and no HTTP client is linked.

use std::time::Duration;

use axum::http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The URL type of [`ModelConfig::base_url`].
pub use url::Url;

#[cfg(feature = "model")]
mod client;
#[cfg(feature = "model")]
pub use client::ModelClient;

/// How to reach the model and how long to wait for it.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The bearer key of the endpoint (`MODEL_API_KEY`).
    pub api_key: SecretString,
    /// The endpoint's base, e.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: Url,
    /// The model used when a caller names none (`MODEL_NAME`).
    pub default_model: String,
    /// Every model a conversation may use (`MODEL_ALLOWED`); contains `default_model`.
    pub allowed_models: Vec<String>,
    /// Limit for one HTTP attempt.
    pub request_timeout: Duration,
    /// Limit for the whole call, retries and backoff included.
    pub total_timeout: Duration,
    /// Attempts after the first one, on 429, 5xx or a connection failure.
    pub max_retries: u32,
    /// The first backoff; each further one doubles it.
    pub retry_backoff: Duration,
    /// Limit for a silence between two chunks of a streamed answer.
    pub stream_idle_timeout: Duration,
    /// Limit for a whole streamed answer, from the request to its last chunk.
    pub stream_timeout: Duration,
}

impl ModelConfig {
    /// A configuration with the defaults for everything but the endpoint, key and model.
    pub fn new(api_key: SecretString, base_url: Url, model: impl Into<String>) -> Self {
        let model = model.into();
        Self {
            api_key,
            base_url,
            allowed_models: vec![model.clone()],
            default_model: model,
            request_timeout: Duration::from_secs(20),
            total_timeout: Duration::from_secs(25),
            max_retries: 2,
            retry_backoff: Duration::from_millis(500),
            stream_idle_timeout: Duration::from_secs(10),
            stream_timeout: Duration::from_secs(120),
        }
    }
}

/// Who says a message of the conversation sent to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the whole conversation.
    System,
    /// The person asking.
    User,
    /// The model's earlier answers.
    Assistant,
}

/// One message of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who says it.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self { role: Role::System, content: content.into() }
    }

    /// A message of the person asking.
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: Role::User, content: content.into() }
    }

    /// An earlier answer of the model.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self { role: Role::Assistant, content: content.into() }
    }
}

/// Why the model gave no answer. [`ModelError::code`] is stable: it is stored in a failed
/// reply's `error_details` and clients may branch on it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// No answer within the time limit.
    #[error("the language model did not answer in time")]
    Timeout,
    /// The endpoint refused the key (401 or 403).
    #[error("the language model refused our credentials")]
    Unauthorized,
    /// Still rate limited after every retry.
    #[error("the language model is rate limiting us; try again shortly")]
    RateLimited,
    /// The endpoint could not be reached.
    #[error("the language model could not be reached")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Any other unsuccessful status (5xx after every retry, or a 4xx such as an unknown model).
    #[error("the language model failed with status {0}")]
    Status(StatusCode),
    /// A successful status with a body that is not a chat completion with text in it.
    #[error("the language model sent an answer we could not read")]
    BadResponse(String),
    /// A streamed answer broke off: the connection dropped, or the endpoint reported an error
    /// in the middle of it. The text says what happened, for the log.
    #[error("the language model stopped in the middle of its answer")]
    Interrupted(String),
}

impl ModelError {
    /// The machine-readable code: `model_timeout`, `model_unauthorized`, `model_rate_limited`,
    /// `model_unreachable`, `model_error`, `model_bad_response` or `model_interrupted`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout => "model_timeout",
            Self::Unauthorized => "model_unauthorized",
            Self::RateLimited => "model_rate_limited",
            Self::Unreachable(_) => "model_unreachable",
            Self::Status(_) => "model_error",
            Self::BadResponse(_) => "model_bad_response",
            Self::Interrupted(_) => "model_interrupted",
        }
    }

    /// Whether another attempt may succeed.
    #[cfg(feature = "model")]
    fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited | Self::Unreachable(_) => true,
            Self::Status(status) => status.is_server_error(),
            Self::Timeout | Self::Unauthorized | Self::BadResponse(_) | Self::Interrupted(_) => false,
        }
    }

    /// What a failed call may still have cost.
    pub fn spend(&self) -> Spend {
        match self {
            // The endpoint may have done (and billed) the work.
            Self::Timeout | Self::BadResponse(_) | Self::Interrupted(_) => Spend::Unknown,
            Self::Unauthorized | Self::RateLimited | Self::Unreachable(_) | Self::Status(_) => Spend::Nothing,
        }
    }
}

/// A streamed call that failed, with the text handed on before it did.
#[derive(Debug)]
pub struct StreamFailure {
    /// Why it failed.
    pub error: ModelError,
    /// The fragments received before the failure, joined (empty when none came).
    pub partial: String,
}

/// What a call used, as the endpoint's `usage` field reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Tokens of the messages sent.
    pub prompt_tokens: u32,
    /// Tokens of the answer.
    pub completion_tokens: u32,
}

impl TokenUsage {
    /// Both together, which is what quotas count.
    pub fn total(&self) -> u64 {
        u64::from(self.prompt_tokens) + u64::from(self.completion_tokens)
    }
}

/// An answer and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The text of the answer.
    pub text: String,
    /// The endpoint's account of the tokens, when it gave one.
    pub usage: Option<TokenUsage>,
}

/// What a model call cost, as far as anyone can tell: settled against a reader's quota and
/// the deployment's budget after the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Nothing: the endpoint refused or could not be reached.
    Nothing,
    /// Unknown: the endpoint may have worked (a time-out, an answer without `usage`), so the
    /// estimate reserved before the call stands.
    Unknown,
    /// What the endpoint reported.
    Tokens(TokenUsage),
}

impl Spend {
    /// What an answer cost.
    pub fn of(completion: &Completion) -> Self {
        completion.usage.map_or(Self::Unknown, Self::Tokens)
    }

    /// The reported usage, if any.
    pub fn usage(self) -> Option<TokenUsage> {
        match self {
            Self::Tokens(usage) => Some(usage),
            Self::Nothing | Self::Unknown => None,
        }
    }
}

/// The most prompt tokens `messages` can cost, reserved before a call: a token per character
/// (English averages about four characters a token, but a tokenizer may give each character
/// of a script it knows little of a token of its own, as some count CJK text), plus a few
/// tokens of framing per message. A character a tokenizer splits into several tokens (a rare
/// emoji) can still cost more; then the call books only what it reserved (see
/// [`crate::domain::usage::settle`]), so no counter passes its limit.
pub fn estimate_prompt_tokens(messages: &[ChatMessage]) -> u64 {
    let per_message = |m: &ChatMessage| m.content.chars().count() as u64 + 4;
    messages.iter().map(per_message).sum::<u64>() + 3
}

/// The client of a function built without the `model` feature: it has no value, so no
/// function of it runs and nothing after it is linked.
#[cfg(not(feature = "model"))]
#[derive(Debug, Clone)]
pub struct ModelClient {
    never: std::convert::Infallible,
}

#[cfg(not(feature = "model"))]
impl ModelClient {
    /// The longest one completion may take, retries included.
    pub fn total_timeout(&self) -> Duration {
        match self.never {}
    }

    /// The model used when a caller names none.
    pub fn default_model(&self) -> &str {
        match self.never {}
    }

    /// Every model a conversation may use.
    pub fn allowed_models(&self) -> &[String] {
        match self.never {}
    }

    /// The longest a streamed answer may take, from the request to its last chunk.
    pub fn stream_timeout(&self) -> Duration {
        match self.never {}
    }

    /// Sends `messages` to `model` (never: there is no such client).
    pub async fn complete(&self, _: &str, _: &[ChatMessage], _: u32) -> Result<Completion, ModelError> {
        match self.never {}
    }

    /// Streams the answer to `messages` (never: there is no such client).
    pub async fn complete_streaming(
        &self,
        _: &str,
        _: &[ChatMessage],
        _: u32,
        _: impl FnMut(&str),
    ) -> Result<Completion, StreamFailure> {
        match self.never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_estimate_is_the_worst_case() {
        // 300 characters of English are about 75 tokens; 300 CJK characters may be 300.
        let messages = [ChatMessage::system("s".repeat(300)), ChatMessage::user("你好")];
        assert_eq!(estimate_prompt_tokens(&messages), 300 + 4 + 2 + 4 + 3);
        assert_eq!(ModelError::Timeout.spend(), Spend::Unknown);
        assert_eq!(ModelError::Unauthorized.spend(), Spend::Nothing);
    }
}
