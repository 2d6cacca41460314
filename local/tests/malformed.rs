//! Every operation of the contract, fed malformed input generated from openapi.json: NUL and
//! invalid UTF-8 in path ids, over-long ids, bodies that are not JSON, of the wrong shape, full
//! of NULs or over-long values. Nothing is a 5xx, and every failure has the error shape.

use axum::body::Body;
use axum::http::{Method, Request, header};
use primer_shared::test_util::TestApp;
use serde_json::{Value, json};
use sqlx::PgPool;

/// Bodies a careless or hostile client sends.
fn bad_bodies() -> Vec<String> {
    // Over the body limit (a 413), and each field over its own limit in a body under it (so
    // every field's length check runs).
    let long = "é".repeat(40_000);
    let over = "é".repeat(3_000);
    vec![
        "{".into(),
        "null".into(),
        "[]".into(),
        "\"text\"".into(),
        json!({"email": "a\u{0}b@example.com", "password": "\u{0}".repeat(10), "name": "\u{0}",
               "content": "\u{0}", "title": "\u{0}", "refresh_token": "\u{0}"})
        .to_string(),
        json!({"email": long, "password": long, "name": long, "content": long, "title": long,
               "system_prompt": long, "software_context": long, "preferences": long})
        .to_string(),
        json!({"email": format!("{over}@example.com"), "password": over, "name": over,
               "current_password": over, "new_password": over, "title": over, "system_prompt": over,
               "token": over, "refresh_token": over, "guest_token": over, "image": format!("https://{over}")})
        .to_string(),
        json!({"email": 1, "password": [], "name": {}, "content": null, "title": 7, "is_pinned": "yes",
               "software_context": [], "hardware_context": 3, "learning_goals": "x"})
        .to_string(),
    ]
}

/// Path ids that name nothing and must not reach SQL unchecked.
const BAD_IDS: [&str; 5] = ["%00", "a%00b", "%FF%FE", "%E2%80%AE", "..%2F..%2Fetc"];

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn every_operation_answers_malformed_input_in_the_contract(pool: PgPool) {
    let app = TestApp::new(pool, local::app);
    let user = app.signed_up("ada@example.com").await;
    let openapi: Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
    let long_id = "9".repeat(300);

    let mut sent = 0;
    for (template, operations) in openapi["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
            // A session of its own per operation: logout and the like end theirs.
            let session = app.signed_in(&user).await;
            let mut paths: Vec<String> = if template.contains('{') {
                BAD_IDS.iter().copied().chain([long_id.as_str()]).map(|id| fill(template, id)).collect()
            } else {
                vec![template.clone()]
            };
            paths.push(format!("{}?limit=%00&cursor=%FF&archived=maybe&format=%00", fill(template, "1")));
            for path in paths {
                for body in bad_bodies() {
                    let request = Request::builder()
                        .method(method.clone())
                        .uri(&path)
                        .header(header::AUTHORIZATION, format!("Bearer {}", session.access_token))
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(body.clone()))
                        .unwrap();
                    let response = app.send(request).await;
                    sent += 1;
                    let what = format!(
                        "{method} {path} {}: {}",
                        body.chars().take(40).collect::<String>(),
                        response.text()
                    );
                    assert!(!response.status.is_server_error(), "{what}");
                    if response.status.is_client_error() {
                        let error = &response.json()["error"];
                        assert!(
                            error["code"].is_string()
                                && error["message"].is_string()
                                && error["request_id"].is_string(),
                            "{what}"
                        );
                    }
                }
            }
        }
    }
    assert!(sent > 500, "only {sent} requests were generated");
}

/// `template` with every `{param}` replaced by `id`.
fn fill(template: &str, id: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        out.push_str(&rest[..open]);
        out.push_str(id);
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}
