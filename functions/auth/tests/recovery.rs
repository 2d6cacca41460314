//! A forgotten password, end to end through the outbox: the e-mail, the reset, the sessions it
//! ends; the same answer (and time) for an address with and without an account; tokens that
//! are spent, expired or forged; and the limits, with requests sent at once through the pooler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use primer_shared::AppState;
use primer_shared::infra::config::EmailDelivery;
use primer_shared::infra::email::{EmailFuture, EmailSender, Mail, Outbox};
use primer_shared::test_util::{TestApp, TestResponse, stored_password_hash, tally, test_config};
use serde_json::json;
use sqlx::PgPool;

const NEW_PASSWORD: &str = "a brand new passphrase";

fn app(pool: PgPool) -> TestApp {
    TestApp::new(pool, auth::router)
}

async fn pending_tokens(pool: &PgPool, prefix: &str) -> i64 {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM "verification" WHERE starts_with(identifier, $1)"#,
        prefix
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn forgot_then_reset_ends_every_old_session_and_the_new_password_signs_in(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    let laptop = app.signed_in(&user).await;

    let forgot = app.forgot_password("  ADA@example.com ").await;
    assert_eq!(forgot.status, StatusCode::ACCEPTED, "{}", forgot.text());
    let mail = app.reset_mail("ada@example.com");
    assert_eq!(mail.from, "no-reply@primer.localhost");
    assert_eq!(mail.subject, "Reset your password");
    assert!(
        mail.link.starts_with(&format!(
            "{}/reset-password?token=",
            primer_shared::infra::config::LOCAL_RUNNER_URL
        )),
        "{}",
        mail.link
    );
    assert!(mail.html.contains(&mail.link), "the HTML part carries the same link");
    // Only a hash of the token's secret is stored.
    let (selector, secret) = mail.token.split_once('.').unwrap();
    let stored = sqlx::query!(r#"SELECT identifier, value FROM "verification" WHERE id = $1"#, selector)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(stored.identifier, format!("primer:reset-password:{}", user.id));
    assert!(stored.value.starts_with("sha256:") && !stored.value.contains(secret), "{}", stored.value);

    let reset = app.reset_password(&mail.token, NEW_PASSWORD).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text());
    let body = reset.json();
    assert_eq!(body["user"]["id"], user.id.as_str());
    assert_eq!(body["user"]["email_verified"], true, "the link reached the address");
    assert_eq!(body["session"]["token_type"], "Bearer");
    let fresh = body["session"]["access_token"].as_str().unwrap();
    assert_eq!(app.me(fresh).await.status, StatusCode::OK, "the answer is a signed-in session");

    // Every session from before is gone, access and refresh tokens alike.
    for old in [&user, &laptop] {
        assert_eq!(app.me(&old.access_token).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(app.refresh(&old.refresh_token).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.login(&user.email, &user.password).await.status, StatusCode::UNAUTHORIZED);
    let login = app.login(&user.email, NEW_PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    assert_eq!(pending_tokens(app.pool(), "primer:reset-password:").await, 0, "the token is spent");
    assert!(
        stored_password_hash(app.pool(), &user.id).await.starts_with("$argon2id$"),
        "the new password is argon2id"
    );
}

/// The links point at the configured frontend, a path under it included.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn links_point_at_the_configured_frontend(pool: PgPool) {
    let app = TestApp::with_changed_config(
        pool,
        |c| c.email.frontend_url = "https://book.example.com/read".into(),
        auth::router,
    );
    let user = app.signed_up("ada@example.com").await;
    let verify = app.verification_mail(&user.email);
    assert!(verify.link.starts_with("https://book.example.com/read/verify-email?token="), "{}", verify.link);
    assert_eq!(app.forgot_password(&user.email).await.status, StatusCode::ACCEPTED);
    let reset = app.reset_mail(&user.email);
    assert!(reset.link.starts_with("https://book.example.com/read/reset-password?token="), "{}", reset.link);
    assert!(reset.html.contains(&reset.link) && reset.text.contains(&reset.link));
    assert_eq!(app.reset_password(&reset.token, NEW_PASSWORD).await.status, StatusCode::OK);
}

/// Delivery that takes as long as a call to SES might.
struct SlowDelivery(Outbox, Duration);

impl EmailSender for SlowDelivery {
    fn send<'a>(&'a self, mail: &'a Mail) -> EmailFuture<'a, ()> {
        Box::pin(async move {
            tokio::time::sleep(self.1).await;
            self.0.send(mail).await
        })
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Times `rounds` forgot-password requests for each of two addresses, alternating; returns
/// the responses and the two medians.
async fn time_forgot(
    app: &TestApp,
    known: &str,
    unknown: &str,
    rounds: usize,
) -> (Vec<TestResponse>, Duration, Duration) {
    let (mut responses, mut known_times, mut unknown_times) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (email, times) in [(known, &mut known_times), (unknown, &mut unknown_times)] {
            let started = Instant::now();
            let response = app.forgot_password(email).await;
            times.push(started.elapsed());
            responses.push(response);
        }
    }
    (responses, median(known_times), median(unknown_times))
}

/// The auth function with mail that takes `delivery` to send, and forgot-password answers no
/// sooner than `floor`.
fn app_with_slow_mail(pool: PgPool, delivery: Duration, floor: Duration) -> TestApp {
    let mut config = test_config();
    config.limits.password_forgot.per_address = 1000;
    config.limits.account_mails.per_account = 1000;
    config.email.forgot_min_duration = floor;
    let outbox = match &config.email.delivery {
        EmailDelivery::Outbox { dir, .. } => Outbox::new(dir, false),
        EmailDelivery::Ses(_) => unreachable!("tests write to an outbox"),
    };
    let state = AppState::new(config, pool).with_mail(Arc::new(SlowDelivery(outbox, delivery)));
    TestApp::with_state(state, auth::router)
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn known_and_unknown_addresses_get_the_same_answer_in_the_same_time(pool: PgPool) {
    let delivery = Duration::from_millis(150);
    let floor = Duration::from_millis(400);
    let app = app_with_slow_mail(pool, delivery, floor);
    app.signed_up("known@example.com").await;

    let (responses, known, unknown) = time_forgot(&app, "known@example.com", "nobody@example.com", 9).await;
    assert!(responses.iter().all(|r| r.status == StatusCode::ACCEPTED), "{:?}", tally(&responses));
    assert!(responses.iter().all(|r| r.body == responses[0].body), "one body for both");
    assert_eq!(app.mails_to("known@example.com", "Reset").len(), 9, "the known address got its mails");
    assert_eq!(app.mails_to("nobody@example.com", "").len(), 0);
    let gap = known.abs_diff(unknown);
    println!("forgot-password medians: known {known:?}, unknown {unknown:?}, gap {gap:?} (floor {floor:?})");
    assert!(known >= floor && unknown >= floor, "{known:?} {unknown:?}");
    assert!(gap < Duration::from_millis(50), "known {known:?} vs unknown {unknown:?}");

    // The same measurement tells the difference when the floor is off: the test can fail.
    let bare = app_with_slow_mail(app.pool().clone(), delivery, Duration::ZERO);
    let (_, known, unknown) = time_forgot(&bare, "known@example.com", "nobody@example.com", 3).await;
    println!("without the floor: known {known:?}, unknown {unknown:?}");
    assert!(known > unknown + delivery / 2, "known {known:?} vs unknown {unknown:?}");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn spent_expired_and_forged_tokens_are_one_400_and_change_nothing(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    app.forgot_password(&user.email).await;
    let spent = app.reset_mail(&user.email).token;
    let reset = app.reset_password(&spent, NEW_PASSWORD).await;
    assert_eq!(reset.status, StatusCode::OK);
    let access = reset.json()["session"]["access_token"].as_str().unwrap().to_owned();
    let hash = stored_password_hash(app.pool(), &user.id).await;

    app.forgot_password(&user.email).await;
    let expired = app.reset_mail(&user.email).token;
    sqlx::query!(
        r#"UPDATE "verification" SET "expiresAt" = now() - interval '1 second' WHERE id = $1"#,
        expired.split_once('.').unwrap().0
    )
    .execute(app.pool())
    .await
    .unwrap();

    app.forgot_password(&user.email).await;
    let live = app.reset_mail(&user.email).token;
    let (selector, secret) = live.split_once('.').unwrap();
    let mut flipped = secret.as_bytes().to_vec();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    // The reset verified the address; an unverified one has a verification link to misuse.
    sqlx::query!(r#"UPDATE "user" SET "emailVerified" = false WHERE id = $1"#, user.id.as_str())
        .execute(app.pool())
        .await
        .unwrap();
    assert_eq!(app.send_verification(&access).await.status, StatusCode::ACCEPTED);
    let verification = app.verification_mail(&user.email).token;
    let forged = [
        ("spent", spent.clone()),
        ("expired", expired.clone()),
        ("another secret", format!("{selector}.{}", "x".repeat(43))),
        ("one character changed", format!("{selector}.{}", String::from_utf8(flipped).unwrap())),
        ("made up", format!("{}.{}", uuid::Uuid::new_v4().simple(), "y".repeat(43))),
        ("a verification token", verification),
        ("the selector alone", selector.to_owned()),
        ("a Better-Auth-shaped token", "a".repeat(24)),
        ("not a token at all", "'; DROP TABLE verification; --".to_owned()),
    ];
    let mut bodies = Vec::new();
    for (what, token) in &forged {
        let response = app.from_ip([10, 0, 0, 9]).reset_password(token, "yet another passphrase").await;
        assert_eq!(
            (response.status, response.error_code().as_str()),
            (StatusCode::BAD_REQUEST, "invalid_token"),
            "{what}"
        );
        bodies.push(response.error_without_request_id());
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "one answer for every bad token: {bodies:?}");
    assert_eq!(stored_password_hash(app.pool(), &user.id).await, hash, "the password is unchanged");
    assert_eq!(app.login(&user.email, NEW_PASSWORD).await.status, StatusCode::OK);

    // A token works only for the address it was sent to.
    sqlx::query!(r#"UPDATE "user" SET email = 'ada.new@example.com' WHERE id = $1"#, user.id.as_str())
        .execute(app.pool())
        .await
        .unwrap();
    assert_eq!(app.reset_password(&live, "yet another passphrase").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(stored_password_hash(app.pool(), &user.id).await, hash);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_new_link_retires_none_but_a_reset_retires_them_all(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    app.forgot_password(&user.email).await;
    let first = app.reset_mail(&user.email).token;
    app.forgot_password(&user.email).await;
    let second = app.reset_mail(&user.email).token;
    assert_ne!(first, second);
    // Either link works (mail arrives out of order); once one did, the other is dead.
    assert_eq!(app.reset_password(&first, NEW_PASSWORD).await.status, StatusCode::OK);
    assert_eq!(app.reset_password(&second, "yet another passphrase").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.login(&user.email, NEW_PASSWORD).await.status, StatusCode::OK);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn bad_requests_are_422_and_disabled_accounts_get_no_link(pool: PgPool) {
    let app = app(pool);
    for body in [json!({}), json!({"email": "not-an-email"})] {
        let response = app.call(Method::POST, "/api/auth/password/forgot", None, Some(body)).await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", response.text());
        assert_eq!(response.json()["error"]["details"][0]["field"], "email");
    }
    let response = app
        .call(Method::POST, "/api/auth/password/reset", None, Some(json!({"new_password": "short"})))
        .await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    let details = response.json()["error"]["details"].clone();
    let fields: Vec<&str> =
        details.as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["token", "new_password"]);

    let user = app.signed_up("mallory@example.com").await;
    app.forgot_password(&user.email).await;
    let token = app.reset_mail(&user.email).token;
    sqlx::query!(r#"UPDATE "user" SET is_active = false WHERE id = $1"#, user.id.as_str())
        .execute(app.pool())
        .await
        .unwrap();
    let before = app.outbox().len();
    assert_eq!(app.forgot_password(&user.email).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.outbox().len(), before, "a disabled account is sent nothing");
    let reset = app.reset_password(&token, NEW_PASSWORD).await;
    assert_eq!((reset.status, reset.error_code().as_str()), (StatusCode::FORBIDDEN, "account_disabled"));
    assert_eq!(
        app.login(&user.email, &user.password).await.status,
        StatusCode::FORBIDDEN,
        "password unchanged"
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn one_link_used_by_many_requests_at_once_resets_once(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    app.forgot_password(&user.email).await;
    let token = app.reset_mail(&user.email).token;
    let clicks = (0..16u8).map(|n| {
        let (app, token) = (app.from_ip([198, 51, 100, n]), token.clone());
        tokio::spawn(async move { (n, app.reset_password(&token, &format!("new passphrase {n}")).await) })
    });
    let mut responses = Vec::new();
    for click in clicks {
        responses.push(click.await.unwrap());
    }
    let winners: Vec<u8> =
        responses.iter().filter(|(_, r)| r.status == StatusCode::OK).map(|(n, _)| *n).collect();
    assert_eq!(winners.len(), 1, "{:?}", tally(responses.iter().map(|(_, r)| r)));
    for (_, response) in responses.iter().filter(|(_, r)| r.status != StatusCode::OK) {
        assert!(
            matches!(response.error_code().as_str(), "invalid_token" | "rate_limited"),
            "{}",
            response.text()
        );
    }
    let sessions: i64 = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM "session" WHERE "userId" = $1"#,
        user.id.as_str()
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(sessions, 1, "only the winner's session");
    let password = format!("new passphrase {}", winners[0]);
    assert_eq!(app.login(&user.email, &password).await.status, StatusCode::OK);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn reset_mails_are_limited_per_account_alike_for_addresses_without_one(pool: PgPool) {
    let app = app(pool);
    let victim = app.signed_up("victim@example.com").await;
    let mut tallies = Vec::new();
    for email in [victim.email.as_str(), "nobody@example.com"] {
        let burst = (0..24u8).map(|n| {
            let (app, email) = (app.from_ip([203, 0, 113, n]), email.to_owned());
            tokio::spawn(async move { app.forgot_password(&email).await })
        });
        let mut responses = Vec::new();
        for request in burst {
            responses.push(request.await.unwrap());
        }
        let limited = responses.iter().find(|r| r.status == StatusCode::TOO_MANY_REQUESTS).unwrap();
        assert_eq!(limited.error_code(), "rate_limited");
        assert!(limited.headers.contains_key("retry-after"));
        tallies.push(tally(&responses));
    }
    assert_eq!(tallies[0], HashMap::from([(202, 3), (429, 21)]), "three e-mails an hour to one account");
    assert_eq!(tallies[0], tallies[1], "an address without an account is limited alike");
    assert_eq!(app.mails_to(&victim.email, "Reset").len(), 3);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn forgot_password_requests_are_limited_per_address(pool: PgPool) {
    let app = TestApp::with_changed_config(pool, |c| c.limits.password_forgot.per_address = 10, auth::router);
    let burst = (0..25).map(|n| {
        let app = app.from_ip([192, 0, 2, 77]);
        tokio::spawn(async move { app.forgot_password(&format!("target{n}@example.com")).await })
    });
    let mut responses = Vec::new();
    for request in burst {
        responses.push(request.await.unwrap());
    }
    assert_eq!(tally(&responses), HashMap::from([(202, 10), (429, 15)]));
    assert_eq!(
        app.from_ip([192, 0, 2, 78]).forgot_password("target0@example.com").await.status,
        StatusCode::ACCEPTED
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn guessing_tokens_is_limited_per_address_and_per_account_like_passwords(pool: PgPool) {
    let app = TestApp::with_changed_config(pool, |c| c.limits.login.per_address = 10, auth::router);
    // From one address, made-up tokens at once: they count with failed logins.
    let guesser = app.from_ip([198, 18, 0, 1]);
    let burst = (0..25).map(|_| {
        let app = guesser.clone();
        let token = format!("{}.{}", uuid::Uuid::new_v4().simple(), "z".repeat(43));
        tokio::spawn(async move { app.reset_password(&token, NEW_PASSWORD).await })
    });
    let mut responses = Vec::new();
    for request in burst {
        responses.push(request.await.unwrap());
    }
    assert_eq!(tally(&responses), HashMap::from([(400, 10), (429, 15)]));

    // Against one account (its link's selector with made-up secrets) from many addresses:
    // five checks, as for passwords, counted apart from its failed logins.
    let user = app.signed_up("ada@example.com").await;
    for _ in 0..5 {
        assert_eq!(app.login(&user.email, "not the password").await.status, StatusCode::UNAUTHORIZED);
    }
    app.forgot_password(&user.email).await;
    let selector = app.reset_mail(&user.email).token.split_once('.').unwrap().0.to_owned();
    let burst = (0..12u8).map(|n| {
        let (app, token) =
            (app.from_ip([198, 19, 0, n]), format!("{selector}.{}", "q".repeat(40 + usize::from(n % 3))));
        tokio::spawn(async move { app.reset_password(&token, NEW_PASSWORD).await })
    });
    let mut responses = Vec::new();
    for request in burst {
        responses.push(request.await.unwrap());
    }
    assert_eq!(tally(&responses), HashMap::from([(400, 5), (429, 7)]));
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_password_guesser_does_not_lock_the_owner_out_of_recovery(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    for n in 0..5u8 {
        app.from_ip([198, 20, 0, n]).login(&user.email, "a guess").await;
    }
    // The owner, travelling, is a stranger to the account like the guesser.
    let travelling = app.from_ip([198, 20, 0, 99]);
    assert_eq!(travelling.login(&user.email, &user.password).await.status, StatusCode::TOO_MANY_REQUESTS);
    travelling.forgot_password(&user.email).await;
    let reset = travelling.reset_password(&app.reset_mail(&user.email).token, NEW_PASSWORD).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text());
    // Signed in by the reset itself, while logins from strangers wait out the guesser's window.
    assert_eq!(
        app.me(reset.json()["session"]["access_token"].as_str().unwrap()).await.status,
        StatusCode::OK
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn deleting_the_account_deletes_its_pending_tokens_and_only_those(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    let eve = app.signed_up("eve@example.com").await;
    for user in [&ada, &eve] {
        app.forgot_password(&user.email).await;
        // A Better-Auth frontend's reset link for the same user.
        sqlx::query!(
            r#"INSERT INTO "verification" (id, identifier, value, "expiresAt") VALUES ($1, $2, $3, now() + interval '1 hour')"#,
            uuid::Uuid::new_v4().simple().to_string(),
            format!("reset-password:{}", uuid::Uuid::new_v4().simple()),
            user.id.as_str(),
        )
        .execute(app.pool())
        .await
        .unwrap();
    }
    let rows_of = |user_id: String| {
        let pool = app.pool().clone();
        async move {
            sqlx::query_scalar!(
                r#"SELECT count(*) AS "count!" FROM "verification" WHERE identifier LIKE '%' || $1 OR value = $1"#,
                user_id,
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    // Each: the verification mail of the sign-up, a reset link, a Better-Auth reset link.
    assert_eq!((rows_of(ada.id.to_string()).await, rows_of(eve.id.to_string()).await), (3, 3));
    let deleted = app
        .call(
            Method::DELETE,
            "/api/auth/me",
            Some(&ada.access_token),
            Some(json!({"password": ada.password})),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    assert_eq!((rows_of(ada.id.to_string()).await, rows_of(eve.id.to_string()).await), (0, 3));
}
