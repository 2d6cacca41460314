//! The S3 store against a real S3-compatible server (moto's, started by `scripts/test`):
//! put, get, delete, delete by prefix, and a presigned URL fetched over HTTP, then the
//! personalized route's redirect, and the cache keeping its objects across a profile edit that
//! changes none of the rules' decisions.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::{Credentials, Region, SharedCredentialsProvider};
use axum::http::Method;
use axum::http::{StatusCode, header};
use common::{import_fixture, python_reader, sample_book};
use primer_shared::AppState;
use primer_shared::domain::profile::examples::api_example;
use primer_shared::infra::blob::{BlobStore, KeyPrefix, ObjectKey, S3Store};
use primer_shared::infra::config::S3Config;
use primer_shared::test_util::{TestApp, skipped, test_config};
use primer_shared::{domain::book, http::app};
use serde_json::{Value, json};
use sqlx::PgPool;

/// A store on a new, empty bucket of the local server.
async fn fresh_bucket() -> S3Store {
    let endpoint = std::env::var("PRIMER_TEST_S3_ENDPOINT")
        .expect("PRIMER_TEST_S3_ENDPOINT is not set: run scripts/test, which starts an S3-compatible server");
    let sdk = aws_config::SdkConfig::builder()
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test",
            "test",
            None,
            None,
            "primer-tests",
        )))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let bucket = format!("primer-test-{}", uuid::Uuid::new_v4().simple());
    let store = S3Store::new(&sdk, &S3Config::new(bucket.clone(), Some(endpoint), true));
    store.client().create_bucket().bucket(&bucket).send().await.expect("the bucket is created");
    store
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap()
}

#[tokio::test]
async fn many_objects_go_in_one_request_and_missing_ones_count_as_gone() {
    if skipped("moto") {
        return;
    }
    let store = fresh_bucket().await;
    let keys: Vec<ObjectKey> = (0..5).map(|n| key(&format!("personalized/u1/1/v1-{n}.md"))).collect();
    for k in &keys[..4] {
        store.put(k, "# x\n".into(), "text/markdown; charset=utf-8").await.unwrap();
    }
    let spared = key("personalized/u2/1/v1-0.md");
    store.put(&spared, "# y\n".into(), "text/markdown; charset=utf-8").await.unwrap();

    assert_eq!(store.delete_many(&keys).await.unwrap(), Vec::<ObjectKey>::new());
    for k in &keys {
        assert_eq!(store.get(k).await.unwrap(), None, "{k}");
    }
    assert!(store.get(&spared).await.unwrap().is_some());
}

#[tokio::test]
async fn objects_round_trip_through_s3() {
    if skipped("moto") {
        return;
    }
    let store = fresh_bucket().await;
    let chapter = key("personalized/u1/1/v1-abc.md");
    assert_eq!(store.get(&chapter).await.unwrap(), None, "a missing key is None, not an error");

    store.put(&chapter, "# Hello\n".into(), "text/markdown; charset=utf-8").await.unwrap();
    assert_eq!(store.get(&chapter).await.unwrap().as_deref(), Some(&b"# Hello\n"[..]));
    let head =
        store.client().head_object().bucket(store.bucket()).key(chapter.as_str()).send().await.unwrap();
    assert_eq!(head.content_type(), Some("text/markdown; charset=utf-8"));

    store.delete(&chapter).await.unwrap();
    assert_eq!(store.get(&chapter).await.unwrap(), None);
    store.delete(&chapter).await.expect("deleting a missing object is fine");
}

#[tokio::test]
async fn a_presigned_url_fetches_the_object_without_credentials() {
    if skipped("moto") {
        return;
    }
    let store = fresh_bucket().await;
    let chapter = key("personalized/u1/2/v3-def.md");
    store.put(&chapter, "# Signed\n".into(), "text/markdown").await.unwrap();

    let url = store.presign_get(&chapter, Duration::from_secs(900)).await.unwrap().expect("S3 presigns");
    assert!(url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires=900"), "{url}");
    let response = primer_shared::test_util::http_get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "# Signed\n");
}

#[tokio::test]
async fn deleting_a_prefix_spares_its_neighbours() {
    if skipped("moto") {
        return;
    }
    let store = fresh_bucket().await;
    for k in ["personalized/u1/1/a.md", "personalized/u1/2/b.md", "personalized/u10/1/c.md"] {
        store.put(&key(k), b"x".to_vec(), "text/markdown").await.unwrap();
    }
    let removed = store.delete_prefix(&KeyPrefix::parse("personalized/u1/").unwrap()).await.unwrap();
    assert_eq!(removed, 2);
    assert_eq!(store.get(&key("personalized/u1/2/b.md")).await.unwrap(), None);
    assert!(store.get(&key("personalized/u10/1/c.md")).await.unwrap().is_some());
    let none = store.delete_prefix(&KeyPrefix::parse("personalized/nobody/").unwrap()).await.unwrap();
    assert_eq!(none, 0);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn the_personalized_route_redirects_to_a_presigned_url(pool: PgPool) {
    if skipped("moto") {
        return;
    }
    let state = AppState::new(test_config(), pool).with_blobs(Arc::new(fresh_bucket().await));
    let app = TestApp::with_state(state, chapters::router);
    import_fixture(app.pool()).await;
    let (reader, _) = python_reader(&app, "reader@example.com").await;

    let redirect =
        app.get("/api/chapters/1/personalized?delivery=redirect", Some(&reader.access_token)).await;
    assert_eq!(redirect.status, StatusCode::FOUND, "{}", redirect.text());
    let location = redirect.headers[header::LOCATION].to_str().unwrap();
    assert!(location.contains(&format!("personalized/{}/1/v1-", reader.id)), "{location}");
    let fetched = primer_shared::test_util::http_get(location).await.unwrap().text().await.unwrap();

    let inline = app.get("/api/chapters/1/personalized?format=json", Some(&reader.access_token)).await.json();
    assert_eq!(inline["cached"], true, "the redirect stored it first");
    assert_eq!(inline["markdown"], fetched.as_str());
}

/// The objects in `store`'s bucket.
async fn objects(store: &S3Store) -> Vec<String> {
    let listed = store.client().list_objects_v2().bucket(store.bucket()).send().await.unwrap();
    listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
}

/// The sample book has one tool passage for VSCode users and others for tools neither profile
/// names (Docker, MuJoCo, Jupyter, ...). Vim instead of VSCode changes one decision of chapter 1
/// and none of the others: chapter 1 is made again, and the other five are served from the
/// objects made before, through the pooler and from S3, with nothing written. Adding Docker
/// changes a decision in chapters 1 and 6: those two are made again, with the Docker passages.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_profile_edit_that_changes_no_decision_writes_nothing(pool: PgPool) {
    if skipped("moto") {
        return;
    }
    let store = Arc::new(fresh_bucket().await);
    let state = AppState::new(test_config(), pool).with_blobs(store.clone());
    let app =
        TestApp::with_state(state, |state| app::service(profile::routes().merge(chapters::routes()), state));
    book::import_dir(app.pool(), &sample_book()).await.unwrap();
    let user = app.signed_up("reader@example.com").await;
    let put = app.call(Method::PUT, "/api/profile", Some(&user.access_token), Some(api_example())).await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    let read_all = || async {
        let mut chapters = Vec::new();
        for chapter in 1..=6 {
            let path = format!("/api/chapters/{chapter}/personalized?format=json");
            let response = app.get(&path, Some(&user.access_token)).await;
            assert_eq!(response.status, StatusCode::OK, "{}", response.text());
            chapters.push(response.json());
        }
        chapters
    };
    let cached =
        |chapters: &[Value]| chapters.iter().map(|c| c["cached"].as_bool().unwrap()).collect::<Vec<_>>();
    let made = read_all().await;
    assert_eq!(cached(&made), [false; 6]);
    assert_eq!(objects(&store).await.len(), 6);

    let patch = |tools: Value| {
        let body = json!({"software_context": {"preferred_tools": tools}});
        async { app.call(Method::PATCH, "/api/profile", Some(&user.access_token), Some(body)).await }
    };
    let patched = patch(json!(["Vim", "ROS"])).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let vim = read_all().await;
    assert_eq!(cached(&vim), [false, true, true, true, true, true], "only chapter 1 reads VSCode");
    for (before, after) in made.iter().zip(&vim).skip(1) {
        assert_eq!(
            (&after["markdown"], &after["fingerprint"]),
            (&before["markdown"], &before["fingerprint"])
        );
        assert_eq!(after["profile_hash"], patched.json()["profile"]["profile_hash"]);
    }
    let vscode_passage = "### Working in Visual Studio Code";
    assert!(made[0]["markdown"].as_str().unwrap().contains(vscode_passage));
    assert!(!vim[0]["markdown"].as_str().unwrap().contains(vscode_passage));
    assert_eq!(objects(&store).await.len(), 7, "one new object, for chapter 1");

    let patched = patch(json!(["Vim", "ROS", "Docker"])).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let docker = read_all().await;
    assert_eq!(cached(&docker), [false, true, true, true, true, false], "chapters 1 and 6 read Docker");
    for chapter in [0, 5] {
        let markdown = docker[chapter]["markdown"].as_str().unwrap();
        assert!(markdown.to_lowercase().contains("docker run"), "chapter {}: {markdown}", chapter + 1);
    }
    assert_eq!(objects(&store).await.len(), 9);
    assert_eq!(common::copies(app.pool()).await, 9, "one row per object");
}
