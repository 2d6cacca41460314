//! A reader's site on another local port calls the runner: the browser's preflight is answered
//! with template.yaml's CORS policy, and the real request carries the allowed origin.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use primer_shared::test_util::TestApp;
use sqlx::PgPool;

const SITE: &str = "http://localhost:5173";

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn a_site_on_another_port_passes_the_preflight_and_reads_the_answer(pool: PgPool) {
    let app = TestApp::new(pool, local::app);
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/auth/login")
        .header(header::ORIGIN, SITE)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization,content-type")
        .body(Body::empty())
        .unwrap();
    let response = app.send(preflight).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let header =
        |name| response.headers.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert_eq!(header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    let methods = header(header::ACCESS_CONTROL_ALLOW_METHODS);
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(method), "{methods}");
    }
    let headers = header(header::ACCESS_CONTROL_ALLOW_HEADERS).to_lowercase();
    assert!(headers.contains("authorization") && headers.contains("content-type"), "{headers}");
    assert_eq!(header(header::ACCESS_CONTROL_MAX_AGE), "600");

    let request =
        Request::builder().uri("/api/chapters").header(header::ORIGIN, SITE).body(Body::empty()).unwrap();
    let response = app.send(request).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

#[test]
fn a_configured_list_allows_only_its_origins() {
    use tower::{Service, ServiceExt};
    let mut service = tower::ServiceBuilder::new()
        .layer(local::cors("http://localhost:5173, https://book.example.com"))
        .service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(axum::response::Response::new(Body::empty()))
        });
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for (origin, allowed) in
        [(SITE, true), ("https://book.example.com", true), ("https://evil.example", false)]
    {
        let request = Request::builder().uri("/").header(header::ORIGIN, origin).body(Body::empty()).unwrap();
        let response =
            runtime.block_on(async { service.ready().await.unwrap().call(request).await.unwrap() });
        let echoed = response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(echoed.as_deref() == Some(origin), allowed, "{origin}: {echoed:?}");
    }
}
