//! The limits under attack, sent as an attacker would: many requests at once (spawned on the
//! app's clones), through the pooler when the test run has one.

use axum::http::{Method, StatusCode};
use primer_shared::test_util::{TestApp, TestResponse, tally};
use serde_json::json;
use sqlx::PgPool;

fn app(pool: PgPool) -> TestApp {
    TestApp::new(pool, auth::router)
}

fn retry_after(response: &TestResponse) -> u64 {
    response.headers["retry-after"].to_str().unwrap().parse().unwrap()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn sixty_parallel_wrong_logins_check_the_password_at_most_five_times(pool: PgPool) {
    let app = app(pool);
    let victim = app.signed_up("victim@example.com").await;
    // From sixty addresses at once: the account's limit does not depend on where guesses come from.
    let guesses = (0..60u8).map(|i| {
        let (app, email) = (app.from_ip([198, 51, 100, i]), victim.email.clone());
        tokio::spawn(async move { app.login(&email, &format!("guess number {i}")).await })
    });
    let mut responses = Vec::new();
    for guess in guesses {
        responses.push(guess.await.unwrap());
    }
    let counts = tally(&responses);
    assert_eq!(counts.get(&401), Some(&5), "exactly five passwords were checked: {counts:?}");
    assert_eq!(counts.get(&429), Some(&55), "{counts:?}");
    for limited in responses.iter().filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS) {
        assert_eq!(limited.error_code(), "rate_limited");
        assert!((1..=900).contains(&retry_after(limited)));
    }
    let checks: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM password_checks"#)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(checks, 5, "one row per checked password");
    // Every address the owner never signed in from shares that budget, and waits it out...
    let stranger = app.from_ip([198, 51, 100, 200]);
    assert_eq!(stranger.login(&victim.email, &victim.password).await.status, StatusCode::TOO_MANY_REQUESTS);
    // ...but where the owner signed up, the guesses from elsewhere count for nothing.
    assert_eq!(app.login(&victim.email, &victim.password).await.status, StatusCode::OK);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn thirty_students_behind_one_address_with_typos_all_sign_in(pool: PgPool) {
    let app = app(pool);
    let school = app.from_ip([192, 0, 2, 1]);
    let mut students = Vec::new();
    for n in 0..30 {
        // Signed up at home: the school's address has never seen them sign in.
        let home = app.from_ip([172, 16, 0, n]);
        students.push(home.signed_up(&format!("student{n}@school.example")).await);
    }
    // All at once, each with one or two typos first: 45 wrong passwords from one address.
    let lessons = students.into_iter().enumerate().map(|(n, student)| {
        let school = school.clone();
        tokio::spawn(async move {
            for typo in 0..(1 + n % 2) {
                let response = school.login(&student.email, &format!("{}{typo}", student.password)).await;
                assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{}", response.text());
            }
            school.login(&student.email, &student.password).await
        })
    });
    for lesson in lessons {
        let signed_in = lesson.await.unwrap();
        assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text());
    }
    // Their typos no longer count against the school's address, only against each account.
    let against_address: i64 = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM password_checks WHERE address = '192.0.2.1' AND NOT forgiven_for_address"#,
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(against_address, 0);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn right_logins_of_one_account_at_once_each_open_a_session_and_release_their_checks(pool: PgPool) {
    // Each login releases its check, and forgives the account's typos from its address, in the
    // transaction that writes its session: logins at once must neither deadlock nor leave a
    // check counted against the account or the address. Twelve logins and three typos are more
    // checks than the budget's five: the logins in flight hold it, and the others wait for
    // them rather than being refused.
    let app = app(pool);
    let library = app.from_ip([192, 0, 2, 7]);
    let reader = app.signed_up("reader@example.com").await;
    for typo in 0..3 {
        let response = library.login(&reader.email, &format!("{}{typo}", reader.password)).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let logins = (0..12).map(|_| {
        let (library, email, password) = (library.clone(), reader.email.clone(), reader.password.clone());
        tokio::spawn(async move { library.login(&email, &password).await })
    });
    for login in logins {
        let response = login.await.unwrap();
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    }
    let counted = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM "session") AS "sessions!",
                  (SELECT count(*) FROM password_checks) AS "checks!",
                  (SELECT count(*) FROM password_checks WHERE NOT forgiven_for_address) AS "counted_against_address!""#,
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(counted.sessions, 13, "the sign-up's and one per login");
    assert_eq!(counted.checks, 3, "only the typos are kept");
    assert_eq!(counted.counted_against_address, 0);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn one_address_spraying_many_accounts_is_stopped_and_known_readers_still_sign_in(pool: PgPool) {
    let app = TestApp::with_changed_config(pool, |c| c.limits.login.per_address = 10, auth::router);
    let cafe = app.from_ip([203, 0, 113, 50]);
    // A regular of the café signed in there before; a newcomer has not.
    let regular = cafe.signed_up("regular@example.com").await;
    let newcomer = app.signed_up("newcomer@example.com").await;

    let sprayed = (0..15).map(|n| {
        let cafe = cafe.clone();
        tokio::spawn(async move { cafe.login(&format!("target{n}@example.com"), "Winter2026!").await })
    });
    let mut responses = Vec::new();
    for attempt in sprayed {
        responses.push(attempt.await.unwrap());
    }
    let counts = tally(&responses);
    assert_eq!((counts.get(&401), counts.get(&429)), (Some(&10), Some(&5)), "{counts:?}");

    // The address is full: a reader never seen there waits, a regular does not.
    assert_eq!(cafe.login(&newcomer.email, &newcomer.password).await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(cafe.login(&regular.email, &regular.password).await.status, StatusCode::OK);
    // Even a regular's account stays within its own limit of five checks.
    for _ in 0..5 {
        assert_eq!(cafe.login(&regular.email, "not it").await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(cafe.login(&regular.email, "not it").await.status, StatusCode::TOO_MANY_REQUESTS);
    // Elsewhere, the newcomer is fine.
    assert_eq!(app.login(&newcomer.email, &newcomer.password).await.status, StatusCode::OK);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn password_rechecks_count_against_their_sessions_budget(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("careful@example.com").await;
    let rechecks = (0..30).map(|n| {
        let (app, token) = (app.clone(), user.access_token.clone());
        tokio::spawn(async move {
            if n % 2 == 0 {
                app.change_password(&token, &format!("wrong guess {n}"), "a brand new passphrase").await
            } else {
                let body = json!({"password": format!("wrong guess {n}")});
                app.call(Method::DELETE, "/api/auth/me", Some(&token), Some(body)).await
            }
        })
    });
    let mut responses = Vec::new();
    for recheck in rechecks {
        responses.push(recheck.await.unwrap());
    }
    let counts = tally(&responses);
    assert_eq!((counts.get(&422), counts.get(&429)), (Some(&5), Some(&25)), "{counts:?}");
    // The session (a stolen token, say) guesses no more...
    let again = app.change_password(&user.access_token, &user.password, "a brand new passphrase").await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(app.me(&user.access_token).await.status, StatusCode::OK, "the account still exists");
    // ...and its failures are its own: the owner signs in, and re-checks in the new session.
    let signed_in = app.signed_in(&user).await;
    let changed =
        app.change_password(&signed_in.access_token, &user.password, "a brand new passphrase").await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text());
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_right_recheck_does_not_count(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("changer@example.com").await;
    let mut password = user.password.clone();
    for n in 0..7 {
        let new = format!("passphrase number {n}");
        assert_eq!(
            app.change_password(&user.access_token, &password, &new).await.status,
            StatusCode::NO_CONTENT
        );
        password = new;
    }
    assert_eq!(app.login(&user.email, &password).await.status, StatusCode::OK);
}

/// The lock-out an attacker used to cause: wrong guesses from anywhere, renewed every window,
/// kept the owner out of password sign-in and of password changes. Now the guesses cost their
/// own budget only: the owner signs in from where they signed in before, and changes their
/// password in their session, while the attacker's addresses stay refused; guessing stays at
/// five checks a window.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn strangers_guessing_cannot_lock_the_owner_out(pool: PgPool) {
    let app = app(pool);
    let home = app.from_ip([192, 0, 2, 10]);
    let owner = home.signed_up("owner@example.com").await;
    let attackers: Vec<TestApp> = (1..=3).map(|n| app.from_ip([203, 0, 113, n])).collect();
    let mut password = owner.password.clone();
    for round in 0..3 {
        for (n, attacker) in attackers.iter().enumerate() {
            for guess in 0..4 {
                attacker.login(&owner.email, &format!("guess {round}.{n}.{guess}")).await;
            }
        }
        // The window "renews": the attacker's failures are older now, yet still within it.
        sqlx::query!("UPDATE password_checks SET checked_at = checked_at - interval '1 minute'")
            .execute(app.pool())
            .await
            .unwrap();
        let refused = attackers[0].login(&owner.email, &password).await;
        assert_eq!(
            refused.status,
            StatusCode::TOO_MANY_REQUESTS,
            "an unknown address shares the strangers' budget"
        );
        assert!((1..=900).contains(&retry_after(&refused)));

        let signed_in = home.login(&owner.email, &password).await;
        assert_eq!(signed_in.status, StatusCode::OK, "round {round}: {}", signed_in.text());
        let token = signed_in.json()["session"]["access_token"].as_str().unwrap().to_owned();
        let new = format!("new passphrase {round}");
        let changed = home.change_password(&token, &password, &new).await;
        assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text());
        password = new;
    }
    let checked: i64 =
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM password_checks WHERE source = 'elsewhere'"#)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(checked, 5, "of 36 guesses in the window, five were checked");
}

/// Case 9 of the attack report: twelve correct logins of one account at once, from an address
/// it never signed in from, all sign in; none gets a Retry-After of a quarter of an hour.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn twelve_correct_logins_at_once_all_sign_in(pool: PgPool) {
    let app = app(pool);
    let reader = app.signed_up("reader@example.com").await;
    let elsewhere = app.from_ip([198, 51, 100, 77]);
    let logins = (0..12).map(|_| {
        let (elsewhere, email, password) = (elsewhere.clone(), reader.email.clone(), reader.password.clone());
        tokio::spawn(async move { elsewhere.login(&email, &password).await })
    });
    for login in logins {
        let response = login.await.unwrap();
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    }
}

/// A check whose process died mid-way (no pass, no failure recorded) counts as a failure once
/// it is older than a check can take, not as a check in flight for ever.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn checks_whose_process_died_count_as_failures(pool: PgPool) {
    let app = app(pool);
    let reader = app.signed_up("reader@example.com").await;
    let user_id: String = reader.id.to_string();
    sqlx::query!(
        "INSERT INTO password_checks (account, address, source, failed, checked_at)
         SELECT 'user:' || $1, '203.0.113.5', 'elsewhere', false, now() - interval '1 minute' FROM generate_series(1, 5)",
        &user_id,
    )
    .execute(app.pool())
    .await
    .unwrap();
    let refused = app.from_ip([203, 0, 113, 6]).login(&reader.email, &reader.password).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&refused) > 60, "refused for the window, not asked to wait a moment");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_thousand_guest_tokens_from_one_address_get_only_the_configured_number(pool: PgPool) {
    let app = TestApp::with_changed_config(pool, |c| c.limits.guest.per_address = 25, auth::router);
    let burst = (0..1000).map(|_| {
        let app = app.clone();
        tokio::spawn(async move { app.guest().await })
    });
    let mut responses = Vec::new();
    for request in burst {
        responses.push(request.await.unwrap());
    }
    let counts = tally(&responses);
    assert_eq!((counts.get(&201), counts.get(&429)), (Some(&25), Some(&975)), "{counts:?}");
    let limited = responses.iter().find(|r| r.status == StatusCode::TOO_MANY_REQUESTS).unwrap();
    assert_eq!(limited.error_code(), "rate_limited");
    assert!((1..=3600).contains(&retry_after(limited)));
    // Another address has its own share.
    assert_eq!(app.from_ip([10, 9, 8, 7]).guest().await.status, StatusCode::CREATED);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn registrations_are_throttled_per_address_taken_addresses_included(pool: PgPool) {
    let app = TestApp::with_changed_config(pool, |c| c.limits.register.per_address = 5, auth::router);
    app.from_ip([10, 0, 0, 1]).signed_up("taken@example.com").await;
    let signups = (0..8).map(|n| {
        let app = app.clone();
        tokio::spawn(async move {
            // Some probe an address that is taken: they spend the share like any other.
            let email = if n < 3 { "taken@example.com".to_owned() } else { format!("new{n}@example.com") };
            app.register(&email, "correct horse battery").await
        })
    });
    let mut responses = Vec::new();
    for signup in signups {
        responses.push(signup.await.unwrap());
    }
    let counts = tally(&responses);
    let admitted = counts.get(&201).unwrap_or(&0) + counts.get(&409).unwrap_or(&0);
    assert_eq!((admitted, counts.get(&429)), (5, Some(&3)), "{counts:?}");
    assert!(
        responses
            .iter()
            .filter(|r| r.status == StatusCode::CONFLICT)
            .all(|r| r.error_code() == "email_taken")
    );
    assert_eq!(
        app.from_ip([10, 0, 0, 2]).register("other@example.com", "correct horse battery").await.status,
        StatusCode::CREATED
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn two_tabs_refreshing_at_once_both_keep_a_working_session(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("tabs@example.com").await;
    for round in 0..3 {
        // Each round, eight tabs refresh with the same token at once.
        let session = app.signed_in(&user).await;
        let tabs = (0..8).map(|_| {
            let (app, token) = (app.clone(), session.refresh_token.clone());
            tokio::spawn(async move { app.refresh(&token).await })
        });
        let mut bodies = Vec::new();
        for tab in tabs {
            let response = tab.await.unwrap();
            assert_eq!(response.status, StatusCode::OK, "round {round}: {}", response.text());
            bodies.push(response.json()["session"].clone());
        }
        assert!(bodies.iter().all(|b| *b == bodies[0]), "every tab got the same new tokens: {bodies:?}");
        let access = bodies[0]["access_token"].as_str().unwrap();
        assert_eq!(app.me(access).await.status, StatusCode::OK, "and they work");
        let next = app.refresh(bodies[0]["refresh_token"].as_str().unwrap()).await;
        assert_eq!(next.status, StatusCode::OK, "the session lives on: {}", next.text());
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_replay_after_the_reuse_interval_or_behind_a_newer_token_revokes_the_session(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("replay@example.com").await;

    // Within the interval, but the successor was rotated again since: a leak, not a second tab.
    let first = app.refresh(&user.refresh_token).await.json()["session"].clone();
    let second = app.refresh(first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(app.refresh(&user.refresh_token).await.status, StatusCode::UNAUTHORIZED);
    let newest = second.json()["session"]["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.me(&newest).await.status, StatusCode::UNAUTHORIZED, "the session is revoked");

    // After the interval: the same.
    let other = app.signed_in(&user).await;
    let rotated = app.refresh(&other.refresh_token).await.json()["session"].clone();
    sqlx::query!("UPDATE refresh_token_spent SET spent_at = spent_at - interval '11 seconds'")
        .execute(app.pool())
        .await
        .unwrap();
    assert_eq!(app.refresh(&other.refresh_token).await.status, StatusCode::UNAUTHORIZED);
    let access = rotated["access_token"].as_str().unwrap();
    assert_eq!(app.me(access).await.status, StatusCode::UNAUTHORIZED, "the session is revoked");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn look_alike_emails_are_refused_or_fold_into_the_original(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    for (raw, why) in [
        ("\u{0430}da@example.com", "mix scripts"),
        ("a\u{200B}da@example.com", "invisible"),
        ("ada\u{202E}moc@example.com", "invisible"),
        // Case 8 of the attack report: accepted, then no mail could be sent to it.
        ("new1@example.com.()'\")(.,(", "e-mail can be sent to"),
    ] {
        let response = app.register(raw, "correct horse battery").await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{raw:?}");
        let detail = &response.json()["error"]["details"][0];
        assert_eq!(detail["field"], "email");
        assert!(detail["message"].as_str().unwrap().contains(why), "{raw:?}: {detail}");
    }
    // Full-width letters are the same address: taken, and a way to sign in to it.
    let full_width = app.register("ＡＤＡ@example.com", "correct horse battery").await;
    assert_eq!((full_width.status, full_width.error_code().as_str()), (StatusCode::CONFLICT, "email_taken"));
    let signed_in = app.login(" ａｄａ@ＥＸＡＭＰＬＥ.com", &ada.password).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text());
    assert_eq!(signed_in.json()["user"]["id"], ada.id.as_str());
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn accounts_stored_before_normalisation_still_sign_in(pool: PgPool) {
    let app = app(pool);
    // Rows as the old rules (trim and lower-case only) let them in.
    for (n, email) in ["ｍｉｘ@example.com", "\u{0430}lex@example.com"].into_iter().enumerate() {
        let user = app.signed_up(&format!("placeholder{n}@example.com")).await;
        sqlx::query!(r#"UPDATE "user" SET email = $2 WHERE id = $1"#, user.id.as_str(), email)
            .execute(app.pool())
            .await
            .unwrap();
        let response = app.login(email, &user.password).await;
        assert_eq!(response.status, StatusCode::OK, "{email}: {}", response.text());
        assert_eq!(response.json()["user"]["id"], user.id.as_str());
    }
}

/// Rows a client with the password (or a refresh token) could multiply without end are capped:
/// a user keeps at most 100 sessions (opening one more revokes the oldest), and a session
/// remembers at most 100 spent refresh tokens.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn sessions_and_spent_refresh_tokens_are_capped(pool: PgPool) {
    use primer_shared::domain::auth::sessions::{MAX_SESSIONS_PER_USER, MAX_SPENT_TOKENS_PER_SESSION};
    let app = app(pool);
    let user = app.signed_up("looper@example.com").await;
    // 120 sessions opened long ago (as many sign-ins would), then one more sign-in.
    sqlx::query!(
        r#"INSERT INTO "session" (id, "expiresAt", token, "createdAt", "updatedAt", "userId")
           SELECT 'old-' || n, now() + interval '1 day', 'sha256:old-' || n, now() - make_interval(mins => n), now(), $1
           FROM generate_series(1, 120) AS n"#,
        user.id.as_str(),
    )
    .execute(app.pool())
    .await
    .unwrap();
    let newest = app.signed_in(&user).await;
    let sessions: Vec<String> =
        sqlx::query_scalar!(r#"SELECT id FROM "session" WHERE "userId" = $1"#, user.id.as_str())
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(sessions.len() as i64, MAX_SESSIONS_PER_USER);
    assert!(sessions.contains(&newest.session_id) && sessions.contains(&user.session_id), "the newest stay");
    assert!(!sessions.contains(&"old-120".to_owned()), "the oldest went");

    let mut refresh = newest.refresh_token.clone();
    for _ in 0..(MAX_SPENT_TOKENS_PER_SESSION + 20) {
        let rotated = app.refresh(&refresh).await;
        assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
        refresh = rotated.json()["session"]["refresh_token"].as_str().unwrap().to_owned();
    }
    let spent: i64 = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM refresh_token_spent WHERE session_id = $1"#,
        &newest.session_id
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(spent, MAX_SPENT_TOKENS_PER_SESSION);
}
