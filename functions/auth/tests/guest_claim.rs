//! Guest chat (the guest-chat model): a guest's conversations go to the user who registers or logs in
//! with the guest's token, and to no one else.

use axum::http::{Method, StatusCode};
use primer_shared::domain::auth::tokens;
use primer_shared::domain::conversations::{
    self, ConversationQuery, MessageContent, NewConversation, Owner, PageSize,
};
use primer_shared::domain::ids::ConversationId;
use primer_shared::domain::tutor::ModelCatalog;
use primer_shared::test_util::TestApp;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

fn app(pool: PgPool) -> TestApp {
    TestApp::new(pool, auth::router)
}

/// A new guest: their token and the guest id it stands for.
async fn guest(app: &TestApp) -> (String, Uuid) {
    let token = app.guest().await.json()["guest_token"].as_str().unwrap().to_owned();
    let guest_id = tokens::verify_guest(&app.state.config.jwt, &token).unwrap().sub;
    (token, guest_id)
}

/// Starts an untitled conversation for `owner`, with one message in it.
async fn start_conversation(app: &TestApp, owner: &Owner) -> ConversationId {
    let mut conn = app.pool().acquire().await.unwrap();
    let new = NewConversation {
        title: None,
        ai_model: ModelCatalog::new(None).default_model(),
        system_prompt: None,
    };
    let conversation = conversations::create(&mut conn, owner, &app.state.config.usage, new).await.unwrap();
    let content = MessageContent::parse("What is a ROS 2 topic?".into()).unwrap();
    conversations::add_user_message(&mut conn, conversation.id, &content).await.unwrap();
    conversation.id
}

/// The ids of `owner`'s conversations, as their list shows them.
async fn conversations_of(app: &TestApp, owner: &Owner) -> Vec<ConversationId> {
    let query = ConversationQuery { archived: false, limit: PageSize::parse(None, 20).unwrap(), after: None };
    let page = conversations::list(app.pool(), owner, query).await.unwrap();
    let mut ids: Vec<ConversationId> = page.items.iter().map(|c| c.id).collect();
    ids.sort();
    ids
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn registering_with_a_guest_token_hands_over_the_guests_conversations(pool: PgPool) {
    let app = app(pool);
    let (token, guest_id) = guest(&app).await;
    let (_, other_guest) = guest(&app).await;
    let mut theirs = vec![
        start_conversation(&app, &Owner::Guest(guest_id)).await,
        start_conversation(&app, &Owner::Guest(guest_id)).await,
    ];
    theirs.sort();
    let not_theirs = start_conversation(&app, &Owner::Guest(other_guest)).await;

    let body = json!({"email": "ada@example.com", "password": "correct horse battery", "name": "Ada", "guest_token": token});
    let registered = app.call(Method::POST, "/api/auth/register", None, Some(body)).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.text());
    let user_id = registered.json()["user"]["id"].as_str().unwrap().to_owned();

    assert_eq!(conversations_of(&app, &Owner::User(user_id.clone().into())).await, theirs);
    assert!(
        conversations_of(&app, &Owner::Guest(guest_id)).await.is_empty(),
        "the guest no longer sees them"
    );
    assert_eq!(
        conversations_of(&app, &Owner::Guest(other_guest)).await,
        [not_theirs],
        "another guest keeps theirs"
    );
    let messages = conversations::list_messages(
        app.pool(),
        &Owner::User(user_id.into()),
        theirs[0],
        PageSize::parse(None, 50).unwrap(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(messages.items.len(), 1, "the messages come along");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn logging_in_with_a_guest_token_hands_over_the_guests_conversations(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("grace@example.com").await;
    let own = start_conversation(&app, &Owner::User(user.id.clone())).await;
    let (token, guest_id) = guest(&app).await;
    let claimed = start_conversation(&app, &Owner::Guest(guest_id)).await;

    // A failed login hands over nothing.
    let wrong = json!({"email": user.email, "password": "not the password", "guest_token": token});
    assert_eq!(
        app.call(Method::POST, "/api/auth/login", None, Some(wrong)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(conversations_of(&app, &Owner::Guest(guest_id)).await, [claimed]);

    let body = json!({"email": user.email, "password": user.password, "guest_token": token});
    let login = app.call(Method::POST, "/api/auth/login", None, Some(body)).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let mut expected = vec![own, claimed];
    expected.sort();
    assert_eq!(conversations_of(&app, &Owner::User(user.id)).await, expected);
    assert!(conversations_of(&app, &Owner::Guest(guest_id)).await.is_empty());
    let counters: i64 = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM conversation_title_counters WHERE guest_id = $1"#,
        guest_id
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(counters, 0, "the guest's title counter went with the claim");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_bad_guest_token_is_a_field_error(pool: PgPool) {
    let app = app(pool);
    let body = json!({"email": "ada@example.com", "password": "correct horse battery", "name": "Ada", "guest_token": "nope"});
    let response = app.call(Method::POST, "/api/auth/register", None, Some(body)).await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(response.json()["error"]["details"][0]["field"], "guest_token");
}
