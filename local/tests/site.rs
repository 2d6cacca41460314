//! The runner serves the example site (examples/web) beside the API, and the two pages e-mailed
//! links open when no `FRONTEND_URL` is set: the link the runner logs at sign-up leads to a page
//! it serves. Nothing outside the site's folder is served.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use primer_shared::test_util::{TestApp, TestResponse};
use sqlx::PgPool;

async fn send(app: &TestApp, method: Method, path: &str) -> TestResponse {
    app.send(Request::builder().method(method).uri(path).body(Body::empty()).unwrap()).await
}

fn content_type(response: &TestResponse) -> String {
    response.headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn the_example_site_and_the_pages_of_emailed_links_are_served(pool: PgPool) {
    let app = TestApp::new(pool, local::app);
    for (path, file, kind) in [
        ("/", "index.html", "text/html"),
        ("/index.html", "index.html", "text/html"),
        ("/app.js", "app.js", "text/javascript"),
        ("/api.js", "api.js", "text/javascript"),
        ("/verify-email?token=abc.def", "verify-email.html", "text/html"),
        ("/reset-password?token=abc.def", "reset-password.html", "text/html"),
    ] {
        let response = send(&app, Method::GET, path).await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
        assert!(content_type(&response).starts_with(kind), "{path}: {}", content_type(&response));
        assert_eq!(
            response.text(),
            std::fs::read_to_string(local::site::dir().join(file)).unwrap(),
            "{path}"
        );
        assert!(response.headers.contains_key("x-request-id"), "{path}");
    }
    // What the two pages post to.
    assert!(send(&app, Method::GET, "/verify-email").await.text().contains("/api/auth/email/verify"));
    assert!(send(&app, Method::GET, "/reset-password").await.text().contains("/api/auth/password/reset"));
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn nothing_outside_the_site_is_served_and_failures_keep_the_error_shape(pool: PgPool) {
    let app = TestApp::new(pool, local::app);
    for path in [
        "/..%2FCargo.toml",
        "/%2e%2e%2Flocal%2FCargo.toml",
        "/..%5CCargo.toml",
        "/missing.js",
        "/api",
        "/web/app.js",
    ] {
        let response = send(&app, Method::GET, path).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}: {}", response.text());
        assert_eq!(response.json()["error"]["code"], "not_found", "{path}");
    }
    let response = send(&app, Method::POST, "/").await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.json()["error"]["code"], "method_not_allowed");
}

#[test]
fn without_frontend_url_links_lead_to_the_runner_on_its_default_port() {
    assert_eq!(
        primer_shared::infra::config::LOCAL_RUNNER_URL,
        format!("http://127.0.0.1:{}", local::DEFAULT_PORT)
    );
    // The ports a textbook site's own dev server takes: Docusaurus and Next.js, Vite.
    assert!(![3000, 5173].contains(&local::DEFAULT_PORT));
}
