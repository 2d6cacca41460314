//! The account flows of the core crate (`primer_shared::domain::auth::account`), called directly, as
//! the handlers call them: what each returns and leaves in the database, without HTTP.

use primer_shared::domain::auth::account::NewAccount;
use primer_shared::domain::auth::password::Password;
use primer_shared::domain::auth::sessions;
use primer_shared::domain::user::{self, Email, SignInEmail, UserName};
use primer_shared::error::Code;
use primer_shared::test_util::{TestApp, stored_password_hash};
use sqlx::PgPool;

fn app(pool: PgPool) -> TestApp {
    TestApp::new(pool, auth::router)
}

fn password(text: &str) -> Password {
    Password::parse_presented(text.to_owned()).unwrap()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn sign_up_then_sign_in_opens_a_session_each_and_a_taken_address_is_refused(pool: PgPool) {
    let app = app(pool);
    let account = || NewAccount {
        email: Email::parse(" Ada@Example.com ").unwrap(),
        password: Password::parse_new("correct horse battery".into()).unwrap(),
        name: UserName::parse("Ada").unwrap(),
        guest: None,
    };
    let signed_up = app.accounts().register(account(), &app.client()).await.unwrap();
    assert_eq!(signed_up.user.email, "ada@example.com");
    assert!(stored_password_hash(app.pool(), &signed_up.user.id).await.starts_with("$argon2id$"));
    let again = app.accounts().register(account(), &app.client()).await.unwrap_err();
    assert_eq!(again.code(), Code::EmailTaken);

    let email = SignInEmail::parse("ada@example.com").unwrap();
    let wrong = app.accounts().login(&email, &password("wrong horse"), None, &app.client()).await;
    assert_eq!(wrong.unwrap_err().code(), Code::Unauthorized);
    let signed_in =
        app.accounts().login(&email, &password("correct horse battery"), None, &app.client()).await.unwrap();
    assert_eq!(signed_in.user.id, signed_up.user.id);
    assert_ne!(signed_in.session_id, signed_up.session_id);
    let sessions = sessions::list(app.pool(), &signed_in.user.id, &signed_in.session_id).await.unwrap();
    assert_eq!(sessions.len(), 2);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_refresh_rotates_and_a_spent_token_later_ends_the_session(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    let first = app.accounts().refresh(&user.refresh_token).await.unwrap();
    assert_eq!(first.session_id, user.session_id);
    // Within the reuse interval: the same successor (a second tab).
    let second_tab = app.accounts().refresh(&user.refresh_token).await.unwrap();
    assert_eq!(second_tab.next.expose(), first.next.expose());
    // The successor rotated too: the spent token is a replay, and the session ends.
    app.accounts().refresh(first.next.expose()).await.unwrap();
    let replay = app.accounts().refresh(&user.refresh_token).await.unwrap_err();
    assert_eq!(replay.code(), Code::Unauthorized);
    let live = user::by_live_session(app.pool(), &user.session_id, &user.id).await.unwrap();
    assert!(live.is_none(), "the session is revoked");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_password_change_keeps_only_the_current_session(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    let laptop = app.signed_in(&user).await;
    let (current, new) = (password(&user.password), password("a brand new passphrase"));

    let wrong = app.accounts().change_password(&user.id, &user.session_id, &new, &new, &app.client()).await;
    assert_eq!(wrong.unwrap_err().code(), Code::ValidationFailed, "a wrong current password");
    app.accounts().change_password(&user.id, &user.session_id, &current, &new, &app.client()).await.unwrap();
    let live = |session: String| {
        let (pool, id) = (app.pool().clone(), user.id.clone());
        async move { user::by_live_session(&pool, &session, &id).await.unwrap().is_some() }
    };
    assert!(live(user.session_id.clone()).await);
    assert!(!live(laptop.session_id.clone()).await, "the other session is revoked");
    let email = SignInEmail::parse(&user.email).unwrap();
    assert!(app.accounts().login(&email, &new, None, &app.client()).await.is_ok());
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn deleting_needs_the_password_and_then_leaves_no_user(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    let blobs = app.state.blobs.as_ref();
    let (id, session) = (&user.id, &user.session_id);

    let refused = app.accounts().delete(blobs, id, session, Some("not it".into()), &app.client()).await;
    assert_eq!(refused.unwrap_err().code(), Code::ValidationFailed);
    let missing = app.accounts().delete(blobs, id, session, None, &app.client()).await;
    assert_eq!(missing.unwrap_err().code(), Code::ValidationFailed, "an account with a password needs it");
    assert!(user::by_id(app.pool(), id).await.unwrap().is_some());

    app.accounts().delete(blobs, id, session, Some(user.password.clone()), &app.client()).await.unwrap();
    assert!(user::by_id(app.pool(), id).await.unwrap().is_none());
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_login_whose_password_changes_while_it_hashes_fails_and_keeps_its_check(pool: PgPool) {
    let app = app(pool);
    let reader = app.signed_up("reader@example.com").await;
    // Another request changes the password and has not committed yet: the login reads and
    // verifies the old hash, then waits on the account row in the transaction that would write
    // its session.
    let mut change = app.pool().begin().await.unwrap();
    sqlx::query!(r#"UPDATE "account" SET password = 'a newer hash' WHERE "userId" = $1"#, reader.id.as_str())
        .execute(&mut *change)
        .await
        .unwrap();
    let login = tokio::spawn({
        let (app, email, password_text) = (app.clone(), reader.email.clone(), reader.password.clone());
        async move {
            let email = SignInEmail::parse(&email).unwrap();
            app.accounts().login(&email, &password(&password_text), None, &app.client()).await
        }
    });
    let waiting = || {
        sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE "account"%'"#
        )
        .fetch_one(app.pool())
    };
    while waiting().await.unwrap() == 0 {
        assert!(!login.is_finished(), "the login ended without waiting on the account row");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    change.commit().await.unwrap();

    assert_eq!(login.await.unwrap().unwrap_err().code(), Code::Unauthorized);
    let counted = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM "session" WHERE "userId" = $1) AS "sessions!",
                  (SELECT count(*) FROM password_checks) AS "checks!""#,
        reader.id.as_str(),
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    let (sessions, checks) = (counted.sessions, counted.checks);
    assert_eq!(sessions, 1, "only the sign-up's session");
    assert_eq!(checks, 1, "the check stays, as a wrong password's does");
}
