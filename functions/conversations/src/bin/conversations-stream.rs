//! The streaming entry of the conversations function: posting a message and retrying one,
//! behind a Lambda function URL in `RESPONSE_STREAM` mode, so the tutor's Server-Sent Events
//! reach the reader as they are written (API Gateway's HTTP API would buffer them).

// One thread: an instance serves one event at a time, and a second worker would only add
// wake-ups (docs/performance.md, the fan-out).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    primer_shared::http::app::run_streaming_on_lambda(conversations::stream_router).await
}
