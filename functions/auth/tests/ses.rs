//! The SES path against a real SESv2-compatible server (moto's, started by `scripts/test`):
//! the sign-up's verification e-mail and a password reset go out through `SendEmail`, are read
//! back from the server's record of sent messages, and their links work.

use std::sync::Arc;

use aws_sdk_sesv2::config::{Credentials, Region, SharedCredentialsProvider};
use axum::http::StatusCode;
use primer_shared::AppState;
use primer_shared::infra::config::{EmailDelivery, SesConfig};
use primer_shared::infra::email::SesSender;
use primer_shared::test_util::{SentMail, TestApp, skipped, test_config};
use serde_json::Value;
use sqlx::PgPool;

fn endpoint() -> String {
    std::env::var("PRIMER_TEST_SES_ENDPOINT").expect(
        "PRIMER_TEST_SES_ENDPOINT is not set: run scripts/test, which starts an SES-compatible server (moto)",
    )
}

/// The auth function sending through SES from `no-reply@<a new domain>`; the domain is
/// verified (an identity) unless `verified` is false. Every test gets its own domain and
/// configuration set, since the server is shared.
async fn app_on_ses(pool: PgPool, verified: bool) -> (TestApp, String) {
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
    let id = uuid::Uuid::new_v4().simple().to_string();
    let domain = format!("primer-{}.example", &id[..12]);
    let ses = SesConfig {
        configuration_set: Some(format!("primer-tests-{}", &id[..12])),
        region: None,
        endpoint: Some(endpoint()),
    };
    let sender = SesSender::new(&sdk, &ses);
    if verified {
        sender.client().create_email_identity().email_identity(&domain).send().await.expect("an identity");
    }
    sender
        .client()
        .create_configuration_set()
        .configuration_set_name(ses.configuration_set.as_deref().unwrap())
        .send()
        .await
        .expect("a configuration set");
    let mut config = test_config();
    config.email.delivery = EmailDelivery::Ses(ses);
    config.email.from_address = format!("no-reply@{domain}");
    config.email.from_name = "Primer Books".into();
    let app = TestApp::with_state(AppState::new(config, pool).with_mail(Arc::new(sender)), auth::router);
    (app, domain)
}

/// The messages the server sent to `address`, oldest first: (envelope sender, message).
async fn sent_to(address: &str) -> Vec<(String, SentMail)> {
    let data: Value = primer_shared::test_util::http_get(format!("{}/moto-api/data.json", endpoint()))
        .await
        .expect("the server's record of sent messages")
        .json()
        .await
        .unwrap();
    data["ses"]["RawMessage"]
        .as_array()
        .expect("moto records raw messages")
        .iter()
        .filter(|m| m["destinations"].as_array().unwrap().iter().any(|d| d == address))
        .map(|m| {
            let raw = m["raw_data"].as_str().unwrap();
            (m["source"].as_str().unwrap().to_owned(), SentMail::parse(raw.as_bytes()))
        })
        .collect()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_reset_sent_through_ses_ends_old_sessions_and_sets_the_new_password(pool: PgPool) {
    if skipped("moto") {
        return;
    }
    let (app, domain) = app_on_ses(pool, true).await;
    let email = format!("ada-{}@example.com", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let user = app.signed_up(&email).await;

    let forgot = app.forgot_password(&email).await;
    assert_eq!(forgot.status, StatusCode::ACCEPTED, "{}", forgot.text());
    let sent = sent_to(&email).await;
    assert_eq!(sent.len(), 2, "the sign-up's verification and the reset");
    let (source, verification) = &sent[0];
    assert_eq!(source, &format!("no-reply@{domain}"));
    assert_eq!(verification.subject, "Confirm your e-mail address");
    let (_, reset) = &sent[1];
    assert_eq!((reset.subject.as_str(), reset.to.as_str()), ("Reset your password", email.as_str()));
    assert_eq!(reset.from, format!("no-reply@{domain}"));
    assert!(
        reset.link.starts_with(&format!(
            "{}/reset-password?token=",
            primer_shared::infra::config::LOCAL_RUNNER_URL
        ))
    );

    let response = app.reset_password(&reset.token, "a brand new passphrase").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(app.me(&user.access_token).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.refresh(&user.refresh_token).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(&email, &user.password).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(&email, "a brand new passphrase").await.status, StatusCode::OK);
    assert_eq!(app.reset_password(&reset.token, "another passphrase").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.verify_email(&verification.token).await.status, StatusCode::NO_CONTENT);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_refused_message_is_a_503_when_asked_for_and_invisible_to_a_forgot_request(pool: PgPool) {
    if skipped("moto") {
        return;
    }
    // The sender's domain is no identity: SES refuses every message.
    let (app, _) = app_on_ses(pool, false).await;
    let email = format!("eve-{}@example.com", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let user = app.signed_up(&email).await; // the sign-up stands though its e-mail failed
    let forgot = app.forgot_password(&email).await;
    let unknown = app.forgot_password("nobody@example.com").await;
    assert_eq!((forgot.status, &forgot.body), (unknown.status, &unknown.body), "nothing tells them apart");
    let resend = app.send_verification(&user.access_token).await;
    assert_eq!(
        (resend.status, resend.error_code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    assert!(!resend.text().contains("identity") && !resend.text().contains("authority"), "{}", resend.text());
    assert!(sent_to(&email).await.is_empty());
}
