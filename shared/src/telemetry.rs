//! Logging: structured JSON on Lambda (or when asked), compact text on a laptop, and the
//! request id that ties a request's log lines and its error body together.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Installs the global subscriber once. JSON when Lambda asks for it
/// (`AWS_LAMBDA_LOG_FORMAT=JSON`, SAM's `LogFormat: JSON`) or `PRIMER_LOG_FORMAT=json`.
pub fn init() {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = ["AWS_LAMBDA_LOG_FORMAT", "PRIMER_LOG_FORMAT"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| v.eq_ignore_ascii_case("json")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second init (tests) is harmless, hence `try_init`.
    let _ = if json {
        builder.json().with_current_span(true).with_span_list(false).without_time().try_init()
    } else {
        builder.compact().try_init()
    };
}

/// Middleware: gives the request its id (API Gateway's, else Lambda's, else a new one), runs
/// it inside a span carrying that id, logs one line with the outcome, and echoes the id in
/// `x-request-id`.
pub async fn request_context(request: Request, next: Next) -> Response {
    let id = request_id_of(&request);
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    let started = std::time::Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request).instrument(span.clone())).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "served"
        )
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// `work` with the request's id and log span, for a task that outlives the handler (a streamed
/// reply goes on after its response started, even after its reader left).
pub fn in_request_context<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let id = current_request_id().unwrap_or_default();
    REQUEST_ID.scope(id, work.instrument(tracing::Span::current()))
}

fn request_id_of(request: &Request) -> String {
    let from_gateway = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    from_gateway
        .or_else(|| request.lambda_context_ref().map(|c| c.request_id.clone()))
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}
