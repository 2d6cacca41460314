//! The local runner: every function's routes in one HTTP server on `127.0.0.1:3000` (`PORT`
//! to change), so the code that answers on Lambda answers on a laptop too, streamed replies
//! included, the OpenAPI document at `/api/openapi.json` (the chapters function's) too.
//!
//! On Lambda, API Gateway reads requests off the network; here the runner does, so it bounds
//! what a client may hold (see [`serve`] and [`ConnectionLimits`]): a client that stalls or
//! trickles is answered (or dropped) instead of holding a connection open for ever, and a
//! request whose framing is ambiguous is refused instead of being read as two.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method, header};
use primer_shared::{AppState, app};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub mod openapi;
mod serve;

pub use serve::{ConnectionLimits, serve};

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
