//! The local runner: every function's routes in one HTTP server on `127.0.0.1:8790` (`PORT`
//! to change), so the code that answers on Lambda answers on a laptop too, streamed replies
//! included, the OpenAPI document at `/api/openapi.json` (the chapters function's) too. Beside
//! the API it serves the example site of `examples/web` ([`site`]), for development only.
//!
//! On Lambda, API Gateway reads requests off the network; here the runner does, so it bounds
//! what a client may hold (see [`serve`] and [`ConnectionLimits`]): a client that stalls or
//! trickles is answered (or dropped) instead of holding a connection open for ever, and a
//! request whose framing is ambiguous is refused instead of being read as two.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use primer_shared::{AppState, http::app};
use tower::layer::util::{Identity, Stack};
use tower::util::MapResponseLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub mod openapi;
mod serve;
pub mod site;

/// The runner's port without `PORT`: neither 3000 (Docusaurus, Next.js) nor 5173 (Vite), the
/// ports a textbook site's own dev server takes.
pub const DEFAULT_PORT: u16 = 8790;

pub use serve::{ConnectionLimits, serve};

/// Every function's routes, merged.
pub fn routes() -> Router<AppState> {
    auth::routes().merge(profile::routes()).merge(chapters::routes()).merge(conversations::routes())
}

/// The whole API over `state`, as the runner serves it, with the example site beside it, and
/// CORS for the origins in `PRIMER_CORS_ORIGINS` (see [`app_with_origins`]; `*`, the default,
/// for any).
pub fn app(state: AppState) -> Router {
    let origins = std::env::var("PRIMER_CORS_ORIGINS").unwrap_or_else(|_| "*".into());
    app_with_origins(state, &origins)
}

/// [`app`] with CORS for `origins` (comma-separated), so that a reader's site on another port
/// can call it, as API Gateway's CORS lets it in the cloud.
pub fn app_with_origins(state: AppState, origins: &str) -> Router {
    app::service(routes().merge(site::routes()), state).layer(cors(origins))
}

/// The methods a site may call.
pub const CORS_METHODS: [Method; 6] =
    [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];
/// The request headers a site may send besides the CORS-safelisted ones: the bearer token, a
/// JSON content type, and `Accept: text/event-stream` for a streamed reply.
pub const CORS_ALLOWED_HEADERS: [&str; 3] = ["authorization", "content-type", "accept"];
/// The response headers a site's JavaScript may read besides the safelisted ones
/// (`Content-Type` and a few others): the request id to quote in a bug report, how long to wait
/// after a 429 or a 503, and where the personalized chapter's 302 leads.
pub const CORS_EXPOSED_HEADERS: [&str; 3] = ["x-request-id", "retry-after", "location"];
/// How long a browser may reuse a preflight's answer: Chromium's ceiling (Firefox takes a day).
pub const CORS_MAX_AGE: Duration = Duration::from_secs(7200);

/// The CORS layer: template.yaml's policy, which a test holds to these constants.
pub type Cors = Stack<CorsLayer, Stack<MapResponseLayer<fn(Response) -> Response>, Identity>>;

/// The CORS policy of template.yaml's HTTP API and function URL for `origins`: explicit origins
/// may send credentials (a Better-Auth session cookie with `credentials: "include"`), `*` (or
/// nothing listed) any origin without credentials, which browsers refuse to combine. An origin
/// not listed gets no CORS header at all, as API Gateway answers it, so the browser keeps the
/// answer from the page.
pub fn cors(origins: &str) -> Cors {
    let origins: Vec<HeaderValue> =
        origins.split(',').map(str::trim).filter(|o| !o.is_empty()).filter_map(|o| o.parse().ok()).collect();
    let any = origins.is_empty() || origins.iter().any(|o| o == "*");
    let layer = CorsLayer::new()
        .allow_origin(if any { AllowOrigin::any() } else { AllowOrigin::list(origins) })
        .allow_credentials(!any)
        .allow_methods(CORS_METHODS)
        .allow_headers(CORS_ALLOWED_HEADERS.map(HeaderName::from_static))
        .expose_headers(CORS_EXPOSED_HEADERS.map(HeaderName::from_static))
        .max_age(CORS_MAX_AGE);
    tower::ServiceBuilder::new()
        .map_response(only_for_an_allowed_origin as fn(Response) -> Response)
        .layer(layer)
        .into_inner()
}

/// Drops the CORS headers of an answer to an origin that is not allowed: tower-http sends all
/// but `Access-Control-Allow-Origin` to any origin.
fn only_for_an_allowed_origin(mut response: Response) -> Response {
    if !response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        let cors: Vec<HeaderName> = response
            .headers()
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in cors {
            response.headers_mut().remove(name);
        }
    }
    response
}
