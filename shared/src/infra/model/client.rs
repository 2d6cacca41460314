//! The model client over HTTP (reqwest, rustls): built with the `model` feature only, so a
//! function that never calls the model does not link an HTTP client for it.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{ChatMessage, Completion, ModelConfig, ModelError, StreamFailure, TokenUsage, Url};

/// The OpenAI-compatible chat-completions client. Cheap to share behind an `Arc`, and cheap
/// to clone (a streamed reply's task takes its own).
#[derive(Debug, Clone)]
pub struct ModelClient {
    http: reqwest::Client,
    endpoint: Url,
    config: ModelConfig,
}

#[derive(Clone, Copy, Serialize)]
struct CompletionRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    max_tokens: u32,
}

/// A [`CompletionRequest`] whose answer comes in chunks, the last one with the token usage.
#[derive(Serialize)]
struct StreamRequest<'a> {
    #[serde(flatten)]
    completion: CompletionRequest<'a>,
    stream: bool,
    stream_options: StreamOptions,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// One chunk of a streamed answer (`chat.completion.chunk`).
#[derive(Deserialize)]
struct StreamChunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<TokenUsage>,
    /// Some endpoints report a failure inside a stream that began well.
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: ChunkDelta,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct ChunkDelta {
    content: Option<String>,
}

/// The chunks of a streamed answer, read from the response body.
type ChunkStream = sse_stream::SseStream<reqwest::Body>;

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
        // rustls's ring provider, the one the database's TLS links already; when it is installed
        // already (a second client), that one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
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

    /// The longest a streamed answer may take, from the request to its last chunk.
    pub fn stream_timeout(&self) -> Duration {
        self.config.stream_timeout
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
        tokio::time::timeout(self.config.total_timeout, self.with_retries(|| self.attempt(&request)))
            .await
            .unwrap_or(Err(ModelError::Timeout))
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries run out.
    async fn with_retries<T, F>(&self, mut attempt: impl FnMut() -> F) -> Result<T, ModelError>
    where
        F: Future<Output = Result<T, Failure>>,
    {
        let mut attempts = 0;
        loop {
            match attempt().await {
                Ok(answer) => return Ok(answer),
                Err(Failure { error, retry_after })
                    if error.is_transient() && attempts < self.config.max_retries =>
                {
                    let backoff = self.config.retry_backoff * 2u32.saturating_pow(attempts);
                    let delay = retry_after.map_or(backoff, |asked| asked.max(backoff));
                    tracing::warn!(
                        code = error.code(),
                        attempt = attempts,
                        delay_ms = delay.as_millis() as u64,
                        "model call failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempts += 1;
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
        let response = successful(response).await?;
        let body: CompletionResponse = response.json().await.map_err(|e| {
            if e.is_timeout() {
                Failure::from(ModelError::Timeout)
            } else {
                Failure::from(ModelError::BadResponse(format!("not a chat completion: {e}")))
            }
        })?;
        completion_of(body).map_err(Failure::from)
    }

    /// Sends `messages` to `model` with `stream: true` for an answer of at most `max_tokens`,
    /// calls `on_text` with each fragment of the answer as it arrives (never an empty one), and
    /// returns the whole answer with its usage (from the last chunk, where the endpoint offers
    /// one). On failure, the fragments already handed on come back in [`StreamFailure`].
    ///
    /// Each chunk with text carries at least one token, so an endpoint still writing after
    /// `max_tokens` of them ignores the limit the call was reserved for: the answer is cut
    /// there, without the endpoint's usage (the reservation is booked).
    pub async fn complete_streaming(
        &self,
        model: &str,
        messages: &[ChatMessage],
        max_tokens: u32,
        mut on_text: impl FnMut(&str),
    ) -> Result<Completion, StreamFailure> {
        let deadline = tokio::time::Instant::now() + self.config.stream_timeout;
        let request = CompletionRequest { model, messages, max_tokens };
        let first_chunk = self.with_retries(|| self.open_stream(&request));
        let opened = match tokio::time::timeout(self.config.total_timeout, first_chunk).await {
            Ok(Ok(opened)) => opened,
            Ok(Err(error)) => return Err(StreamFailure { error, partial: String::new() }),
            Err(_) => return Err(StreamFailure { error: ModelError::Timeout, partial: String::new() }),
        };
        let mut answer = Completion { text: String::new(), usage: None };
        let (mut chunks, first) = match opened {
            Opened::Stream(chunks, first) => (chunks, first),
            // An endpoint that ignores `stream: true` answers in one piece.
            Opened::Whole(whole) => {
                on_text(&whole.text);
                return Ok(whole);
            }
        };
        let fail = |error: ModelError, answer: Completion| {
            tracing::warn!(code = error.code(), detail = ?error, received_bytes = answer.text.len(), "the streamed answer failed");
            Err(StreamFailure { error, partial: answer.text })
        };
        let mut next = Some(first);
        let mut finished = false;
        let mut text_chunks = 0u32;
        loop {
            let event = match next.take() {
                Some(event) => event,
                None => {
                    let idle = tokio::time::Instant::now() + self.config.stream_idle_timeout;
                    match tokio::time::timeout_at(idle.min(deadline), chunks.next()).await {
                        Err(_) => return fail(ModelError::Timeout, answer),
                        Ok(None) if finished => break,
                        Ok(None) => {
                            return fail(
                                ModelError::Interrupted("the stream ended before the answer did".into()),
                                answer,
                            );
                        }
                        Ok(Some(Err(e))) => return fail(stream_error(e), answer),
                        Ok(Some(Ok(event))) => event,
                    }
                }
            };
            let Some(data) = event.data else { continue };
            if data.trim() == "[DONE]" {
                break;
            }
            let chunk: StreamChunk = match serde_json::from_str(&data) {
                Ok(chunk) => chunk,
                Err(e) => {
                    return fail(ModelError::BadResponse(format!("not a completion chunk: {e}")), answer);
                }
            };
            if let Some(error) = chunk.error {
                tracing::warn!(upstream_error = %error, "the model reported an error mid-stream");
                return fail(ModelError::Interrupted("the endpoint reported an error".into()), answer);
            }
            answer.usage = chunk.usage.or(answer.usage);
            let Some(choice) = chunk.choices.into_iter().next() else { continue };
            finished |= choice.finish_reason.is_some();
            if let Some(text) = choice.delta.content.filter(|text| !text.is_empty()) {
                text_chunks += 1;
                if text_chunks > max_tokens {
                    tracing::warn!(max_tokens, "the model wrote past max_tokens; its answer is cut there");
                    answer.usage = None;
                    break;
                }
                on_text(&text);
                answer.text.push_str(&text);
            }
        }
        if answer.text.trim().is_empty() {
            return fail(ModelError::BadResponse("the completion holds no text".into()), answer);
        }
        Ok(answer)
    }

    /// One attempt at a streamed call, up to its first chunk: within `request_timeout`, as a
    /// plain attempt is.
    async fn open_stream(&self, completion: &CompletionRequest<'_>) -> Result<Opened, Failure> {
        let request = StreamRequest {
            completion: *completion,
            stream: true,
            stream_options: StreamOptions { include_usage: true },
        };
        let opening = async {
            let response = self
                .http
                .post(self.endpoint.clone())
                .bearer_auth(self.config.api_key.expose_secret())
                .header(reqwest::header::ACCEPT, "text/event-stream")
                // The client's own limit is for a whole plain call, too short for a stream.
                .timeout(self.config.stream_timeout)
                .json(&request)
                .send()
                .await
                .map_err(transport_error)?;
            let response = successful(response).await?;
            let is_json = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().starts_with("application/json"));
            if is_json {
                let body: CompletionResponse = response
                    .json()
                    .await
                    .map_err(|e| ModelError::BadResponse(format!("not a chat completion: {e}")))?;
                return Ok(Opened::Whole(completion_of(body)?));
            }
            let mut chunks = ChunkStream::new(axum::http::Response::from(response).into_body());
            match chunks.next().await {
                Some(Ok(first)) => Ok(Opened::Stream(Box::new(chunks), first)),
                Some(Err(e)) => Err(stream_error(e).into()),
                None => Err(ModelError::BadResponse("the stream was empty".into()).into()),
            }
        };
        tokio::time::timeout(self.config.request_timeout, opening)
            .await
            .unwrap_or(Err(ModelError::Timeout.into()))
    }
}

/// A streamed call past its first chunk, or an endpoint that answered in one piece.
enum Opened {
    Stream(Box<ChunkStream>, sse_stream::Sse),
    Whole(Completion),
}

/// The response of a successful status, or the failure an error status means.
async fn successful(response: reqwest::Response) -> Result<reqwest::Response, Failure> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
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
    Err(Failure { error, retry_after })
}

/// The text and usage of a plain completion.
fn completion_of(body: CompletionResponse) -> Result<Completion, ModelError> {
    let usage = body.usage;
    body.choices
        .into_iter()
        .next()
        .and_then(|choice| choice.message.content)
        .filter(|text| !text.trim().is_empty())
        .map(|text| Completion { text, usage })
        .ok_or_else(|| ModelError::BadResponse("the completion holds no text".into()))
}

/// Why reading a stream failed: the request's own time limit, or a broken stream.
fn stream_error(e: sse_stream::Error) -> ModelError {
    use std::error::Error as _;
    let timed_out = match &e {
        sse_stream::Error::Body(source) => {
            source.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_timeout)
        }
        _ => false,
    };
    if timed_out {
        return ModelError::Timeout;
    }
    let mut what = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        what = format!("{what}: {cause}");
        source = cause.source();
    }
    ModelError::Interrupted(what)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::model::Spend;
    use secrecy::SecretString;
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn client(server: &MockServer) -> ModelClient {
        let mut config = ModelConfig::new(
            SecretString::from("sk-test"),
            Url::parse(&format!("{}/v1", server.uri())).unwrap(),
            "tutor-small",
        );
        // Well over a stub's answer on a loaded machine, well under the time-out tests' 2 s.
        config.request_timeout = Duration::from_secs(1);
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
    /// A streamed answer of `fragments`, then `tail` (the usage chunk and `[DONE]`, say).
    fn stream_of(fragments: &[&str], tail: &[&str]) -> ResponseTemplate {
        let mut body = String::new();
        for fragment in fragments {
            let chunk = serde_json::json!({"choices": [{"index": 0, "delta": {"content": fragment}, "finish_reason": null}]});
            body.push_str(&format!("data: {chunk}\n\n"));
        }
        for line in tail {
            body.push_str(&format!("data: {line}\n\n"));
        }
        ResponseTemplate::new(200).insert_header("content-type", "text/event-stream").set_body_string(body)
    }

    const FINISHED: &str = r#"{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}"#;
    const USAGE: &str =
        r#"{"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}"#;

    async fn stream(client: &ModelClient) -> (Vec<String>, Result<Completion, StreamFailure>) {
        let mut fragments = Vec::new();
        let result = client
            .complete_streaming("tutor-small", &[ChatMessage::user("hi")], 64, |text| {
                fragments.push(text.to_owned())
            })
            .await;
        (fragments, result)
    }

    #[tokio::test]
    async fn a_streamed_answer_is_handed_on_in_fragments_with_its_usage() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(header("authorization", "Bearer sk-test"))
            .and(body_partial_json(serde_json::json!({
                "model": "tutor-small", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "hi"}]
            })))
            .respond_with(stream_of(&["", "Hel", "lo!"], &[FINISHED, USAGE, "[DONE]"]))
            .expect(1)
            .mount(&server)
            .await;
        let (fragments, answer) = stream(&client(&server)).await;
        assert_eq!(fragments, ["Hel", "lo!"], "empty fragments are not handed on");
        let answer = answer.unwrap();
        assert_eq!(answer.text, "Hello!");
        assert_eq!(answer.usage, Some(TokenUsage { prompt_tokens: 7, completion_tokens: 2 }));
    }

    #[tokio::test]
    async fn an_endpoint_that_does_not_stream_answers_in_one_fragment() {
        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(completion("All at once.")).mount(&server).await;
        let (fragments, answer) = stream(&client(&server)).await;
        assert_eq!(fragments, ["All at once."]);
        assert_eq!(answer.unwrap().text, "All at once.");
    }

    #[tokio::test]
    async fn a_server_error_before_the_first_chunk_is_retried() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(stream_of(&["second ", "time"], &[FINISHED, "[DONE]"]))
            .expect(1)
            .mount(&server)
            .await;
        let (fragments, answer) = stream(&client(&server)).await;
        assert_eq!(fragments, ["second ", "time"]);
        assert_eq!(answer.unwrap().usage, None, "no usage chunk, no usage");
    }

    #[tokio::test]
    async fn no_first_chunk_in_time_is_a_timeout() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(stream_of(&["too late"], &["[DONE]"]).set_delay(Duration::from_secs(2)))
            .mount(&server)
            .await;
        let (fragments, result) = stream(&client(&server)).await;
        let failure = result.unwrap_err();
        assert_eq!((failure.error.code(), failure.partial.as_str()), ("model_timeout", ""));
        assert!(fragments.is_empty());
    }

    #[tokio::test]
    async fn an_error_inside_the_stream_or_a_missing_end_is_an_interruption() {
        let server = MockServer::start().await;
        let error = r#"{"error": {"message": "overloaded", "type": "server_error"}}"#;
        Mock::given(method("POST"))
            .respond_with(stream_of(&["Half an "], &[error]))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST")).respond_with(stream_of(&["Half an "], &[])).mount(&server).await;
        for _ in 0..2 {
            let failure = stream(&client(&server)).await.1.unwrap_err();
            assert_eq!((failure.error.code(), failure.partial.as_str()), ("model_interrupted", "Half an "));
        }
    }
}
