//! The conversations Lambda: state once per cold start, then `lambda_http`'s loop.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    primer_shared::http::app::run_on_lambda(conversations::router).await
}
