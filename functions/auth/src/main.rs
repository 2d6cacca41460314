//! The auth Lambda: state once per cold start, then `lambda_http`'s loop.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // Make the dummy password hash off the request path.
    tokio::task::spawn_blocking(primer_shared::auth::password::warm_up);
    primer_shared::app::run_on_lambda(auth::router).await
}
