//! template.yaml, the routers and openapi.json name the same routes. API Gateway sends each
//! HttpApi event of template.yaml to one function, so that function's router must serve it:
//! a route mounted in another crate works locally (the runner merges every router) and is a
//! 404 when deployed. And the contract lists exactly the deployed routes.

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use primer_shared::test_util::test_config;
use primer_shared::{AppState, http::app};
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt as _;

/// A route: method and path template, as template.yaml and OpenAPI write them.
type Route = (String, String);

const TEMPLATE: &str = include_str!("../../template.yaml");
const OPENAPI: &str = include_str!("../../openapi.json");

/// The HttpApi events of template.yaml, by the function (resource) they belong to. Events are
/// written one per line, in flow style: `Name: {Type: HttpApi, Properties: {..., Method: GET,
/// Path: /api/...}}`.
fn template_routes() -> BTreeMap<String, BTreeSet<Route>> {
    let mut routes: BTreeMap<String, BTreeSet<Route>> = BTreeMap::new();
    let mut resource = String::new();
    for line in TEMPLATE.lines() {
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
            && !name.starts_with('#')
        {
            resource = name.to_owned();
        }
        if !line.contains("Type: HttpApi") {
            continue;
        }
        let field = |key: &str| {
            let value = line.split(key).nth(1).unwrap_or_else(|| panic!("no {key} in {line}")).trim();
            match value.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next().unwrap().to_owned(),
                None => value.split([',', '}']).next().unwrap().trim().to_owned(),
            }
        };
        routes.entry(resource.clone()).or_default().insert((field("Method:"), field("Path:")));
    }
    routes
}

fn openapi_routes() -> BTreeSet<Route> {
    let document: Value = serde_json::from_str(OPENAPI).unwrap();
    let mut routes = BTreeSet::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys().filter(|k| *k != "parameters") {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

/// Answers with the route template axum matched, in `x-matched-path`; the fallback (no route)
/// has none.
async fn matched_path(request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.headers_mut().insert("x-matched-path", matched.parse().unwrap());
    }
    response
}

/// The route template `function`'s router matches for `method` and `path`, if any.
async fn matched_by(routes: Router<AppState>, pool: &PgPool, method: &str, path: &str) -> Option<String> {
    let state = AppState::new(test_config(), pool.clone());
    let service = app::service(routes.layer(middleware::from_fn(matched_path)), state);
    let uri = path
        .replace("{id}", "00000000-0000-0000-0000-000000000000")
        .replace("{message_id}", "1")
        .replace("{provider}", "github");
    let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let response = service.oneshot(request).await.unwrap();
    response.headers().get("x-matched-path").map(|v| v.to_str().unwrap().to_owned())
}

fn router_of(function: &str) -> Router<AppState> {
    match function {
        "AuthFunction" => auth::routes(),
        "ProfileFunction" => profile::routes(),
        "ChaptersFunction" => chapters::routes(),
        "ConversationsFunction" => conversations::routes(),
        other => panic!("template.yaml routes HTTP to {other}, which this test does not know"),
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn every_template_route_is_served_by_its_functions_router(pool: PgPool) {
    let template = template_routes();
    assert_eq!(
        template.keys().map(String::as_str).collect::<Vec<_>>(),
        ["AuthFunction", "ChaptersFunction", "ConversationsFunction", "ProfileFunction"],
        "the functions behind the HTTP API"
    );
    for (function, routes) in &template {
        for (method, path) in routes {
            let matched = matched_by(router_of(function), &pool, method, path).await;
            assert_eq!(matched.as_deref(), Some(path.as_str()), "{method} {path} in {function}'s router");
        }
    }
}

#[test]
fn the_contract_lists_exactly_the_deployed_routes() {
    let deployed: BTreeSet<Route> = template_routes().into_values().flatten().collect();
    let documented = openapi_routes();
    let missing: Vec<_> = deployed.difference(&documented).collect();
    let undeployed: Vec<_> = documented.difference(&deployed).collect();
    assert!(missing.is_empty(), "deployed but not in openapi.json: {missing:?}");
    assert!(undeployed.is_empty(), "in openapi.json but not in template.yaml: {undeployed:?}");
    assert!(deployed.len() >= 30, "{} routes read from template.yaml", deployed.len());
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_route_of_another_function_is_not_matched(pool: PgPool) {
    // The probe itself: the fallback reports no route, so the test above can fail.
    assert_eq!(matched_by(profile::routes(), &pool, "GET", "/api/auth/me").await, None);
    assert_eq!(
        matched_by(auth::routes(), &pool, "GET", "/api/auth/me").await.as_deref(),
        Some("/api/auth/me")
    );
}

/// The timeouts claims are sized by are the ones template.yaml gives Lambda: every function
/// behind the HTTP API (the `Globals` one), and the streamed replies' function.
#[test]
fn claims_are_sized_by_the_timeouts_template_yaml_gives_the_functions() {
    use primer_shared::infra::config::FunctionTimeouts;
    let timeout_after = |marker: &str| -> u64 {
        let from = TEMPLATE.find(marker).unwrap_or_else(|| panic!("{marker} in template.yaml"));
        let line = TEMPLATE[from..].lines().find(|l| l.trim_start().starts_with("Timeout:")).unwrap();
        line.split(':').nth(1).unwrap().split('#').next().unwrap().trim().parse().unwrap()
    };
    let defaults = FunctionTimeouts::default();
    assert_eq!(timeout_after("\nGlobals:"), defaults.json.as_secs(), "FUNCTION_TIMEOUT_SECS");
    assert_eq!(
        timeout_after("\n  ConversationsStreamFunction:"),
        defaults.stream.as_secs(),
        "STREAM_FUNCTION_TIMEOUT_SECS"
    );
}
