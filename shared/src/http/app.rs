//! The state every function shares and the layers every router gets.

use std::sync::Arc;

use axum::Router;
use axum::body::HttpBody as _;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;

use crate::domain::personalize::cache::Personalizer;
use crate::error::Error;
use crate::infra::blob::{BlobStore, DirStore};
use crate::infra::config::{Config, ConfigError, EmailDelivery, Tokens};
use crate::infra::email::{EmailSender, Outbox};
use crate::infra::model::ModelClient;
use crate::{infra::db, infra::deadline, infra::telemetry};

mod aws;

/// The largest request body any route accepts (docs/api.md: 64 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Built once per cold start and cloned into every request.
#[derive(Clone)]
pub struct AppState {
    /// The configuration read at start-up.
    pub config: Arc<Config>,
    /// The lazily connecting pool.
    pub pool: PgPool,
    /// Where personalized chapters are stored.
    pub blobs: Arc<dyn BlobStore>,
    /// The language model client; `None` when no model is configured (the offline engines answer).
    pub model: Option<Arc<ModelClient>>,
    /// Where e-mail goes: SES, or the outbox folder.
    pub mail: Arc<dyn EmailSender>,
    /// The sign-in providers (GitHub, Google, OpenID Connect), with what this instance has
    /// learnt of them (discovery documents, keys).
    #[cfg(feature = "oauth")]
    pub sign_in: Arc<crate::domain::auth::oauth::providers::Providers>,
}

impl AppState {
    /// The parts of the state personalized chapters are found and made with.
    pub fn personalizer(&self) -> Personalizer<'_> {
        Personalizer {
            pool: &self.pool,
            blobs: self.blobs.as_ref(),
            model: self.model.as_deref(),
            budget: self.config.personalize_budget,
            usage: &self.config.usage,
            timeout: self.config.timeouts.json,
        }
    }

    /// State over an existing pool (tests), storing blobs in the configured local folder and
    /// writing e-mail to the outbox folder; [`AppState::from_env`] uses the bucket and SES when
    /// they are configured.
    pub fn new(config: Config, pool: PgPool) -> Self {
        let blobs = Arc::new(DirStore::new(&config.blob.dir));
        let mail: Arc<dyn EmailSender> = match &config.email.delivery {
            EmailDelivery::Outbox { dir, log_links } => Arc::new(Outbox::new(dir, *log_links)),
            // Only `from_env` builds the SES client (it reads the SDK's configuration).
            EmailDelivery::Ses(_) => {
                Arc::new(Outbox::new(crate::infra::config::default_folder("outbox", false), false))
            }
        };
        let model = model_client(&config);
        #[cfg(feature = "oauth")]
        let sign_in = Arc::new(crate::domain::auth::oauth::providers::Providers::new(&config.sign_in));
        Self {
            config: Arc::new(config),
            pool,
            blobs,
            model,
            mail,
            #[cfg(feature = "oauth")]
            sign_in,
        }
    }

    /// The same state with another blob store.
    pub fn with_blobs(self, blobs: Arc<dyn BlobStore>) -> Self {
        Self { blobs, ..self }
    }

    /// The same state with another model client (tests point it at a stub server).
    pub fn with_model(self, model: Option<Arc<ModelClient>>) -> Self {
        Self { model, ..self }
    }

    /// The same state with another e-mail sender.
    pub fn with_mail(self, mail: Arc<dyn EmailSender>) -> Self {
        Self { mail, ..self }
    }

    /// State from the environment, without connecting to the database yet, for a function that
    /// handles tokens.
    pub async fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_for(Tokens::Handled).await
    }

    /// [`AppState::from_env`] for a function that handles `tokens` or not.
    pub async fn from_env_for(tokens: Tokens) -> Result<Self, ConfigError> {
        let config = Config::from_lookup_for(tokens, |name| std::env::var(name).ok())?;
        let pool = db::lazy_pool(&config)?;
        let aws = aws::Clients::for_config(&config).await?;
        let mut state = Self::new(config, pool);
        if let Some(blobs) = aws.blobs {
            state = state.with_blobs(blobs);
        }
        if let Some(mail) = aws.mail {
            state = state.with_mail(mail);
        }
        Ok(state)
    }
}

/// The model client, when a model is configured and the function was built to call it.
#[cfg(feature = "model")]
fn model_client(config: &Config) -> Option<Arc<ModelClient>> {
    config.model.clone().and_then(|model| {
        // Only a broken TLS setup fails here; the offline engines are the designed fallback.
        ModelClient::new(model)
            .inspect_err(|e| tracing::error!(error = %e, "no model client; the offline engines answer"))
            .ok()
            .map(Arc::new)
    })
}

/// None: a function built without the `model` feature never asks the model (the deployment
/// sets the model's variables for every function alike).
#[cfg(not(feature = "model"))]
fn model_client(_: &Config) -> Option<Arc<ModelClient>> {
    None
}

/// Wraps a function's routes in what every function shares: the request id and its log line,
/// the body limit, the deadline of the request's own work, the contract's 404 and 405, and the
/// error shape on every failure.
pub fn service(routes: Router<AppState>, state: AppState) -> Router {
    let work_deadline = state.config.work_deadline;
    routes
        .fallback(|| async { Error::NotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        // One layer, not three: each `from_fn` layer costs every request a boxed future and a
        // clone of the inner service. The body limit only marks the request for the extractors.
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            every_request(work_deadline, request, next)
        }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// What every request goes through, outermost first: its id and log line
/// ([`telemetry::request_context`]), the body limit and the error shape
/// ([`refuse_oversized_and_shape_errors`]), and the deadline of its own work
/// ([`own_work_within`]).
async fn every_request(work_deadline: std::time::Duration, request: Request, next: Next) -> Response {
    telemetry::request_context(request, |request| {
        refuse_oversized_and_shape_errors(request, |request| own_work_within(work_deadline, request, next))
    })
    .await
}

/// Runs the request with `budget` for its own work (see [`deadline`]): past it, a 503 with
/// `Retry-After`, whatever the request was waiting for. Waiting for the client's body does not
/// count.
async fn own_work_within(budget: std::time::Duration, request: Request, next: Next) -> Response {
    let work = async move { next.run(request.map(deadline::exempt_body)).await };
    match deadline::within(budget, work).await {
        Ok(response) => response,
        Err(overrun) => Error::Unavailable(Box::new(overrun)).into_response(),
    }
}

/// Refuses a body over the limit before any handler runs, even one that ignores its body; and
/// gives the contract's error shape to a failure some layer answered in its own words (axum's
/// plain-text rejections, such as a path segment that is not UTF-8): every 4xx and 5xx is
/// `{"error": {code, message, request_id}}`, whatever produced it.
async fn refuse_oversized_and_shape_errors<F, Fut>(request: Request, serve: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    if is_oversized(&request) {
        return Error::PayloadTooLarge { limit: BODY_LIMIT }.into_response();
    }
    let response = serve(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let said = match axum::body::to_bytes(response.into_body(), 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    Error::from_status(status, said, BODY_LIMIT).into_response()
}

/// Whether the request's body is declared (or known) to be over the limit.
fn is_oversized(request: &Request) -> bool {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let known = declared.or_else(|| request.body().size_hint().exact());
    known.is_some_and(|len| len > BODY_LIMIT as u64)
}

/// Keeps glibc's allocator to one arena. By default glibc gives each thread that contends for
/// `malloc` an arena of its own (up to eight per core) and keeps what is freed in each: under
/// 64 concurrent logins the local runner grew from 11 to 113 MB and stayed there, with one
/// arena it stays under 56 MB at the same throughput (docs/performance.md). A Lambda serves
/// one request at a time, where it changes nothing. Call it first thing in `main`.
pub fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` sets one of the allocator's parameters; it reads no memory of ours.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Turns Nagle's algorithm off on this process's connections to Lambda's Runtime API.
///
/// The Lambda runtime's HTTP client (`lambda_runtime_api_client`, hyper's `HttpConnector`)
/// leaves it on, and a streamed response reaches the Runtime API in several small writes: each
/// one after the first waits for the ACK of the one before, which the receiving side delays by
/// about 40 ms. Measured with `bench/run`'s Runtime API: 43 ms per streamed answer with Nagle,
/// 1.7 ms without. The client is built inside `lambda_runtime` with no way to pass a connector,
/// so its sockets are found by their peer, `api` (`AWS_LAMBDA_RUNTIME_API`), among the
/// process's descriptors. Called as each streamed invocation starts: its response goes out on
/// the connection that brought the event.
pub fn runtime_api_without_nagle(api: std::net::SocketAddr) {
    crate::infra::sockets::for_each_connection_to(
        |peer| peer == api,
        |socket| {
            let _ = socket.set_tcp_nodelay(true);
        },
    );
}

/// The Runtime API's address (`AWS_LAMBDA_RUNTIME_API`), read once at start-up.
fn runtime_api_address() -> Option<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    std::env::var("AWS_LAMBDA_RUNTIME_API").ok()?.to_socket_addrs().ok()?.next()
}

/// The whole `main` of a function: logging, state from the environment, then Lambda's loop.
/// A configuration error ends the cold start with a message saying what is missing.
pub async fn run_on_lambda(router: fn(AppState) -> Router) -> Result<(), lambda_http::Error> {
    limit_allocator_arenas();
    telemetry::init();
    let state =
        AppState::from_env().await.inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    lambda_http::run(router(state)).await
}

/// [`run_on_lambda`] for a function whose responses stream (behind a function URL in
/// `RESPONSE_STREAM` mode): each response's body goes out as it is produced.
pub async fn run_streaming_on_lambda(router: fn(AppState) -> Router) -> Result<(), lambda_http::Error> {
    limit_allocator_arenas();
    telemetry::init();
    let state =
        AppState::from_env().await.inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let api = runtime_api_address();
    let app = router(state).layer(middleware::from_fn(move |request: Request, next: Next| async move {
        if let Some(api) = api {
            runtime_api_without_nagle(api);
        }
        next.run(request).await
    }));
    lambda_http::run_with_streaming_response(app).await
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn nagle_goes_off_on_the_connections_to_the_runtime_api_only() {
        let runtime_api = TcpListener::bind("127.0.0.1:0").unwrap();
        let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
        let to_api = [
            TcpStream::connect(runtime_api.local_addr().unwrap()).unwrap(),
            TcpStream::connect(runtime_api.local_addr().unwrap()).unwrap(),
        ];
        let to_elsewhere = TcpStream::connect(elsewhere.local_addr().unwrap()).unwrap();
        // Accepted sockets have the Runtime API's address as their local, not their peer's.
        let (accepted, _) = runtime_api.accept().unwrap();
        for stream in to_api.iter().chain([&to_elsewhere, &accepted]) {
            assert!(!stream.nodelay().unwrap(), "Nagle is on by default");
        }

        super::runtime_api_without_nagle(runtime_api.local_addr().unwrap());

        assert!(to_api.iter().all(|s| s.nodelay().unwrap()), "both connections to the Runtime API");
        assert!(!to_elsewhere.nodelay().unwrap());
        assert!(!accepted.nodelay().unwrap());
    }
}
