//! Verifying the account's address: the e-mail of a sign-up, asking for another, the link that
//! sets `email_verified`, and the switch that keeps the model for verified readers.

use std::collections::HashMap;

use axum::http::{Method, StatusCode};
use primer_shared::domain::owner::Owner;
use primer_shared::domain::usage::{self, Allowance, UsageLimits};
use primer_shared::test_util::{TestApp, tally};

/// How long the reservations of these tests last.
const LEASE: std::time::Duration = std::time::Duration::from_secs(60);
use primer_shared::{Config, Error};
use serde_json::json;
use sqlx::PgPool;

fn app(pool: PgPool) -> TestApp {
    TestApp::new(pool, auth::router)
}

async fn verified(app: &TestApp, access_token: &str) -> bool {
    let me = app.me(access_token).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    me.json()["user"]["email_verified"].as_bool().unwrap()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_sign_up_gets_a_link_that_verifies_the_address_once(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("Ada@Example.com").await;
    assert!(!verified(&app, &user.access_token).await);
    let mail = app.verification_mail("ada@example.com");
    assert_eq!(mail.subject, "Confirm your e-mail address");
    assert!(
        mail.link
            .starts_with(&format!("{}/verify-email?token=", primer_shared::infra::config::LOCAL_RUNNER_URL)),
        "{}",
        mail.link
    );

    // No session needed: the link may be opened on another device.
    let response = app.verify_email(&mail.token).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT, "{}", response.text());
    assert!(verified(&app, &user.access_token).await, "and `me` shows it");

    let again = app.verify_email(&mail.token).await;
    assert_eq!((again.status, again.error_code().as_str()), (StatusCode::BAD_REQUEST, "invalid_token"));
    let resend = app.send_verification(&user.access_token).await;
    assert_eq!(
        (resend.status, resend.error_code().as_str()),
        (StatusCode::CONFLICT, "email_already_verified")
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn another_link_can_be_asked_for_and_the_first_used_retires_the_rest(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    assert_eq!(
        app.call(Method::POST, "/api/auth/email/verify/send", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let sent = app.send_verification(&user.access_token).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text());
    let mails = app.mails_to("ada@example.com", "Confirm");
    assert_eq!(mails.len(), 2);
    assert_ne!(mails[0].token, mails[1].token);
    assert_eq!(app.verify_email(&mails[1].token).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.verify_email(&mails[0].token).await.status, StatusCode::BAD_REQUEST);

    // A reset link is not a verification link, nor the other way round.
    app.forgot_password(&user.email).await;
    let reset = app.reset_mail(&user.email).token;
    assert_eq!(app.verify_email(&reset).await.status, StatusCode::BAD_REQUEST);
    let response = app.call(Method::POST, "/api/auth/email/verify", None, Some(json!({}))).await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn verification_mails_are_limited_per_account_whatever_the_parallelism(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    // The sign-up's e-mail was the first of three this hour.
    let burst = (0..12).map(|_| {
        let (app, token) = (app.clone(), user.access_token.clone());
        tokio::spawn(async move { app.send_verification(&token).await })
    });
    let mut responses = Vec::new();
    for request in burst {
        responses.push(request.await.unwrap());
    }
    assert_eq!(tally(&responses), HashMap::from([(202, 2), (429, 10)]));
    assert_eq!(app.mails_to("ada@example.com", "Confirm").len(), 3);
    // Reset links are counted on their own.
    assert_eq!(app.forgot_password(&user.email).await.status, StatusCode::ACCEPTED);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_verification_link_works_only_for_the_address_it_went_to(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    let token = app.verification_mail("ada@example.com").token;
    // A Better-Auth frontend changed the address since.
    sqlx::query!(r#"UPDATE "user" SET email = 'ada@elsewhere.example' WHERE id = $1"#, user.id.as_str())
        .execute(app.pool())
        .await
        .unwrap();
    assert_eq!(app.verify_email(&token).await.status, StatusCode::BAD_REQUEST);
    assert!(!verified(&app, &user.access_token).await);
}

#[test]
fn the_switch_is_off_by_default_and_on_only_with_a_model() {
    let secret = "s".repeat(40);
    let base = [("DATABASE_URL", "postgres://x"), ("JWT_SECRET", secret.as_str())];
    let config = |extra: &[(&str, &str)]| {
        let vars: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
        Config::from_lookup(move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
            .unwrap()
    };
    assert!(!config(&[]).usage.require_verified_email);
    assert!(
        !config(&[("REQUIRE_VERIFIED_EMAIL", "true")]).usage.require_verified_email,
        "no model, nothing to guard"
    );
    assert!(
        config(&[("REQUIRE_VERIFIED_EMAIL", "true"), ("MODEL_API_KEY", "sk-x")]).usage.require_verified_email
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn with_the_switch_on_the_model_serves_only_verified_readers(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    let limits = UsageLimits { require_verified_email: true, ..UsageLimits::default() };
    let reader = Owner::User(user.id.clone());

    // Posting to the tutor (counted in the transaction that stores the message) and any model
    // call (reserved before it is made): refused.
    let mut tx = app.pool().begin().await.unwrap();
    assert!(matches!(usage::take_message(&mut tx, &reader, &limits).await, Err(Error::EmailUnverified)));
    drop(tx);
    assert!(matches!(
        usage::reserve_tokens(app.pool(), &reader, &limits, 100, LEASE).await,
        Err(Error::EmailUnverified)
    ));
    // Off, nothing changes; guests have their own quota instead.
    assert!(matches!(
        usage::reserve_tokens(app.pool(), &reader, &UsageLimits::default(), 100, LEASE).await,
        Ok(Allowance::Granted(_))
    ));
    let guest = Owner::Guest(uuid::Uuid::new_v4());
    assert!(matches!(
        usage::reserve_tokens(app.pool(), &guest, &limits, 100, LEASE).await,
        Ok(Allowance::Granted(_))
    ));

    assert_eq!(
        app.verify_email(&app.verification_mail(&user.email).token).await.status,
        StatusCode::NO_CONTENT
    );
    let mut tx = app.pool().begin().await.unwrap();
    usage::take_message(&mut tx, &reader, &limits).await.expect("a verified reader may post");
    tx.commit().await.unwrap();
    assert!(matches!(
        usage::reserve_tokens(app.pool(), &reader, &limits, 100, LEASE).await,
        Ok(Allowance::Granted(_))
    ));
}
