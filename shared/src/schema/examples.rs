//! The examples of the OpenAPI document that more than one type or body shows: one reader, one
//! conversation and one exchange with the tutor. A type's `#[schema(examples(...))]` cites
//! them; `local::openapi` makes every body's example from its types' (CI checks each against
//! its schema).

use serde_json::{Value, json};

/// The user id of every example.
pub const USER_ID: &str = "3c9b2f1e-5d4a-4b8e-9f21-7a6d0c5e8b13";
/// The session id of every example.
pub const SESSION_ID: &str = "9e1f4b7a-2c3d-4e5f-8a9b-0c1d2e3f4a5b";
const CONVERSATION_ID: &str = "5a2e8c14-7b3f-4d91-a6e0-2f8b1c9d4e73";
const USER_MESSAGE_ID: &str = "6f9c2d1e-8a41-4c1b-9d7e-3b5a0c2e4f10";
const REPLY_ID: &str = "0b7e3c9a-2f64-4d8e-a1c5-7e9f2b4d6a80";

/// A reader as `GET /api/auth/me` shows them.
pub fn user() -> Value {
    json!({
        "id": USER_ID,
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "image": null,
        "email_verified": true,
        "is_active": true,
        "preferences": {"theme": "dark"},
        "last_login": "2026-11-29T09:58:12Z",
        "created_at": "2026-11-20T08:15:00Z",
        "updated_at": "2026-11-29T09:58:12Z",
    })
}

/// One of the reader's live sessions.
pub fn session_info() -> Value {
    json!({
        "id": SESSION_ID,
        "created_at": "2026-11-29T09:58:12Z",
        "expires_at": "2026-12-29T09:58:12Z",
        "ip_address": "203.0.113.10",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0",
        "current": true,
    })
}

/// A conversation with the tutor.
pub fn conversation() -> Value {
    json!({
        "id": CONVERSATION_ID,
        "title": "Untitled 1",
        "ai_model": "gpt-4o-mini",
        "system_prompt": null,
        "is_archived": false,
        "is_pinned": false,
        "created_at": "2026-11-29T09:59:00Z",
        "updated_at": "2026-11-29T09:59:00Z",
        "last_message_at": "2026-11-29T10:00:02Z",
    })
}

/// A citation of the book.
fn citation() -> Value {
    json!({
        "chapter_id": 1,
        "section": "The vocabulary of ROS 2",
        "title": "ROS 2 Nodes and Topics",
        "anchor": "the-vocabulary-of-ros-2",
    })
}

/// A reader's question, as stored.
pub fn user_message() -> Value {
    json!({
        "id": USER_MESSAGE_ID,
        "sender": "user",
        "content": "What is a ROS 2 topic?",
        "ai_model": null,
        "reply_to": null,
        "is_error": false,
        "error_details": null,
        "citations": [],
        "created_at": "2026-11-29T10:00:00Z",
    })
}

/// The tutor's answer to [`user_message`], as stored.
pub fn reply() -> Value {
    json!({
        "id": REPLY_ID,
        "sender": "ai",
        "content": "A topic is a named stream of messages between nodes: publishers write to it, subscribers read from it.",
        "ai_model": "gpt-4o-mini",
        "reply_to": USER_MESSAGE_ID,
        "is_error": false,
        "error_details": null,
        "citations": [citation()],
        "created_at": "2026-11-29T10:00:02Z",
    })
}

/// The question and its answer.
pub fn exchange() -> Value {
    json!({"user_message": user_message(), "reply": reply()})
}

/// The same exchange streamed (`Accept: text/event-stream`): the question, the answer in pieces,
/// its citations, the stored answer.
pub fn event_stream() -> Value {
    let reply = reply();
    let text = reply["content"].as_str().unwrap_or_default();
    let (first, rest) = text.split_at(text.find(':').unwrap_or(text.len()));
    let events = [
        ("user_message", user_message()),
        ("delta", json!({"text": first})),
        ("delta", json!({"text": rest})),
        ("citations", json!({"citations": reply["citations"]})),
        ("done", reply.clone()),
    ];
    let stream: String = events
        .iter()
        .enumerate()
        .map(|(n, (event, data))| format!("event: {event}\nid: {}\ndata: {data}\n\n", n + 1))
        .collect();
    Value::String(stream)
}
