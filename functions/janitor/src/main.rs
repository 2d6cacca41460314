//! The janitor Lambda, run by an EventBridge schedule: state once per cold start, then
//! `lambda_runtime`'s loop.

// One thread: an instance serves one event at a time, and a second worker would only add
// wake-ups (docs/performance.md, the fan-out).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    janitor::run_on_lambda().await
}
