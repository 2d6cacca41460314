//! The chapters Lambda: state once per cold start, then `lambda_http`'s loop.

// One thread: an instance serves one event at a time, and a second worker would only add
// wake-ups (docs/performance.md, the fan-out).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    primer_shared::http::app::run_on_lambda(chapters::router).await
}
