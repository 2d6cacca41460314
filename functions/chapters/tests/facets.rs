//! The cache follows what a chapter depends on: for each facet of the profile, two profiles that
//! differ only in it give a chapter that uses it two different texts, and leave a chapter that
//! does not use it in the cache. And a `PATCH` of the learning goals keeps every chapter without a
//! goal directive cached, with many requests at once.

use crate::common;

use axum::Router;
use axum::http::{Method, StatusCode};
use primer_shared::domain::book::markup::KEYS;
use primer_shared::domain::book::{self, ChapterSource};
use primer_shared::domain::profile::examples::api_example;
use primer_shared::test_util::{TestApp, TestUser, store_profile};
use primer_shared::{AppState, http::app};
use serde_json::{Value, json};
use sqlx::PgPool;

/// The chapters service with the profile routes beside it (the tests edit profiles over HTTP).
fn with_profile(state: AppState) -> Router {
    app::service(profile::routes().merge(chapters::routes()), state)
}

/// One facet: a directive condition on it that the full example profile does not meet, and the
/// change (a JSON pointer into the profile, a new value) that makes the profile meet it.
struct Case {
    key: &'static str,
    value: &'static str,
    pointer: &'static str,
    changed: fn() -> Value,
}

const CASES: [Case; 13] = [
    Case { key: "level", value: "advanced", pointer: "/python_proficiency", changed: || json!("Advanced") },
    Case {
        key: "experience",
        value: "advanced",
        pointer: "/software_context/experience_level",
        changed: || json!("Advanced"),
    },
    Case {
        key: "years",
        value: "10+",
        pointer: "/software_context/experience_years",
        changed: || json!("10+"),
    },
    Case {
        key: "robotics",
        value: "real_hardware",
        pointer: "/robotics_experience",
        changed: || json!("real_hardware"),
    },
    Case {
        key: "role",
        value: "Full Stack Developer",
        pointer: "/developer_role",
        changed: || json!("Full Stack Developer"),
    },
    Case {
        key: "language",
        value: "Rust",
        pointer: "/software_context/languages",
        changed: || json!(["Python", "Cpp", "Rust"]),
    },
    Case {
        key: "skill",
        value: "ROS 2:advanced",
        pointer: "/software_context/skill_levels/ROS 2",
        changed: || json!("Advanced"),
    },
    Case {
        key: "framework",
        value: "MoveIt",
        pointer: "/software_context/frameworks",
        changed: || json!(["ROS 2", "PyTorch", "MoveIt"]),
    },
    Case {
        key: "tool",
        value: "Docker",
        pointer: "/software_context/preferred_tools",
        changed: || json!(["VSCode", "ROS", "Docker"]),
    },
    Case {
        key: "device",
        value: "GPU",
        pointer: "/hardware_context/devices",
        changed: || json!(["Simulation", "RobotArm", "Jetson", "GPU"]),
    },
    Case {
        key: "constraint",
        value: "NoGPU",
        pointer: "/hardware_context/constraints",
        changed: || json!(["NoInternet", "NoGPU"]),
    },
    Case {
        key: "architecture",
        value: "ARM64",
        pointer: "/hardware_context/architecture_familiarity",
        changed: || json!(["x86_64", "CUDA", "ARM64"]),
    },
    Case {
        key: "goal",
        value: "locomotion",
        pointer: "/learning_goals",
        changed: || json!(["simulation", "manipulation", "locomotion"]),
    },
];

#[test]
fn every_directive_key_has_a_case() {
    let keys: Vec<&str> = CASES.iter().map(|c| c.key).collect();
    assert_eq!(keys, KEYS);
}

async fn import(pool: &PgPool, file: &str, markdown: String) {
    let source = ChapterSource::parse(file, markdown).expect("the test chapter is valid");
    book::import_chapter(&mut pool.acquire().await.unwrap(), &source).await.unwrap();
}

async fn read(app: &TestApp, user: &TestUser, chapter: u32) -> Value {
    let response =
        app.get(&format!("/api/chapters/{chapter}/personalized?format=json"), Some(&user.access_token)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    response.json()
}

/// Chapter 1 uses only the facet of `case`; chapter 2 uses every other facet (and, beside a
/// skill case, another skill). The reader's profile changes in that facet alone.
async fn differs_where_used_and_stays_cached_where_not(pool: PgPool, case: &Case) {
    let app = TestApp::new(pool, with_profile);
    let passage = format!("Only for readers matching {}.", case.key);
    let uses = format!(
        "# Uses {key}\n\nFor everyone.\n\n:::only{{{key}=\"{value}\"}}\n{passage}\n:::\n",
        key = case.key,
        value = case.value
    );
    import(app.pool(), "01-uses-it.md", uses).await;
    let mut others = String::from("# Uses the others\n\nFor everyone.\n");
    for other in CASES.iter().filter(|c| c.key != case.key) {
        others
            .push_str(&format!("\n:::only{{{}=\"{}\"}}\nFor {}.\n:::\n", other.key, other.value, other.key));
    }
    if case.key == "skill" {
        others.push_str("\n:::except{skill=\"Python:intermediate\"}\nFor another Python level.\n:::\n");
    }
    import(app.pool(), "02-uses-the-others.md", others).await;

    let user = app.signed_up("reader@example.com").await;
    let before_hash = store_profile(app.pool(), &user.id, api_example()).await;
    let (uses_before, others_before) = (read(&app, &user, 1).await, read(&app, &user, 2).await);
    assert_eq!(
        (uses_before["cached"].clone(), others_before["cached"].clone()),
        (json!(false), json!(false))
    );

    let mut document = api_example();
    *document.pointer_mut(case.pointer).unwrap_or_else(|| panic!("{} is in the example", case.pointer)) =
        (case.changed)();
    let after_hash = store_profile(app.pool(), &user.id, document).await;
    assert_ne!(after_hash, before_hash, "{}: the profiles differ", case.key);

    let uses_after = read(&app, &user, 1).await;
    assert_eq!(uses_after["cached"], false, "{}: the chapter that uses it is made again", case.key);
    let (before, after) =
        (uses_before["markdown"].as_str().unwrap(), uses_after["markdown"].as_str().unwrap());
    assert!(!before.contains(&passage) && after.contains(&passage), "{}:\n{before}\n---\n{after}", case.key);
    assert_ne!(uses_after["fingerprint"], uses_before["fingerprint"]);

    let others_after = read(&app, &user, 2).await;
    assert_eq!(others_after["cached"], true, "{}: the chapter that does not use it is a hit", case.key);
    assert_eq!(others_after["markdown"], others_before["markdown"]);
    assert_eq!(others_after["fingerprint"], others_before["fingerprint"]);
    assert_eq!(others_after["profile_hash"], after_hash.as_str(), "the response names the current profile");
}

macro_rules! facet_tests {
    ($($name:ident: $index:expr;)+) => {$(
        #[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
        async fn $name(pool: PgPool) {
            differs_where_used_and_stays_cached_where_not(pool, &CASES[$index]).await;
        }
    )+};
}

facet_tests! {
    python_level: 0;
    programming_level: 1;
    years_of_programming: 2;
    robotics_experience: 3;
    developer_role: 4;
    languages: 5;
    skill_level: 6;
    frameworks: 7;
    preferred_tools: 8;
    devices: 9;
    constraints: 10;
    architecture_familiarity: 11;
    learning_goals: 12;
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_goal_patch_keeps_every_chapter_without_goal_directives_cached(pool: PgPool) {
    let app = TestApp::new(pool, with_profile);
    common::import_fixture(app.pool()).await;
    let skills_and_constraints = "# Training\n\n:::only{skill=\"ROS 2:beginner\"}\nNew to ROS 2.\n:::\n\n\
        :::only{constraint=\"NoInternet\"}\nDownload the models first.\n:::\n\n:::except{tool=\"Docker\"}\nNo containers.\n:::\n";
    import(app.pool(), "02-training.md", skills_and_constraints.into()).await;
    import(app.pool(), "03-plain.md", "# Plain\n\nThe same for everyone.\n".into()).await;
    let user = app.signed_up("reader@example.com").await;
    let put = app.call(Method::PUT, "/api/profile", Some(&user.access_token), Some(api_example())).await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    let mut before = Vec::new();
    for chapter in 1..=3 {
        let body = read(&app, &user, chapter).await;
        assert_eq!(body["cached"], false);
        before.push(body);
    }

    let patch = json!({"learning_goals": ["locomotion", "humanoids"]});
    let patched = app.call(Method::PATCH, "/api/profile", Some(&user.access_token), Some(patch)).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let new_hash = patched.json()["profile"]["profile_hash"].clone();
    assert_ne!(new_hash, put.json()["profile"]["profile_hash"]);

    // Many readers' requests at once, through the pooler: every one of them a hit.
    let requests: Vec<_> = (0..4)
        .flat_map(|_| 1..=3)
        .map(|chapter| {
            let (app, user) = (app.clone(), user.clone());
            tokio::spawn(async move { (chapter, read(&app, &user, chapter).await) })
        })
        .collect();
    for request in requests {
        let (chapter, body) = request.await.unwrap();
        let made = &before[chapter as usize - 1];
        assert_eq!(body["cached"], true, "chapter {chapter} was made again");
        assert_eq!((&body["markdown"], &body["fingerprint"]), (&made["markdown"], &made["fingerprint"]));
        assert_eq!(body["profile_hash"], new_hash);
    }
    assert_eq!(common::copies(app.pool()).await, 3, "nothing was made twice");

    // A chapter that does read the goals is made for the new ones.
    import(
        app.pool(),
        "04-goals.md",
        "# Goals\n\n:::only{goal=\"locomotion\"}\nSee the locomotion chapter.\n:::\n".into(),
    )
    .await;
    let goals = read(&app, &user, 4).await;
    assert_eq!(goals["cached"], false);
    let markdown = goals["markdown"].as_str().unwrap();
    assert!(markdown.contains("See the locomotion chapter."), "{markdown}");
    assert!(
        markdown.contains("Shaped by your learning goals (Humanoid robots and Locomotion)"),
        "{markdown}"
    );
}
