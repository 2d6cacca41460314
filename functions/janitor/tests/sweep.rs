//! The janitor removes exactly what is expired or stale, and nothing live.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use janitor::{Sweep, handle, sweep};
use primer_shared::AppState;
use primer_shared::domain::auth::recovery::{self, Purpose};
use primer_shared::domain::book::{self, ChapterId, ChapterSource};
use primer_shared::domain::personalize::Fingerprint;
use primer_shared::domain::personalize::cache::{MARKDOWN, object_key, personalized_chapter};
use primer_shared::domain::profile::examples::api_example;
use primer_shared::domain::profile::{ProfileHash, ProfileInput};
use primer_shared::infra::blob::ObjectKey;
use primer_shared::test_util::{
    CountingStore, TestApp, TestUser, UnreachableStore, event, set_reader_profile, store_profile, test_config,
};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::types::PgInterval;

const CHAPTER: &str = "# Walking\n\n:::only{level=\"beginner\"}\nTake it slowly.\n:::\n\n## Balance\n\nKeep the centre of mass over the feet.\n";

async fn import(pool: &PgPool, number: u32, extra: &str) {
    let source =
        ChapterSource::parse(&format!("0{number}-walking-{number}.md"), format!("{CHAPTER}{extra}")).unwrap();
    book::import_chapter(&mut pool.acquire().await.unwrap(), &source).await.unwrap();
}

fn chapter(n: &str) -> ChapterId {
    ChapterId::parse(n).unwrap()
}

async fn reader(app: &TestApp, email: &str, level: &str) -> TestUser {
    let user = app.signed_up(email).await;
    set_reader_profile(app.pool(), &user.id, level, "none", &["Python"], &[]).await;
    user
}

/// Makes (and stores) `user`'s copy of `chapter`; returns its key.
async fn read(app: &TestApp, user: &TestUser, chapter: ChapterId) -> ObjectKey {
    personalized_chapter(&app.state.personalizer(), &user.id.clone(), chapter)
        .await
        .unwrap()
        .key
        .expect("stored")
}

async fn keys_in_rows(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar!("SELECT storage_path FROM personalized_chapters ORDER BY storage_path")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn exists(app: &TestApp, key: &ObjectKey) -> bool {
    app.state.blobs.get(key).await.unwrap().is_some()
}

/// The one number a static statement selects.
macro_rules! count {
    ($pool:expr, $sql:tt) => {
        sqlx::query_scalar!($sql).fetch_one($pool).await.unwrap()
    };
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn only_expired_and_stale_things_go(pool: PgPool) {
    let app = TestApp::for_function(pool, Router::new);
    let pool = app.pool().clone();
    import(&pool, 1, "").await;
    import(&pool, 2, "").await;

    // Sessions: one expired, one live.
    let ada = reader(&app, "ada@example.com", "Beginner").await;
    let old_session = app.signed_in(&ada).await;
    sqlx::query!(
        r#"UPDATE "session" SET "expiresAt" = now() - interval '1 minute' WHERE id = $1"#,
        &old_session.session_id
    )
    .execute(&pool)
    .await
    .unwrap();
    // Verifications and failed logins: one old, one current each.
    sqlx::query!(
        r#"INSERT INTO "verification" (id, identifier, value, "expiresAt") VALUES
           ('v-old', 'reset:ada', 'x', now() - interval '1 hour'), ('v-new', 'reset:ada', 'y', now() + interval '1 hour')"#,
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query!(
        "INSERT INTO password_checks (account, address, checked_at) VALUES
         ('email:ada@example.com', '203.0.113.9', now() - interval '2 days'),
         ('email:ada@example.com', '203.0.113.9', now())"
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query!(
        "INSERT INTO address_admissions (scope, address, admitted_at) VALUES
         ('guest', '203.0.113.9', now() - interval '2 days'), ('guest', '203.0.113.9', now())"
    )
    .execute(&pool)
    .await
    .unwrap();
    // Known places: Ada's sign-up address (now), and one she last signed in from 100 days ago.
    sqlx::query!(
        "INSERT INTO sign_in_places (user_id, address, signed_in_at) VALUES ($1, '198.51.100.4', now() - interval '100 days')",
        ada.id.as_str(),
    )
        .execute(&pool)
        .await
        .unwrap();
    // Usage: a day of long ago and today, for Ada and for the deployment.
    sqlx::query!(
        "INSERT INTO usage_daily (day, user_id, messages) VALUES (current_date - 100, $1, 3), (current_date, $1, 1)",
        ada.id.as_str(),
    )
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query!(
        "INSERT INTO model_budget_daily (day, pool, tokens) VALUES (current_date - 100, 'all', 9), (current_date, 'all', 9)",
    )
    .execute(&pool)
    .await
    .unwrap();
    // A model call of Ada's whose process died: its 5 reserved tokens (of her 9 today) lapsed
    // with its claim a minute ago; another's claim still runs.
    sqlx::query!(
        "UPDATE usage_daily SET tokens = 9 WHERE user_id = $1 AND day = current_date",
        ada.id.as_str()
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query!(
        "INSERT INTO token_reservations (day, user_id, tokens, expires_at) VALUES
         (current_date, $1, 5, now() - interval '1 minute'), (current_date, $1, 4, now() + interval '1 minute')",
        ada.id.as_str(),
    )
    .execute(&pool)
    .await
    .unwrap();

    // Guest conversations (guest tokens live an hour in tests): one a guest touched two hours
    // ago, out of every token's reach; one touched now; an old one already claimed by Ada.
    sqlx::query!(
        "INSERT INTO conversations (user_id, guest_id, title, ai_model, updated_at, last_message_at) VALUES
         (NULL, gen_random_uuid(), 'Untitled 1', 'offline-tutor', now() - interval '3 hours', now() - interval '2 hours'),
         (NULL, gen_random_uuid(), 'Untitled 1', 'offline-tutor', now() - interval '3 hours', now()),
         ($1, NULL, 'Untitled 1', 'offline-tutor', now() - interval '3 hours', NULL)",
        ada.id.as_str(),
    )
    .execute(&pool)
    .await
    .unwrap();
    // Guest title counters: one last used by an expired token, one in use.
    sqlx::query!(
        "INSERT INTO conversation_title_counters (guest_id, last_number, updated_at) VALUES
         (gen_random_uuid(), 3, now() - interval '2 hours'), (gen_random_uuid(), 1, now())"
    )
    .execute(&pool)
    .await
    .unwrap();

    // Personalized chapters. Ada changes her profile after reading chapter 1: that copy is stale.
    let ada_old = read(&app, &ada, chapter("1")).await;
    set_reader_profile(&pool, &ada.id, "Advanced", "none", &["Python"], &[]).await;
    let ada_live = read(&app, &ada, chapter("1")).await;
    // Bob read chapter 2 before it changed: stale; he reads the new version too: live.
    let bob = reader(&app, "bob@example.com", "Intermediate").await;
    let bob_old = read(&app, &bob, chapter("2")).await;
    import(&pool, 2, "\n## Turning\n\nNew section.\n").await;
    let bob_live = read(&app, &bob, chapter("2")).await;
    // Cy's profile is gone altogether: nothing of hers can be served.
    let cy = reader(&app, "cy@example.com", "Beginner").await;
    let cy_old = read(&app, &cy, chapter("1")).await;
    sqlx::query!("DELETE FROM user_profiles WHERE user_id = $1", cy.id.as_str())
        .execute(&pool)
        .await
        .unwrap();

    let swept = sweep(&app.state).await.unwrap();
    assert_eq!(
        swept,
        Sweep {
            sessions: 1,
            verifications: 1,
            spent_refresh_tokens: 0,
            password_checks: 1,
            address_admissions: 1,
            known_places: 1,
            usage_days: 2,
            lapsed_reservations: 1,
            guest_conversations: 1,
            personalized_chapters: 3,
            personalized_chapters_failed: 0
        }
    );
    for gone in [&ada_old, &bob_old, &cy_old] {
        assert!(!exists(&app, gone).await, "{gone} is still stored");
    }
    for live in [&ada_live, &bob_live] {
        assert!(exists(&app, live).await, "{live} was removed");
    }
    let mut live_keys = vec![ada_live.to_string(), bob_live.to_string()];
    live_keys.sort();
    assert_eq!(keys_in_rows(&pool).await, live_keys);
    let live = primer_shared::domain::user::by_live_session(&pool, &ada.session_id, &ada.id).await.unwrap();
    assert!(live.is_some(), "the live session still works");
    assert_eq!(
        count!(&pool, r#"SELECT count(*) AS "count!" FROM "verification" WHERE identifier = 'reset:ada'"#),
        1
    );
    assert_eq!(count!(&pool, r#"SELECT count(*) AS "count!" FROM password_checks"#), 1);
    assert_eq!(
        count!(&pool, r#"SELECT count(*) AS "count!" FROM address_admissions WHERE scope = 'guest'"#),
        1
    );
    assert_eq!(
        count!(&pool, r#"SELECT count(*) AS "count!" FROM sign_in_places WHERE address = '127.0.0.1'"#),
        3,
        "where Ada, Bob and Cy signed up is still known"
    );
    assert_eq!(count!(&pool, r#"SELECT count(*) AS "count!" FROM usage_daily"#), 1);
    assert_eq!(count!(&pool, r#"SELECT count(*) AS "count!" FROM model_budget_daily"#), 1);
    // The lapsed reservation's tokens went back, to Ada's day and to the deployment's.
    assert_eq!(count!(&pool, "SELECT tokens FROM usage_daily"), 4);
    assert_eq!(count!(&pool, "SELECT tokens FROM model_budget_daily"), 4);
    assert_eq!(count!(&pool, r#"SELECT count(*) AS "count!" FROM token_reservations"#), 1);
    let kept: i64 = count!(
        &pool,
        r#"SELECT count(*) AS "count!" FROM conversations WHERE user_id IS NOT NULL OR last_message_at > now() - interval '1 minute'"#
    );
    assert_eq!((count!(&pool, r#"SELECT count(*) AS "count!" FROM conversations"#), kept), (2, 2));
    assert_eq!(
        (
            count!(&pool, r#"SELECT count(*) AS "count!" FROM conversation_title_counters"#),
            count!(
                &pool,
                r#"SELECT count(*) AS "count!" FROM conversation_title_counters WHERE updated_at > now() - interval '1 minute'"#
            )
        ),
        (1, 1)
    );

    assert_eq!(sweep(&app.state).await.unwrap(), Sweep::default(), "a second run finds nothing");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_copy_whose_object_cannot_be_removed_keeps_its_row(pool: PgPool) {
    let app = TestApp::for_function(pool, Router::new);
    import(app.pool(), 1, "").await;
    let ada = reader(&app, "ada@example.com", "Beginner").await;
    let stale = read(&app, &ada, chapter("1")).await;
    set_reader_profile(app.pool(), &ada.id, "Advanced", "none", &["Python"], &[]).await;

    let broken = AppState::new(test_config(), app.pool().clone()).with_blobs(Arc::new(UnreachableStore));
    let swept = sweep(&broken).await.unwrap();
    assert_eq!((swept.personalized_chapters, swept.personalized_chapters_failed), (0, 1));
    assert_eq!(keys_in_rows(app.pool()).await, [stale.to_string()], "no row without its object removed");

    let swept = sweep(&app.state).await.unwrap();
    assert_eq!((swept.personalized_chapters, swept.personalized_chapters_failed), (1, 0));
    assert!(!exists(&app, &stale).await);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn the_schedule_event_returns_the_counts(pool: PgPool) {
    let app = TestApp::for_function(pool, Router::new);
    let payload: serde_json::Value = serde_json::from_str(&event("janitor-schedule.json", &[])).unwrap();
    assert_eq!(payload["detail-type"], "Scheduled Event");
    let counts = handle(&app.state, payload).await.unwrap();
    assert_eq!(
        serde_json::to_value(counts).unwrap(),
        serde_json::json!({
            "sessions": 0, "verifications": 0, "spent_refresh_tokens": 0, "password_checks": 0, "address_admissions": 0, "known_places": 0,
            "usage_days": 0, "lapsed_reservations": 0, "guest_conversations": 0,
            "personalized_chapters": 0, "personalized_chapters_failed": 0
        })
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn five_thousand_stale_copies_go_in_one_run_in_batches(pool: PgPool) {
    let app = TestApp::for_function(pool, Router::new);
    import(app.pool(), 1, "").await;
    let ada = reader(&app, "ada@example.com", "Beginner").await;
    // 5,000 copies made for profiles Ada no longer has, each with its object.
    let keys: Vec<String> = sqlx::query_scalar!(
        "INSERT INTO personalized_chapters (user_id, chapter_id, profile_hash, chapter_version, storage_path, engine)
         SELECT $1, 1, h, 1, 'personalized/' || $1 || '/1/v1-' || h || '.md', 'rule'
         FROM (SELECT encode(sha256(i::text::bytea), 'hex') AS h FROM generate_series(1, 5000) i) hashes
         RETURNING storage_path",
        ada.id.as_str(),
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    for key in &keys {
        app.state
            .blobs
            .put(&ObjectKey::parse(key).unwrap(), b"# old\n".to_vec(), "text/markdown")
            .await
            .unwrap();
    }
    // A reader is making one of them again right now: its claim is respected.
    sqlx::query!("INSERT INTO personalization_claims VALUES ($1, now() + interval '1 minute')", &keys[17])
        .execute(app.pool())
        .await
        .unwrap();

    let counter = Arc::new(CountingStore::new(app.state.blobs.clone(), Duration::ZERO));
    let swept = sweep(&app.state.clone().with_blobs(counter.clone())).await.unwrap();
    assert_eq!((swept.personalized_chapters, swept.personalized_chapters_failed), (4999, 0));
    let mut batches = counter.batches();
    batches.sort();
    assert_eq!(batches, [999, 1000, 1000, 1000, 1000], "the objects go a thousand to a request");
    assert_eq!(keys_in_rows(app.pool()).await, [keys[17].clone()]);
    assert!(exists(&app, &ObjectKey::parse(&keys[17]).unwrap()).await);
    assert!(!exists(&app, &ObjectKey::parse(&keys[4999]).unwrap()).await);
    assert_eq!(
        count!(app.pool(), r#"SELECT count(*) AS "count!" FROM personalization_claims"#),
        1,
        "only the reader's claim"
    );
}

/// Stores a copy the way the cache does (object, then row), under `key`, with `fingerprint`.
async fn stored_copy(app: &TestApp, user: &TestUser, key: &str, hash: &str, fingerprint: Option<&str>) {
    let key = ObjectKey::parse(key).unwrap();
    app.state.blobs.put(&key, b"# Walking\n".to_vec(), MARKDOWN).await.unwrap();
    sqlx::query!(
        "INSERT INTO personalized_chapters
             (user_id, chapter_id, profile_hash, chapter_version, fingerprint, storage_path, engine)
         VALUES ($1, 1, $2, 1, $3, $4, 'model')",
        user.id.as_str(),
        hash,
        fingerprint,
        key.as_str()
    )
    .execute(app.pool())
    .await
    .unwrap();
}

/// The hash of profile `document` (the shape of `PUT /api/profile`).
fn profile_hash(document: serde_json::Value) -> ProfileHash {
    serde_json::from_value::<ProfileInput>(document).unwrap().parse().unwrap().hash()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn staleness_follows_the_fingerprint_not_the_profile_hash(pool: PgPool) {
    let app = TestApp::for_function(pool, Router::new);
    // The chapter's only directive reads `level`.
    import(app.pool(), 1, "").await;
    let ada = app.signed_up("ada@example.com").await;
    let first_hash = store_profile(app.pool(), &ada.id, api_example()).await;
    let rule_copy = read(&app, &ada, chapter("1")).await;

    // A new learning goal: another profile hash, but no decision of the rules changes.
    let mut document = api_example();
    document["learning_goals"] = json!(["locomotion"]);
    let hash = store_profile(app.pool(), &ada.id, document.clone()).await;
    assert_ne!(hash, first_hash);
    // What a deployment with a model stored for this profile is live as well...
    let model = Fingerprint::of_model(1, &profile_hash(document.clone()));
    let ada_id = ada.id.clone();
    let model_key = object_key(&ada_id, chapter("1"), 1, &model).unwrap();
    stored_copy(&app, &ada, model_key.as_str(), &hash, Some(model.as_str())).await;
    // ...but not one made for the profile before the goal, nor one from before fingerprints.
    let first_model = Fingerprint::of_model(1, &profile_hash(api_example()));
    let old_model = object_key(&ada_id, chapter("1"), 1, &first_model).unwrap();
    stored_copy(&app, &ada, old_model.as_str(), &first_hash, Some(first_model.as_str())).await;
    let legacy = format!("personalized/{}/1/v1-{hash}.md", ada.id);
    stored_copy(&app, &ada, &legacy, &hash, None).await;

    let swept = sweep(&app.state).await.unwrap();
    assert_eq!((swept.personalized_chapters, swept.personalized_chapters_failed), (2, 0));
    assert!(!exists(&app, &old_model).await && !exists(&app, &ObjectKey::parse(&legacy).unwrap()).await);
    for live in [&rule_copy, &model_key] {
        assert!(exists(&app, live).await, "{live} was removed");
    }
    let mut live_keys = vec![rule_copy.to_string(), model_key.to_string()];
    live_keys.sort();
    assert_eq!(keys_in_rows(app.pool()).await, live_keys);
    let served = personalized_chapter(&app.state.personalizer(), &ada_id, chapter("1")).await.unwrap();
    assert!(
        served.cached && served.key.as_ref() == Some(&rule_copy),
        "the rule copy is still the one served"
    );

    // Another level than the directive's, as before: the rules decide alike, so only the
    // model's copy (of the whole profile) is stale.
    document["python_proficiency"] = json!("Advanced");
    store_profile(app.pool(), &ada.id, document.clone()).await;
    assert_eq!(sweep(&app.state).await.unwrap().personalized_chapters, 1);
    assert_eq!(keys_in_rows(app.pool()).await, [rule_copy.to_string()]);
    // The directive's level: the rules decide otherwise, and the rule copy is stale too.
    document["python_proficiency"] = json!("Beginner");
    store_profile(app.pool(), &ada.id, document).await;
    assert_eq!(sweep(&app.state).await.unwrap().personalized_chapters, 1);
    assert!(keys_in_rows(app.pool()).await.is_empty());
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn spent_refresh_tokens_are_remembered_for_a_day(pool: PgPool) {
    let app = TestApp::for_function(pool, Router::new);
    let ada = app.signed_up("ada@example.com").await;
    for (hash, hours) in [("sha256:old", 48), ("sha256:recent", 1)] {
        let age = PgInterval::try_from(Duration::from_secs(hours * 3600)).unwrap();
        sqlx::query!(
            "INSERT INTO refresh_token_spent (token_hash, session_id, spent_at) VALUES ($1, $2, now() - $3::interval)",
            hash,
            &ada.session_id,
            age,
        )
            .execute(app.pool())
            .await
            .unwrap();
    }
    assert_eq!(sweep(&app.state).await.unwrap().spent_refresh_tokens, 1);
    let left: Vec<String> = sqlx::query_scalar!("SELECT token_hash FROM refresh_token_spent")
        .fetch_all(app.pool())
        .await
        .unwrap();
    assert_eq!(left, ["sha256:recent"]);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn expired_reset_and_verification_links_go_primers_and_better_auths_alike(pool: PgPool) {
    let app = TestApp::for_function(pool, Router::new);
    let pool = app.pool().clone();
    let ada = app.signed_up("ada@example.com").await; // her sign-up's verification link: live
    for (n, purpose) in [Purpose::PasswordReset, Purpose::VerifyEmail].into_iter().enumerate() {
        for ttl in [1, 3600] {
            recovery::issue(&pool, purpose, &ada.id, &ada.email, Duration::from_secs(ttl)).await.unwrap();
        }
        // A Better-Auth frontend's reset links, one expired and one live.
        sqlx::query!(
            r#"INSERT INTO "verification" (id, identifier, value, "expiresAt") VALUES
               ($1, $2, $3, now() - interval '1 minute'), ($4, $5, $3, now() + interval '1 hour')"#,
            format!("ba-old-{n}"),
            format!("reset-password:old{n}"),
            ada.id.as_str(),
            format!("ba-new-{n}"),
            format!("reset-password:new{n}")
        )
        .execute(&pool)
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await; // the one-second links expire

    let swept = sweep(&app.state).await.unwrap();
    assert_eq!(swept.verifications, 4, "{swept:?}");
    let left: Vec<String> =
        sqlx::query_scalar!(r#"SELECT identifier FROM "verification" ORDER BY identifier"#)
            .fetch_all(&pool)
            .await
            .unwrap();
    let ours = |prefix: &str| format!("{prefix}{}", ada.id);
    assert_eq!(
        left,
        [
            ours("primer:reset-password:"),
            ours("primer:verify-email:"),
            ours("primer:verify-email:"),
            "reset-password:new0".into(),
            "reset-password:new1".into(),
        ]
    );
}
