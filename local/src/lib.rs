//! The local runner: every function's routes in one HTTP server on `127.0.0.1:3000` (`PORT`
//! to change), so the code that answers on Lambda answers on a laptop too, streamed replies
//! included. It applies the migrations at start-up and serves the OpenAPI document at
//! `/api/openapi.json`.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use axum::serve::ListenerExt as _;
use primer_shared::{AppState, app};

/// The HTTP contract, as the repository keeps it.
const OPENAPI: &str = include_str!("../../openapi.json");

/// Every function's routes, merged.
pub fn routes() -> Router<AppState> {
    auth::routes()
        .merge(profile::routes())
        .merge(chapters::routes())
        .merge(conversations::routes())
        .route("/api/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
}

/// The runner's whole service on `state`.
pub fn router(state: AppState) -> Router {
    app::service(routes(), state)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Without TCP_NODELAY, a streamed reply's small events wait for the reader's delayed ACK
    // of the one before (Nagle): tens of milliseconds per fragment.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown).await
}
