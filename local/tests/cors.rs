//! A reader's site on another origin calls the runner: the browser's preflight is answered with
//! template.yaml's CORS policy, a listed origin may send its cookies and read the headers the
//! contract tells clients to read, and an origin not listed gets no CORS header at all.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use primer_shared::test_util::{TestApp, TestResponse};
use sqlx::PgPool;

const SITE: &str = "http://localhost:3000";
const OTHER_SITE: &str = "https://book.example.com";
const TEMPLATE: &str = include_str!("../../template.yaml");

fn listed(state: primer_shared::AppState) -> axum::Router {
    local::app_with_origins(state, &format!("{SITE}, {OTHER_SITE}"))
}

fn preflight(origin: &str, path: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization,content-type")
        .body(Body::empty())
        .unwrap()
}

fn get(origin: Option<&str>, path: &str) -> Request<Body> {
    let mut request = Request::builder().uri(path);
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    request.body(Body::empty()).unwrap()
}

fn header(response: &TestResponse, name: impl header::AsHeaderName) -> String {
    response.headers.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

fn cors_headers(response: &TestResponse) -> Vec<String> {
    response
        .headers
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name.starts_with("access-control-"))
        .collect()
}

fn listed_values(value: &str) -> Vec<String> {
    value.split(',').map(|v| v.trim().to_lowercase()).filter(|v| !v.is_empty()).collect()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_listed_site_passes_the_preflight_with_credentials(pool: PgPool) {
    let app = TestApp::new(pool, listed);
    let response = app.send(preflight(SITE, "/api/auth/login")).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(header(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN), SITE);
    assert_eq!(header(&response, header::ACCESS_CONTROL_ALLOW_CREDENTIALS), "true");
    let methods = listed_values(&header(&response, header::ACCESS_CONTROL_ALLOW_METHODS));
    for method in ["get", "post", "put", "patch", "delete"] {
        assert!(methods.iter().any(|m| m == method), "{methods:?}");
    }
    let headers = listed_values(&header(&response, header::ACCESS_CONTROL_ALLOW_HEADERS));
    assert_eq!(headers, local::CORS_ALLOWED_HEADERS);
    assert_eq!(header(&response, header::ACCESS_CONTROL_MAX_AGE), "7200");
    assert!(header(&response, header::VARY).to_lowercase().contains("origin"));

    // The second listed origin is echoed as itself, never as the list.
    let response = app.send(preflight(OTHER_SITE, "/api/auth/login")).await;
    assert_eq!(header(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN), OTHER_SITE);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_listed_site_reads_the_request_id_of_answers_and_errors(pool: PgPool) {
    let app = TestApp::new(pool, listed);
    // A success and an error (no token): the page can quote the request id of either.
    for (path, status) in [("/api/chapters", StatusCode::OK), ("/api/auth/me", StatusCode::UNAUTHORIZED)] {
        let response = app.send(get(Some(SITE), path)).await;
        assert_eq!(response.status, status, "{path}");
        assert_eq!(header(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN), SITE, "{path}");
        assert_eq!(header(&response, header::ACCESS_CONTROL_ALLOW_CREDENTIALS), "true", "{path}");
        let exposed = listed_values(&header(&response, header::ACCESS_CONTROL_EXPOSE_HEADERS));
        assert_eq!(exposed, local::CORS_EXPOSED_HEADERS, "{path}");
        assert!(!header(&response, "x-request-id").is_empty(), "{path}");
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn an_origin_not_listed_gets_no_cors_header(pool: PgPool) {
    let app = TestApp::new(pool, listed);
    for origin in ["https://evil.example", "http://localhost:3001", "null"] {
        let response = app.send(preflight(origin, "/api/auth/login")).await;
        assert_eq!(cors_headers(&response), Vec::<String>::new(), "preflight from {origin}");
        // The server answers; the browser keeps the answer from the page.
        let response = app.send(get(Some(origin), "/api/chapters")).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(cors_headers(&response), Vec::<String>::new(), "GET from {origin}");
    }
    // Nor does a request that names no origin (curl, a same-origin page).
    let response = app.send(get(None, "/api/chapters")).await;
    assert_eq!(cors_headers(&response), Vec::<String>::new());
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn any_origin_by_default_but_never_with_credentials(pool: PgPool) {
    for origins in ["*", "", "http://localhost:3000, *"] {
        let app = TestApp::new(pool.clone(), |state| local::app_with_origins(state, origins));
        let response = app.send(preflight("https://anyone.example", "/api/auth/login")).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(header(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*", "{origins:?}");
        assert_eq!(header(&response, header::ACCESS_CONTROL_ALLOW_CREDENTIALS), "", "{origins:?}");
        let response = app.send(get(Some("https://anyone.example"), "/api/chapters")).await;
        assert_eq!(header(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
        assert_eq!(header(&response, header::ACCESS_CONTROL_ALLOW_CREDENTIALS), "");
        let exposed = listed_values(&header(&response, header::ACCESS_CONTROL_EXPOSE_HEADERS));
        assert_eq!(exposed, local::CORS_EXPOSED_HEADERS);
    }
}

/// The `key: value` lines of the block that follows the line `opening` in template.yaml, as
/// written (flow-style lists included), up to the first line indented less than its first.
fn template_block(opening: &str) -> BTreeMap<String, String> {
    let mut lines = TEMPLATE.lines().skip_while(|line| line.trim() != opening).skip(1).peekable();
    let first = lines.peek().unwrap_or_else(|| panic!("no {opening} in template.yaml"));
    let indent = first.len() - first.trim_start().len();
    lines
        .take_while(|line| line.len() - line.trim_start().len() >= indent)
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.trim().split_once(": "))
        .map(|(key, value)| (key.to_lowercase(), value.to_owned()))
        .collect()
}

fn flow_list(value: &str) -> Vec<String> {
    listed_values(value.trim_start_matches('[').trim_end_matches(']'))
}

#[test]
fn the_http_api_and_the_function_url_have_the_runners_policy() {
    let api = template_block("x-amazon-apigateway-cors:");
    let function_url = template_block("Cors:");
    let methods: Vec<String> = local::CORS_METHODS.iter().map(|m| m.as_str().to_lowercase()).collect();
    let max_age = local::CORS_MAX_AGE.as_secs().to_string();
    for (name, block) in [("the HTTP API", &api), ("the function URL", &function_url)] {
        assert_eq!(block["alloworigins"], "!Ref CorsAllowOrigins", "{name}");
        assert_eq!(block["allowcredentials"], "!If [CorsOriginsListed, true, false]", "{name}");
        assert_eq!(flow_list(&block["allowheaders"]), local::CORS_ALLOWED_HEADERS, "{name}");
        assert_eq!(flow_list(&block["exposeheaders"]), local::CORS_EXPOSED_HEADERS, "{name}");
        assert_eq!(block["maxage"], max_age, "{name}");
    }
    assert_eq!(flow_list(&api["allowmethods"]), methods);
    // The function URL serves only the two streamed POSTs; it answers preflights itself.
    assert_eq!(flow_list(&function_url["allowmethods"]), ["post"]);
    // Credentials only with listed origins, "*" standing alone.
    assert!(
        TEMPLATE.contains(r#"CorsOriginsListed: !Not [!Equals [!Join [",", !Ref CorsAllowOrigins], "*"]]"#)
    );
}
