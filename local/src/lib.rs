//! The local runner: every function's routes in one HTTP server on `127.0.0.1:3000` (`PORT`
//! to change), so the code that answers on Lambda answers on a laptop too, streamed replies
//! included, the OpenAPI document at `/api/openapi.json` (the chapters function's) too.
//!
//! On Lambda, API Gateway reads requests off the network; here the runner does, so it bounds
//! how long a client may take to send its headers and its body: a client that stalls is
//! answered (or dropped) instead of holding a connection open for ever.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, Method, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use primer_shared::{AppState, app};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

pub mod openapi;

/// How long a client may take to send its request: past that, the connection is closed (no
/// headers yet) or the request is answered 400 (a body that stopped short of its length).
#[derive(Debug, Clone, Copy)]
pub struct ReadTimeouts {
    /// For the request line and the headers.
    pub headers: Duration,
    /// For the body, once the headers are in.
    pub body: Duration,
}

impl Default for ReadTimeouts {
    fn default() -> Self {
        Self { headers: Duration::from_secs(10), body: Duration::from_secs(10) }
    }
}

/// Every function's routes, merged.
pub fn routes() -> Router<AppState> {
    auth::routes().merge(profile::routes()).merge(chapters::routes()).merge(conversations::routes())
}

/// The whole API over `state`, as the runner serves it: with CORS for the origins in
/// `PRIMER_CORS_ORIGINS` (comma-separated; `*`, the default, for any), so that a reader's site
/// on another port can call it, as API Gateway's CORS lets it in the cloud.
pub fn app(state: AppState) -> Router {
    let origins = std::env::var("PRIMER_CORS_ORIGINS").unwrap_or_else(|_| "*".into());
    app::service(routes(), state).layer(cors(&origins))
}

/// The CORS policy of template.yaml's HTTP API (methods, headers, max age) for `origins`.
pub fn cors(origins: &str) -> CorsLayer {
    let origins: Vec<HeaderValue> =
        origins.split(',').map(str::trim).filter(|o| !o.is_empty()).filter_map(|o| o.parse().ok()).collect();
    let allowed = if origins.is_empty() || origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins)
    };
    CorsLayer::new()
        .allow_origin(allowed)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: ReadTimeouts,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = app.layer(RequestBodyTimeoutLayer::new(timeouts.body));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer): (tokio::net::TcpStream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: the next accept may work.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without TCP_NODELAY, a streamed reply's small events wait for the reader's delayed ACK
        // of the one before (Nagle): tens of milliseconds per fragment.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
            // What `into_make_service_with_connect_info` would add: the per-IP limits read it.
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(Body::new))
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(timeouts.headers)
            // A header line with control bytes is dropped rather than failing the whole request
            // with hyper's empty 400: the request is then answered in the contract's shape.
            .ignore_invalid_headers(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}
