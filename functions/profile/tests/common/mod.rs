//! What the profile tests share: the app and one method per profile route.

#![allow(dead_code, unused_imports)] // each test binary uses its own subset

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use primer_shared::AppState;
use primer_shared::test_util::{TestApp, TestResponse};
use serde_json::Value;
use sqlx::PgPool;

/// The profile function.
pub fn app(pool: PgPool) -> TestApp {
    TestApp::new(pool, profile::router)
}

/// The profile routes, as a client calls them.
pub trait ProfileRoutes {
    /// `GET /api/profile/options`.
    async fn profile_options(&self) -> TestResponse;
    /// `GET /api/profile`.
    async fn get_profile(&self, token: Option<&str>) -> TestResponse;
    /// `PUT /api/profile`.
    async fn put_profile(&self, token: Option<&str>, body: Value) -> TestResponse;
    /// `PATCH /api/profile` as `application/merge-patch+json`.
    async fn patch_profile(&self, token: Option<&str>, patch: Value) -> TestResponse;
    /// `PATCH /api/profile` with any content type and raw body.
    async fn patch_profile_raw(&self, token: &str, content_type: &str, body: &str) -> TestResponse;
}

impl ProfileRoutes for TestApp {
    async fn profile_options(&self) -> TestResponse {
        self.get("/api/profile/options", None).await
    }

    async fn get_profile(&self, token: Option<&str>) -> TestResponse {
        self.get("/api/profile", token).await
    }

    async fn put_profile(&self, token: Option<&str>, body: Value) -> TestResponse {
        self.call(Method::PUT, "/api/profile", token, Some(body)).await
    }

    async fn patch_profile(&self, token: Option<&str>, patch: Value) -> TestResponse {
        let mut request = Request::builder()
            .method(Method::PATCH)
            .uri("/api/profile")
            .header(header::CONTENT_TYPE, "application/merge-patch+json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(request.body(Body::from(patch.to_string())).unwrap()).await
    }

    async fn patch_profile_raw(&self, token: &str, content_type: &str, body: &str) -> TestResponse {
        let request = Request::builder()
            .method(Method::PATCH)
            .uri("/api/profile")
            .header(header::CONTENT_TYPE, content_type)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.send(request).await
    }
}

pub use primer_shared::domain::profile::examples::{
    api_example as full_profile, seed_000 as seed_000_profile,
};

/// The fields a 422 names.
pub fn invalid_fields(response: &TestResponse) -> Vec<String> {
    assert_eq!(response.status.as_u16(), 422, "{}", response.text());
    assert_eq!(response.error_code(), "validation_failed");
    response.json()["error"]["details"]
        .as_array()
        .expect("a 422 has details")
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_owned())
        .collect()
}
