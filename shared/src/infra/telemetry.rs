//! Logging: structured JSON on Lambda (or when asked), compact text on a laptop, and the
//! request id that ties a request's log lines and its error body together.
//!
//! A JSON line is one flat object, as CloudWatch Logs Insights and Lambda's log-level filter
//! read it: `timestamp` (RFC 3339), `level`, `message`, `target`, then the fields of the line
//! and of every span it is in: `requestId` (Lambda's request id, from the runtime's span and
//! ours), `apiRequestId` (API Gateway's, the `request_id` of an error body and the
//! `x-request-id` header), `method`, `path`, and the line's own fields.
//!
//! Logs never carry secrets, at any level: our own lines name no password, token or hash, and
//! the libraries that log raw traffic below `info` (the Lambda runtime logs every event,
//! headers and body, at `trace`; the HTTP clients their connections) are capped at `info`
//! whatever `RUST_LOG` asks for.

use std::fmt;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Instrument, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets, filter_fn};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
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

/// What is logged: `RUST_LOG` if it is set and reads as a list of `level` and `target=level`
/// directives, else Lambda's `AWS_LAMBDA_LOG_LEVEL` (template.yaml's `ApplicationLogLevel`;
/// its `FATAL` is `error` here), else `info`. Lambda drops every line below its level, so that
/// level also caps what `RUST_LOG` asks for: nothing is formatted only to be thrown away. Span
/// and field directives are not read: they would link a regular-expression engine into every
/// function for a filter nobody sets on Lambda.
pub fn filter_of(get: impl Fn(&str) -> Option<String>) -> Targets {
    let rust_log = get("RUST_LOG").filter(|v| !v.trim().is_empty()).and_then(|v| v.parse::<Targets>().ok());
    let lambda_level = get("AWS_LAMBDA_LOG_LEVEL").and_then(|level| {
        let level = if level.eq_ignore_ascii_case("fatal") { "error" } else { &level };
        level.parse::<LevelFilter>().ok()
    });
    match (rust_log, lambda_level) {
        (Some(directives), Some(cap)) => {
            let capped = Targets::new()
                .with_targets(directives.iter().map(|(target, level)| (target.to_owned(), level.min(cap))));
            match directives.default_level() {
                Some(default) => capped.with_default(default.min(cap)),
                None => capped,
            }
        }
        (Some(directives), None) => directives,
        (None, level) => Targets::new().with_default(level.unwrap_or(LevelFilter::INFO)),
    }
}

/// The subscriber [`init`] installs: `filter` (what `RUST_LOG` asks for), less whatever could
/// carry raw traffic, written to `writer` as compact text or as flat JSON lines ([`LambdaJson`]).
pub fn subscriber<W>(filter: Targets, json: bool, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let format: Box<dyn Layer<Registry> + Send + Sync> = if json {
        Box::new(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(LambdaJson)
                .with_writer(writer),
        )
    } else {
        Box::new(tracing_subscriber::fmt::layer().compact().with_writer(writer))
    };
    let never_raw_traffic = filter_fn(|meta: &Metadata<'_>| may_log(meta.target(), *meta.level()));
    // Spans print nothing themselves, but their fields (the request ids) go on every line
    // inside them: an `info` span must be recorded whatever the level, or a line at `warn`
    // would lose the ids of its request.
    let request_spans = filter_fn(|meta: &Metadata<'_>| meta.is_span() && *meta.level() <= Level::INFO);
    tracing_subscriber::registry().with(format.with_filter(filter.or(request_spans).and(never_raw_traffic)))
}

/// One JSON object per line, flat: `timestamp`, `level`, `message` and `target` first, then
/// the fields of the spans the line is in (outermost first, an inner span's value winning) and
/// the line's own. Lambda reads `level` (its log-level filter) and `timestamp`; Logs Insights
/// finds every top-level key without a `fields.` or `span.` prefix.
pub struct LambdaJson;

/// The keys every line starts with; a field of the same name does not repeat them.
const LINE_KEYS: [&str; 4] = ["timestamp", "level", "message", "target"];

impl<S, N> FormatEvent<S, N> for LambdaJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Map::new();
        for span in ctx.event_scope().into_iter().flat_map(|scope| scope.from_root()) {
            // Span fields were written as a JSON object by `JsonFields`.
            if let Some(written) = span.extensions().get::<FormattedFields<N>>()
                && let Ok(Value::Object(span_fields)) = serde_json::from_str::<Value>(written)
            {
                fields.extend(span_fields);
            }
        }
        event.record(&mut JsonVisitor(&mut fields));
        let meta = event.metadata();
        // A line without a message (sqlx's query lines) is named by its summary, else its
        // place in the code.
        let message = fields
            .remove("message")
            .or_else(|| fields.get("summary").cloned())
            .unwrap_or_else(|| Value::String(meta.name().to_owned()));
        let head = [
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            Value::String(meta.level().to_string()),
            message,
            Value::String(meta.target().to_owned()),
        ];
        let mut line = String::from("{");
        let tail = fields.iter().filter(|(key, _)| !LINE_KEYS.contains(&key.as_str()));
        for (i, (key, value)) in
            LINE_KEYS.iter().copied().zip(head.iter()).chain(tail.map(|(k, v)| (k.as_str(), v))).enumerate()
        {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&serde_json::to_string(key).map_err(|_| fmt::Error)?);
            line.push(':');
            line.push_str(&serde_json::to_string(value).map_err(|_| fmt::Error)?);
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// Records a line's fields as JSON values: numbers and booleans as such, anything else as its
/// text (`Display` for strings and errors, `Debug` otherwise, as `tracing` hands them over).
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().to_owned(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
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

/// Serves `request` with `serve` (the rest of the app's one layer, [`crate::http::app::service`]):
/// gives the request its id (API Gateway's, else Lambda's, else a new one), runs it inside a
/// span carrying that id (`apiRequestId`) and Lambda's (`requestId`, on Lambda), logs one line
/// with the outcome, and echoes the id in `x-request-id`: the id a client sees in an error body
/// and that header is the one on every log line of its request.
pub async fn request_context<F, Fut>(request: Request, serve: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let id = request_id_of(&request);
    let aws_request_id = request.lambda_context_ref().map(|c| c.request_id.clone());
    let span = tracing::info_span!(
        "request",
        apiRequestId = %id,
        requestId = aws_request_id.as_deref(),
        method = %request.method(),
        path = %request.uri().path()
    );
    let started = std::time::Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), serve(request).instrument(span.clone())).await;
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
        // A version 4 UUID from the thread's generator (seeded from the system once), not
        // from a `getrandom` system call per request as `Uuid::new_v4` makes it.
        .unwrap_or_else(|| uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string())
}

/// Log output kept in memory: a `MakeWriter` for a test's tracing subscriber.
#[cfg(any(test, feature = "test-util"))]
#[derive(Clone, Default)]
pub struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(any(test, feature = "test-util"))]
impl CapturedLog {
    /// The lines this thread logs from now on, as Lambda's JSON at the default level (`info`),
    /// until the guard is dropped. A test on a one-thread runtime captures its app's tasks too.
    pub fn on_this_thread() -> (Self, tracing::subscriber::DefaultGuard) {
        let captured = Self::default();
        let guard = tracing::subscriber::set_default(subscriber(filter_of(|_| None), true, captured.clone()));
        (captured, guard)
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[cfg(any(test, feature = "test-util"))]
impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(any(test, feature = "test-util"))]
impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for CapturedLog {
    type Writer = Self;
    fn make_writer(&'w self) -> Self {
        self.clone()
    }
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
        let captured = super::CapturedLog::default();
        let writer = captured.clone();
        let subscriber = subscriber(filter_of(|_| None), true, move || writer.clone());
        let _guard = tracing::subscriber::set_default(subscriber);

        let app = Router::new()
            .route("/boom", axum::routing::get(|| async { Error::internal("a bug") }))
            .layer(axum::middleware::from_fn(|request, next: axum::middleware::Next| {
                request_context(request, |r| next.run(r))
            }));
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
            // Flat, as Logs Insights and Lambda's level filter read it.
            assert_eq!(line["apiRequestId"], "api-req-42", "{line}");
            assert_eq!(line["requestId"], "aws-req-7", "{line}");
            assert!(line["message"].as_str().is_some_and(|m| !m.is_empty()), "{line}");
            let timestamp = line["timestamp"].as_str().unwrap();
            assert!(chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(), "{line}");
            assert!(["ERROR", "WARN", "INFO"].contains(&line["level"].as_str().unwrap()), "{line}");
            assert!(line.get("fields").is_none() && line.get("span").is_none(), "{line}");
        }
        let served = lines.iter().find(|l| l["message"] == "served").expect("the request's line");
        assert_eq!(
            (&served["status"], &served["method"], &served["path"]),
            (&500.into(), &"GET".into(), &"/boom".into())
        );
    }

    #[test]
    fn a_line_keeps_its_own_keys_first_and_every_field_once() {
        let captured = super::CapturedLog::default();
        let writer = captured.clone();
        let subscriber = subscriber(filter_of(|_| None), true, move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("outer", requestId = "r-1", depth = 1);
            let _outer = outer.enter();
            let inner = tracing::info_span!("inner", depth = 2, level = "a field named like a key");
            let _inner = inner.enter();
            tracing::warn!(
                count = 3_u64,
                ok = true,
                ratio = 0.5,
                quote = "a \"quoted\"\nline",
                "it \"went\" well"
            );
        });
        let text = captured.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with(r#"{"timestamp":""#), "{text}");
        let line: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "it \"went\" well");
        assert_eq!(line["requestId"], "r-1", "{text}");
        assert_eq!(line["depth"], 2, "the inner span wins");
        assert_eq!((&line["count"], &line["ok"], &line["ratio"]), (&3.into(), &true.into(), &0.5.into()));
        assert_eq!(line["quote"], "a \"quoted\"\nline");
        assert_eq!(text.matches(r#""level":"#).count(), 1, "{text}");
    }

    #[test]
    fn at_warn_a_line_keeps_the_ids_of_its_request_and_a_line_without_message_gets_one() {
        let captured = super::CapturedLog::default();
        let writer = captured.clone();
        let warn = filter_of(|k| (k == "AWS_LAMBDA_LOG_LEVEL").then(|| "WARN".to_owned()));
        tracing::subscriber::with_default(subscriber(warn, true, move || writer.clone()), || {
            let request = tracing::info_span!("request", apiRequestId = "api-1", requestId = "aws-1");
            let _request = request.enter();
            tracing::info!("not at warn");
            tracing::warn!(summary = "SELECT 1", rows = 1_u64);
            tracing::warn!(rows = 2_u64);
        });
        let lines: Vec<serde_json::Value> =
            captured.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{}", captured.text());
        for line in &lines {
            assert_eq!(
                (&line["apiRequestId"], &line["requestId"]),
                (&"api-1".into(), &"aws-1".into()),
                "{line}"
            );
        }
        assert_eq!(lines[0]["message"], "SELECT 1");
        assert!(
            lines[1]["message"].as_str().unwrap().starts_with("event shared/src/infra/telemetry.rs:"),
            "{}",
            lines[1]
        );
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
        assert!(on(&default, "primer_shared::domain::auth", Level::INFO));
        assert!(!on(&default, "primer_shared::domain::auth", Level::DEBUG));

        let rust_log = filter(&[("RUST_LOG", "warn,primer_shared=debug"), ("AWS_LAMBDA_LOG_LEVEL", "TRACE")]);
        assert!(on(&rust_log, "primer_shared::domain::auth", Level::DEBUG));
        assert!(!on(&rust_log, "sqlx::query", Level::INFO));
        assert!(on(&rust_log, "sqlx::query", Level::WARN));

        // Lambda's levels are upper case, and FATAL is its highest.
        let lambda = filter(&[("RUST_LOG", ""), ("AWS_LAMBDA_LOG_LEVEL", "DEBUG")]);
        assert!(on(&lambda, "chapters", Level::DEBUG));
        assert!(!on(&lambda, "chapters", Level::TRACE));
        let fatal = filter(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")]);
        assert!(on(&fatal, "chapters", Level::ERROR));
        assert!(!on(&fatal, "chapters", Level::WARN));

        // Lambda drops lines below its level: RUST_LOG asks for no more than that.
        let capped = filter(&[("RUST_LOG", "debug,sqlx=trace"), ("AWS_LAMBDA_LOG_LEVEL", "WARN")]);
        assert!(on(&capped, "primer_shared::domain::auth", Level::WARN));
        assert!(!on(&capped, "primer_shared::domain::auth", Level::INFO));
        assert!(!on(&capped, "sqlx::query", Level::INFO));
        let only_targets = filter(&[("RUST_LOG", "primer_shared=trace"), ("AWS_LAMBDA_LOG_LEVEL", "INFO")]);
        assert!(on(&only_targets, "primer_shared::domain::auth", Level::INFO));
        assert!(!on(&only_targets, "primer_shared::domain::auth", Level::DEBUG));
        assert!(
            !on(&only_targets, "sqlx::query", Level::ERROR),
            "RUST_LOG names no default: other targets stay off"
        );

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
        assert!(may_log("primer_shared::domain::tutor", Level::TRACE));
        assert!(may_log("sqlx::query", Level::DEBUG));
    }
}
