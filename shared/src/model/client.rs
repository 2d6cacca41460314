//! The model client over HTTP (reqwest, rustls): built with the `model` feature only, so a
//! function that never calls the model does not link an HTTP client for it.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{ChatMessage, Completion, ModelConfig, ModelError, TokenUsage, Url};

/// The OpenAI-compatible chat-completions client. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct ModelClient {
    http: reqwest::Client,
    endpoint: Url,
    config: ModelConfig,
}

#[derive(Serialize)]
struct CompletionRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    max_tokens: u32,
}

#[derive(Deserialize)]
struct CompletionResponse {
    choices: Vec<Choice>,
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: AnswerMessage,
}

#[derive(Deserialize)]
struct AnswerMessage {
    content: Option<String>,
}

/// The part of an OpenAI error body worth logging; its `message` may quote our input.
#[derive(Deserialize)]
struct UpstreamError {
    error: UpstreamErrorInner,
}

#[derive(Deserialize)]
struct UpstreamErrorInner {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<serde_json::Value>,
}

impl ModelClient {
    /// Builds the HTTP client (rustls) for `config`.
    pub fn new(config: ModelConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            .build()?;
        let endpoint = chat_completions_url(&config.base_url);
        Ok(Self { http, endpoint, config })
    }

    /// The longest one completion may take, retries included.
    pub fn total_timeout(&self) -> Duration {
        self.config.total_timeout
    }

    /// The model used when a caller names none.
    pub fn default_model(&self) -> &str {
        &self.config.default_model
    }

    /// Every model a conversation may use.
    pub fn allowed_models(&self) -> &[String] {
        &self.config.allowed_models
    }

    /// Sends `messages` to `model` and returns its answer, at most `max_tokens` long, and
    /// what it cost.
    pub async fn complete(
        &self,
        model: &str,
        messages: &[ChatMessage],
        max_tokens: u32,
    ) -> Result<Completion, ModelError> {
        let request = CompletionRequest { model, messages, max_tokens };
        tokio::time::timeout(self.config.total_timeout, self.complete_with_retries(&request))
            .await
            .unwrap_or(Err(ModelError::Timeout))
    }

    async fn complete_with_retries(&self, request: &CompletionRequest<'_>) -> Result<Completion, ModelError> {
        let mut attempt = 0;
        loop {
            match self.attempt(request).await {
                Ok(answer) => return Ok(answer),
                Err(Failure { error, retry_after })
                    if is_transient(&error) && attempt < self.config.max_retries =>
                {
                    let backoff = self.config.retry_backoff * 2u32.saturating_pow(attempt);
                    let delay = retry_after.map_or(backoff, |asked| asked.max(backoff));
                    tracing::warn!(
                        code = error.code(),
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        "model call failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(Failure { error, .. }) => return Err(error),
            }
        }
    }

    async fn attempt(&self, request: &CompletionRequest<'_>) -> Result<Completion, Failure> {
        let response = self
            .http
            .post(self.endpoint.clone())
            .bearer_auth(self.config.api_key.expose_secret())
            .json(request)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            let upstream = response.json::<UpstreamError>().await.ok().map(|e| e.error);
            tracing::warn!(
                status = status.as_u16(),
                upstream_type = upstream.as_ref().and_then(|e| e.kind.as_deref()),
                upstream_code = upstream.as_ref().and_then(|e| e.code.as_ref()).map(|c| c.to_string()),
                "model answered with an error status"
            );
            let error = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ModelError::Unauthorized,
                StatusCode::TOO_MANY_REQUESTS => ModelError::RateLimited,
                other => ModelError::Status(other),
            };
            return Err(Failure { error, retry_after });
        }
        let body: CompletionResponse = response.json().await.map_err(|e| {
            if e.is_timeout() {
                Failure::from(ModelError::Timeout)
            } else {
                Failure::from(ModelError::BadResponse(format!("not a chat completion: {e}")))
            }
        })?;
        let usage = body.usage;
        body.choices
            .into_iter()
            .next()
            .and_then(|choice| choice.message.content)
            .filter(|text| !text.trim().is_empty())
            .map(|text| Completion { text, usage })
            .ok_or_else(|| ModelError::BadResponse("the completion holds no text".into()).into())
    }
}

/// A failed attempt and how long the endpoint asked us to wait before the next one.
struct Failure {
    error: ModelError,
    retry_after: Option<Duration>,
}

impl From<ModelError> for Failure {
    fn from(error: ModelError) -> Self {
        Self { error, retry_after: None }
    }
}

fn transport_error(e: reqwest::Error) -> Failure {
    if e.is_timeout() { ModelError::Timeout.into() } else { ModelError::Unreachable(Box::new(e)).into() }
}

/// `Retry-After` in seconds; an HTTP date or a wait longer than a minute is not worth honouring
/// inside one request, so the ordinary backoff applies.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    (secs <= 60).then(|| Duration::from_secs(secs))
}

/// `base` + `/chat/completions`, keeping the base's path (`Url::join` would drop its last
/// segment, e.g. `/v1`).
fn chat_completions_url(base: &Url) -> Url {
    let mut url = base.clone();
    let path = format!("{}/chat/completions", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

/// Whether another attempt may succeed after `error`.
fn is_transient(error: &ModelError) -> bool {
    match error {
        ModelError::RateLimited | ModelError::Unreachable(_) => true,
        ModelError::Status(status) => status.is_server_error(),
        ModelError::Timeout | ModelError::Unauthorized | ModelError::BadResponse(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChatMessage, Spend, TokenUsage};
    use secrecy::SecretString;
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn client(server: &MockServer) -> ModelClient {
        let mut config = ModelConfig::new(
            SecretString::from("sk-test"),
            Url::parse(&format!("{}/v1", server.uri())).unwrap(),
            "tutor-small",
        );
        config.request_timeout = Duration::from_millis(300);
        config.total_timeout = Duration::from_secs(5);
        config.retry_backoff = Duration::from_millis(5);
        ModelClient::new(config).unwrap()
    }

    fn completion(text: &str) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
        }))
    }

    #[tokio::test]
    async fn an_answer_without_usage_costs_what_was_reserved() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]
            })))
            .mount(&server)
            .await;
        let answer = client(&server).complete("tutor-small", &[ChatMessage::user("hi")], 64).await.unwrap();
        assert_eq!((answer.usage, Spend::of(&answer)), (None, Spend::Unknown));
    }

    #[test]
    fn the_endpoint_keeps_the_base_path() {
        let url = chat_completions_url(&Url::parse("https://api.openai.com/v1/").unwrap());
        assert_eq!(url.as_str(), "https://api.openai.com/v1/chat/completions");
        let url = chat_completions_url(&Url::parse("http://127.0.0.1:8080").unwrap());
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/chat/completions");
    }

    #[tokio::test]
    async fn a_normal_reply_is_returned_and_the_request_is_well_formed() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(header("authorization", "Bearer sk-test"))
            .and(body_partial_json(serde_json::json!({
                "model": "tutor-small",
                "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                "max_tokens": 64
            })))
            .respond_with(completion("Hello!"))
            .expect(1)
            .mount(&server)
            .await;
        let messages = [ChatMessage::system("be brief"), ChatMessage::user("hi")];
        let answer = client(&server).complete("tutor-small", &messages, 64).await.unwrap();
        assert_eq!(answer.text, "Hello!");
        let usage = TokenUsage { prompt_tokens: 12, completion_tokens: 3 };
        assert_eq!((answer.usage, Spend::of(&answer)), (Some(usage), Spend::Tokens(usage)));
        assert_eq!(usage.total(), 15);
    }

    #[tokio::test]
    async fn a_server_error_is_retried() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(completion("second time lucky"))
            .expect(1)
            .mount(&server)
            .await;
        let answer = client(&server).complete("tutor-small", &[ChatMessage::user("hi")], 64).await.unwrap();
        assert_eq!(answer.text, "second time lucky");
    }

    #[tokio::test]
    async fn retries_are_bounded() {
        let server = MockServer::start().await;
        // One attempt plus two retries, then the rate limit is reported.
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(429)).expect(3).mount(&server).await;
        let err = client(&server).complete("tutor-small", &[ChatMessage::user("hi")], 64).await.unwrap_err();
        assert_eq!(err.code(), "model_rate_limited");
    }

    #[tokio::test]
    async fn a_refused_key_is_not_retried() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
                "error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}
            })))
            .expect(1)
            .mount(&server)
            .await;
        let err = client(&server).complete("tutor-small", &[ChatMessage::user("hi")], 64).await.unwrap_err();
        assert_eq!(err.code(), "model_unauthorized");
    }

    #[tokio::test]
    async fn a_slow_model_times_out() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(completion("too late").set_delay(Duration::from_secs(2)))
            .mount(&server)
            .await;
        let err = client(&server).complete("tutor-small", &[ChatMessage::user("hi")], 64).await.unwrap_err();
        assert_eq!(err.code(), "model_timeout");
    }

    #[tokio::test]
    async fn an_empty_completion_is_a_bad_response() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"choices": []})))
            .mount(&server)
            .await;
        let err = client(&server).complete("tutor-small", &[ChatMessage::user("hi")], 64).await.unwrap_err();
        assert_eq!(err.code(), "model_bad_response");
    }

    #[tokio::test]
    async fn an_unknown_model_is_a_model_error() {
        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(404)).expect(1).mount(&server).await;
        let err = client(&server).complete("nope", &[ChatMessage::user("hi")], 64).await.unwrap_err();
        assert_eq!(err.code(), "model_error");
    }
}
