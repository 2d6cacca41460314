//! Importing the book: versions, sections, and what the sample book gives two readers.

use crate::common;

use common::{import_fixture, sample_book};
use primer_shared::domain::book::{self, ChapterId, ChapterSource, ImportOutcome};
use std::collections::BTreeSet;

use primer_shared::domain::book::markup::Facet;
use primer_shared::domain::personalize::{ReaderProfile, personalize, reader_profile, rules};
use primer_shared::domain::profile::examples::{api_example, seed_000};
use primer_shared::test_util::{TestApp, set_reader_profile, store_profile};
use serde_json::{Value, json};
use sqlx::PgPool;

async fn sections(pool: &PgPool, chapter: i32) -> Vec<(String, String)> {
    let sections = sqlx::query!(
        "SELECT heading, anchor FROM chapter_sections WHERE chapter_id = $1 ORDER BY position",
        chapter
    )
    .fetch_all(pool)
    .await
    .unwrap();
    sections.into_iter().map(|section| (section.heading, section.anchor)).collect()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn the_version_moves_only_when_the_source_changes(pool: PgPool) {
    import_fixture(&pool).await;
    let fixture = std::fs::read_to_string(common::fixtures().join("01-first-steps.md")).unwrap();
    let before = sections(&pool, 1).await;
    assert_eq!(
        before.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(),
        ["First Steps", "Reading a sensor", "In Python", "In C++", "Acting"]
    );

    let mut conn = pool.acquire().await.unwrap();
    let same = ChapterSource::parse("01-first-steps.md", fixture.clone()).unwrap();
    assert_eq!(
        book::import_chapter(&mut conn, &same).await.unwrap(),
        ImportOutcome::Unchanged { version: 1 }
    );

    let revised =
        ChapterSource::parse("01-first-steps.md", format!("{fixture}\n## Going further\n\nMore.\n")).unwrap();
    assert_eq!(
        book::import_chapter(&mut conn, &revised).await.unwrap(),
        ImportOutcome::Updated { version: 2 }
    );
    let after = sections(&pool, 1).await;
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after.last().unwrap(), &("Going further".to_owned(), "going-further".to_owned()));
    let stored = book::by_id(&mut *conn, ChapterId::parse("1").unwrap()).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.source_sha256), (2, revised.sha256));

    // Sections are searchable by the tutor.
    let found: String = sqlx::query_scalar!(
        "SELECT heading FROM chapter_sections WHERE search_vector @@ plainto_tsquery('english', 'embedded board')",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(found, "Acting");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn the_sample_book_imports_once(pool: PgPool) {
    let first = book::import_dir(&pool, &sample_book()).await.unwrap();
    assert_eq!(first.len(), 6);
    assert!(first.iter().all(|i| i.outcome == ImportOutcome::Created), "{first:?}");
    assert_eq!(
        first.iter().map(|i| i.id.get()).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6],
        "chapters are numbered by their files"
    );
    let count: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM chapter_sections"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(count > 30, "only {count} sections");

    let again = book::import_dir(&pool, &sample_book()).await.unwrap();
    assert!(again.iter().all(|i| i.outcome == ImportOutcome::Unchanged { version: 1 }), "{again:?}");
    let versions: Vec<i32> =
        sqlx::query_scalar!("SELECT version FROM chapters ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(versions, [1; 6]);
}

async fn reader(
    app: &TestApp,
    email: &str,
    level: &str,
    robotics: &str,
    languages: &[&str],
    devices: &[&str],
) -> ReaderProfile {
    let user = app.signed_up(email).await;
    set_reader_profile(app.pool(), &user.id, level, robotics, languages, devices).await;
    reader_profile(app.pool(), &user.id.clone()).await.unwrap().unwrap()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn two_readers_get_visibly_different_chapters(pool: PgPool) {
    let app = TestApp::new(pool, chapters::router);
    book::import_dir(app.pool(), &sample_book()).await.unwrap();
    let newcomer = reader(&app, "new@example.com", "Beginner", "none", &["Python"], &["Simulation"]).await;
    let veteran =
        reader(&app, "vet@example.com", "Advanced", "real_hardware", &["Cpp"], &["Jetson", "Humanoid"]).await;

    let chapter = book::by_id(app.pool(), ChapterId::parse("1").unwrap()).await.unwrap().unwrap();
    let for_newcomer = personalize(&chapter.source_markdown, &newcomer, None).await.markdown;
    let for_veteran = personalize(&chapter.source_markdown, &veteran, None).await.markdown;

    let lines = |md: &str| md.lines().map(str::to_owned).collect::<std::collections::BTreeSet<_>>();
    let (a, b) = (lines(&for_newcomer), lines(&for_veteran));
    let only_newcomer = a.difference(&b).filter(|l| !l.trim().is_empty()).count();
    let only_veteran = b.difference(&a).filter(|l| !l.trim().is_empty()).count();
    assert!(only_newcomer > 20 && only_veteran > 20, "{only_newcomer} / {only_veteran} lines differ");
    // The Python reader sees Python code and not C++, the C++ reader the other way round.
    assert!(for_newcomer.contains("```python") && !for_newcomer.contains("```cpp"));
    assert!(for_veteran.contains("```cpp") && !for_veteran.contains("import rclpy"));
    for (md, level, robotics) in
        [(&for_newcomer, "beginner", "none yet"), (&for_veteran, "advanced", "real hardware")]
    {
        assert!(md.contains("> **Tailored for you.** Shaped by your Python level"), "{md}");
        assert!(md.contains(&format!("Python level ({level})")), "{md}");
        assert!(md.contains(&format!("robotics experience ({robotics})")), "{md}");
    }
    // Neither sees a directive line; both keep the book's own notes.
    for md in [&for_newcomer, &for_veteran] {
        assert!(!md.contains(":::only") && !md.contains(":::except"));
        assert!(md.contains(":::note"));
    }
}

/// The sample book's chapters, as imported.
async fn sample_chapters(pool: &PgPool) -> Vec<book::Chapter> {
    book::import_dir(pool, &sample_book()).await.unwrap();
    let mut chapters = Vec::new();
    for id in 1..=6 {
        chapters.push(book::by_id(pool, ChapterId::parse(&id.to_string()).unwrap()).await.unwrap().unwrap());
    }
    chapters
}

/// The reader of `document`, stored for a new user.
async fn reader_of(app: &TestApp, document: Value) -> ReaderProfile {
    let user = app.signed_up(&format!("{}@example.com", uuid::Uuid::new_v4().simple())).await;
    store_profile(app.pool(), &user.id, document).await;
    reader_profile(app.pool(), &user.id.clone()).await.unwrap().expect("an onboarded reader")
}

/// Non-blank lines of `a` that `b` lacks, and the other way round.
fn differing_lines(a: &str, b: &str) -> (usize, usize) {
    let lines =
        |md: &str| md.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect::<BTreeSet<_>>();
    let (a, b) = (lines(a), lines(b));
    (a.difference(&b).count(), b.difference(&a).count())
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn every_chapter_has_passages_for_goals_skills_and_constraints(pool: PgPool) {
    let app = TestApp::new(pool, chapters::router);
    let chapters = sample_chapters(app.pool()).await;
    // Two readers who differ only in one facet, for each of the three.
    let with = |pointer: &str, value: Value| {
        let mut document = api_example();
        *document.pointer_mut(pointer).unwrap() = value;
        document
    };
    let pairs = [
        (
            "learning goals",
            with("/learning_goals", json!([])),
            with(
                "/learning_goals",
                json!([
                    "locomotion",
                    "manipulation",
                    "perception",
                    "navigation",
                    "simulation",
                    "reinforcement_learning",
                    "vision_language_action",
                    "edge_deployment"
                ]),
            ),
        ),
        (
            "constraints",
            with("/hardware_context/constraints", json!([])),
            with("/hardware_context/constraints", json!(["NoGPU", "LowMemory", "NoInternet"])),
        ),
        (
            "skill levels",
            with("/software_context/skill_levels", json!({})),
            with(
                "/software_context/skill_levels",
                json!({"Python": "Beginner", "Cpp": "Beginner", "ROS 2": "Beginner"}),
            ),
        ),
    ];
    for (facet, a, b) in pairs {
        let (a, b) = (reader_of(&app, a).await, reader_of(&app, b).await);
        for chapter in &chapters {
            let for_a = personalize(&chapter.source_markdown, &a, None).await.markdown;
            let for_b = personalize(&chapter.source_markdown, &b, None).await.markdown;
            let (only_a, only_b) = differing_lines(&for_a, &for_b);
            assert!(only_a + only_b >= 2, "chapter {}: {facet} change {only_a} / {only_b} lines", chapter.id);
        }
    }
    for chapter in &chapters {
        let facets = rules::facets(&chapter.source_markdown);
        assert!(
            facets.contains(&Facet::Goal) && facets.contains(&Facet::Constraint),
            "chapter {}",
            chapter.id
        );
        assert!(
            facets.iter().any(|f| matches!(f, Facet::Skill(_))),
            "chapter {} has no skill passage",
            chapter.id
        );
    }
}

/// The example documents of the first data model (a software and a hardware context), with the
/// two onboarding answers.
fn example_reader() -> Value {
    let mut document = seed_000();
    document["python_proficiency"] = json!("Intermediate");
    document["developer_role"] = json!("Backend Developer");
    document
}

/// Another reader in the same shape: the same fields, other values.
fn example_shaped_newcomer() -> Value {
    json!({
        "software_context": {"languages": ["Python"], "experience_level": "Beginner", "preferred_tools": ["Jupyter", "Docker"]},
        "hardware_context": {
            "devices": ["Jetson", "DepthCamera"],
            "specifications": {"gpu": "none", "ram": "8GB"},
            "constraints": ["NoGPU", "LowMemory"]
        },
        "python_proficiency": "Beginner",
        "developer_role": "Frontend Developer"
    })
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn two_profiles_of_the_example_shape_read_visibly_different_chapters(pool: PgPool) {
    let app = TestApp::new(pool, chapters::router);
    let chapters = sample_chapters(app.pool()).await;
    let example = reader_of(&app, example_reader()).await;
    let newcomer = reader_of(&app, example_shaped_newcomer()).await;
    // The same languages and levels as the example reader; only tools, devices and constraints
    // differ.
    let mut document = example_reader();
    document["software_context"]["preferred_tools"] = json!(["Jupyter", "Docker"]);
    document["hardware_context"] = example_shaped_newcomer()["hardware_context"].clone();
    let same_languages = reader_of(&app, document).await;

    for chapter in &chapters {
        let for_example = personalize(&chapter.source_markdown, &example, None).await.markdown;
        let for_newcomer = personalize(&chapter.source_markdown, &newcomer, None).await.markdown;
        let (only_example, only_newcomer) = differing_lines(&for_example, &for_newcomer);
        assert!(
            only_example >= 3 && only_newcomer >= 3,
            "chapter {}: {only_example} / {only_newcomer} lines differ",
            chapter.id
        );
        let for_other = personalize(&chapter.source_markdown, &same_languages, None).await.markdown;
        let (only_example, only_other) = differing_lines(&for_example, &for_other);
        assert!(
            only_example + only_other >= 2,
            "chapter {}: tools, devices and constraints change nothing",
            chapter.id
        );
        for md in [&for_example, &for_newcomer, &for_other] {
            assert!(md.contains("> **Tailored for you.** Shaped by your "), "chapter {}: {md}", chapter.id);
        }
    }
    // What a person sees side by side, for example in the simulation chapter.
    let simulation = &chapters[1].source_markdown;
    let for_example = personalize(simulation, &example, None).await.markdown;
    let for_newcomer = personalize(simulation, &newcomer, None).await.markdown;
    assert!(
        for_example.contains("### Models without a connection")
            && !for_newcomer.contains("### Models without a connection")
    );
    assert!(
        for_newcomer.contains("### A CPU-only setup for this chapter")
            && !for_example.contains("### A CPU-only setup")
    );
    assert!(for_newcomer.contains("### With 8 GB of memory or less"));
}
