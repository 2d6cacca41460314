//! Logging: structured JSON on Lambda (or when asked), compact text on a laptop, and the
//! request id that ties a request's log lines and its error body together.
//!
//! Logs never carry secrets, at any level: our own lines name no password, token or hash, and
//! the libraries that log raw traffic below `info` (the Lambda runtime logs every event,
//! headers and body, at `trace`; the HTTP clients their connections) are capped at `info`
//! whatever `RUST_LOG` asks for.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use tracing::{Instrument, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

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
    let filter = filter_of(|k| std::env::var(k).ok());
    let json = ["AWS_LAMBDA_LOG_FORMAT", "PRIMER_LOG_FORMAT"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| v.eq_ignore_ascii_case("json")));
    // A second init (tests) is harmless, hence `try_init`.
    let _ = subscriber(filter, json, std::io::stdout).try_init();
}

/// What is logged: `RUST_LOG` if it reads as a list of `level` and `target=level` directives,
/// else Lambda's `AWS_LAMBDA_LOG_LEVEL` (SAM's `SystemLogLevel`; its `FATAL` is `error` here),
/// else `info`. Span and field directives are not read: they would link a regular-expression
/// engine into every function for a filter nobody sets on Lambda.
pub fn filter_of(get: impl Fn(&str) -> Option<String>) -> Targets {
    let rust_log = get("RUST_LOG").filter(|v| !v.trim().is_empty()).and_then(|v| v.parse::<Targets>().ok());
    let lambda_level = || {
        let level = get("AWS_LAMBDA_LOG_LEVEL")?;
        let level = if level.eq_ignore_ascii_case("fatal") { "error" } else { &level };
        level.parse::<LevelFilter>().ok()
    };
    rust_log.unwrap_or_else(|| Targets::new().with_default(lambda_level().unwrap_or(LevelFilter::INFO)))
}

/// The subscriber [`init`] installs: `filter` (what `RUST_LOG` asks for), less whatever could
/// carry raw traffic, written to `writer` as compact text or as JSON lines, each with a
/// timestamp and the fields of the request's span (`request_id`, `aws_request_id`).
pub fn subscriber<W>(filter: Targets, json: bool, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let format: Box<dyn Layer<Registry> + Send + Sync> = if json {
        Box::new(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(writer),
        )
    } else {
        Box::new(tracing_subscriber::fmt::layer().compact().with_writer(writer))
    };
    let never_raw_traffic = filter_fn(|meta: &Metadata<'_>| may_log(meta.target(), *meta.level()));
    tracing_subscriber::registry().with(format.with_filter(filter.and(never_raw_traffic)))
}

/// Libraries that log requests or responses, headers and bodies included, below `info`.
const RAW_TRAFFIC: &[&str] = &[
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_sigv4",
    "tower_http",
];

/// Whether a line of `target` at `level` may be written.
fn may_log(target: &str, level: Level) -> bool {
    let root = target.split("::").next().unwrap_or(target);
    level <= Level::INFO || !RAW_TRAFFIC.contains(&root)
}

/// Middleware: gives the request its id (API Gateway's, else Lambda's, else a new one), runs
/// it inside a span carrying that id and Lambda's `aws_request_id` (on Lambda), logs one line
/// with the outcome, and echoes the id in `x-request-id`: the id a client sees in an error body
/// and that header is the one on every log line of its request.
pub async fn request_context(request: Request, next: Next) -> Response {
    let id = request_id_of(&request);
    let aws_request_id = request.lambda_context_ref().map(|c| c.request_id.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        aws_request_id = aws_request_id.as_deref(),
        method = %request.method(),
        path = %request.uri().path()
    );
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

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::http::StatusCode;
    use lambda_http::RequestExt;
    use tower::ServiceExt;

    use super::*;
    use crate::error::Error;

    #[tokio::test]
    async fn one_request_id_in_the_error_body_the_header_and_every_log_line() {
        let captured = crate::test_util::CapturedLog::default();
        let writer = captured.clone();
        let subscriber = subscriber(filter_of(|_| None), true, move || writer.clone());
        let _guard = tracing::subscriber::set_default(subscriber);

        let app = Router::new()
            .route("/boom", axum::routing::get(|| async { Error::internal("a bug") }))
            .layer(axum::middleware::from_fn(request_context));
        let event = r#"{"version":"2.0","routeKey":"GET /boom","rawPath":"/boom","rawQueryString":"",
            "headers":{},"requestContext":{"http":{"method":"GET","path":"/boom","protocol":"HTTP/1.1",
            "sourceIp":"203.0.113.10","userAgent":"t"},"requestId":"api-req-42","routeKey":"GET /boom",
            "stage":"$default","time":"24/Nov/2026:10:00:05 +0000","timeEpoch":1795514405000,
            "accountId":"1","apiId":"a","domainName":"d","domainPrefix":"d"},"isBase64Encoded":false}"#;
        let mut context = lambda_http::Context::default();
        context.request_id = "aws-req-7".into();
        let request = lambda_http::request::from_str(event).unwrap().with_lambda_context(context);
        let response = app.oneshot(request).await.unwrap();

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["x-request-id"], "api-req-42");
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["request_id"], "api-req-42");

        let text = captured.text();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(lines.len() >= 2, "the failure and the request's line: {text}");
        for line in &lines {
            assert_eq!(line["span"]["request_id"], "api-req-42", "{line}");
            assert_eq!(line["span"]["aws_request_id"], "aws-req-7", "{line}");
            assert!(line["timestamp"].is_string(), "{line}");
        }
    }

    #[test]
    fn the_filter_comes_from_rust_log_then_lambdas_level_then_info() {
        let filter = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> =
                vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            filter_of(move |k| vars.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()))
        };
        let on = |f: &Targets, target: &str, level: Level| f.would_enable(target, &level);

        let default = filter(&[]);
        assert!(on(&default, "primer_shared::auth", Level::INFO));
        assert!(!on(&default, "primer_shared::auth", Level::DEBUG));

        let rust_log = filter(&[("RUST_LOG", "warn,primer_shared=debug"), ("AWS_LAMBDA_LOG_LEVEL", "TRACE")]);
        assert!(on(&rust_log, "primer_shared::auth", Level::DEBUG));
        assert!(!on(&rust_log, "sqlx::query", Level::INFO));
        assert!(on(&rust_log, "sqlx::query", Level::WARN));

        // Lambda's levels are upper case, and FATAL is its highest.
        let lambda = filter(&[("RUST_LOG", ""), ("AWS_LAMBDA_LOG_LEVEL", "DEBUG")]);
        assert!(on(&lambda, "chapters", Level::DEBUG));
        assert!(!on(&lambda, "chapters", Level::TRACE));
        let fatal = filter(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")]);
        assert!(on(&fatal, "chapters", Level::ERROR));
        assert!(!on(&fatal, "chapters", Level::WARN));

        // What cannot be read is passed over, not taken as "log nothing".
        let unreadable = filter(&[("RUST_LOG", "info,[span{a=1}]=debug"), ("AWS_LAMBDA_LOG_LEVEL", "loud")]);
        assert!(on(&unreadable, "chapters", Level::INFO));
        assert!(!on(&unreadable, "chapters", Level::DEBUG));
    }

    #[test]
    fn raw_traffic_is_never_logged_below_info() {
        // Where the Lambda runtime logs the raw event.
        assert!(!may_log("lambda_runtime::layers::api_response", Level::TRACE));
        assert!(!may_log("hyper_util::client::legacy::pool", Level::DEBUG));
        assert!(may_log("lambda_runtime::runtime", Level::WARN));
        assert!(may_log("primer_shared::tutor", Level::TRACE));
        assert!(may_log("sqlx::query", Level::DEBUG));
    }
}
