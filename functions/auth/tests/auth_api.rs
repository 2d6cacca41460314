//! The auth routes against a real PostgreSQL database (one per test, from `#[sqlx::test]`).

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use primer_shared::test_util::{TEST_JWT_SECRET, TestApp, TestUser};
use serde_json::{Value, json};
use sqlx::PgPool;

fn app(pool: PgPool) -> TestApp {
    TestApp::new(pool, auth::router)
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn register_login_me_refresh_logout_round_trip(pool: PgPool) {
    let app = app(pool);
    let registered = app.register("Ada@Example.com", "correct horse battery").await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.text());
    let body = registered.json();
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(body["session"]["token_type"], "Bearer");
    assert_eq!(body["session"]["expires_in"], 900);

    let login = app.login("  ADA@example.com ", "correct horse battery").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let user = login.json();
    assert!(user["user"]["last_login"].is_string(), "last_login is set on login");
    let access = user["session"]["access_token"].as_str().unwrap();
    let refresh = user["session"]["refresh_token"].as_str().unwrap();

    let me = app.me(access).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["user"]["id"], body["user"]["id"]);

    let refreshed = app.refresh(refresh).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    let new_access = refreshed.json()["session"]["access_token"].as_str().unwrap().to_owned();
    let new_refresh = refreshed.json()["session"]["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, refresh);
    assert_eq!(app.me(&new_access).await.status, StatusCode::OK);

    assert_eq!(app.logout(&new_access).await.status, StatusCode::NO_CONTENT);
    // Logout takes effect at once, for access tokens and refresh tokens of the session.
    assert_eq!(app.me(&new_access).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.refresh(&new_refresh).await.status, StatusCode::UNAUTHORIZED);
    // The first session (from register) is untouched.
    let first_access = body["session"]["access_token"].as_str().unwrap();
    assert_eq!(app.me(first_access).await.status, StatusCode::OK);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn duplicate_email_in_any_case_is_a_conflict(pool: PgPool) {
    let app = app(pool);
    app.signed_up("grace@example.com").await;
    let again = app.register("GRACE@Example.COM", "another password").await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_code(), "email_taken");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn concurrent_registrations_of_one_email_create_one_user(pool: PgPool) {
    let app = app(pool);
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..8 {
        let app = app.clone();
        attempts.spawn(async move {
            app.register(&format!("Twin@Example.com{}", " ".repeat(i)), "correct horse battery").await.status
        });
    }
    let statuses = attempts.join_all().await;
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    let conflicts = statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count();
    assert_eq!((created, conflicts), (1, 7), "{statuses:?}");
    let users: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM "user""#)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(users, 1);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn wrong_password_and_unknown_email_look_the_same(pool: PgPool) {
    let app = app(pool);
    app.signed_up("alan@example.com").await;
    let wrong = app.login("alan@example.com", "not the password").await;
    let unknown = app.login("nobody@example.com", "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(wrong.error_without_request_id(), unknown.error_without_request_id());
    assert_eq!(wrong.json()["error"]["message"], "invalid email or password");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn bad_bodies_get_the_contract_errors(pool: PgPool) {
    let app = app(pool);
    let raw = |content_type: &'static str, body: String| {
        axum::http::Request::builder()
            .method(Method::POST)
            .uri("/api/auth/register")
            .header("content-type", content_type)
            .body(axum::body::Body::from(body))
            .unwrap()
    };

    let malformed = app.send(raw("application/json", "{\"email\": ".into())).await;
    assert_eq!((malformed.status, malformed.error_code().as_str()), (StatusCode::BAD_REQUEST, "bad_request"));

    let wrong_type = app.send(raw("application/json", r#"{"email": 42}"#.into())).await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);

    let not_json = app.send(raw("text/plain", "email=a@b.c".into())).await;
    assert_eq!(
        (not_json.status, not_json.error_code().as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );

    let huge = json!({"email": "a@example.com", "password": "x".repeat(70 * 1024), "name": "A"}).to_string();
    let too_large = app.send(raw("application/json", huge)).await;
    assert_eq!(
        (too_large.status, too_large.error_code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );

    let invalid = app
        .call(
            Method::POST,
            "/api/auth/register",
            None,
            Some(json!({"email": "not-an-email", "password": "short", "name": ""})),
        )
        .await;
    assert_eq!(
        (invalid.status, invalid.error_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );
    let fields: Vec<String> = invalid.json()["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["email", "password", "name"]);
    let users: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM "user""#)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(users, 0, "nothing is stored from a refused request");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn unknown_routes_and_methods_use_the_error_shape(pool: PgPool) {
    let app = app(pool);
    let missing = app.get("/api/auth/nothing-here", None).await;
    assert_eq!((missing.status, missing.error_code().as_str()), (StatusCode::NOT_FOUND, "not_found"));
    let wrong_method = app.call(Method::PUT, "/api/auth/login", None, None).await;
    assert_eq!(
        (wrong_method.status, wrong_method.error_code().as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    assert!(wrong_method.json()["error"]["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(wrong_method.headers.contains_key("x-request-id"));
}

fn sign(claims: &Value, secret: &str) -> String {
    primer_shared::domain::auth::tokens::install_jwt_crypto();
    jsonwebtoken::encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn claims_for(user: &TestUser, exp_offset: i64, aud: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": user.id, "sid": user.session_id, "iat": now, "exp": now + exp_offset, "iss": "primer", "aud": aud})
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn forged_or_dead_tokens_are_refused(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("eve@example.com").await;
    // The genuine article works, so the refusals below are about what was changed.
    assert_eq!(
        app.me(&sign(&claims_for(&user, 600, "primer-api"), TEST_JWT_SECRET)).await.status,
        StatusCode::OK
    );

    let bad_signature = sign(&claims_for(&user, 600, "primer-api"), "some-other-secret-some-other-secret");
    let expired = sign(&claims_for(&user, -3600, "primer-api"), TEST_JWT_SECRET);
    let wrong_audience = sign(&claims_for(&user, 600, "someone-else"), TEST_JWT_SECRET);
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims_for(&user, 600, "primer-api").to_string())
    );
    let guest = app.guest().await.json()["guest_token"].as_str().unwrap().to_owned();
    for (what, token) in [
        ("bad signature", bad_signature),
        ("expired", expired),
        ("wrong audience", wrong_audience),
        ("alg none", alg_none),
        ("guest token", guest),
        ("garbage", "abc.def.ghi".into()),
    ] {
        let response = app.me(&token).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(response.error_code(), "unauthorized", "{what}");
    }
    assert_eq!(app.get("/api/auth/me", None).await.status, StatusCode::UNAUTHORIZED, "no token");

    // A revoked session.
    let other = app.signed_in(&user).await;
    assert_eq!(app.logout(&other.access_token).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.me(&other.access_token).await.status, StatusCode::UNAUTHORIZED, "revoked session");

    // A deleted user: their still-unexpired token is worthless.
    let doomed = app.signed_up("doomed@example.com").await;
    sqlx::query!(r#"DELETE FROM "user" WHERE id = $1"#, doomed.id.as_str())
        .execute(app.pool())
        .await
        .unwrap();
    assert_eq!(app.me(&doomed.access_token).await.status, StatusCode::UNAUTHORIZED, "deleted user");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn replayed_refresh_token_revokes_the_session(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("mallory@example.com").await;
    let first = app.refresh(&user.refresh_token).await;
    assert_eq!(first.status, StatusCode::OK);
    let newer_refresh = first.json()["session"]["refresh_token"].as_str().unwrap().to_owned();
    let newer_access = first.json()["session"]["access_token"].as_str().unwrap().to_owned();
    // Past the reuse interval (two tabs refreshing at once are in abuse_limits.rs).
    sqlx::query!("UPDATE refresh_token_spent SET spent_at = spent_at - interval '1 minute'")
        .execute(app.pool())
        .await
        .unwrap();

    let replay = app.refresh(&user.refresh_token).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    // The whole session is dead: its newer refresh token and its access tokens too.
    assert_eq!(app.refresh(&newer_refresh).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.me(&newer_access).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.refresh("never-issued").await.status, StatusCode::UNAUTHORIZED);
    let missing = app.call(Method::POST, "/api/auth/refresh", None, Some(json!({}))).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn repeated_failures_are_rate_limited_per_email(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("target@example.com").await;
    let guesser = app.from_ip([10, 0, 0, 8]);
    for _ in 0..5 {
        assert_eq!(guesser.login(&user.email, "wrong password").await.status, StatusCode::UNAUTHORIZED);
    }
    let limited = guesser.login(&user.email, &user.password).await;
    assert_eq!(
        (limited.status, limited.error_code().as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    let retry_after: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    // Limited in the database, for every address the account never signed in from...
    let other_address = app.from_ip([10, 0, 0, 9]);
    assert_eq!(other_address.login(&user.email, &user.password).await.status, StatusCode::TOO_MANY_REQUESTS);
    // ...but not where it signed up.
    assert_eq!(app.login(&user.email, &user.password).await.status, StatusCode::OK);
    // Other emails are not affected.
    let bystander = app.signed_up("bystander@example.com").await;
    assert_eq!(app.login(&bystander.email, &bystander.password).await.status, StatusCode::OK);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn sessions_are_listed_and_revoked_by_their_owner_only(pool: PgPool) {
    let app = app(pool);
    let alice = app.signed_up("alice@example.com").await;
    let alice_phone = app.signed_in(&alice).await;
    let bob = app.signed_up("bob@example.com").await;

    let list = app.get("/api/auth/sessions", Some(&alice.access_token)).await;
    assert_eq!(list.status, StatusCode::OK);
    let sessions = list.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2);
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], alice.session_id.as_str());

    // Bob cannot touch Alice's session, and learns nothing about it.
    let path = format!("/api/auth/sessions/{}", alice_phone.session_id);
    let foreign = app.call(Method::DELETE, &path, Some(&bob.access_token), None).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(app.me(&alice_phone.access_token).await.status, StatusCode::OK);

    let own = app.call(Method::DELETE, &path, Some(&alice.access_token), None).await;
    assert_eq!(own.status, StatusCode::NO_CONTENT);
    assert_eq!(app.me(&alice_phone.access_token).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.me(&alice.access_token).await.status, StatusCode::OK);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn logout_all_ends_every_session(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("many@example.com").await;
    let second = app.signed_in(&user).await;
    let done = app.call(Method::POST, "/api/auth/logout-all", Some(&user.access_token), None).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT);
    assert_eq!(app.me(&user.access_token).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.me(&second.access_token).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.refresh(&second.refresh_token).await.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn password_change_revokes_other_sessions(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("pat@example.com").await;
    let laptop = app.signed_in(&user).await;
    let wrong = app
        .call(
            Method::POST,
            "/api/auth/password",
            Some(&user.access_token),
            Some(json!({"current_password": "nope nope nope", "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong.json()["error"]["details"][0]["field"], "current_password");

    let changed = app
        .call(
            Method::POST,
            "/api/auth/password",
            Some(&user.access_token),
            Some(json!({"current_password": user.password, "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT);
    assert_eq!(app.me(&user.access_token).await.status, StatusCode::OK, "the current session stays");
    assert_eq!(app.me(&laptop.access_token).await.status, StatusCode::UNAUTHORIZED, "other sessions end");
    assert_eq!(app.login(&user.email, &user.password).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(&user.email, "a brand new passphrase").await.status, StatusCode::OK);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn disabled_accounts_get_403(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("gone@example.com").await;
    sqlx::query!(r#"UPDATE "user" SET is_active = false WHERE id = $1"#, user.id.as_str())
        .execute(app.pool())
        .await
        .unwrap();
    let me = app.me(&user.access_token).await;
    assert_eq!((me.status, me.error_code().as_str()), (StatusCode::FORBIDDEN, "account_disabled"));
    assert_eq!(app.login(&user.email, &user.password).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.refresh(&user.refresh_token).await.status, StatusCode::FORBIDDEN);
    // A wrong password still reads as a wrong password: the 403 needs the right one.
    assert_eq!(app.login(&user.email, "wrong password").await.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn account_details_can_be_changed(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ren@example.com").await;
    let body =
        json!({"name": "  Ren  ", "image": "https://example.com/ren.png", "preferences": {"theme": "dark"}});
    let patched = app.call(Method::PATCH, "/api/auth/me", Some(&user.access_token), Some(body)).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let u = &patched.json()["user"];
    assert_eq!((u["name"].as_str(), u["image"].as_str()), (Some("Ren"), Some("https://example.com/ren.png")));

    // Preferences merge; an explicit null image removes it; absent fields stay.
    let body = json!({"image": null, "preferences": {"default_model": "offline-tutor"}});
    let patched = app.call(Method::PATCH, "/api/auth/me", Some(&user.access_token), Some(body)).await;
    let u = &patched.json()["user"];
    assert_eq!(u["preferences"], json!({"theme": "dark", "default_model": "offline-tutor"}));
    assert_eq!((u["name"].as_str(), u["image"].is_null()), (Some("Ren"), true));

    let bad = app
        .call(
            Method::PATCH,
            "/api/auth/me",
            Some(&user.access_token),
            Some(json!({"name": "", "image": "javascript:alert(1)", "preferences": [1]})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["error"]["details"].as_array().unwrap().len(), 3);

    // PostgreSQL cannot store NUL in text or jsonb: a 422 naming the fields, not a 500.
    let body = json!({"image": "https://example.com/\u{0}.png", "preferences": {"theme": "da\u{0}rk"}});
    let nul = app.call(Method::PATCH, "/api/auth/me", Some(&user.access_token), Some(body)).await;
    assert_eq!(nul.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", nul.text());
    let details = nul.json()["error"]["details"].clone();
    let fields: Vec<&str> =
        details.as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["image", "preferences"]);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn preferences_with_extreme_numbers_read_back_unchanged(pool: PgPool) {
    // jsonb keeps a number exactly and prints it without an exponent (f64::MAX as 309
    // digits): reading that back must give the same number, not a 500 on every later
    // request of the account (each one reads the user).
    let app = app(pool);
    let user = app.signed_up("numbers@example.com").await;
    let numbers = json!([
        f64::MAX,
        -1.7976931348623155e308,
        f64::MIN_POSITIVE,
        5e-324,
        7.210397333235553e262,
        -3.0990603269890574e23,
        0.1,
        i64::MIN,
        u64::MAX
    ]);
    let body = json!({"preferences": {"numbers": numbers}});
    let patched = app.call(Method::PATCH, "/api/auth/me", Some(&user.access_token), Some(body)).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    assert_eq!(patched.json()["user"]["preferences"]["numbers"], numbers);
    let me = app.me(&user.access_token).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    assert_eq!(me.json()["user"]["preferences"]["numbers"], numbers);
    assert_eq!(app.login(&user.email, &user.password).await.status, StatusCode::OK);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn deleting_the_account_needs_the_password_and_removes_everything(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("leaving@example.com").await;
    let wrong = app
        .call(
            Method::DELETE,
            "/api/auth/me",
            Some(&user.access_token),
            Some(json!({"password": "not it at all"})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);

    let deleted = app
        .call(
            Method::DELETE,
            "/api/auth/me",
            Some(&user.access_token),
            Some(json!({"password": user.password})),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let left = [
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM "user""#)
            .fetch_one(app.pool())
            .await
            .unwrap(),
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM "session""#)
            .fetch_one(app.pool())
            .await
            .unwrap(),
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM "account""#)
            .fetch_one(app.pool())
            .await
            .unwrap(),
    ];
    assert_eq!(left, [0, 0, 0], "rows left in user, session, account");
    assert_eq!(app.login(&user.email, &user.password).await.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn guest_tokens_are_issued(pool: PgPool) {
    let app = app(pool);
    let guest = app.guest().await;
    assert_eq!(guest.status, StatusCode::CREATED);
    assert!(guest.json()["guest_token"].as_str().is_some_and(|t| t.split('.').count() == 3));
    assert_eq!(guest.json()["expires_in"], 3600);
    let bad_claim = app
        .call(Method::POST, "/api/auth/register", None, Some(json!({"email": "g@example.com", "password": "correct horse battery", "name": "G", "guest_token": "forged"})))
        .await;
    assert_eq!(bad_claim.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_claim.json()["error"]["details"][0]["field"], "guest_token");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn no_response_ever_shows_a_hash(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("secret@example.com").await;
    let again = app.signed_in(&user).await;
    let refreshed = app.refresh(&again.refresh_token).await;
    let bodies = [
        app.register("other@example.com", "correct horse battery").await,
        app.login(&user.email, &user.password).await,
        refreshed,
        app.me(&user.access_token).await,
        app.get("/api/auth/sessions", Some(&user.access_token)).await,
        app.call(Method::PATCH, "/api/auth/me", Some(&user.access_token), Some(json!({"name": "S"}))).await,
    ];
    let stored: Vec<String> = sqlx::query_scalar!(
        r#"SELECT password AS "secret!" FROM "account" UNION ALL SELECT token FROM "session" UNION ALL SELECT token_hash FROM refresh_token_spent"#,
    )
        .fetch_all(app.pool())
        .await
        .unwrap();
    assert!(stored.len() >= 6);
    for response in &bodies {
        let text = response.text();
        assert!(!text.contains("$argon2") && !text.contains("sha256:"), "{text}");
        for secret in &stored {
            assert!(!text.contains(secret.as_str()), "a stored hash leaked: {text}");
        }
    }
}
