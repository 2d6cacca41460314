//! The janitor Lambda, run by an EventBridge schedule: state once per cold start, then
//! `lambda_runtime`'s loop.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    janitor::run_on_lambda().await
}
