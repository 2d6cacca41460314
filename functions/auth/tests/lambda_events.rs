//! Every sample event in `events/` for the auth function, fed through the Lambda entry.

use std::time::Duration;

use primer_shared::domain::auth::recovery::{self, Purpose};
use primer_shared::domain::user::linked::{self, ProviderAccount};
use primer_shared::test_util::github_stub::{GitHubAccount, GitHubStub};
use primer_shared::test_util::{TestApp, TestUser, assert_events_covered, test_config};
use sqlx::PgPool;

/// Each auth event and the status it must get; a user is signed up for those that need one.
const EXPECTED: &[(&str, u16)] = &[
    ("auth-register.json", 201),
    ("auth-login.json", 200),
    ("auth-refresh.json", 200),
    ("auth-logout.json", 204),
    ("auth-logout-all.json", 204),
    ("auth-me-get.json", 200),
    ("auth-me-patch.json", 200),
    ("auth-me-delete.json", 204),
    ("auth-password.json", 204),
    ("auth-sessions-list.json", 200),
    ("auth-sessions-delete.json", 204),
    ("auth-guest.json", 201),
    ("auth-password-forgot.json", 202),
    ("auth-password-reset.json", 200),
    ("auth-email-verify-send.json", 202),
    ("auth-email-verify.json", 204),
    ("auth-oauth-providers.json", 200),
    ("auth-oauth-start.json", 302),
    ("auth-oauth-callback.json", 302),
    ("auth-oauth-link.json", 200),
    ("auth-oauth-exchange.json", 200),
    ("auth-accounts-list.json", 200),
    ("auth-accounts-delete.json", 204),
];

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn every_auth_event_gets_its_status(pool: PgPool) {
    // GitHub through the test kit's stub, for the sign-in routes.
    let stub = GitHubStub::start().await;
    let mut config = test_config();
    stub.configure(&mut config);
    let app = TestApp::with_config(pool, config, auth::router);
    assert_events_covered(&["auth-"], EXPECTED);

    for (i, (name, expected)) in EXPECTED.iter().enumerate() {
        // A fresh user per event, so one event's effect (logout, delete) cannot spoil another.
        let user: TestUser = app.signed_up(&format!("event{i}@example.com")).await;
        let other_session = app.signed_in(&user).await;
        let token =
            |purpose| recovery::issue(app.pool(), purpose, &user.id, &user.email, Duration::from_secs(60));
        let reset = token(Purpose::PasswordReset).await.unwrap().expose();
        let verify = token(Purpose::VerifyEmail).await.unwrap().expose();
        // A sign-in started and approved at GitHub, for the callback's code and state; another
        // one finished, for a one-time code; and a GitHub account of the user's, to remove.
        let github =
            GitHubAccount::new(1000 + i as u64, &format!("event{i}"), &format!("gh{i}@example.com"), true);
        stub.sign_in_as(&github);
        let back =
            url::Url::parse(&stub.approve(&app.redirected("/api/auth/oauth/github/start").await)).unwrap();
        let from_github: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
        let other =
            GitHubAccount::new(2000 + i as u64, &format!("other{i}"), &format!("other{i}@example.com"), true);
        let finished = app.sign_in_with_github(&stub, &other, None).await;
        let sign_in_code = finished.split_once("#code=").unwrap().1.to_owned();
        let linked = ProviderAccount { provider: "github", account_id: &format!("{}", 3000 + i), scope: "" };
        linked::link(app.pool(), &user.id, &linked).await.unwrap();
        let substitutions = [
            ("REPLACE_WITH_ACCESS_TOKEN", user.access_token.as_str()),
            ("REPLACE_WITH_REFRESH_TOKEN", &user.refresh_token),
            ("REPLACE_WITH_SESSION_ID", &other_session.session_id),
            ("REPLACE_WITH_RESET_TOKEN", &reset),
            ("REPLACE_WITH_VERIFY_TOKEN", &verify),
            ("REPLACE_WITH_PROVIDER_CODE", &from_github["code"]),
            ("REPLACE_WITH_STATE", &from_github["state"]),
            ("REPLACE_WITH_SIGN_IN_CODE", &sign_in_code),
        ];
        let response = app.send_sample_event(name, &substitutions, *expected).await;
        if *name == "auth-oauth-callback.json" {
            // Through the Lambda entry the reader comes back signed in.
            let location = response.headers["location"].to_str().unwrap();
            let site = primer_shared::infra::config::LOCAL_RUNNER_URL;
            assert!(location.starts_with(&format!("{site}/#code=")), "{location}");
        }
    }

    // The session opened by the login event records API Gateway's view of the client.
    let session = sqlx::query!(
        r#"SELECT s."ipAddress", s."userAgent" FROM "session" s JOIN "user" u ON u.id = s."userId"
           WHERE u.email = 'ada@example.com' ORDER BY s."createdAt" DESC LIMIT 1"#,
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    let (ip, agent): (Option<String>, Option<String>) = (session.ipAddress, session.userAgent);
    assert!(ip.is_some_and(|ip| ip.starts_with("203.0.113.")));
    assert!(agent.is_some());
}
