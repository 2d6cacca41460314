//! The offline tutor, the default without a model: it quotes and cites the book, and says so
//! when the book has nothing on a question.

use crate::common;

use std::path::Path;

use axum::http::StatusCode;
use common::{create, id, offline_app, post_message, user_token};
use primer_shared::domain::book;
use primer_shared::test_util::TestApp;
use serde_json::{Value, json};
use sqlx::PgPool;

async fn ask(app: &TestApp, question: &str) -> Value {
    let token = user_token(app, &format!("reader{}@example.com", rand_suffix())).await;
    let conversation = id(&create(app, &token, json!({})).await);
    let response = post_message(app, &token, &conversation, question).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    response.json()["reply"].clone()
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR", fixtures("book"))]
async fn it_quotes_and_cites_the_section_that_holds_the_question_words(pool: PgPool) {
    let app = offline_app(pool);
    let reply = ask(&app, "What is a ROS 2 topic?").await;
    assert_eq!(reply["ai_model"], "offline-tutor");
    let citation = &reply["citations"][0];
    assert_eq!(citation["chapter_id"], 1);
    assert_eq!(citation["section"], "Topics and messages");
    assert_eq!(citation["title"], "ROS 2 Nodes and Topics");

    let cited: String = sqlx::query_scalar!(
        "SELECT content FROM chapter_sections WHERE chapter_id = 1 AND heading = $1",
        citation["section"].as_str().unwrap()
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert!(cited.contains("topic"), "the cited section holds the question's words");

    let text = reply["content"].as_str().unwrap();
    assert!(text.contains("a **topic** is a named channel"), "it quotes the book: {text}");
    assert!(text.contains("section “Topics and messages”"), "{text}");
    assert_ne!(text, "What is a ROS 2 topic?", "not an echo");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR", fixtures("book"))]
async fn it_answers_a_loosely_worded_question_from_the_right_section(pool: PgPool) {
    let app = offline_app(pool);
    let reply = ask(&app, "Could you explain which simulator needs an NVIDIA GPU?").await;
    assert_eq!(reply["citations"][0]["section"], "Choosing a simulator", "{reply}");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR", fixtures("book"))]
async fn it_says_so_when_the_book_has_nothing_on_the_question(pool: PgPool) {
    let app = offline_app(pool);
    for question in ["What is the capital of France?", "How do I bake sourdough bread?", "hello?"] {
        let reply = ask(&app, question).await;
        let text = reply["content"].as_str().unwrap();
        assert!(text.contains("could not find anything about that in the book"), "{question}: {text}");
        assert!(text.contains("ROS 2 Nodes and Topics; Simulation"), "it names what the book covers");
        assert_eq!(reply["citations"], json!([]));
        assert_eq!(reply["is_error"], false);
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn it_answers_from_the_real_book(pool: PgPool) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content/book");
    book::import_dir(&pool, &dir).await.expect("the book imports");
    let app = offline_app(pool);
    let reply = ask(&app, "What is a ROS 2 topic?").await;
    assert_eq!(reply["citations"][0]["chapter_id"], 1, "{reply}");
    let reply = ask(&app, "How do I compute the inertia of a link in URDF?").await;
    assert_eq!(reply["citations"][0]["chapter_id"], 2, "{reply}");
    let reply = ask(&app, "Who won the football world cup?").await;
    assert_eq!(reply["citations"], json!([]), "{reply}");
}
