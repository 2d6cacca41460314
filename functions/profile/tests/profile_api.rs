//! The profile routes against a real PostgreSQL database (one per test, from `#[sqlx::test]`).

use crate::common;

use axum::http::StatusCode;
use common::{ProfileRoutes, app, full_profile, invalid_fields, seed_000_profile};
use primer_shared::domain::auth::sessions;
use primer_shared::domain::ids::UserId;
use serde_json::{Value, json};
use sqlx::PgPool;

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn the_catalog_is_served_without_a_token(pool: PgPool) {
    let app = app(pool);
    let response = app.profile_options().await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    let field = |name: &str| -> Value {
        body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not in the catalog"))
    };
    let languages = field("software_context.languages");
    assert_eq!(languages["kind"], "multiple");
    assert!(languages["options"].as_array().unwrap().contains(&json!({"value": "Cpp", "label": "C++"})));
    let role = field("developer_role");
    let roles: Vec<&str> =
        role["options"].as_array().unwrap().iter().map(|o| o["value"].as_str().unwrap()).collect();
    assert_eq!(roles, ["Frontend Developer", "Backend Developer", "Full Stack Developer", "None"]);
    assert_eq!(role["immutable_once_onboarded"], true);
    let skills = field("software_context.skill_levels");
    assert_eq!(skills["kind"], "map");
    assert!(skills["keys"].as_array().unwrap().iter().any(|k| k["value"] == "ROS 2"));
    assert_eq!(field("hardware_context.specifications.gpu")["max_length"], 64);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn seed_000_is_accepted_unchanged_and_read_back(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    assert_eq!(app.get_profile(Some(&ada.access_token)).await.status, StatusCode::NOT_FOUND);

    let created = app.put_profile(Some(&ada.access_token), seed_000_profile()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let profile = &created.json()["profile"];
    assert_eq!(profile["software_context"]["languages"], json!(["Cpp", "Python"]));
    assert_eq!(profile["software_context"]["experience_level"], "Intermediate");
    assert_eq!(profile["hardware_context"]["specifications"], json!({"gpu": "RTX3060", "ram": "16GB"}));
    assert_eq!(profile["is_onboarded"], false);
    assert!(profile["profile_hash"].as_str().is_some_and(|h| h.len() == 64));
    assert!(profile["created_at"].is_string() && profile["updated_at"].is_string());

    let read = app.get_profile(Some(&ada.access_token)).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(&read.json()["profile"], profile);

    // Sending the same profile again replaces nothing: 200, same hash.
    let again = app.put_profile(Some(&ada.access_token), seed_000_profile()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["profile"], *profile);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn seed_002_language_objects_are_stored_canonically(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    let seed_002 = json!({
        "software_context": {
            "languages": [{"language": "Python", "level": "Intermediate"}, {"language": "Cpp", "level": "Beginner"}],
            "frameworks": ["ROS 2", "PyTorch"],
            "experience_years": "3-5"
        },
        "hardware_context": {"devices": ["Jetson", "GPU"], "architecture_familiarity": ["ARM64", "CUDA"]}
    });
    let created = app.put_profile(Some(&ada.access_token), seed_002).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());

    // What the chapters function reads by SQL: these paths and spellings.
    let read = sqlx::query!(
        r#"SELECT software_context->'languages' AS "languages!",
                software_context->'skill_levels'->>'Python' AS "python!",
                hardware_context->'devices' AS "devices!", software_context->>'experience_years' AS "years!"
         FROM user_profiles WHERE user_id = $1"#,
        ada.id.as_str(),
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    let (languages, python, devices, years) = (read.languages, read.python, read.devices, read.years);
    assert_eq!(languages, json!(["Cpp", "Python"]));
    assert_eq!(python, "Intermediate");
    assert_eq!(devices, json!(["GPU", "Jetson"]));
    assert_eq!(years, "3-5");
}

/// Each enumerated field, where it sits in the document, and the path a 422 names.
const ENUMERATED: &[(&str, &str)] = &[
    ("/software_context/languages", "software_context.languages[0]"),
    ("/software_context/experience_level", "software_context.experience_level"),
    ("/software_context/experience_years", "software_context.experience_years"),
    ("/software_context/preferred_tools", "software_context.preferred_tools[0]"),
    ("/software_context/frameworks", "software_context.frameworks[0]"),
    ("/hardware_context/devices", "hardware_context.devices[0]"),
    ("/hardware_context/constraints", "hardware_context.constraints[0]"),
    ("/hardware_context/architecture_familiarity", "hardware_context.architecture_familiarity[0]"),
    ("/python_proficiency", "python_proficiency"),
    ("/developer_role", "developer_role"),
    ("/robotics_experience", "robotics_experience"),
    ("/learning_goals", "learning_goals[0]"),
];

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn an_unknown_value_in_any_enumerated_field_is_named_by_its_path(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    for (pointer, path) in ENUMERATED {
        let mut body = full_profile();
        let slot = body.pointer_mut(pointer).unwrap();
        *slot = if slot.is_array() { json!(["Unheard-of"]) } else { json!("Unheard-of") };
        let response = app.put_profile(Some(&ada.access_token), body).await;
        assert_eq!(invalid_fields(&response), [*path], "{pointer}");
        let detail = &response.json()["error"]["details"][0];
        assert!(detail["message"].as_str().unwrap().contains("unknown value 'Unheard-of'"), "{detail}");
    }
    // Skill levels: an unknown skill and an unknown level, each by its key.
    let mut body = full_profile();
    body["software_context"]["skill_levels"] = json!({"Basket weaving": "Beginner", "Python": "Guru"});
    let response = app.put_profile(Some(&ada.access_token), body).await;
    assert_eq!(
        invalid_fields(&response),
        ["software_context.skill_levels[\"Basket weaving\"]", "software_context.skill_levels.Python"]
    );
    // Values are case-sensitive, exactly as the catalog serves them.
    let mut body = full_profile();
    body["software_context"]["languages"] = json!(["Python", "cpp"]);
    let response = app.put_profile(Some(&ada.access_token), body).await;
    assert_eq!(invalid_fields(&response), ["software_context.languages[1]"]);
    // Nothing was stored by any of these.
    assert_eq!(app.get_profile(Some(&ada.access_token)).await.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn three_bad_fields_are_all_named(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    let mut body = full_profile();
    body["software_context"]["languages"] = json!(["Python", "Cobol"]);
    body["hardware_context"]["devices"] = json!(["Toaster"]);
    body["robotics_experience"] = json!("expert");
    let response = app.put_profile(Some(&ada.access_token), body).await;
    assert_eq!(
        invalid_fields(&response),
        ["software_context.languages[1]", "hardware_context.devices[0]", "robotics_experience"]
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn an_empty_software_context_is_refused(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    let mut body = full_profile();
    body["software_context"] = json!({});
    assert_eq!(invalid_fields(&app.put_profile(Some(&ada.access_token), body).await), ["software_context"]);

    let mut body = full_profile();
    body["software_context"] = json!({"languages": [], "skill_levels": {}, "preferred_tools": ["Git"]});
    assert_eq!(invalid_fields(&app.put_profile(Some(&ada.access_token), body).await), ["software_context"]);

    let missing = json!({"hardware_context": {}});
    assert_eq!(
        invalid_fields(&app.put_profile(Some(&ada.access_token), missing).await),
        ["software_context"]
    );
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn oversized_free_text_is_refused(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    let mut body = full_profile();
    body["hardware_context"]["specifications"] = json!({"gpu": "G".repeat(65), "ram": "R".repeat(500)});
    assert_eq!(
        invalid_fields(&app.put_profile(Some(&ada.access_token), body).await),
        ["hardware_context.specifications.gpu", "hardware_context.specifications.ram"]
    );
    // Exactly 64 characters is fine.
    let mut body = full_profile();
    body["hardware_context"]["specifications"]["gpu"] = json!("G".repeat(64));
    assert_eq!(app.put_profile(Some(&ada.access_token), body).await.status, StatusCode::CREATED);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn malformed_or_misshapen_bodies_get_the_contract_errors(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    let token = ada.access_token.as_str();
    let cases: [(&str, &str, StatusCode); 5] = [
        ("application/json", "{not json", StatusCode::BAD_REQUEST),
        (
            "application/merge-patch+json",
            r#"{"software_context": {"languages": "Python"}}"#,
            StatusCode::BAD_REQUEST,
        ),
        ("application/json", r#"{"software_context": {"langauges": ["Python"]}}"#, StatusCode::BAD_REQUEST),
        ("application/json", r#"{"shoe_size": 42}"#, StatusCode::BAD_REQUEST),
        ("text/plain", "{}", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ];
    for (content_type, body, expected) in cases {
        let response = app.patch_profile_raw(token, content_type, body).await;
        assert_eq!(response.status, expected, "{body}: {}", response.text());
        assert!(response.json()["error"]["request_id"].is_string());
    }
    let oversized = app.patch_profile_raw(token, "application/json", &" ".repeat(70 * 1024)).await;
    assert_eq!(oversized.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.get_profile(Some(token)).await.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn onboarding_answers_are_immutable_once_both_are_given(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    let token = Some(ada.access_token.as_str());

    // One answer: not onboarded yet, so it may still change.
    let mut body = seed_000_profile();
    body["python_proficiency"] = json!("Beginner");
    let created = app.put_profile(token, body).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.json()["profile"]["is_onboarded"], false);
    let patched = app.patch_profile(token, json!({"python_proficiency": "Intermediate"})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());

    // The second answer completes onboarding.
    let onboarded = app.patch_profile(token, json!({"developer_role": "Backend Developer"})).await;
    assert_eq!(onboarded.status, StatusCode::OK);
    assert_eq!(onboarded.json()["profile"]["is_onboarded"], true);

    for change in [
        json!({"python_proficiency": "Advanced"}),
        json!({"developer_role": "Frontend Developer"}),
        json!({"developer_role": null}),
    ] {
        let refused = app.patch_profile(token, change.clone()).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{change}");
        assert_eq!(refused.error_code(), "immutable_field");
    }
    let mut replaced = full_profile();
    replaced["python_proficiency"] = json!("Advanced");
    let refused = app.put_profile(token, replaced).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("python_proficiency"));

    // The same values are fine, alongside other changes.
    let same = app
        .patch_profile(token, json!({"python_proficiency": "Intermediate", "developer_role": "Backend Developer", "learning_goals": ["control"]}))
        .await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.text());
    assert_eq!(app.put_profile(token, full_profile()).await.status, StatusCode::OK);

    let stored = app.get_profile(token).await.json();
    assert_eq!(stored["profile"]["python_proficiency"], "Intermediate");
    assert_eq!(stored["profile"]["developer_role"], "Backend Developer");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn the_hash_follows_the_background_not_the_request_layout(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    let token = Some(ada.access_token.as_str());
    let first = app.put_profile(token, full_profile()).await.json()["profile"].clone();

    // The same background: keys, arrays and duplicates shuffled, the users-table model's form for Python.
    let shuffled = json!({
        "learning_goals": ["manipulation", "simulation", "simulation"],
        "robotics_experience": "simulation_only",
        "developer_role": "Backend Developer",
        "python_proficiency": "Intermediate",
        "hardware_context": {
            "constraints": ["NoInternet"],
            "architecture_familiarity": ["CUDA", "x86_64"],
            "specifications": {"ram": "16GB", "gpu": "RTX3060"},
            "devices": ["Jetson", "Simulation", "RobotArm", "Jetson"]
        },
        "software_context": {
            "frameworks": ["PyTorch", "ROS 2"],
            "preferred_tools": ["ROS", "VSCode"],
            "skill_levels": {"ROS 2": "Beginner"},
            "experience_years": "3-5",
            "experience_level": "Intermediate",
            "languages": ["Cpp", {"language": "Python", "level": "Intermediate"}]
        }
    });
    let same = app.put_profile(token, shuffled).await;
    assert_eq!(same.status, StatusCode::OK);
    assert_eq!(same.json()["profile"]["profile_hash"], first["profile_hash"]);
    assert_eq!(same.json()["profile"]["updated_at"], first["updated_at"], "a no-op write changes nothing");

    // A real change: a new hash, in the response and in the row the chapters function reads.
    let changed = app.patch_profile(token, json!({"hardware_context": {"devices": ["Simulation"]}})).await;
    assert_eq!(changed.status, StatusCode::OK);
    let new_hash = changed.json()["profile"]["profile_hash"].clone();
    assert_ne!(new_hash, first["profile_hash"]);
    let stored: String =
        sqlx::query_scalar!("SELECT profile_hash FROM user_profiles WHERE user_id = $1", ada.id.as_str())
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(json!(stored), new_hash);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn merge_patch_follows_rfc_7396(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    let token = Some(ada.access_token.as_str());

    // No profile yet: the patch applies to an empty one, and creates it when valid.
    let invalid = app.patch_profile(token, json!({"learning_goals": ["control"]})).await;
    assert_eq!(invalid_fields(&invalid), ["software_context", "hardware_context"]);
    let created = app.patch_profile(token, seed_000_profile()).await;
    assert_eq!(created.status, StatusCode::OK, "docs/api.md: a patch answers 200: {}", created.text());
    assert!(created.json()["profile"]["profile_hash"].is_string());

    // Nested objects merge, arrays are replaced, null removes.
    let patched = app
        .patch_profile(
            token,
            json!({
                "hardware_context": {"specifications": {"gpu": "RTX4090"}, "constraints": null},
                "software_context": {"preferred_tools": ["Git"]},
                "learning_goals": ["locomotion"]
            }),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let profile = &patched.json()["profile"];
    assert_eq!(profile["hardware_context"]["specifications"], json!({"gpu": "RTX4090", "ram": "16GB"}));
    assert_eq!(profile["hardware_context"]["constraints"], json!([]));
    assert_eq!(profile["hardware_context"]["devices"], json!(["RobotArm", "Simulation"]));
    assert_eq!(profile["software_context"]["preferred_tools"], json!(["Git"]));
    assert_eq!(profile["software_context"]["languages"], json!(["Cpp", "Python"]));
    assert_eq!(profile["learning_goals"], json!(["locomotion"]));

    // A patch that leaves an invalid profile is refused like a PUT, and changes nothing.
    let emptied = app.patch_profile(token, json!({"software_context": {"languages": null}})).await;
    assert_eq!(invalid_fields(&emptied), ["software_context"]);
    let stored = app.get_profile(token).await.json();
    assert_eq!(stored["profile"], *profile);

    // application/json is accepted too.
    let plain = app
        .patch_profile_raw(
            &ada.access_token,
            "application/json",
            r#"{"robotics_experience": "real_hardware"}"#,
        )
        .await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.json()["profile"]["robotics_experience"], "real_hardware");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn concurrent_first_writes_create_one_profile(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..6 {
        let (app, token) = (app.clone(), ada.access_token.clone());
        writes.spawn(async move {
            let mut body = full_profile();
            body["hardware_context"]["specifications"]["ram"] = json!(format!("{i}GB"));
            app.put_profile(Some(&token), body).await.status
        });
    }
    let statuses = writes.join_all().await;
    let rows: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM user_profiles"#)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 5, "{statuses:?}");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_user_reaches_only_their_own_profile(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    let bob = app.signed_up("bob@example.com").await;
    let adas = app.put_profile(Some(&ada.access_token), full_profile()).await.json()["profile"].clone();

    assert_eq!(app.get_profile(Some(&bob.access_token)).await.status, StatusCode::NOT_FOUND);
    // Bob's writes make and change Bob's profile, never Ada's.
    let bobs = app.put_profile(Some(&bob.access_token), seed_000_profile()).await;
    assert_eq!(bobs.status, StatusCode::CREATED);
    let patched =
        app.patch_profile(Some(&bob.access_token), json!({"developer_role": "Frontend Developer"})).await;
    assert_eq!(patched.status, StatusCode::OK);

    assert_eq!(app.get_profile(Some(&ada.access_token)).await.json()["profile"], adas);
    assert_eq!(
        app.get_profile(Some(&bob.access_token)).await.json()["profile"]["developer_role"],
        "Frontend Developer"
    );
    let rows: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM user_profiles"#)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(rows, 2);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn the_profile_needs_a_live_session(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    for token in [None, Some("not-a-token")] {
        assert_eq!(app.get_profile(token).await.status, StatusCode::UNAUTHORIZED);
        let put = app.put_profile(token, full_profile()).await;
        assert_eq!(put.status, StatusCode::UNAUTHORIZED);
        assert_eq!(put.error_code(), "unauthorized");
        assert_eq!(app.patch_profile(token, full_profile()).await.status, StatusCode::UNAUTHORIZED);
    }
    // A signed-out session's token no longer works either.
    assert!(sessions::revoke(app.pool(), &ada.id, &ada.session_id).await.unwrap(), "signed out");
    assert_eq!(app.get_profile(Some(&ada.access_token)).await.status, StatusCode::UNAUTHORIZED);
    let rows: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM user_profiles"#)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn deleting_the_user_removes_the_profile(pool: PgPool) {
    let app = app(pool);
    let ada = app.signed_up("ada@example.com").await;
    let bob = app.signed_up("bob@example.com").await;
    for user in [&ada, &bob] {
        assert_eq!(
            app.put_profile(Some(&user.access_token), full_profile()).await.status,
            StatusCode::CREATED
        );
    }
    let (blobs, password) = (app.state.blobs.as_ref(), Some(ada.password.clone()));
    app.accounts().delete(blobs, &ada.id, &ada.session_id, password, &app.client()).await.unwrap();
    let owners = sqlx::query_scalar!(r#"SELECT user_id AS "user_id: UserId" FROM user_profiles"#)
        .fetch_all(app.pool())
        .await
        .unwrap();
    assert_eq!(owners, [bob.id]);
}
