//! A chat-completions endpoint on 127.0.0.1 that streams its answers as a test scripts them:
//! so many chunks, so far apart, then a proper end, a broken connection or silence. It notes
//! when it sent each call's first chunk, so a test can time what reaches its client against
//! it. wiremock cannot space chunks out in time, hence this stub. [`EventReader`] is the other
//! end: it reads a streamed reply's events and notes when each one arrived.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt as _;
use serde_json::{Value, json};

use crate::infra::model::{ModelConfig, TokenUsage, Url};

/// How a scripted stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// A `finish_reason`, the usage chunk and `[DONE]`.
    Done,
    /// The connection breaks off, as when the endpoint crashes.
    Broken,
    /// Nothing more is sent, and the connection stays open (for a minute).
    Silent,
}

/// One answer of the stub.
#[derive(Debug, Clone)]
pub struct StreamScript {
    /// The text fragments, one per chunk.
    pub chunks: Vec<String>,
    /// The pause before each chunk, the first one included.
    pub gap: Duration,
    /// What follows the last chunk.
    pub end: StreamEnd,
    /// The usage the last chunk reports.
    pub usage: TokenUsage,
}

impl StreamScript {
    /// `n` chunks `gap` apart (`"Chunk 0. "`, `"Chunk 1. "`, ...), then a proper end.
    pub fn chunks(n: usize, gap: Duration) -> Self {
        Self {
            chunks: (0..n).map(|i| format!("Chunk {i}. ")).collect(),
            gap,
            end: StreamEnd::Done,
            usage: TokenUsage { prompt_tokens: 42, completion_tokens: n as u32 },
        }
    }

    /// The same fragments, with another end.
    pub fn ending(self, end: StreamEnd) -> Self {
        Self { end, ..self }
    }

    /// Every fragment joined: the whole answer.
    pub fn text(&self) -> String {
        self.chunks.concat()
    }
}

/// What the stub saw of one call.
#[derive(Debug, Clone)]
pub struct StubCall {
    /// The request body.
    pub body: Value,
    /// When the first text chunk went out, if one did.
    pub first_chunk_at: Option<Instant>,
    /// When the last text chunk went out, if the script's every chunk did.
    pub last_chunk_at: Option<Instant>,
}

#[derive(Default)]
struct Stub {
    /// Answers still to give; the last one is repeated.
    scripts: Mutex<VecDeque<StreamScript>>,
    calls: Mutex<Vec<StubCall>>,
}

/// The running stub; stops with the test's runtime.
#[derive(Clone)]
pub struct StreamingModel {
    base_url: Url,
    stub: Arc<Stub>,
}

impl StreamingModel {
    /// Starts the stub; call `n` gets `scripts[n]`, and calls past the end the last one.
    pub async fn start(scripts: Vec<StreamScript>) -> Self {
        assert!(!scripts.is_empty(), "the stub needs a script");
        let stub = Arc::new(Stub { scripts: Mutex::new(scripts.into()), calls: Mutex::default() });
        let app = Router::new().route("/v1/chat/completions", post(complete)).with_state(stub.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let base_url = Url::parse(&format!("http://{}/v1", listener.local_addr().unwrap())).unwrap();
        // Each chunk goes out when it is written, as a model endpoint's would.
        let listener = listener.tap_io(|tcp| tcp.set_nodelay(true).expect("TCP_NODELAY"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base_url, stub }
    }

    /// The endpoint's base URL (`.../v1`), as `MODEL_BASE_URL` takes it.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// A model configuration for the stub with short time limits, so failing tests fail fast.
    pub fn config(&self, model: &str) -> ModelConfig {
        let mut config = ModelConfig::new("sk-test".to_owned().into(), self.base_url.clone(), model);
        config.request_timeout = Duration::from_secs(2);
        config.total_timeout = Duration::from_secs(3);
        config.retry_backoff = Duration::from_millis(5);
        config.stream_idle_timeout = Duration::from_millis(500);
        config.stream_timeout = Duration::from_secs(10);
        config
    }

    /// Every call so far, in order of arrival.
    pub fn calls(&self) -> Vec<StubCall> {
        self.stub.calls.lock().unwrap().clone()
    }
}

async fn complete(State(stub): State<Arc<Stub>>, body: axum::Json<Value>) -> Response {
    let script = {
        let mut scripts = stub.scripts.lock().unwrap();
        if scripts.len() > 1 { scripts.pop_front().unwrap() } else { scripts[0].clone() }
    };
    let streamed = body.0["stream"] == true;
    let call = {
        let mut calls = stub.calls.lock().unwrap();
        calls.push(StubCall { body: body.0, first_chunk_at: None, last_chunk_at: None });
        calls.len() - 1
    };
    if !streamed {
        return axum::Json(completion(&script.text(), Some(script.usage))).into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let send = |value: Value| tx.send(Ok(Bytes::from(format!("data: {value}\n\n"))));
        let role = json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]});
        if send(role).await.is_err() {
            return;
        }
        for (n, text) in script.chunks.iter().enumerate() {
            tokio::time::sleep(script.gap).await;
            {
                let mut calls = stub.calls.lock().unwrap();
                if n == 0 {
                    calls[call].first_chunk_at = Some(Instant::now());
                }
                if n + 1 == script.chunks.len() {
                    calls[call].last_chunk_at = Some(Instant::now());
                }
            }
            let chunk = json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
            if send(chunk).await.is_err() {
                return;
            }
        }
        match script.end {
            StreamEnd::Done => {
                let finish = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
                let usage = json!({"choices": [], "usage": {
                    "prompt_tokens": script.usage.prompt_tokens,
                    "completion_tokens": script.usage.completion_tokens,
                    "total_tokens": script.usage.prompt_tokens + script.usage.completion_tokens
                }});
                let _ = send(finish).await;
                let _ = send(usage).await;
                let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
            }
            // An error in the body makes the server cut the connection mid-response.
            StreamEnd::Broken => {
                let _ = tx.send(Err(std::io::Error::other("the model crashed"))).await;
            }
            StreamEnd::Silent => tokio::time::sleep(Duration::from_secs(60)).await,
        }
    });
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(body)).into_response()
}

/// An event of a streamed reply as a client received it.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    /// When the client had read the whole event.
    pub at: Instant,
    /// Its `event:` name.
    pub name: String,
    /// Its `id:`.
    pub id: Option<String>,
    /// Its `data:`, as JSON.
    pub data: Value,
}

/// Reads a response body as Server-Sent Events, noting when each one arrived.
pub struct EventReader<B: HttpBody> {
    events: std::pin::Pin<Box<sse_stream::SseStream<B>>>,
}

impl<B> EventReader<B>
where
    B: HttpBody,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    /// Reads `body`.
    pub fn new(body: B) -> Self {
        Self { events: Box::pin(sse_stream::SseStream::new(body)) }
    }

    /// The next event with data; `None` at the end of the body. Panics on a broken body or
    /// data that is not JSON.
    pub async fn next(&mut self) -> Option<ReceivedEvent> {
        use futures_util::StreamExt as _;
        loop {
            let event = self.events.next().await?.expect("a readable event stream");
            let Some(data) = event.data else { continue };
            return Some(ReceivedEvent {
                at: Instant::now(),
                name: event.event.unwrap_or_else(|| "message".into()),
                id: event.id,
                data: serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}")),
            });
        }
    }

    /// Every remaining event.
    pub async fn all(mut self) -> Vec<ReceivedEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

/// The events of a body already read in full.
pub async fn events_in(body: Bytes) -> Vec<ReceivedEvent> {
    EventReader::new(http_body_util::Full::new(body)).all().await
}

impl StreamingModel {
    /// Asserts that `events`, the answer to the stub's first call (which streamed `script`),
    /// reached the reader as the model wrote it: the question, one delta per chunk in order,
    /// the citations and the stored answer; the first delta before the model wrote its last
    /// chunk, and the last delta long after the first (not all at the end); and the stored
    /// answer the deltas joined. Returns the `done` event. No latency is asserted (that is
    /// bench/run's streaming row): only the order of what happened.
    pub fn assert_streamed_as_written<'e>(
        &self,
        events: &'e [ReceivedEvent],
        script: &StreamScript,
    ) -> &'e ReceivedEvent {
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        let mut expected = vec!["user_message"];
        expected.extend(std::iter::repeat_n("delta", script.chunks.len()));
        expected.extend(["citations", "done"]);
        assert_eq!(names, expected);
        let deltas: Vec<&ReceivedEvent> = events.iter().filter(|e| e.name == "delta").collect();
        let done = events.last().unwrap();

        let call = &self.calls()[0];
        let first_chunk = call.first_chunk_at.expect("the stub sent a chunk");
        let last_chunk = call.last_chunk_at.expect("the stub sent every chunk");
        assert!(deltas[0].at >= first_chunk, "a delta before the model wrote anything?");
        assert!(
            deltas[0].at < last_chunk,
            "the first delta came {:?} after the model's first chunk, once the model had written \
             its last: the reply was held back, not streamed",
            deltas[0].at - first_chunk
        );
        let writing = script.gap * (script.chunks.len() as u32 - 1);
        assert!(done.at - deltas[0].at > writing * 7 / 10, "the deltas came all at the end");

        let text: String = deltas.iter().map(|e| e.data["text"].as_str().unwrap()).collect();
        assert_eq!(text, script.text());
        assert_eq!(done.data["content"], text, "the stored answer is the deltas joined");
        done
    }
}

/// The body of a chat completion whose answer is `text`, reporting `usage` when given: what an
/// OpenAI-compatible endpoint answers a request without `stream` (for wiremock stubs too).
pub fn completion(text: &str, usage: Option<TokenUsage>) -> Value {
    let mut body = json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
    });
    if let Some(usage) = usage {
        body["usage"] = json!({
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens
        });
    }
    body
}

/// The model client against the streaming stub: what the client does with a stream that stops
/// or breaks part-way (the stub scripts both; the client's other cases are in its own tests).
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{StreamEnd, StreamScript, StreamingModel};
    use crate::infra::model::{ChatMessage, Completion, ModelClient, StreamFailure};

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
    async fn a_silence_between_chunks_is_a_timeout_that_keeps_the_text() {
        let script = StreamScript::chunks(3, Duration::from_millis(10)).ending(StreamEnd::Silent);
        let stub = StreamingModel::start(vec![script.clone()]).await;
        let mut config = stub.config("tutor-small");
        config.stream_idle_timeout = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let (fragments, result) = stream(&ModelClient::new(config).unwrap()).await;
        let failure = result.unwrap_err();
        assert_eq!(failure.error.code(), "model_timeout");
        assert_eq!(failure.partial, script.text());
        assert_eq!(fragments.concat(), script.text());
        assert!(started.elapsed() < Duration::from_secs(5), "the idle limit, not the stream's, ended it");
    }

    #[tokio::test]
    async fn a_broken_stream_fails_with_what_was_received() {
        let script = StreamScript::chunks(5, Duration::from_millis(5)).ending(StreamEnd::Broken);
        let stub = StreamingModel::start(vec![script.clone()]).await;
        let (fragments, result) = stream(&ModelClient::new(stub.config("tutor-small")).unwrap()).await;
        let failure = result.unwrap_err();
        assert_eq!(failure.error.code(), "model_interrupted");
        assert_eq!(failure.partial, script.text());
        assert_eq!(fragments.len(), 5);
        assert_eq!(stub.calls().len(), 1, "nothing is retried once text was handed on");
    }
}
