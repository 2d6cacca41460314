//! Credentials where they are contended or inherited: a login racing a password change, and
//! the upgrade of a legacy hash to argon2id pinning exactly the password the old scheme
//! matched.

use axum::http::{Method, StatusCode};
use primer_shared::AppState;
use primer_shared::test_util::{TestApp, TestUser, stored_password_hash, test_config};
use serde_json::json;
use sqlx::PgPool;

/// Better-Auth 1.7.25's scrypt hash of "ﬁancé Å" (ligature, precomposed letters), made by its
/// own hasher.
const SCRYPT_FIANCE: &str = "2350a7ce5931d500d822ac2d5a72bc76:5a46fffaf6deec5287f0d224cf9993b7241e9c1d488173dcdcf099e0d4400f2d8096885ddbd3e9f72ad02083ea662dec1644cd422236c3c7f1f342e7d27d9d8b";

/// crypt(3)'s bcrypt hash of "correct horse battery".
const BCRYPT_BATTERY: &str = "$2b$04$wBO3sCyIUa6HWD3KagSjp.UmofRS0mInbUxKd7aBCUKw4kSOHa4ne";

async fn set_hash(pool: &PgPool, user: &TestUser, hash: &str) {
    sqlx::query!(
        r#"UPDATE "account" SET password = $2 WHERE "userId" = $1 AND "providerId" = 'credential'"#,
        user.id.as_str(),
        hash
    )
    .execute(pool)
    .await
    .unwrap();
}

async fn sessions_of(pool: &PgPool, user: &TestUser) -> i64 {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM "session" WHERE "userId" = $1"#, user.id.as_str())
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Logins with the old password race a password change; whatever interleaving happens, no
/// session opened with the old password survives the change, and the new password is the one
/// stored (the old, upgraded, never overwrites it).
async fn race_logins_against_a_password_change(app: &TestApp, user: &TestUser, old: &str) {
    let changer = app.signed_in(user).await;
    // Three: with the change's own check, within the five checks an account may have in flight.
    let logins: Vec<_> = (0..3)
        .map(|_| {
            let (app, email, old) = (app.clone(), user.email.clone(), old.to_owned());
            tokio::spawn(async move { app.login(&email, &old).await.status })
        })
        .collect();
    let changed = app.change_password(&changer.access_token, old, "a brand new password").await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text());
    for login in logins {
        let status = login.await.unwrap();
        assert!(
            [StatusCode::OK, StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&status),
            "{status}"
        );
    }
    assert_eq!(sessions_of(app.pool(), user).await, 1, "only the changer's session is left");
    assert_eq!(app.me(&changer.access_token).await.status, StatusCode::OK);
    assert_eq!(app.login(&user.email, "a brand new password").await.status, StatusCode::OK);
    assert_eq!(app.login(&user.email, old).await.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_password_change_wins_over_logins_in_flight(pool: PgPool) {
    let app = TestApp::new(pool, auth::router);
    let user = app.signed_up("ada@example.com").await;
    race_logins_against_a_password_change(&app, &user, &user.password).await;
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn an_upgrade_in_flight_never_writes_the_old_password_over_a_new_one(pool: PgPool) {
    let app = TestApp::new(pool, auth::router);
    let user = app.signed_up("ada@example.com").await;
    // A legacy hash: every successful login with it would upgrade it.
    set_hash(app.pool(), &user, BCRYPT_BATTERY).await;
    race_logins_against_a_password_change(&app, &user, "correct horse battery").await;
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_better_auth_hash_is_upgraded_to_the_nfkc_password_it_matched(pool: PgPool) {
    let app = TestApp::new(pool, auth::router);
    let user = app.signed_up("ada@example.com").await;
    set_hash(app.pool(), &user, SCRYPT_FIANCE).await;
    // Typed with "fi" and combining accents: the same password under NFKC.
    let decomposed = "fiance\u{301} A\u{30a}";
    assert_eq!(app.login(&user.email, decomposed).await.status, StatusCode::OK);
    assert!(stored_password_hash(app.pool(), &user.id).await.starts_with("$argon2id$"));
    for typed in [decomposed, "\u{fb01}anc\u{e9} \u{c5}", "fianc\u{e9} \u{c5}"] {
        assert_eq!(app.login(&user.email, typed).await.status, StatusCode::OK, "{typed:?}");
    }
    assert_eq!(app.login(&user.email, "fiance A").await.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_bcrypt_password_longer_than_72_bytes_is_verified_but_never_pinned(pool: PgPool) {
    let app = TestApp::new(pool, auth::router);
    let user = app.signed_up("ada@example.com").await;
    let long = format!("{}-the-tail", "p".repeat(72));
    let hash = bcrypt::hash(&long, 4).unwrap();
    set_hash(app.pool(), &user, &hash).await;

    assert_eq!(app.login(&user.email, &long).await.status, StatusCode::OK);
    // bcrypt saw only 72 bytes: a mistyped tail matches too, and neither may become the hash.
    let typo = format!("{}-the-tall", "p".repeat(72));
    assert_eq!(app.login(&user.email, &typo).await.status, StatusCode::OK);
    assert_eq!(
        stored_password_hash(app.pool(), &user.id).await,
        hash,
        "a long bcrypt password stays verify-only"
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn with_a_better_auth_frontend_its_hashes_are_kept_unless_configured(pool: PgPool) {
    let mut config = test_config();
    config.better_auth_secret = Some("better-auth-secret-shared-with-primer-0123".to_owned().into());
    config.upgrade_better_auth_hashes = false;
    let app = TestApp::with_state(AppState::new(config, pool), auth::router);
    let user = app.signed_up("ada@example.com").await;
    set_hash(app.pool(), &user, SCRYPT_FIANCE).await;
    assert_eq!(app.login(&user.email, "\u{fb01}anc\u{e9} \u{c5}").await.status, StatusCode::OK);
    assert_eq!(
        stored_password_hash(app.pool(), &user.id).await,
        SCRYPT_FIANCE,
        "Better-Auth can still verify it"
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn deleting_an_account_leaves_nothing_behind(pool: PgPool) {
    let app = TestApp::new(pool.clone(), auth::router);
    let user = app.signed_up("ada@example.com").await;
    let failed_checks = || async {
        let checks: i64 = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM password_checks WHERE account IN ('user:' || $1, 'recovery:user:' || $1)"#,
            user.id.as_str(),
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        checks
    };
    assert_eq!(app.login(&user.email, "wrong password").await.status, StatusCode::UNAUTHORIZED);
    // A verification link of the account with a wrong secret: a failed recovery check.
    let link = app.verification_mail(&user.email).token;
    let (selector, _) = link.split_once('.').unwrap();
    let forged = format!("{selector}.{}", "A".repeat(43));
    assert_eq!(app.verify_email(&forged).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(failed_checks().await, 2, "a failed login and a failed token check, with addresses");

    let body = json!({"password": user.password});
    let deleted = app.call(Method::DELETE, "/api/auth/me", Some(&user.access_token), Some(body)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    assert_eq!(failed_checks().await, 0, "the account's failed checks went with it");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn an_account_without_a_password_is_deleted_from_a_fresh_session_only(pool: PgPool) {
    let app = TestApp::new(pool.clone(), auth::router);
    let user = app.signed_up("ada@example.com").await;
    // As a Better-Auth social sign-in leaves it: no credential account.
    sqlx::query!(r#"DELETE FROM "account" WHERE "userId" = $1"#, user.id.as_str())
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query!(
        r#"UPDATE "session" SET "createdAt" = now() - interval '10 minutes' WHERE "userId" = $1"#,
        user.id.as_str()
    )
    .execute(&pool)
    .await
    .unwrap();
    let stale = app.call(Method::DELETE, "/api/auth/me", Some(&user.access_token), Some(json!({}))).await;
    assert_eq!(stale.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", stale.text());
    assert_eq!(stale.json()["error"]["details"][0]["field"], "password");

    sqlx::query!(r#"UPDATE "session" SET "createdAt" = now() WHERE "userId" = $1"#, user.id.as_str())
        .execute(&pool)
        .await
        .unwrap();
    let fresh = app.call(Method::DELETE, "/api/auth/me", Some(&user.access_token), Some(json!({}))).await;
    assert_eq!(fresh.status, StatusCode::NO_CONTENT, "{}", fresh.text());
    assert_eq!(app.me(&user.access_token).await.status, StatusCode::UNAUTHORIZED);
}
