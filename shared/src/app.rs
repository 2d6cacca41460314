//! The state every function shares and the layers every router gets.

use std::sync::Arc;

use axum::Router;
use axum::body::HttpBody as _;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;

#[cfg(feature = "s3")]
use crate::blob::S3Store;
use crate::blob::{BlobStore, DirStore};
use crate::config::{Config, ConfigError, S3Config};
use crate::error::Error;
use crate::model::ModelClient;
use crate::{db, telemetry};

/// The largest request body any route accepts (API.md: 64 KiB).
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
}

impl AppState {
    /// State over an existing pool (tests), storing blobs in the configured local folder;
    /// [`AppState::from_env`] uses the bucket when one is configured.
    pub fn new(config: Config, pool: PgPool) -> Self {
        let blobs = Arc::new(DirStore::new(&config.blob.dir));
        let model = model_client(&config);
        Self { config: Arc::new(config), pool, blobs, model }
    }

    /// The same state with another blob store.
    pub fn with_blobs(self, blobs: Arc<dyn BlobStore>) -> Self {
        Self { blobs, ..self }
    }

    /// The same state with another model client (tests point it at a stub server).
    pub fn with_model(self, model: Option<Arc<ModelClient>>) -> Self {
        Self { model, ..self }
    }

    /// State from the environment, without connecting to the database yet.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        let pool = db::lazy_pool(&config)?;
        let s3 = match &config.blob.s3 {
            Some(s3) => Some(bucket_store(s3).await?),
            None => None,
        };
        let state = Self::new(config, pool);
        Ok(match s3 {
            Some(s3) => state.with_blobs(s3),
            None => state,
        })
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

/// The bucket store of `s3`.
#[cfg(feature = "s3")]
async fn bucket_store(s3: &S3Config) -> Result<Arc<dyn BlobStore>, ConfigError> {
    Ok(Arc::new(S3Store::from_env(s3).await))
}

/// A function built without the `s3` feature stores no objects: a bucket configured for it is
/// a deployment mistake, refused at cold start rather than ignored.
#[cfg(not(feature = "s3"))]
async fn bucket_store(_: &S3Config) -> Result<Arc<dyn BlobStore>, ConfigError> {
    Err(ConfigError::Invalid {
        name: "PRIMER_BUCKET",
        reason: "this function is built without the s3 feature and stores no objects".into(),
    })
}

/// Wraps a function's routes in what every function shares: the request id and its log line,
/// the body limit, the contract's 404 and 405, and the error shape on every failure.
pub fn service(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(|| async { Error::NotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(reject_oversized_body))
        .layer(middleware::from_fn(shape_errors))
        .layer(middleware::from_fn(telemetry::request_context))
        .with_state(state)
}

/// Gives the contract's error shape to a failure some layer answered in its own words (axum's
/// plain-text rejections, such as a path segment that is not UTF-8): every 4xx and 5xx is
/// `{"error": {code, message, request_id}}`, whatever produced it.
async fn shape_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
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
    Error::from_status(status, said).into_response()
}

/// Refuses a body over the limit before any handler runs, even one that ignores its body.
async fn reject_oversized_body(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let known = declared.or_else(|| request.body().size_hint().exact());
    if known.is_some_and(|len| len > BODY_LIMIT as u64) {
        return Error::PayloadTooLarge { limit: BODY_LIMIT }.into_response();
    }
    next.run(request).await
}

/// The whole `main` of a function: logging, state from the environment, then Lambda's loop.
/// A configuration error ends the cold start with a message saying what is missing.
pub async fn run_on_lambda(router: fn(AppState) -> Router) -> Result<(), lambda_http::Error> {
    telemetry::init();
    let state =
        AppState::from_env().await.inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    lambda_http::run(router(state)).await
}

#[cfg(all(test, not(feature = "s3")))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bucket_is_refused_without_the_s3_feature() {
        let refused = bucket_store(&S3Config::new("primer-staging", None, false)).await.err();
        let err = refused.expect("a function without the s3 feature refuses a bucket");
        assert!(err.to_string().starts_with("PRIMER_BUCKET is invalid"), "{err}");
    }
}
