//! Rotating `JWT_SECRET` signs nobody out: after a rotation the new secret signs, the previous
//! one (`JWT_PREVIOUS_SECRETS`) still verifies what it signed, a refresh in flight across the
//! rotation gets the successor its twin got, and a token naming a key nobody has is refused.
//! Two apps over one database stand for the functions before and after the deploy that
//! rotates the secret.

use axum::http::StatusCode;
use jsonwebtoken::{EncodingKey, Header};
use primer_shared::domain::auth::tokens;
use primer_shared::infra::config::{Config, JwtKey, JwtKeys};
use primer_shared::test_util::{TEST_JWT_SECRET, TestApp, test_config};
use serde_json::{Value, json};
use sqlx::PgPool;

const NEW_SECRET: &str = "the-new-secret-after-rotation-0123456789";
const STRANGER: &str = "a-secret-this-deployment-never-had-0123456";

/// The configuration after the rotation: `signing` signs, `previous` still verify.
fn rotated(signing: &str, previous: &[&str]) -> Config {
    let mut config = test_config();
    config.jwt.keys = JwtKeys::new(signing.into(), previous.iter().map(|s| (*s).into()));
    config
}

/// The key id of a token's header.
fn kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).unwrap().kid
}

/// `claims` signed with `secret`, with `kid` in the header (or none).
fn signed(claims: &Value, secret: &str, kid: Option<&str>) -> String {
    tokens::install_jwt_crypto();
    let header = Header { kid: kid.map(str::to_owned), ..Header::default() };
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn key_id(secret: &str) -> String {
    JwtKey::new(secret.into()).id().to_owned()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn tokens_signed_before_a_rotation_still_work_after_it(pool: PgPool) {
    let before = TestApp::new(pool.clone(), auth::router);
    let user = before.signed_up("ada@example.com").await;
    let guest = before.guest_token();
    assert_eq!(kid(&user.access_token), Some(key_id(TEST_JWT_SECRET)), "tokens name their key");
    assert_eq!(kid(&guest), Some(key_id(TEST_JWT_SECRET)));

    let after = TestApp::with_config(pool.clone(), rotated(NEW_SECRET, &[TEST_JWT_SECRET]), auth::router);
    // The old access and guest tokens are accepted until they expire.
    assert_eq!(after.me(&user.access_token).await.status, StatusCode::OK);
    assert!(tokens::verify_guest(&after.state.config.jwt, &guest).is_ok());
    // The session's refresh token was never signed: it refreshes, and the new access token is
    // signed with the new key.
    let refreshed = after.refresh(&user.refresh_token).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    let access = refreshed.json()["session"]["access_token"].as_str().unwrap().to_owned();
    assert_eq!(kid(&access), Some(key_id(NEW_SECRET)));
    assert_eq!(after.me(&access).await.status, StatusCode::OK);
    assert_eq!(kid(&after.guest_token()), Some(key_id(NEW_SECRET)));

    // Once the previous secret is dropped (after the longest token's lifetime), its tokens are
    // refused; the new ones are not.
    let later = TestApp::with_config(pool, rotated(NEW_SECRET, &[]), auth::router);
    assert_eq!(later.me(&user.access_token).await.status, StatusCode::UNAUTHORIZED);
    assert!(tokens::verify_guest(&later.state.config.jwt, &guest).is_err());
    assert_eq!(later.me(&access).await.status, StatusCode::OK);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_key_id_nobody_has_is_refused_and_a_token_without_one_is_tried_with_each_key(pool: PgPool) {
    let before = TestApp::new(pool.clone(), auth::router);
    let user = before.signed_up("grace@example.com").await;
    let app = TestApp::with_config(pool, rotated(NEW_SECRET, &[TEST_JWT_SECRET]), auth::router);
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": user.id, "sid": user.session_id, "iat": now, "exp": now + 600,
        "iss": "primer", "aud": "primer-api"});
    let me = |token: String| {
        let app = &app;
        async move { app.me(&token).await.status }
    };

    // The genuine articles, with their key ids and without (signed before key ids existed).
    assert_eq!(me(signed(&claims, NEW_SECRET, Some(&key_id(NEW_SECRET)))).await, StatusCode::OK);
    assert_eq!(me(signed(&claims, TEST_JWT_SECRET, Some(&key_id(TEST_JWT_SECRET)))).await, StatusCode::OK);
    assert_eq!(me(signed(&claims, NEW_SECRET, None)).await, StatusCode::OK);
    assert_eq!(me(signed(&claims, TEST_JWT_SECRET, None)).await, StatusCode::OK);

    // A key nobody here has, named or not; a known key id on another key's signature; a key id
    // that is no key's, even on a good signature.
    assert_eq!(me(signed(&claims, STRANGER, Some(&key_id(STRANGER)))).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(signed(&claims, STRANGER, None)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(signed(&claims, STRANGER, Some(&key_id(NEW_SECRET)))).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        me(signed(&claims, TEST_JWT_SECRET, Some(&key_id(NEW_SECRET)))).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me(signed(&claims, NEW_SECRET, Some("no-such-key"))).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(signed(&claims, NEW_SECRET, Some(""))).await, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_refresh_in_flight_across_a_rotation_gets_the_successor_its_twin_got(pool: PgPool) {
    let before = TestApp::new(pool.clone(), auth::router);
    let user = before.signed_up("tabs@example.com").await;
    // One tab refreshes just before the deploy that rotates the secret...
    let first = before.refresh(&user.refresh_token).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let first = first.json();

    // ... the other, with the same token, just after it: within the reuse interval it gets
    // the refresh token the first tab got (the successor is keyed with the previous secret),
    // and an access token with the same claims, signed with the new key.
    let after = TestApp::with_config(pool.clone(), rotated(NEW_SECRET, &[TEST_JWT_SECRET]), auth::router);
    let second = after.refresh(&user.refresh_token).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    let second = second.json();
    assert_eq!(second["session"]["refresh_token"], first["session"]["refresh_token"]);
    let claims = |body: &Value| {
        body["session"]["access_token"].as_str().unwrap().split('.').nth(1).unwrap().to_owned()
    };
    assert_eq!(claims(&second), claims(&first));
    for body in [&first, &second] {
        assert_eq!(after.me(body["session"]["access_token"].as_str().unwrap()).await.status, StatusCode::OK);
    }

    // The session lives on: its refresh token rotates under the new key.
    let next = first["session"]["refresh_token"].as_str().unwrap();
    let third = after.refresh(next).await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.text());
    let access = third.json()["session"]["access_token"].as_str().unwrap().to_owned();
    assert_eq!(kid(&access), Some(key_id(NEW_SECRET)));
    assert_eq!(after.me(&access).await.status, StatusCode::OK);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn without_the_previous_secret_a_twin_refresh_looks_like_a_replay(pool: PgPool) {
    // What the runbook warns about: a rotation that keeps no previous secret (after a leak)
    // cannot tell a second tab from a thief, and revokes the session, as a replay does.
    let before = TestApp::new(pool.clone(), auth::router);
    let user = before.signed_up("leak@example.com").await;
    assert_eq!(before.refresh(&user.refresh_token).await.status, StatusCode::OK);

    let after = TestApp::with_config(pool, rotated(NEW_SECRET, &[]), auth::router);
    assert_eq!(after.refresh(&user.refresh_token).await.status, StatusCode::UNAUTHORIZED);
    let sessions: i64 =
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM "session" WHERE id = $1"#, &user.session_id)
            .fetch_one(after.pool())
            .await
            .unwrap();
    assert_eq!(sessions, 0, "the session is revoked");
}
