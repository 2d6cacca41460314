//! Conversations: create, list, get, patch, delete; ownership on every route.

use crate::common;

use axum::http::{Method, StatusCode};
use common::{create, guest_token, id, offline_app, post_message, retry, stored_messages, user_token, uuid};
use primer_shared::test_util::TestApp;
use serde_json::{Value, json};
use sqlx::PgPool;

async fn list(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app.get(&format!("/api/conversations{query}"), Some(token)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    response.json()
}

fn titles(page: &Value) -> Vec<String> {
    page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn create_get_patch_delete_round_trip(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;

    let created =
        create(&app, &token, json!({"title": "  ROS questions ", "system_prompt": "Be brief."})).await;
    assert_eq!(created["title"], "ROS questions");
    assert_eq!(created["ai_model"], "offline-tutor");
    assert_eq!(created["system_prompt"], "Be brief.");
    assert_eq!(created["is_archived"], false);
    assert_eq!(created["last_message_at"], Value::Null);
    let path = format!("/api/conversations/{}", id(&created));

    let shown = app.get(&path, Some(&token)).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.json()["conversation"], created);

    let patched = app
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(json!({"title": "Topics", "is_pinned": true, "system_prompt": null})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let patched = patched.json()["conversation"].clone();
    assert_eq!(patched["title"], "Topics");
    assert_eq!(patched["is_pinned"], true);
    assert_eq!(patched["system_prompt"], Value::Null, "null removes the system prompt");
    assert_eq!(patched["ai_model"], "offline-tutor", "absent fields stay");

    assert_eq!(app.call(Method::DELETE, &path, Some(&token), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, Some(&token)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.call(Method::DELETE, &path, Some(&token), None).await.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_null_where_the_schema_has_none_is_a_400_and_changes_nothing(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;
    let created = create(&app, &token, json!({"title": "Kept"})).await;
    let path = format!("/api/conversations/{}", id(&created));

    for field in ["title", "is_archived", "is_pinned"] {
        let body = json!({"title": "Changed", "is_pinned": true, field: null});
        let response = app.call(Method::PATCH, &path, Some(&token), Some(body)).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{field}: {}", response.text());
        assert_eq!(response.json()["error"]["code"], "bad_request", "{field}");
    }
    for field in ["title", "system_prompt"] {
        let response =
            app.call(Method::POST, "/api/conversations", Some(&token), Some(json!({field: null}))).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{field}: {}", response.text());
    }
    let shown = app.get(&path, Some(&token)).await.json()["conversation"].clone();
    assert_eq!(shown, created, "no refused patch changed anything");
    assert_eq!(list(&app, &token, "").await["conversations"].as_array().unwrap().len(), 1);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn invalid_fields_are_named_and_a_stranger_model_is_refused(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;
    let response = app
        .call(
            Method::POST,
            "/api/conversations",
            Some(&token),
            Some(json!({"title": " ", "ai_model": "gpt-17", "system_prompt": "p".repeat(8001)})),
        )
        .await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<Value> =
        response.json()["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].clone()).collect();
    assert_eq!(fields, [json!("title"), json!("ai_model"), json!("system_prompt")]);

    let wrong_type =
        app.call(Method::POST, "/api/conversations", Some(&token), Some(json!({"title": 7}))).await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/api/conversations", None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/api/conversations/not-a-uuid", Some(&token)).await.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn untitled_numbers_count_up_per_owner(pool: PgPool) {
    let app = offline_app(pool);
    let ada = user_token(&app, "ada@example.com").await;
    let grace = user_token(&app, "grace@example.com").await;
    let guest = guest_token(&app).await;
    assert_eq!(create(&app, &ada, json!({})).await["title"], "Untitled 1");
    let second = create(&app, &ada, json!({})).await;
    assert_eq!(second["title"], "Untitled 2");
    assert_eq!(create(&app, &ada, json!({"title": "Named"})).await["title"], "Named");
    // Numbers are never handed out twice, even once the newest is gone.
    app.call(Method::DELETE, &format!("/api/conversations/{}", id(&second)), Some(&ada), None).await;
    assert_eq!(create(&app, &ada, json!({})).await["title"], "Untitled 3");
    assert_eq!(create(&app, &grace, json!({})).await["title"], "Untitled 1");
    assert_eq!(create(&app, &guest, json!({})).await["title"], "Untitled 1");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn concurrent_creates_get_distinct_untitled_numbers(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;
    let mut creates = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (app, token) = (app.clone(), token.clone());
        creates.spawn(
            async move { create(&app, &token, json!({})).await["title"].as_str().unwrap().to_owned() },
        );
    }
    let mut titles = creates.join_all().await;
    titles.sort_by_key(|t| t.trim_start_matches("Untitled ").parse::<u32>().unwrap());
    let expected: Vec<String> = (1..=8).map(|n| format!("Untitled {n}")).collect();
    assert_eq!(titles, expected);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn the_list_shows_pinned_first_then_latest_activity_and_filters_archived(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;
    let first = create(&app, &token, json!({"title": "first"})).await;
    let second = create(&app, &token, json!({"title": "second"})).await;
    let third = create(&app, &token, json!({"title": "third"})).await;
    let archived = create(&app, &token, json!({"title": "archived"})).await;
    assert_eq!(titles(&list(&app, &token, "").await), ["archived", "third", "second", "first"]);

    // A message makes "first" the latest activity; pinning "second" puts it on top.
    assert_eq!(post_message(&app, &token, &id(&first), "What is a node?").await.status, StatusCode::CREATED);
    let patch = |c: &Value, body: Value| {
        let (app, token, path) = (app.clone(), token.clone(), format!("/api/conversations/{}", id(c)));
        async move {
            assert_eq!(app.call(Method::PATCH, &path, Some(&token), Some(body)).await.status, StatusCode::OK)
        }
    };
    patch(&second, json!({"is_pinned": true})).await;
    patch(&archived, json!({"is_archived": true})).await;
    assert_eq!(titles(&list(&app, &token, "").await), ["second", "first", "third"]);
    assert_eq!(titles(&list(&app, &token, "?archived=true").await), ["archived"]);
    let _ = third;

    // Page by page, every conversation once, in the same order.
    let mut seen = Vec::new();
    let mut query = "?limit=1".to_owned();
    loop {
        let page = list(&app, &token, &query).await;
        seen.extend(titles(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["second", "first", "third"]);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn bad_query_values_are_a_400(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;
    // A well-formed cursor whose time PostgreSQL cannot hold (year -9000) is forged: 400.
    let forged = format!(
        "?cursor={}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            format!("0:-346000000000000000:{}", uuid::Uuid::nil())
        )
    );
    for query in ["?archived=maybe", "?limit=0", "?limit=101", "?limit=many", "?cursor=not-a-cursor", &forged]
    {
        let response = app.get(&format!("/api/conversations{query}"), Some(&token)).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(response.error_code(), "bad_request");
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn deleting_a_conversation_deletes_its_messages(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;
    let conversation = id(&create(&app, &token, json!({})).await);
    post_message(&app, &token, &conversation, "What is a node?").await;
    post_message(&app, &token, &conversation, "And a topic?").await;
    assert_eq!(stored_messages(app.pool(), &conversation).await, 4);
    let path = format!("/api/conversations/{conversation}");
    assert_eq!(app.call(Method::DELETE, &path, Some(&token), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(stored_messages(app.pool(), &conversation).await, 0);
}

/// Every route, asked by `stranger` about `owner`'s conversation, is a 404, and nothing of
/// it changed.
async fn every_route_is_a_404(app: &TestApp, owner: &str, stranger: &str) {
    let conversation = create(app, owner, json!({"title": "private"})).await;
    let exchange = post_message(app, owner, &id(&conversation), "What is a topic?").await.json();
    let (c, m) = (id(&conversation), id(&exchange["user_message"]));
    // A failed reply, so that retry would be allowed for the owner.
    sqlx::query!(
        r#"UPDATE messages SET is_error = true, error_details = '{"code":"model_timeout","message":"slow"}'
           WHERE reply_to = $1::uuid"#,
        uuid(&m)
    )
    .execute(app.pool())
    .await
    .unwrap();

    let path = format!("/api/conversations/{c}");
    let before = app.get(&path, Some(owner)).await.json()["conversation"].clone();
    let responses = [
        ("get", app.get(&path, Some(stranger)).await),
        ("patch", app.call(Method::PATCH, &path, Some(stranger), Some(json!({"title": "mine now"}))).await),
        ("delete", app.call(Method::DELETE, &path, Some(stranger), None).await),
        ("messages", app.get(&format!("{path}/messages"), Some(stranger)).await),
        ("post", post_message(app, stranger, &c, "hello").await),
        ("retry", retry(app, stranger, &c, &m).await),
    ];
    for (route, response) in responses {
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{route}: {}", response.text());
        assert_eq!(response.error_code(), "not_found");
    }
    let listed = list(app, stranger, "").await;
    assert!(!listed["conversations"].as_array().unwrap().iter().any(|x| x["id"] == c.as_str()), "not listed");
    let still = app.get(&path, Some(owner)).await.json()["conversation"].clone();
    assert_eq!(still, before, "nothing changed");
    assert_eq!(stored_messages(app.pool(), &c).await, 2);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_user_cannot_reach_another_users_conversation(pool: PgPool) {
    let app = offline_app(pool);
    let ada = user_token(&app, "ada@example.com").await;
    let grace = user_token(&app, "grace@example.com").await;
    every_route_is_a_404(&app, &ada, &grace).await;
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn guests_and_users_cannot_reach_each_others_conversations(pool: PgPool) {
    let app = offline_app(pool);
    let ada = user_token(&app, "ada@example.com").await;
    let guest = guest_token(&app).await;
    every_route_is_a_404(&app, &ada, &guest).await;
    every_route_is_a_404(&app, &guest, &ada).await;
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_guest_cannot_reach_another_guests_conversation(pool: PgPool) {
    let app = offline_app(pool);
    let first = guest_token(&app).await;
    let second = guest_token(&app).await;
    every_route_is_a_404(&app, &first, &second).await;
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn the_models_route_lists_the_offline_tutor_without_a_key(pool: PgPool) {
    let app = offline_app(pool);
    let guest = guest_token(&app).await;
    let response = app.get("/api/models", Some(&guest)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.json(),
        json!({"models": [{"id": "offline-tutor", "offline": true}], "default": "offline-tutor"})
    );
    assert_eq!(app.get("/api/models", None).await.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn paging_while_messages_arrive_neither_skips_nor_repeats(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;
    let mut created = Vec::new();
    for n in 0..7 {
        created.push(id(&create(&app, &token, json!({"title": format!("c{n}")})).await));
    }

    let page = |cursor: Option<String>| {
        let (app, token) = (app.clone(), token.clone());
        async move {
            let query = cursor.map_or(String::new(), |c| format!("&cursor={c}"));
            let response = app.get(&format!("/api/conversations?limit=3{query}"), Some(&token)).await;
            assert_eq!(response.status, StatusCode::OK, "{}", response.text());
            let body = response.json();
            let ids: Vec<String> = body["conversations"].as_array().unwrap().iter().map(id).collect();
            (ids, body["next_cursor"].as_str().map(str::to_owned))
        }
    };
    let (first, cursor) = page(None).await;
    // Between the fetches, the oldest conversations (still to come) and one already seen get
    // messages, which moves them to the top of a fresh list; and a new conversation starts.
    for conversation in [&created[0], &created[1], &first[0]] {
        let response = post_message(&app, &token, conversation, "What is a topic?").await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    }
    create(&app, &token, json!({"title": "newer"})).await;
    let (second, cursor) = page(cursor).await;
    let (third, cursor) = page(cursor).await;
    assert_eq!(cursor, None);

    let seen: Vec<String> = first.iter().chain(&second).chain(&third).cloned().collect();
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "a conversation was repeated: {first:?} {second:?} {third:?}");
    let mut expected = created.clone();
    expected.sort();
    assert_eq!(sorted, expected, "every conversation of the first page's moment is listed once");
}

/// The create body's fields are all optional, so the body is too: a bare POST makes a
/// conversation with the defaults; something sent without a content type is still a 415.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_post_without_a_body_creates_with_the_defaults(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;

    let created = app.call(Method::POST, "/api/conversations", Some(&token), None).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    assert_eq!(created.json()["conversation"]["ai_model"], "offline-tutor");

    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/api/conversations")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::from("{}"))
        .unwrap();
    let unlabelled = app.send(request).await;
    assert_eq!(unlabelled.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", unlabelled.text());
    assert_eq!(unlabelled.error_code(), "unsupported_media_type");
}

/// An empty `?cursor=` (or `?before=`) is no cursor: the first page, not a 400.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn an_empty_cursor_is_the_first_page(pool: PgPool) {
    let app = offline_app(pool);
    let token = user_token(&app, "ada@example.com").await;
    let created = create(&app, &token, json!({"title": "Only"})).await;

    assert_eq!(titles(&list(&app, &token, "?cursor=").await), ["Only"]);
    let messages =
        app.get(&format!("/api/conversations/{}/messages?before=", id(&created)), Some(&token)).await;
    assert_eq!(messages.status, StatusCode::OK, "{}", messages.text());
    let bad = app.get("/api/conversations?cursor=not-a-cursor", Some(&token)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
}

/// An account deleted while its request to create a conversation is in flight: the request
/// answers 401 (its token names nobody now), never a 500 from the foreign key. The deletion is
/// held open until both creates wait on the user rows, so the race is certain.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn creating_while_the_account_goes_is_a_401(pool: PgPool) {
    let app = offline_app(pool.clone());
    let ada = app.signed_up("ada@example.com").await;
    let bob = app.signed_up("bob@example.com").await;

    let mut deletion = pool.begin().await.unwrap();
    sqlx::query!(r#"DELETE FROM "user" WHERE id = ANY($1)"#, &[ada.id.to_string(), bob.id.to_string()])
        .execute(&mut *deletion)
        .await
        .unwrap();
    // A titled conversation is one insert; an untitled one bumps the title counter first.
    let creates = [(ada, json!({"title": "Mine"})), (bob, json!({}))].map(|(user, body)| {
        let app = app.clone();
        tokio::spawn(async move {
            app.call(Method::POST, "/api/conversations", Some(&user.access_token), Some(body)).await
        })
    });
    let waiting_on_locks = || async {
        let waiting: i64 = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"#,
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        waiting
    };
    let mut tries = 0;
    while waiting_on_locks().await < 2 {
        tries += 1;
        assert!(tries < 200, "the creates never waited on the deleted users");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    deletion.commit().await.unwrap();

    for create in creates {
        let response = create.await.unwrap();
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{}", response.text());
        assert_eq!(response.error_code(), "unauthorized");
    }
    let left: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM conversations"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}
